//! The write-ahead log's checkpoints for a SQLite file, off the serving connection.
//!
//! In WAL mode a commit appends to the log; a checkpoint copies the log's pages into the file
//! and `fsync`s both, milliseconds on a slow disk. Left to SQLite, the commit that pushes the
//! log past 1,000 pages runs it, on whichever thread made that commit: a call's journal row
//! could pay it, and since small statements now run on runtime threads ([`super::Sqlite::quick`])
//! so could every task sharing that thread. Here a connection of the checkpoints' own runs a
//! PASSIVE checkpoint (copies what no reader still needs, never waits for one) on the blocking
//! pool every [`EVERY_CALLS`] calls, and on request (the retention pass, after each batch).
//!
//! Invariants: at most one checkpoint started by counting runs at a time; the serving
//! connection keeps SQLite's own auto-checkpoint only as a safety net, at
//! [`SAFETY_NET_PAGES`], for a log this has not kept up with.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tracing::warn;

use crate::store::StoreError;

/// A checkpoint starts after this many calls on the serving connection.
const EVERY_CALLS: u32 = 256;

/// The serving connection's own auto-checkpoint threshold (pages; SQLite's default is 1,000).
const SAFETY_NET_PAGES: u32 = 4096;

/// Sets the serving connection's auto-checkpoint to the safety net.
pub(super) fn leave_to_checkpointer(c: &mut Connection) -> Result<(), StoreError> {
    c.pragma_update(None, "wal_autocheckpoint", SAFETY_NET_PAGES)?;
    Ok(())
}

/// The checkpoints' connection and counters.
pub(super) struct Checkpoints {
    conn: Mutex<Connection>,
    calls: AtomicU32,
    running: AtomicBool,
    finished: AtomicU64,
}

impl Checkpoints {
    /// A connection of its own to the file at `path` (already in WAL mode).
    pub(super) fn open(path: &Path) -> Result<Checkpoints, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(1))?;
        Ok(Checkpoints {
            conn: Mutex::new(conn),
            calls: AtomicU32::new(0),
            running: AtomicBool::new(false),
            finished: AtomicU64::new(0),
        })
    }

    /// Counts a call on the serving connection; every [`EVERY_CALLS`]th starts a checkpoint
    /// on the blocking pool unless one is running (or there is no runtime to run it on).
    pub(super) fn counted(self: &Arc<Self>) {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        if n % EVERY_CALLS != EVERY_CALLS - 1 || self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.running.store(false, Ordering::Release);
            return;
        };
        let this = self.clone();
        rt.spawn_blocking(move || {
            let done = this.checkpoint();
            this.running.store(false, Ordering::Release);
            if let Err(e) = done {
                warn!(error = %e, "store: checkpointing the SQLite log failed (the next one tries again)");
            }
        });
    }

    /// Checkpoints now on the blocking pool and waits for it.
    pub(super) async fn now(self: Arc<Self>) -> Result<(), StoreError> {
        tokio::task::spawn_blocking(move || self.checkpoint())
            .await
            .map_err(|e| StoreError::Panicked(e.to_string()))?
    }

    fn checkpoint(&self) -> Result<(), StoreError> {
        let c = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        self.finished.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Checkpoints finished so far.
    #[cfg(test)]
    pub(super) fn finished(&self) -> u64 {
        self.finished.load(Ordering::Acquire)
    }
}
