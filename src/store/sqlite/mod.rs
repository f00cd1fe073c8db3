//! The SQLite backend: one file (or, for tests and a shared database's fallback, memory) behind
//! one connection. Each concept's statements are a file here, implementing that concept's
//! backend trait (`DocumentRows` in `documents`, `RecordingRows` in `recordings`…); the rules
//! they apply are the concept's module's, above both backends. Besides: [`migrations`] (the
//! file's schema, versioned with `PRAGMA user_version`), `journal` (what only the local
//! journal of a node on a shared database does: see `store::fallback`) and `checkpoint` (the
//! write-ahead log's checkpoints, off the serving connection).
//!
//! How a call reaches the connection, by what it does:
//! - [`Sqlite::quick`]: statements bounded by an index (a lookup, a row written, a claim of a
//!   few rows). When the connection is free they run right where the caller's task is polled:
//!   tens of microseconds, less than the two thread wake-ups a hop to another thread costs.
//!   When it is taken, they wait for it on tokio's blocking pool.
//! - [`Sqlite::run`]: anything that may scan (listings, passes, counts, moves): always on the
//!   blocking pool, never on a runtime thread.
//!
//! Invariants: one connection, taken under a mutex for one call at a time, so SQLite sees one
//! writer (of this process); a call that holds it never waits on anything else in the process.
//! A call never sleeps on a worker of a multi-threaded runtime (the service's): when another
//! process holds the file's write lock (an operator tool), the busy wait first hands the
//! worker's tasks to another thread (`busy_wait`); on a current-thread runtime (the operator
//! tools themselves) there is nothing else to run. The serving connection never checkpoints the log in a small commit: that
//! (two `fsync`s) is `checkpoint`'s, on the blocking pool with a connection of its own.

mod checkpoint;
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
use std::sync::{Arc, Mutex, TryLockError};
use std::time::Duration;

use rusqlite::Connection;

use super::StoreError;
use checkpoint::Checkpoints;

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

/// How long a statement waits for another process's write lock on the file before it fails
/// with `database is locked` (SQLite's `busy_timeout` did the same before).
const BUSY_BUDGET: Duration = Duration::from_secs(5);

/// The waits between tries for a lock another process holds: short first (an operator tool's
/// write is usually a few milliseconds), then 100 ms each, up to [`BUSY_BUDGET`].
fn busy_delay(tries: i32) -> Duration {
    const FIRST: [u64; 12] = [1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100];
    Duration::from_millis(usize::try_from(tries).map_or(100, |i| *FIRST.get(i).unwrap_or(&100)))
}

/// SQLite's busy handler for the serving connection: `false` (give up) once [`BUSY_BUDGET`] is
/// spent. A wait on a worker of a multi-threaded runtime happens inside `block_in_place`, so
/// the worker's other tasks move to another thread instead of waiting behind this one; a
/// current-thread runtime (tests, the operator tools) has nothing to hand over.
fn busy_wait(tries: i32) -> bool {
    let spent: Duration = (0..tries).map(busy_delay).sum();
    if spent >= BUSY_BUDGET {
        return false;
    }
    let delay = busy_delay(tries);
    let multi = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi {
        tokio::task::block_in_place(|| std::thread::sleep(delay));
    } else {
        std::thread::sleep(delay);
    }
    true
}

/// What a panic said, as far as it said it in text.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a SQLite call panicked".to_owned())
}

/// The connection; clone freely (clones share it).
#[derive(Clone)]
pub(super) struct Sqlite {
    conn: Arc<Mutex<Connection>>,
    /// The file's log checkpoints (none for a database in memory).
    log: Option<Arc<Checkpoints>>,
}

impl Sqlite {
    /// Opens (creating if needed) the file at `path`, migrating an older schema.
    pub(super) fn open(path: &Path) -> Result<Sqlite, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_handler(Some(busy_wait))?;
        let mut db = Sqlite::init(conn)?;
        // After migrating (a migration's big commit may checkpoint where it runs, at start-up).
        db.with(checkpoint::leave_to_checkpointer)?;
        db.log = Some(Arc::new(Checkpoints::open(path)?));
        Ok(db)
    }

    pub(super) fn open_in_memory() -> Result<Sqlite, StoreError> {
        Sqlite::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Sqlite, StoreError> {
        migrations::run(&mut conn)?;
        // Every statement of the backends is cached once prepared (there are about 80).
        conn.set_prepared_statement_cache_capacity(128);
        Ok(Sqlite {
            conn: Arc::new(Mutex::new(conn)),
            log: None,
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

    /// Runs `f`, a statement or transaction bounded by an index, with the connection: right
    /// here if it is free, else on the blocking pool once it is.
    pub(super) async fn quick<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.counted();
        // The guard must be gone before the await: the match ends first.
        let f = match self.conn.try_lock() {
            // A panic is the call's error, as it is on the blocking pool.
            Ok(mut c) => {
                return std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut c)))
                    .unwrap_or_else(|p| Err(StoreError::Panicked(panic_text(&*p))));
            }
            Err(TryLockError::Poisoned(_)) => return Err(StoreError::Poisoned),
            Err(TryLockError::WouldBlock) => f,
        };
        self.pooled(f).await
    }

    /// Runs `f` with the connection on the blocking pool: for anything that may scan, so the
    /// caller's task waits for it without holding a runtime thread.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.counted();
        self.pooled(f).await
    }

    async fn pooled<T: Send + 'static>(
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

    /// Counts a call for the log's checkpoints.
    fn counted(&self) {
        if let Some(log) = &self.log {
            log.counted();
        }
    }

    /// Checkpoints the log now (PASSIVE: what no reader still needs), waiting for it.
    pub(super) async fn checkpoint_now(&self) -> Result<(), StoreError> {
        match &self.log {
            Some(log) => log.clone().now().await,
            None => Ok(()),
        }
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// An operator tool holding the file's write lock makes a small statement wait (SQLite's
    /// busy wait); run on a runtime thread, that wait must not hold the thread's other tasks.
    /// One worker thread: `other_task` can only run while `waiting` is in its busy wait if the
    /// wait handed the worker's tasks to another thread, and only then is the lock let go.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_write_waiting_for_another_process_leaves_the_runtime_thread_to_other_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("callrec.db");
        let db = Sqlite::open(&path).unwrap();
        let tool = Connection::open(&path).unwrap();
        tool.execute_batch("BEGIN IMMEDIATE").unwrap();

        let started = Arc::new(AtomicBool::new(false));
        let waiting = tokio::spawn({
            let (db, started) = (db.clone(), started.clone());
            async move {
                started.store(true, Ordering::SeqCst);
                db.quick(|c| Ok(c.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")?))
                    .await
            }
        });
        let other_task = tokio::spawn(async move {
            while !started.load(Ordering::SeqCst) {
                tokio::task::yield_now().await;
            }
        });
        other_task.await.unwrap();
        tool.execute_batch("ROLLBACK").unwrap();
        let got = waiting.await.unwrap();
        assert!(
            got.is_ok(),
            "the write gave up while the runtime thread was held: {got:?}"
        );
    }

    /// The serving connection's commits leave the log to the checkpoints' connection, which
    /// copies it into the file: the file grows although the serving connection's own
    /// threshold (4,096 pages) is far away.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_is_checkpointed_by_its_own_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("callrec.db");
        let db = Sqlite::open(&path).unwrap();
        db.quick(|c| Ok(c.execute_batch("CREATE TABLE filler (x BLOB)")?))
            .await
            .unwrap();
        let log = db.log.clone().unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        let finished_before = log.finished();
        for _ in 0..300 {
            db.quick(|c| {
                c.execute("INSERT INTO filler VALUES (zeroblob(4000))", [])?;
                Ok(())
            })
            .await
            .unwrap();
        }
        let mut polls = 0;
        while log.finished() < finished_before + 1 {
            polls += 1;
            assert!(polls < 1_000, "no checkpoint finished after 300 calls");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let after = std::fs::metadata(&path).unwrap().len();
        assert!(
            after > before + 32 * 4000,
            "the file did not take the log's pages: {before} → {after} bytes"
        );
    }
}
