//! Taking recordings out of the store: erasure on request (one recording, or every recording of a
//! call) and retention (kept recordings older than their account's limit). The store removes
//! rows; the caller removes files, after the rows are gone (so no worker can claim a recording
//! whose file is being removed).
//!
//! Invariants: a recording `recording` (FreeSWITCH may still write it) or `uploading` (a worker
//! holds it) is never removed; a recording is removed only by the node whose disk holds its file
//! (the files are that node's to remove); its deliveries go with it, in the same transaction;
//! retention takes only `stored` and `delivered` recordings, in batches.

use rusqlite::{params, OptionalExtension};

use super::{Store, StoreError};
use crate::store::RecordingState;

/// A recording taken out of the store: what its files are, for the caller to remove.
#[derive(Debug, Clone, PartialEq)]
pub struct Removed {
    pub id: String,
    pub account_id: Option<String>,
    pub call_id: String,
    pub file_path: String,
    pub state: RecordingState,
}

/// What became of an erasure request for one recording.
#[derive(Debug, Clone, PartialEq)]
pub enum Erasure {
    /// No such recording (in this account).
    Unknown,
    /// Still recording, or being uploaded now: nothing removed.
    Busy(RecordingState),
    /// Its file is on another node: that node must erase it.
    Elsewhere(String),
    Removed(Removed),
}

/// Which kept recordings are past their time (µs since the epoch).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cutoffs {
    /// Every account without its own limit (and recordings without an account); `None`: kept.
    pub default_before_us: Option<u64>,
    /// Accounts with their own limit.
    pub accounts: Vec<(String, u64)>,
}

/// States a request may not remove.
pub(super) fn busy(state: &str) -> bool {
    RecordingState::parse(state).is_some_and(RecordingState::held)
}

pub(super) fn state_of(s: &str) -> Result<RecordingState, StoreError> {
    RecordingState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown state {s:?}")))
}

impl Store {
    /// Removes recording `id` (of `account`, when given) with its deliveries, unless it is busy
    /// or on another node.
    pub fn erase_recording(&self, id: &str, account: Option<&str>) -> Result<Erasure, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.erase_recording(&self.node, id, account);
        }
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let row: Option<(String, Option<String>, String, String, String)> = tx
                .query_row(
                    "SELECT node, account_id, call_id, file_path, state FROM recordings
                     WHERE id = ?1",
                    params![id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()?;
            let Some((node, account_id, call_id, file_path, state)) = row else {
                return Ok(Erasure::Unknown);
            };
            if account.is_some_and(|a| account_id.as_deref() != Some(a)) {
                return Ok(Erasure::Unknown);
            }
            if busy(&state) {
                return Ok(Erasure::Busy(state_of(&state)?));
            }
            if node != *self.node {
                return Ok(Erasure::Elsewhere(node));
            }
            tx.execute(
                "DELETE FROM deliveries WHERE recording_id = ?1",
                params![id],
            )?;
            tx.execute("DELETE FROM recordings WHERE id = ?1", params![id])?;
            tx.commit()?;
            Ok(Erasure::Removed(Removed {
                id: id.to_string(),
                account_id,
                call_id,
                file_path,
                state: state_of(&state)?,
            }))
        })
    }

    /// The ids of a call's recordings (of `account`), oldest first.
    pub fn recordings_of_call(
        &self,
        account: Option<&str>,
        call_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.recordings_of_call(account, call_id);
        }
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT id FROM recordings WHERE call_id = ?1
                   AND (?2 IS NULL OR account_id = ?2) ORDER BY created_us, id",
            )?;
            let rows = st.query_map(params![call_id, account], |r| r.get(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// After a batch of erasures, copies the write-ahead log back into the database on this
    /// (the retention pass's) connection, so the log's checkpoint, and its sync, does not fall
    /// to whichever serving write crosses SQLite's auto-checkpoint size next (SQLite
    /// `wal_checkpoint(PASSIVE)`: takes no lock readers or writers wait for; nothing on
    /// PostgreSQL).
    pub fn checkpoint_log(&self) -> Result<(), StoreError> {
        if self.pg.is_some() {
            return Ok(());
        }
        self.with(|c| {
            c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
            Ok(())
        })
    }

    /// Removes up to `limit` of this node's kept recordings (`stored`, `delivered`) older than
    /// their cutoff, with their deliveries; returns them, for their files to be removed.
    pub fn take_expired(
        &self,
        cutoffs: &Cutoffs,
        limit: usize,
    ) -> Result<Vec<Removed>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.take_expired(&self.node, cutoffs, limit as i64);
        }
        let own: Vec<&str> = cutoffs.accounts.iter().map(|(a, _)| a.as_str()).collect();
        let own = serde_json::to_string(&own).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let node: &str = &self.node;
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut found: Vec<Removed> = Vec::new();
            let read = |sql: &str, p: &[&dyn rusqlite::ToSql], found: &mut Vec<Removed>| {
                let mut st = tx.prepare_cached(sql)?;
                let mut rows = st.query(p)?;
                while let Some(r) = rows.next()? {
                    let state: String = r.get(4)?;
                    found.push(Removed {
                        id: r.get(0)?,
                        account_id: r.get(1)?,
                        call_id: r.get(2)?,
                        file_path: r.get(3)?,
                        state: state_of(&state)?,
                    });
                }
                Ok::<_, StoreError>(())
            };
            for (account, before) in &cutoffs.accounts {
                let left = limit.saturating_sub(found.len()) as i64;
                if left == 0 {
                    break;
                }
                read(
                    "SELECT id, account_id, call_id, file_path, state FROM recordings
                     WHERE node = ?1 AND account_id = ?2 AND state IN ('stored', 'delivered')
                       AND created_us < ?3
                     ORDER BY created_us LIMIT ?4",
                    &[&node, account, &(*before as i64), &left],
                    &mut found,
                )?;
            }
            // One state at a time: each is an ordered range of `(state, created_us)`, read only
            // as far as the batch needs (both at once would sort every expired row).
            for state in ["stored", "delivered"] {
                let Some(before) = cutoffs.default_before_us else {
                    break;
                };
                let left = limit.saturating_sub(found.len()) as i64;
                if left == 0 {
                    break;
                }
                read(
                    "SELECT id, account_id, call_id, file_path, state FROM recordings
                     WHERE state = ?5 AND created_us < ?2 AND node = ?1
                       AND (account_id IS NULL
                            OR account_id NOT IN (SELECT value FROM json_each(?3)))
                     ORDER BY created_us LIMIT ?4",
                    &[&node, &(before as i64), &own, &left, &state],
                    &mut found,
                )?;
            }
            for r in &found {
                tx.execute(
                    "DELETE FROM deliveries WHERE recording_id = ?1",
                    params![r.id],
                )?;
                tx.execute("DELETE FROM recordings WHERE id = ?1", params![r.id])?;
            }
            tx.commit()?;
            Ok(found)
        })
    }
}
