//! The embedded store: the only place that speaks SQL. One SQLite file in the data directory
//! holds the documents (accounts, users, devices, callflows), the API tokens and the recordings
//! with their deliveries (the durable spool).
//!
//! - [`documents`]: JSON documents keyed by `(account, kind, id)`, with revisions;
//! - [`tokens`]: API tokens, stored hashed, verified in constant time;
//! - [`recordings`]: every kept recording and the state of each of its deliveries;
//! - [`migrations`]: the schema, versioned with `PRAGMA user_version`.
//!
//! Invariants: a document belongs to exactly one account and nothing reached through one
//! account reads or writes another's; every write bumps a document's revision by one,
//! atomically with the write; a token's secret is never stored; a delivery moves between
//! states only inside a transaction that also recomputes its recording's state.

pub mod documents;
mod migrations;
pub mod recordings;
pub mod tokens;

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

pub use documents::{Doc, Kind, Revision};
pub use recordings::{DeliveryState, RecordingState};
pub use tokens::Scope;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("revision conflict: the document is at revision {current}")]
    Conflict { current: String },
    #[error("a document with this id exists")]
    Exists,
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    #[error("store lock poisoned")]
    Poisoned,
}

/// Thread-safe handle; clone freely. Calls block: use them from `spawn_blocking` in async code.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens (creating if needed) `<data_dir>/callrec.db`, migrating an older schema.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(data_dir.join("callrec.db"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Store::init(conn)
    }

    pub fn open_in_memory() -> Result<Store, StoreError> {
        Store::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Store, StoreError> {
        migrations::run(&mut conn)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut c = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        f(&mut c)
    }
}

impl Store {
    /// The store takes writes (the write lock can be had).
    pub fn check_writable(&self) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")?;
            Ok(())
        })
    }
}

/// Seconds since the epoch.
fn now_s() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Microseconds since the epoch.
pub fn now_us() -> u64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as u64
}
