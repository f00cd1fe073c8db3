//! Recordings and their deliveries: the durable spool's tables.
//!
//! A recording is stored with its metadata (`M`, any serde type: the store does not interpret
//! it) and one delivery per destination (URL × method). States of a delivery:
//! `pending` → `uploading` → `delivered` | `failed`; a recording's state follows from its
//! deliveries: `uploading` if any is, else `pending` if any is, else `failed` if any is, else
//! `delivered`; without deliveries it is `stored` (kept locally, final).
//!
//! Before that, while FreeSWITCH records, a recording is **journaled**: a row in state
//! `recording` (no deliveries) written before `uuid_record` is sent, replaced by the kept
//! recording when it ends, removed when it is discarded. A crash therefore leaves a row, never
//! an anonymous file.
//!
//! Invariants: a delivery changes state only in a transaction that also recomputes its
//! recording's state; `recover` returns every `uploading` delivery to `pending` (a crash
//! between claim and settle is retried, so delivery is at least once, never zero times).

use std::collections::HashSet;

use rusqlite::{params, Connection, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{now_us, Store, StoreError};
use crate::values::{Destination, UploadMethod};

/// The state of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Pending,
    Uploading,
    Delivered,
    Failed,
}

/// The state of a recording, derived from its deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordingState {
    /// Journaled: FreeSWITCH is (or was, before a crash) recording it.
    Recording,
    Pending,
    Uploading,
    Delivered,
    Failed,
    Stored,
}

text_enum!(DeliveryState { Pending => "pending", Uploading => "uploading", Delivered => "delivered", Failed => "failed" });
text_enum!(RecordingState { Recording => "recording", Pending => "pending", Uploading => "uploading", Delivered => "delivered", Failed => "failed", Stored => "stored" });

impl RecordingState {
    /// FreeSWITCH may still write it, or a worker is uploading it: nothing may take it away.
    pub fn held(self) -> bool {
        matches!(self, RecordingState::Recording | RecordingState::Uploading)
    }
}

fn corrupt(what: &str, v: &str) -> StoreError {
    StoreError::Corrupt(format!("unknown {what} {v:?}"))
}

/// A recording to add.
#[derive(Debug, Clone)]
pub struct NewRecording<'a, M> {
    pub id: &'a str,
    pub account_id: Option<&'a str>,
    pub call_id: &'a str,
    pub file_path: &'a str,
    pub destinations: &'a [Destination],
    pub meta: &'a M,
}

/// One delivery as stored. `url` is the real one (it may hold a password): redact before
/// showing it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryRow {
    pub url: String,
    pub method: UploadMethod,
    pub state: DeliveryState,
    pub attempts: u32,
    pub next_attempt_us: u64,
    pub last_error: Option<String>,
    pub last_status: Option<u16>,
    pub delivered_us: Option<u64>,
}

/// A stored recording with its deliveries.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingRow<M> {
    /// The node whose disk holds the file (and whose callrec delivers it).
    pub node: String,
    pub state: RecordingState,
    pub created_us: u64,
    pub updated_us: u64,
    pub meta: M,
    pub deliveries: Vec<DeliveryRow>,
}

/// A delivery taken for an attempt.
#[derive(Debug, Clone)]
pub struct Claim<M> {
    pub meta: M,
    /// The real URL (with credentials); never log it raw.
    pub url: String,
    pub method: UploadMethod,
    pub attempts: u32,
    pub since_us: u64,
}

use super::listing::Dialect;
pub use super::listing::Filter;

/// The outcome of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered {
        status: u16,
    },
    Retry {
        next_us: u64,
        error: String,
        status: Option<u16>,
    },
    Failed {
        error: String,
        status: Option<u16>,
    },
}

pub(super) fn meta_of<M: DeserializeOwned>(text: &str) -> Result<M, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("recording metadata: {e}")))
}

/// Recomputes a recording's state from its deliveries and returns it.
fn refresh(c: &Connection, id: &str) -> Result<RecordingState, StoreError> {
    let (total, pending, uploading, failed): (i64, i64, i64, i64) = c.query_row(
        "SELECT COUNT(*), coalesce(SUM(state = 'pending'), 0),
                coalesce(SUM(state = 'uploading'), 0), coalesce(SUM(state = 'failed'), 0)
         FROM deliveries WHERE recording_id = ?1",
        params![id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let state = if total == 0 {
        RecordingState::Stored
    } else if uploading > 0 {
        RecordingState::Uploading
    } else if pending > 0 {
        RecordingState::Pending
    } else if failed > 0 {
        RecordingState::Failed
    } else {
        RecordingState::Delivered
    };
    c.execute(
        "UPDATE recordings SET state = ?2, updated_us = ?3 WHERE id = ?1",
        params![id, state.as_str(), now_us() as i64],
    )?;
    Ok(state)
}

/// A recording's metadata as stored.
pub(super) fn meta_text<M: Serialize>(meta: &M) -> Result<String, StoreError> {
    serde_json::to_string(meta).map_err(|e| StoreError::Corrupt(format!("recording metadata: {e}")))
}

/// Writes (or replaces) a recording's row of `node` in `state`.
pub(super) fn put_recording(
    c: &Connection,
    node: &str,
    rec: &RawNew<'_>,
    state: RecordingState,
    now: i64,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT OR REPLACE INTO recordings
         (id, node, account_id, call_id, file_path, state, meta, created_us, updated_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
        params![
            rec.id,
            node,
            rec.account_id,
            rec.call_id,
            rec.file_path,
            state.as_str(),
            rec.meta,
            now
        ],
    )?;
    // A replaced row starts again without deliveries (as in PostgreSQL).
    c.execute(
        "DELETE FROM deliveries WHERE recording_id = ?1",
        params![rec.id],
    )?;
    Ok(())
}

/// A delivery's columns as read, typed by [`RawDelivery::typed`] (both backends).
pub(super) struct RawDelivery {
    pub url: String,
    pub method: String,
    pub state: String,
    pub attempts: i64,
    pub next: i64,
    pub last_error: Option<String>,
    pub last_status: Option<i64>,
    pub delivered: Option<i64>,
}

impl RawDelivery {
    pub(super) fn typed(self) -> Result<DeliveryRow, StoreError> {
        Ok(DeliveryRow {
            method: UploadMethod::parse(&self.method)
                .ok_or_else(|| corrupt("method", &self.method))?,
            state: DeliveryState::parse(&self.state)
                .ok_or_else(|| corrupt("state", &self.state))?,
            url: self.url,
            attempts: self.attempts as u32,
            next_attempt_us: self.next as u64,
            last_error: self.last_error,
            last_status: self.last_status.map(|s| s as u16),
            delivered_us: self.delivered.map(|d| d as u64),
        })
    }
}

/// A recording's columns as read, with its deliveries.
pub(super) struct RawRecording {
    pub node: String,
    pub state: String,
    pub created: i64,
    pub updated: i64,
    pub meta: String,
    pub deliveries: Vec<RawDelivery>,
}

impl RawRecording {
    fn typed<M: DeserializeOwned>(self) -> Result<RecordingRow<M>, StoreError> {
        Ok(RecordingRow {
            state: RecordingState::parse(&self.state)
                .ok_or_else(|| corrupt("state", &self.state))?,
            node: self.node,
            created_us: self.created as u64,
            updated_us: self.updated as u64,
            meta: meta_of(&self.meta)?,
            deliveries: self
                .deliveries
                .into_iter()
                .map(RawDelivery::typed)
                .collect::<Result<_, _>>()?,
        })
    }
}

/// A claimed delivery as read.
pub(super) struct RawClaim {
    pub url: String,
    pub method: String,
    pub attempts: i64,
    pub since: i64,
    pub meta: String,
}

impl RawClaim {
    fn typed<M: DeserializeOwned>(self) -> Result<Claim<M>, StoreError> {
        Ok(Claim {
            meta: meta_of(&self.meta)?,
            method: UploadMethod::parse(&self.method)
                .ok_or_else(|| corrupt("method", &self.method))?,
            url: self.url,
            attempts: self.attempts as u32,
            since_us: self.since as u64,
        })
    }
}

/// A recording to add, its metadata already text (what the backends take).
pub(super) struct RawNew<'a> {
    pub id: &'a str,
    pub account_id: Option<&'a str>,
    pub call_id: &'a str,
    pub file_path: &'a str,
    pub destinations: &'a [Destination],
    pub meta: String,
}

impl<'a, M: Serialize> NewRecording<'a, M> {
    fn raw(&self) -> Result<RawNew<'a>, StoreError> {
        Ok(RawNew {
            id: self.id,
            account_id: self.account_id,
            call_id: self.call_id,
            file_path: self.file_path,
            destinations: self.destinations,
            meta: meta_text(self.meta)?,
        })
    }
}

fn deliveries(c: &Connection, id: &str) -> Result<Vec<RawDelivery>, StoreError> {
    let mut st = c.prepare(
        "SELECT url, method, state, attempts, next_attempt_us, last_error, last_status, delivered_us
         FROM deliveries WHERE recording_id = ?1 ORDER BY url, method",
    )?;
    let rows = st.query_map(params![id], |r| {
        Ok(RawDelivery {
            url: r.get(0)?,
            method: r.get(1)?,
            state: r.get(2)?,
            attempts: r.get(3)?,
            next: r.get(4)?,
            last_error: r.get(5)?,
            last_status: r.get(6)?,
            delivered: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Reads a recording's row (`id, node, state, created_us, updated_us, meta` columns) with its
/// deliveries.
fn recording_row(c: &Connection, r: &rusqlite::Row<'_>) -> Result<RawRecording, StoreError> {
    let id: String = r.get(0)?;
    Ok(RawRecording {
        node: r.get(1)?,
        state: r.get(2)?,
        created: r.get(3)?,
        updated: r.get(4)?,
        meta: r.get(5)?,
        deliveries: deliveries(c, &id)?,
    })
}

impl Store {
    /// Adds a kept recording of this node with a pending delivery per destination; returns its
    /// state (`pending`, or `stored` without destinations).
    pub fn add_recording<M: Serialize>(
        &self,
        rec: &NewRecording<'_, M>,
    ) -> Result<RecordingState, StoreError> {
        let rec = rec.raw()?;
        let now = now_us() as i64;
        if let Some(pg) = &self.pg {
            match pg.add_recording(&self.node, &rec, now) {
                Ok(state) => {
                    self.drop_local_copy(rec.id);
                    return Ok(state);
                }
                Err(StoreError::Unreachable(e)) => self.keep_locally(rec.id, &e),
                Err(e) => return Err(e),
            }
        }
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            put_recording(&tx, &self.node, &rec, RecordingState::Stored, now)?;
            for d in rec.destinations {
                tx.execute(
                    "INSERT OR IGNORE INTO deliveries
                     (recording_id, node, url, method, state, attempts, next_attempt_us, since_us)
                     VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?5)",
                    params![rec.id, &*self.node, d.url, d.method.as_str(), now],
                )?;
            }
            let state = refresh(&tx, rec.id)?;
            tx.commit()?;
            Ok(state)
        })
    }

    /// Journals a recording FreeSWITCH is about to record on this node (state `recording`, no
    /// deliveries).
    pub fn journal_recording<M: Serialize>(
        &self,
        rec: &NewRecording<'_, M>,
    ) -> Result<(), StoreError> {
        let rec = rec.raw()?;
        let now = now_us() as i64;
        if let Some(pg) = &self.pg {
            match pg.journal_recording(&self.node, &rec, now) {
                Ok(()) => {
                    self.drop_local_copy(rec.id);
                    return Ok(());
                }
                Err(StoreError::Unreachable(e)) => self.keep_locally(rec.id, &e),
                Err(e) => return Err(e),
            }
        }
        self.with(|c| put_recording(c, &self.node, &rec, RecordingState::Recording, now))
    }

    /// Removes a journaled recording that ended without being kept (discarded, failed).
    pub fn forget_recording(&self, id: &str) -> Result<bool, StoreError> {
        let local = |s: &Store| {
            s.with(|c| {
                Ok(c.execute(
                    "DELETE FROM recordings WHERE id = ?1 AND state = 'recording'",
                    params![id],
                )? > 0)
            })
        };
        match &self.pg {
            Some(pg) => {
                let held_locally = self.has_local() && local(self)?;
                Ok(pg.forget_recording(id)? || held_locally)
            }
            None => local(self),
        }
    }

    /// Every journaled recording of this node (what a restart takes up again).
    pub fn journaled<M: DeserializeOwned>(&self) -> Result<Vec<(String, M)>, StoreError> {
        let local = |s: &Store, node: Option<&str>| {
            s.with(|c| {
                let mut st = c.prepare(
                    "SELECT id, meta FROM recordings
                     WHERE state = 'recording' AND (?1 IS NULL OR node = ?1) ORDER BY created_us",
                )?;
                let rows = st.query_map(params![node], |r| Ok((r.get(0)?, r.get(1)?)))?;
                Ok::<Vec<(String, String)>, StoreError>(rows.collect::<Result<_, _>>()?)
            })
        };
        let rows: Vec<(String, String)> = match &self.pg {
            Some(pg) => {
                // The local journal's rows (this host's, whatever node they were written as)
                // are newer than the database's of the same id.
                let mine = if self.has_local() {
                    local(self, None)?
                } else {
                    Vec::new()
                };
                let ids: HashSet<&str> = mine.iter().map(|(id, _)| id.as_str()).collect();
                let mut rows: Vec<(String, String)> = pg
                    .journaled(&self.node)?
                    .into_iter()
                    .filter(|(id, _)| !ids.contains(id.as_str()))
                    .collect();
                rows.extend(mine);
                rows
            }
            None => local(self, Some(&self.node))?,
        };
        rows.into_iter()
            .map(|(id, meta)| Ok((id, meta_of(&meta)?)))
            .collect()
    }

    /// This node's recordings created since `since_us` whose metadata has the key `field`
    /// (found as `"field":` in the stored JSON, where a quote inside a value is escaped; the
    /// store does not read metadata), oldest first.
    pub fn mentioning_since<M: DeserializeOwned>(
        &self,
        since_us: u64,
        field: &str,
    ) -> Result<Vec<(String, M)>, StoreError> {
        let needle = format!("\"{field}\":");
        let rows: Vec<(String, String)> = match &self.pg {
            Some(pg) => pg.mentioning_since(&self.node, since_us as i64, &needle)?,
            None => self.with(|c| {
                let mut st = c.prepare(
                    "SELECT id, meta FROM recordings
                     WHERE created_us >= ?2 AND node = ?1 AND instr(meta, ?3) > 0
                     ORDER BY created_us",
                )?;
                let rows = st.query_map(params![&*self.node, since_us as i64, needle], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
                Ok::<Vec<(String, String)>, StoreError>(rows.collect::<Result<_, _>>()?)
            })?,
        };
        rows.into_iter()
            .map(|(id, meta)| Ok((id, meta_of(&meta)?)))
            .collect()
    }

    /// This node's deliveries left `uploading` by a crash go back to `pending`. Returns how
    /// many.
    pub fn recover_deliveries(&self) -> Result<usize, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.recover_deliveries(&self.node);
        }
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let ids: Vec<String> = {
                let mut st = tx.prepare(
                    "SELECT DISTINCT recording_id FROM deliveries
                     WHERE node = ?1 AND state = 'uploading'",
                )?;
                let rows = st.query_map(params![&*self.node], |r| r.get(0))?;
                rows.collect::<Result<_, _>>()?
            };
            let n = tx.execute(
                "UPDATE deliveries SET state = 'pending' WHERE node = ?1 AND state = 'uploading'",
                params![&*self.node],
            )?;
            for id in &ids {
                refresh(&tx, id)?;
            }
            tx.commit()?;
            Ok(n)
        })
    }

    /// Takes up to `limit` of this node's deliveries due at `now` and marks them `uploading`.
    pub fn claim_due<M: DeserializeOwned>(
        &self,
        now: u64,
        limit: usize,
    ) -> Result<Vec<Claim<M>>, StoreError> {
        let raw = match &self.pg {
            Some(pg) => pg.claim_due(&self.node, now as i64, limit as i64)?,
            None => self.with(|c| {
                let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let rows: Vec<(String, RawClaim)> = {
                    let mut st = tx.prepare(
                        "SELECT d.recording_id, d.url, d.method, d.attempts, d.since_us, r.meta
                         FROM deliveries d JOIN recordings r ON r.id = d.recording_id
                         WHERE d.node = ?1 AND d.state = 'pending' AND d.next_attempt_us <= ?2
                         ORDER BY d.next_attempt_us LIMIT ?3",
                    )?;
                    let rows =
                        st.query_map(params![&*self.node, now as i64, limit as i64], |r| {
                            Ok((
                                r.get(0)?,
                                RawClaim {
                                    url: r.get(1)?,
                                    method: r.get(2)?,
                                    attempts: r.get(3)?,
                                    since: r.get(4)?,
                                    meta: r.get(5)?,
                                },
                            ))
                        })?;
                    rows.collect::<Result<_, _>>()?
                };
                let mut out = Vec::with_capacity(rows.len());
                for (id, claim) in rows {
                    tx.execute(
                        "UPDATE deliveries SET state = 'uploading'
                         WHERE recording_id = ?1 AND url = ?2 AND method = ?3",
                        params![id, claim.url, claim.method],
                    )?;
                    refresh(&tx, &id)?;
                    out.push(claim);
                }
                tx.commit()?;
                Ok(out)
            })?,
        };
        raw.into_iter().map(RawClaim::typed).collect()
    }

    /// When this node's next pending delivery is due.
    pub fn next_due(&self) -> Result<Option<u64>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.next_due(&self.node);
        }
        self.with(|c| {
            let v: Option<i64> = c.query_row(
                "SELECT MIN(next_attempt_us) FROM deliveries WHERE node = ?1 AND state = 'pending'",
                params![&*self.node],
                |r| r.get(0),
            )?;
            Ok(v.map(|v| v as u64))
        })
    }

    /// Records an attempt's outcome; returns the recording's new state.
    pub fn settle(
        &self,
        id: &str,
        dest: &Destination,
        outcome: &Outcome,
    ) -> Result<RecordingState, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.settle(id, dest, outcome);
        }
        let (url, method) = (dest.url.as_str(), dest.method.as_str());
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            match outcome {
                Outcome::Delivered { status } => tx.execute(
                    "UPDATE deliveries SET state = 'delivered', attempts = attempts + 1,
                     last_status = ?4, last_error = NULL, delivered_us = ?5
                     WHERE recording_id = ?1 AND url = ?2 AND method = ?3",
                    params![id, url, method, status, now_us() as i64],
                )?,
                Outcome::Retry {
                    next_us,
                    error,
                    status,
                } => tx.execute(
                    "UPDATE deliveries SET state = 'pending', attempts = attempts + 1,
                     next_attempt_us = ?4, last_error = ?5, last_status = ?6
                     WHERE recording_id = ?1 AND url = ?2 AND method = ?3",
                    params![id, url, method, *next_us as i64, error, status],
                )?,
                Outcome::Failed { error, status } => tx.execute(
                    "UPDATE deliveries SET state = 'failed', attempts = attempts + 1,
                     last_error = ?4, last_status = ?5
                     WHERE recording_id = ?1 AND url = ?2 AND method = ?3",
                    params![id, url, method, error, status],
                )?,
            };
            let state = refresh(&tx, id)?;
            tx.commit()?;
            Ok(state)
        })
    }

    /// One recording, whichever node it is on.
    pub fn recording<M: DeserializeOwned>(
        &self,
        id: &str,
    ) -> Result<Option<RecordingRow<M>>, StoreError> {
        let raw = match &self.pg {
            Some(pg) => pg.recording(id)?,
            None => self.with(|c| {
                let mut st = c.prepare(
                    "SELECT id, node, state, created_us, updated_us, meta FROM recordings
                     WHERE id = ?1",
                )?;
                let mut rows = st.query(params![id])?;
                match rows.next()? {
                    Some(r) => Ok(Some(recording_row(c, r)?)),
                    None => Ok(None),
                }
            })?,
        };
        raw.map(RawRecording::typed).transpose()
    }

    /// Recordings of every node matching `f`, newest first.
    pub fn recordings<M: DeserializeOwned>(
        &self,
        f: &Filter,
    ) -> Result<Vec<RecordingRow<M>>, StoreError> {
        let raw = match &self.pg {
            Some(pg) => pg.recordings(f)?,
            None => self.with(|c| {
                let (sql, values) = f.sql(Dialect::Sqlite);
                let mut st = c.prepare_cached(&sql)?;
                let mut rows = st.query(rusqlite::params_from_iter(values.iter()))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    out.push(recording_row(c, r)?);
                }
                Ok(out)
            })?,
        };
        raw.into_iter().map(RawRecording::typed).collect()
    }

    /// Puts failed deliveries of one recording (or of all, with `None`) back in the queue,
    /// with a fresh give-up clock. Returns how many.
    pub fn retry_failed(&self, id: Option<&str>) -> Result<usize, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.retry_failed(id, now_us() as i64);
        }
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let now = now_us() as i64;
            let ids: Vec<String> = {
                let mut st = tx.prepare(
                    "SELECT DISTINCT recording_id FROM deliveries
                     WHERE state = 'failed' AND (?1 IS NULL OR recording_id = ?1)",
                )?;
                let rows = st.query_map(params![id], |r| r.get(0))?;
                rows.collect::<Result<_, _>>()?
            };
            let n = tx.execute(
                "UPDATE deliveries SET state = 'pending', next_attempt_us = ?2, since_us = ?2
                 WHERE state = 'failed' AND (?1 IS NULL OR recording_id = ?1)",
                params![id, now],
            )?;
            for r in &ids {
                refresh(&tx, r)?;
            }
            tx.commit()?;
            Ok(n)
        })
    }

    /// Hands the recordings of node `from` (or only recording `id` of it) to node `to`, for a
    /// node gone for good whose files were moved to `to`: its deliveries left `uploading` go
    /// back to `pending`, its journaled ones are taken up at `to`'s next start. Returns how
    /// many recordings moved.
    pub fn reassign(&self, from: &str, to: &str, id: Option<&str>) -> Result<usize, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.reassign(from, to, id);
        }
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let ids: Vec<String> = {
                let mut st = tx.prepare(
                    "SELECT id FROM recordings WHERE node = ?1 AND (?2 IS NULL OR id = ?2)",
                )?;
                let rows = st.query_map(params![from, id], |r| r.get(0))?;
                rows.collect::<Result<_, _>>()?
            };
            for r in &ids {
                tx.execute(
                    "UPDATE recordings SET node = ?2 WHERE id = ?1",
                    params![r, to],
                )?;
                tx.execute(
                    "UPDATE deliveries SET node = ?2,
                       state = CASE state WHEN 'uploading' THEN 'pending' ELSE state END
                     WHERE recording_id = ?1",
                    params![r, to],
                )?;
                refresh(&tx, r)?;
            }
            tx.commit()?;
            Ok(ids.len())
        })
    }

    /// Whether a recording of this node with this file path is known.
    pub fn has_recording_path(&self, path: &str) -> Result<bool, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.has_recording_path(&self.node, path);
        }
        self.with(|c| {
            Ok(c.query_row(
                "SELECT 1 FROM recordings WHERE file_path = ?1 AND node = ?2 LIMIT 1",
                params![path, &*self.node],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
        })
    }

    /// This node's known file paths directly in directory `dir` (no trailing `/`): a range over
    /// the path index, so finding orphans costs memory in proportion to one directory, not to
    /// the whole spool.
    pub fn recording_paths_in(&self, dir: &str) -> Result<HashSet<String>, StoreError> {
        let prefix = format!("{dir}/");
        // Every path under `dir/` sorts before `dir0` ('0' follows '/').
        let end = format!("{dir}0");
        if let Some(pg) = &self.pg {
            return pg.recording_paths_in(&self.node, &prefix, &end);
        }
        let tail_from = prefix.chars().count() as i64 + 1;
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT file_path FROM recordings
                 WHERE file_path >= ?1 AND file_path < ?2 AND instr(substr(file_path, ?3), '/') = 0
                   AND node = ?4",
            )?;
            let rows = st.query_map(params![prefix, end, tail_from, &*self.node], |r| {
                r.get::<_, String>(0)
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }
}
