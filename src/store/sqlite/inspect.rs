//! Counts of the SQLite file: the statements behind [`Census`].

use rusqlite::params;

use super::Sqlite;
use crate::store::inspect::Census;
use crate::store::{RecordingState, StoreError};

#[async_trait::async_trait]
impl Census for Sqlite {
    async fn count_recordings(&self, state: RecordingState) -> Result<u64, StoreError> {
        self.run(move |c| {
            let n: i64 = c.query_row(
                "SELECT COUNT(*) FROM recordings WHERE state = ?1",
                params![state.as_str()],
                |r| r.get(0),
            )?;
            Ok(n.max(0) as u64)
        })
        .await
    }

    async fn size_bytes(&self) -> Result<u64, StoreError> {
        self.run(move |c| {
            let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            let size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            Ok((pages.max(0) as u64) * (size.max(0) as u64))
        })
        .await
    }
}
