//! The SQLite backend: one file (or, for tests and a shared database's fallback, memory) behind
//! one connection. Each concept's statements are a file here, implementing that concept's
//! backend trait (`DocumentRows` in `documents`, `RecordingRows` in `recordings`…); the rules
//! they apply are the concept's module's, above both backends. Besides: [`migrations`] (the
//! file's schema, versioned with `PRAGMA user_version`) and `journal` (what only the local
//! journal of a node on a shared database does: see `store::fallback`).
//!
//! Invariants: one connection, taken under a mutex for one call at a time, so SQLite sees one
//! writer; a call that holds it never waits on anything else. Calls run on tokio's blocking
//! pool ([`Sqlite::run`]), never on a runtime thread.

mod decisions;
mod documents;
mod inspect;
mod journal;
pub(super) mod migrations;
mod nodes;
mod recordings;
mod retention;
mod tokens;
mod webhooks;

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::StoreError;

/// The rows of a listing's statement (its SQL and bound values, as `store::listing` and
/// `store::decisions` build them for SQLite), each read by `row`.
pub(super) fn listed<T>(
    c: &Connection,
    (sql, values): (String, Vec<super::listing::Bound>),
    mut row: impl FnMut(&rusqlite::Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut st = c.prepare_cached(&sql)?;
    let mut rows = st.query(rusqlite::params_from_iter(values.iter()))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(row(r)?);
    }
    Ok(out)
}

/// The connection; clone freely (clones share it).
#[derive(Clone)]
pub(super) struct Sqlite {
    conn: Arc<Mutex<Connection>>,
}

impl Sqlite {
    /// Opens (creating if needed) the file at `path`, migrating an older schema.
    pub(super) fn open(path: &Path) -> Result<Sqlite, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Sqlite::init(conn)
    }

    pub(super) fn open_in_memory() -> Result<Sqlite, StoreError> {
        Sqlite::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Sqlite, StoreError> {
        migrations::run(&mut conn)?;
        Ok(Sqlite {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// The node the file's rows were last given to (`speak_for`).
    pub(super) fn owner(&self) -> Result<String, StoreError> {
        self.with(|c| Ok(c.query_row("SELECT node FROM owner", [], |r| r.get(0))?))
    }

    /// SQLite's `PRAGMA integrity_check`: `ok`, or what it found.
    pub(super) async fn integrity_check(&self) -> Result<String, StoreError> {
        self.run(|c| Ok(c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?))
            .await
    }

    /// Runs `f` with the connection on the blocking pool: SQLite's calls block, so the caller's
    /// task waits for them without holding a runtime thread.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().map_err(|_| StoreError::Poisoned)?;
            f(&mut c)
        })
        .await
        .map_err(|e| StoreError::Panicked(e.to_string()))?
    }

    /// Runs `f` with the connection, blocking the caller until it is free (opening, at
    /// start-up, before anything else runs).
    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut c = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        f(&mut c)
    }
}
