//! What an operator or a benchmark asks of a store without changing it: recordings counted by
//! state (every node's), the database's size, and SQLite's own integrity check of the file.
//!
//! Invariant: nothing here writes.

use super::{RecordingState, Store, StoreError};

/// What a backend counts: statements only.
#[async_trait::async_trait]
pub(super) trait Census {
    async fn count_recordings(&self, state: RecordingState) -> Result<u64, StoreError>;
    /// SQLite: the file's pages; PostgreSQL: the database.
    async fn size_bytes(&self) -> Result<u64, StoreError>;
}

impl Store {
    /// How many recordings, of every node, are in `state`.
    pub async fn count_recordings(&self, state: RecordingState) -> Result<u64, StoreError> {
        self.db().count_recordings(state).await
    }

    /// The database's size in bytes (SQLite: the file's pages; PostgreSQL: the database).
    pub async fn size_bytes(&self) -> Result<u64, StoreError> {
        self.db().size_bytes().await
    }

    /// SQLite's `PRAGMA integrity_check` of the store's file (or of the node's local journal
    /// with PostgreSQL): `ok`, or what it found.
    pub async fn integrity_check(&self) -> Result<String, StoreError> {
        self.sqlite.integrity_check().await
    }
}
