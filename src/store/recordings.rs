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

macro_rules! text_enum {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$v),)* _ => None }
            }
        }
        /// Compares with the state's name (`"pending"`…), as shown in the API and CLI.
        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(DeliveryState { Pending => "pending", Uploading => "uploading", Delivered => "delivered", Failed => "failed" });
text_enum!(RecordingState { Recording => "recording", Pending => "pending", Uploading => "uploading", Delivered => "delivered", Failed => "failed", Stored => "stored" });

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

/// Which recordings to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub state: Option<RecordingState>,
    pub account_id: Option<String>,
    pub call_id: Option<String>,
    pub since_us: Option<u64>,
    pub until_us: Option<u64>,
    pub limit: Option<u32>,
}

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

fn meta_of<M: DeserializeOwned>(text: &str) -> Result<M, StoreError> {
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

/// Writes (or replaces) a recording's row in `state`.
fn put_recording<M: Serialize>(
    c: &Connection,
    rec: &NewRecording<'_, M>,
    state: RecordingState,
    now: i64,
) -> Result<(), StoreError> {
    let meta = serde_json::to_string(rec.meta)
        .map_err(|e| StoreError::Corrupt(format!("recording metadata: {e}")))?;
    c.execute(
        "INSERT OR REPLACE INTO recordings
         (id, account_id, call_id, file_path, state, meta, created_us, updated_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
        params![
            rec.id,
            rec.account_id,
            rec.call_id,
            rec.file_path,
            state.as_str(),
            meta,
            now
        ],
    )?;
    Ok(())
}

fn deliveries(c: &Connection, id: &str) -> Result<Vec<DeliveryRow>, StoreError> {
    let mut st = c.prepare(
        "SELECT url, method, state, attempts, next_attempt_us, last_error, last_status, delivered_us
         FROM deliveries WHERE recording_id = ?1 ORDER BY url, method",
    )?;
    let rows = st.query_map(params![id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, Option<String>>(5)?,
            r.get::<_, Option<i64>>(6)?,
            r.get::<_, Option<i64>>(7)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (url, method, state, attempts, next, last_error, last_status, delivered) = row?;
        out.push(DeliveryRow {
            url,
            method: UploadMethod::parse(&method).ok_or_else(|| corrupt("method", &method))?,
            state: DeliveryState::parse(&state).ok_or_else(|| corrupt("state", &state))?,
            attempts: attempts as u32,
            next_attempt_us: next as u64,
            last_error,
            last_status: last_status.map(|s| s as u16),
            delivered_us: delivered.map(|d| d as u64),
        });
    }
    Ok(out)
}

fn recording_row<M: DeserializeOwned>(
    c: &Connection,
    id: &str,
    state: &str,
    created: i64,
    updated: i64,
    meta: &str,
) -> Result<RecordingRow<M>, StoreError> {
    Ok(RecordingRow {
        state: RecordingState::parse(state).ok_or_else(|| corrupt("state", state))?,
        created_us: created as u64,
        updated_us: updated as u64,
        meta: meta_of(meta)?,
        deliveries: deliveries(c, id)?,
    })
}

impl Store {
    /// Adds a kept recording with a pending delivery per destination; returns its state
    /// (`pending`, or `stored` without destinations).
    pub fn add_recording<M: Serialize>(
        &self,
        rec: &NewRecording<'_, M>,
    ) -> Result<RecordingState, StoreError> {
        let now = now_us() as i64;
        self.with(|c| {
            let tx = c.transaction()?;
            put_recording(&tx, rec, RecordingState::Stored, now)?;
            for d in rec.destinations {
                tx.execute(
                    "INSERT OR IGNORE INTO deliveries
                     (recording_id, url, method, state, attempts, next_attempt_us, since_us)
                     VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?4)",
                    params![rec.id, d.url, d.method.as_str(), now],
                )?;
            }
            let state = refresh(&tx, rec.id)?;
            tx.commit()?;
            Ok(state)
        })
    }

    /// Journals a recording FreeSWITCH is about to record (state `recording`, no deliveries).
    pub fn journal_recording<M: Serialize>(
        &self,
        rec: &NewRecording<'_, M>,
    ) -> Result<(), StoreError> {
        let now = now_us() as i64;
        self.with(|c| put_recording(c, rec, RecordingState::Recording, now))
    }

    /// Removes a journaled recording that ended without being kept (discarded, failed).
    pub fn forget_recording(&self, id: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            Ok(c.execute(
                "DELETE FROM recordings WHERE id = ?1 AND state = 'recording'",
                params![id],
            )? > 0)
        })
    }

    /// Every journaled recording (what a restart takes up again).
    pub fn journaled<M: DeserializeOwned>(&self) -> Result<Vec<(String, M)>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, meta FROM recordings WHERE state = 'recording' ORDER BY created_us",
            )?;
            let rows: Vec<(String, String)> = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            rows.into_iter()
                .map(|(id, meta)| Ok((id, meta_of(&meta)?)))
                .collect()
        })
    }

    /// Deliveries left `uploading` by a crash go back to `pending`. Returns how many.
    pub fn recover_deliveries(&self) -> Result<usize, StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            let ids: Vec<String> = {
                let mut st = tx.prepare(
                    "SELECT DISTINCT recording_id FROM deliveries WHERE state = 'uploading'",
                )?;
                let rows = st.query_map([], |r| r.get(0))?;
                rows.collect::<Result<_, _>>()?
            };
            let n = tx.execute(
                "UPDATE deliveries SET state = 'pending' WHERE state = 'uploading'",
                [],
            )?;
            for id in &ids {
                refresh(&tx, id)?;
            }
            tx.commit()?;
            Ok(n)
        })
    }

    /// Takes up to `limit` deliveries due at `now` and marks them `uploading`.
    pub fn claim_due<M: DeserializeOwned>(
        &self,
        now: u64,
        limit: usize,
    ) -> Result<Vec<Claim<M>>, StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            let rows: Vec<(String, String, String, i64, i64, String)> = {
                let mut st = tx.prepare(
                    "SELECT d.recording_id, d.url, d.method, d.attempts, d.since_us, r.meta
                     FROM deliveries d JOIN recordings r ON r.id = d.recording_id
                     WHERE d.state = 'pending' AND d.next_attempt_us <= ?1
                     ORDER BY d.next_attempt_us LIMIT ?2",
                )?;
                let rows = st.query_map(params![now as i64, limit as i64], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })?;
                rows.collect::<Result<_, _>>()?
            };
            let mut out = Vec::with_capacity(rows.len());
            for (id, url, method, attempts, since, meta) in rows {
                tx.execute(
                    "UPDATE deliveries SET state = 'uploading'
                     WHERE recording_id = ?1 AND url = ?2 AND method = ?3",
                    params![id, url, method],
                )?;
                refresh(&tx, &id)?;
                out.push(Claim {
                    meta: meta_of(&meta)?,
                    method: UploadMethod::parse(&method)
                        .ok_or_else(|| corrupt("method", &method))?,
                    url,
                    attempts: attempts as u32,
                    since_us: since as u64,
                });
            }
            tx.commit()?;
            Ok(out)
        })
    }

    /// When the next pending delivery is due.
    pub fn next_due(&self) -> Result<Option<u64>, StoreError> {
        self.with(|c| {
            let v: Option<i64> = c.query_row(
                "SELECT MIN(next_attempt_us) FROM deliveries WHERE state = 'pending'",
                [],
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
        let (url, method) = (dest.url.as_str(), dest.method.as_str());
        self.with(|c| {
            let tx = c.transaction()?;
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

    /// One recording.
    pub fn recording<M: DeserializeOwned>(
        &self,
        id: &str,
    ) -> Result<Option<RecordingRow<M>>, StoreError> {
        self.with(|c| {
            let row: Option<(String, i64, i64, String)> = c
                .query_row(
                    "SELECT state, created_us, updated_us, meta FROM recordings WHERE id = ?1",
                    params![id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()?;
            row.map(|(state, created, updated, meta)| {
                recording_row(c, id, &state, created, updated, &meta)
            })
            .transpose()
        })
    }

    /// Recordings matching `f`, newest first.
    pub fn recordings<M: DeserializeOwned>(
        &self,
        f: &Filter,
    ) -> Result<Vec<RecordingRow<M>>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, state, created_us, updated_us, meta FROM recordings
                 WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR account_id = ?2)
                   AND (?3 IS NULL OR call_id = ?3) AND (?4 IS NULL OR created_us >= ?4)
                   AND (?5 IS NULL OR created_us < ?5)
                 ORDER BY created_us DESC LIMIT ?6",
            )?;
            let rows: Vec<(String, String, i64, i64, String)> = st
                .query_map(
                    params![
                        f.state.map(|s| s.as_str()),
                        f.account_id,
                        f.call_id,
                        f.since_us.map(|v| v as i64),
                        f.until_us.map(|v| v as i64),
                        f.limit.unwrap_or(1000) as i64
                    ],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )?
                .collect::<Result<_, _>>()?;
            rows.iter()
                .map(|(id, state, created, updated, meta)| {
                    recording_row(c, id, state, *created, *updated, meta)
                })
                .collect()
        })
    }

    /// Puts failed deliveries of one recording (or of all, with `None`) back in the queue,
    /// with a fresh give-up clock. Returns how many.
    pub fn retry_failed(&self, id: Option<&str>) -> Result<usize, StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
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

    /// Whether a recording with this file path is known.
    pub fn has_recording_path(&self, path: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT 1 FROM recordings WHERE file_path = ?1 LIMIT 1",
                params![path],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
        })
    }

    /// The known file paths directly in directory `dir` (no trailing `/`): a range over the
    /// path index, so finding orphans costs memory in proportion to one directory, not to the
    /// whole spool.
    pub fn recording_paths_in(&self, dir: &str) -> Result<HashSet<String>, StoreError> {
        let prefix = format!("{dir}/");
        // Every path under `dir/` sorts before `dir0` ('0' follows '/').
        let end = format!("{dir}0");
        let tail_from = prefix.chars().count() as i64 + 1;
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT file_path FROM recordings
                 WHERE file_path >= ?1 AND file_path < ?2 AND instr(substr(file_path, ?3), '/') = 0",
            )?;
            let rows = st.query_map(params![prefix, end, tail_from], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn dest(url: &str, method: UploadMethod) -> Destination {
        Destination {
            url: url.into(),
            method,
        }
    }

    #[test]
    fn a_recording_follows_its_deliveries() {
        let s = Store::open_in_memory().unwrap();
        let dests = [
            dest("http://a/", UploadMethod::Put),
            dest("http://a/", UploadMethod::Post),
        ];
        let meta = json!({"file_path": "/r/x.wav"});
        let state = s
            .add_recording(&NewRecording {
                id: "r1",
                account_id: Some("acc"),
                call_id: "c1",
                file_path: "/r/x.wav",
                destinations: &dests,
                meta: &meta,
            })
            .unwrap();
        assert_eq!(state, RecordingState::Pending);
        let claims: Vec<Claim<Value>> = s.claim_due(now_us(), 10).unwrap();
        assert_eq!(claims.len(), 2, "one delivery per url and method");
        assert_eq!(
            s.recording::<Value>("r1").unwrap().unwrap().state,
            RecordingState::Uploading
        );
        assert_eq!(s.recover_deliveries().unwrap(), 2);
        let claims: Vec<Claim<Value>> = s.claim_due(now_us(), 10).unwrap();
        let ok = Outcome::Delivered { status: 201 };
        assert_eq!(
            s.settle("r1", &dests[0], &ok).unwrap(),
            RecordingState::Uploading
        );
        let fail = Outcome::Failed {
            error: "404".into(),
            status: Some(404),
        };
        assert_eq!(
            s.settle("r1", &dests[1], &fail).unwrap(),
            RecordingState::Failed
        );
        assert_eq!(claims.len(), 2);
        assert_eq!(s.retry_failed(Some("r1")).unwrap(), 1);
        let row = s.recording::<Value>("r1").unwrap().unwrap();
        assert_eq!(row.state, RecordingState::Pending);
        let states: Vec<(UploadMethod, DeliveryState)> =
            row.deliveries.iter().map(|d| (d.method, d.state)).collect();
        assert_eq!(
            states,
            [
                (UploadMethod::Post, DeliveryState::Pending),
                (UploadMethod::Put, DeliveryState::Delivered)
            ]
        );
        assert!(s.has_recording_path("/r/x.wav").unwrap());
        assert!(s.recording_paths_in("/r").unwrap().contains("/r/x.wav"));
        assert!(
            !s.recording_paths_in("").unwrap().contains("/r/x.wav"),
            "not directly in /"
        );
        assert!(s.recording_paths_in("/r/x").unwrap().is_empty());
        assert!(!s.has_recording_path("/r/y.wav").unwrap());
        let listed: Vec<RecordingRow<Value>> = s
            .recordings(&Filter {
                state: Some(RecordingState::Pending),
                ..Filter::default()
            })
            .unwrap();
        assert_eq!(listed.len(), 1);
    }
}
