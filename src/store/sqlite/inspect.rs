//! Counts of the SQLite file: the statements behind [`Census`].

use rusqlite::params;

use super::Sqlite;
use crate::store::inspect::Census;
use crate::store::{RecordingState, StoreError};

impl Census for Sqlite {
    fn count_recordings(&self, state: RecordingState) -> Result<u64, StoreError> {
        self.with(|c| {
            let n: i64 = c.query_row(
                "SELECT COUNT(*) FROM recordings WHERE state = ?1",
                params![state.as_str()],
                |r| r.get(0),
            )?;
            Ok(n.max(0) as u64)
        })
    }

    fn size_bytes(&self) -> Result<u64, StoreError> {
        self.with(|c| {
            let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            let size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            Ok((pages.max(0) as u64) * (size.max(0) as u64))
        })
    }
}
