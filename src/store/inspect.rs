//! What an operator or a benchmark asks of a store without changing it: recordings counted by
//! state (every node's), the database's size, and SQLite's own integrity check of the file.
//!
//! Invariant: nothing here writes.

use rusqlite::params;

use super::{RecordingState, Store, StoreError};

impl Store {
    /// How many recordings, of every node, are in `state`.
    pub fn count_recordings(&self, state: RecordingState) -> Result<u64, StoreError> {
        match &self.pg {
            Some(pg) => pg.count_recordings(state),
            None => self.with(|c| {
                let n: i64 = c.query_row(
                    "SELECT COUNT(*) FROM recordings WHERE state = ?1",
                    params![state.as_str()],
                    |r| r.get(0),
                )?;
                Ok(n.max(0) as u64)
            }),
        }
    }

    /// The database's size in bytes (SQLite: the file's pages; PostgreSQL: the database).
    pub fn size_bytes(&self) -> Result<u64, StoreError> {
        match &self.pg {
            Some(pg) => pg.size_bytes(),
            None => self.with(|c| {
                let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
                let size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
                Ok((pages.max(0) as u64) * (size.max(0) as u64))
            }),
        }
    }

    /// SQLite's `PRAGMA integrity_check` of the store's file (or of the node's local journal
    /// with PostgreSQL): `ok`, or what it found.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        self.with(|c| Ok(c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?))
    }
}
