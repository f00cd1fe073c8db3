//! The SQLite backend: one file (or, for tests and a shared database's fallback, memory) behind
//! one connection. Each concept's statements are a file here, implementing that concept's
//! backend trait (`DocumentRows` in [`documents`], `TokenRows` in [`tokens`]); the rules they
//! apply are the concept's module's, above both backends.
//!
//! Invariants: one connection, taken under a mutex for one call at a time, so SQLite sees one
//! writer; a caller that holds it never waits on anything else (calls block: async code runs
//! them from `spawn_blocking`).

mod decisions;
mod documents;
mod tokens;
mod webhooks;

use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::StoreError;

/// The connection; clone freely (clones share it).
#[derive(Clone)]
pub(super) struct Sqlite {
    conn: Arc<Mutex<Connection>>,
}

impl Sqlite {
    pub(super) fn new(conn: Connection) -> Sqlite {
        Sqlite {
            conn: Arc::new(Mutex::new(conn)),
        }
    }

    /// Runs `f` with the connection, blocking the caller until it is free.
    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut c = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        f(&mut c)
    }
}
