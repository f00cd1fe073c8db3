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

use rusqlite::params;

use super::{Store, StoreError};

/// A recording as moved from the local file: every column, its deliveries' too.
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

    /// A write the database refused for being unreachable goes to the local file instead.
    pub(super) fn keep_locally(&self, id: &str, why: &str) {
        self.local.store(true, Ordering::Release);
        tracing::warn!(
            recording_id = %id,
            error = %why,
            "database unreachable: recording journaled locally until it returns"
        );
    }

    /// After the database took a write of `id`, the local copy (if any) is stale.
    pub(super) fn drop_local_copy(&self, id: &str) {
        if !self.has_local() {
            return;
        }
        let r = self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute(
                "DELETE FROM deliveries WHERE recording_id = ?1",
                params![id],
            )?;
            tx.execute("DELETE FROM recordings WHERE id = ?1", params![id])?;
            tx.commit()?;
            Ok(())
        });
        if let Err(e) = r {
            tracing::warn!(recording_id = %id, error = %e, "cannot remove a stale local copy");
        }
    }

    /// Looks whether the local file holds recordings (a node that had the database down
    /// before it stopped, or that used SQLite before): they are moved by
    /// [`Store::move_local_to_database`].
    pub(super) fn check_local(&self) -> Result<(), StoreError> {
        let any: bool = self.with(|c| {
            Ok(c.query_row("SELECT EXISTS(SELECT 1 FROM recordings)", [], |r| r.get(0))?)
        })?;
        self.local.store(any, Ordering::Release);
        Ok(())
    }

    /// Moves every recording of the local file to the database, as this node's, a batch per
    /// transaction; returns how many moved. Stops at the first error (the rest stay local).
    pub fn move_local_to_database(&self) -> Result<usize, StoreError> {
        let Some(pg) = &self.pg else { return Ok(0) };
        if !self.has_local() {
            return Ok(0);
        }
        let mut moved = 0;
        loop {
            let batch = self.with(|c| {
                let mut st = c.prepare(
                    "SELECT id, account_id, call_id, file_path, state, meta, created_us,
                            updated_us
                     FROM recordings ORDER BY created_us LIMIT ?1",
                )?;
                let rows = st.query_map(params![BATCH], |r| {
                    Ok(Moved {
                        id: r.get(0)?,
                        account_id: r.get(1)?,
                        call_id: r.get(2)?,
                        file_path: r.get(3)?,
                        state: r.get(4)?,
                        meta: r.get(5)?,
                        created: r.get(6)?,
                        updated: r.get(7)?,
                        deliveries: Vec::new(),
                    })
                })?;
                let mut out: Vec<Moved> = rows.collect::<Result<_, _>>()?;
                let mut st = c.prepare(
                    "SELECT url, method, state, attempts, next_attempt_us, since_us, last_error,
                            last_status, delivered_us
                     FROM deliveries WHERE recording_id = ?1",
                )?;
                for m in &mut out {
                    let rows = st.query_map(params![m.id], |r| {
                        Ok(MovedDelivery {
                            url: r.get(0)?,
                            method: r.get(1)?,
                            state: r.get(2)?,
                            attempts: r.get(3)?,
                            next: r.get(4)?,
                            since: r.get(5)?,
                            last_error: r.get(6)?,
                            last_status: r.get(7)?,
                            delivered: r.get(8)?,
                        })
                    })?;
                    m.deliveries = rows.collect::<Result<_, _>>()?;
                }
                Ok(out)
            })?;
            if batch.is_empty() {
                self.local.store(false, Ordering::Release);
                break;
            }
            pg.import(&self.node, &batch)?;
            self.with(|c| {
                let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                for m in &batch {
                    // Only if it did not change meanwhile (else the newer row moves next round).
                    let gone = tx.execute(
                        "DELETE FROM recordings WHERE id = ?1 AND updated_us = ?2",
                        params![m.id, m.updated],
                    )?;
                    if gone > 0 {
                        tx.execute(
                            "DELETE FROM deliveries WHERE recording_id = ?1",
                            params![m.id],
                        )?;
                    }
                }
                tx.commit()?;
                Ok(())
            })?;
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
