//! The local journal of a node on a shared database: while PostgreSQL cannot be reached,
//! recordings are journaled and spooled in the node's own SQLite file (`<data_dir>/callrec.db`)
//! instead, and moved to the database once it answers again.
//!
//! Invariants: a recording is in the local file only while the database has not taken a newer
//! write of it: every write the database takes removes the recording's local copy, so a local
//! row is always at least as new as the database's and moving it replaces the database's row.
//! A row leaves the local file only after the database committed it. Calls never wait for this:
//! an unreachable database fails fast (see `postgres`), and the write goes local.

use std::sync::atomic::Ordering;

use super::{Store, StoreError};

/// A recording as moved from the local file: every column, its deliveries' too.
#[derive(Clone)]
pub(super) struct Moved {
    pub id: String,
    pub account_id: Option<String>,
    pub call_id: String,
    pub file_path: String,
    pub state: String,
    pub meta: String,
    pub created: i64,
    pub updated: i64,
    pub deliveries: Vec<MovedDelivery>,
}

#[derive(Clone)]
pub(super) struct MovedDelivery {
    pub url: String,
    pub method: String,
    pub state: String,
    pub attempts: i64,
    pub next: i64,
    pub since: i64,
    pub last_error: Option<String>,
    pub last_status: Option<i64>,
    pub delivered: Option<i64>,
}

/// Recordings moved per database transaction.
const BATCH: i64 = 200;

impl Store {
    /// Whether the local file may hold recordings the database has not got yet.
    pub fn has_local(&self) -> bool {
        self.pg.is_some() && self.local.load(Ordering::Acquire)
    }

    /// The rule for a write of recording `id` to the shared database, given what the database
    /// answered: taken (`Some`; the local copy, if any, is stale and removed), or unreachable
    /// (`None`: the caller writes it to the local file instead, and the file is marked as
    /// holding recordings). Any other error is the write's.
    pub(super) async fn shared_took<T>(
        &self,
        id: &str,
        written: Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        match written {
            Ok(done) => {
                if self.has_local() {
                    if let Err(e) = self.sqlite.remove_recording(id).await {
                        tracing::warn!(recording_id = %id, error = %e, "cannot remove a stale local copy");
                    }
                }
                Ok(Some(done))
            }
            Err(StoreError::Unreachable(why)) => {
                self.local.store(true, Ordering::Release);
                tracing::warn!(
                    recording_id = %id,
                    error = %why,
                    "database unreachable: recording journaled locally until it returns"
                );
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Looks whether the local file holds recordings (a node that had the database down
    /// before it stopped, or that used SQLite before): they are moved by
    /// [`Store::move_local_to_database`].
    pub(super) async fn check_local(&self) -> Result<(), StoreError> {
        let any = self.sqlite.holds_recordings().await?;
        self.local.store(any, Ordering::Release);
        Ok(())
    }

    /// Moves every recording of the local file to the database, as this node's, a batch per
    /// transaction; returns how many moved. Stops at the first error (the rest stay local).
    pub async fn move_local_to_database(&self) -> Result<usize, StoreError> {
        let Some(pg) = &self.pg else { return Ok(0) };
        if !self.has_local() {
            return Ok(0);
        }
        let mut moved = 0;
        loop {
            let batch = self.sqlite.recordings_to_move(BATCH).await?;
            if batch.is_empty() {
                self.local.store(false, Ordering::Release);
                break;
            }
            pg.import(&self.node, &batch).await?;
            self.sqlite.remove_moved(&batch).await?;
            moved += batch.len();
        }
        if moved > 0 {
            tracing::info!(
                recordings = moved,
                node_id = %self.node,
                "recordings journaled locally moved to the database"
            );
        }
        Ok(moved)
    }
}
