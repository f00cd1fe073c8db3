//! The durable spool: every kept recording, its metadata and the state of each delivery, in
//! the SQLite store. It survives crashes: a delivery left `uploading` goes back to `pending` on
//! start-up, so a recording is delivered at least once, never zero times.
//!
//! States of a recording: `pending` → `uploading` → `delivered` | `failed` (dead letter, with
//! the reason), or `stored` (no URL: kept in local storage, final). With several URLs each has
//! its own delivery; the recording is `delivered` when all are, `failed` when none is left to
//! try and one failed.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::FinishedRecording;
use crate::store::{Store, StoreError};

pub fn now_us() -> u64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as u64
}

/// One delivery (recording × URL).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryInfo {
    /// Redacted (no password) in everything shown.
    pub url: String,
    pub state: String,
    pub attempts: u32,
    pub next_attempt_us: u64,
    pub last_error: Option<String>,
    pub last_status: Option<u16>,
    pub delivered_us: Option<u64>,
}

/// A spooled recording.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    pub state: String,
    pub created_us: u64,
    pub updated_us: u64,
    #[serde(flatten)]
    pub meta: FinishedRecording,
    pub deliveries: Vec<DeliveryInfo>,
}

/// A delivery taken for an attempt.
#[derive(Debug, Clone)]
pub struct Claim {
    pub meta: FinishedRecording,
    /// The real URL (with credentials); never log it, use `url::redact`.
    pub url: String,
    pub attempts: u32,
    pub since_us: u64,
}

/// Filters for listing.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub state: Option<String>,
    pub account_id: Option<String>,
    pub call_id: Option<String>,
    pub since_us: Option<u64>,
    pub until_us: Option<u64>,
    pub limit: Option<u32>,
}

fn meta_of(text: &str) -> Result<FinishedRecording, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Recomputes a recording's state from its deliveries.
fn refresh(c: &rusqlite::Connection, id: &str) -> Result<(), StoreError> {
    let counts: (i64, i64, i64, i64, i64) = c.query_row(
        "SELECT COUNT(*),
                SUM(state = 'delivered'), SUM(state = 'pending'),
                SUM(state = 'uploading'), SUM(state = 'failed')
         FROM deliveries WHERE recording_id = ?1",
        params![id],
        |r| {
            Ok((
                r.get(0)?,
                r.get::<_, Option<i64>>(1)?.unwrap_or(0),
                r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                r.get::<_, Option<i64>>(3)?.unwrap_or(0),
                r.get::<_, Option<i64>>(4)?.unwrap_or(0),
            ))
        },
    )?;
    let (total, delivered, pending, uploading, failed) = counts;
    let state = if total == 0 {
        "stored"
    } else if uploading > 0 {
        "uploading"
    } else if pending > 0 {
        "pending"
    } else if failed > 0 {
        "failed"
    } else if delivered == total {
        "delivered"
    } else {
        "pending"
    };
    c.execute(
        "UPDATE recordings SET state = ?2, updated_us = ?3 WHERE id = ?1",
        params![id, state, now_us() as i64],
    )?;
    Ok(())
}

/// Adds a kept recording; returns its state (`pending` or `stored`).
pub fn enqueue(store: &Store, rec: &FinishedRecording) -> Result<String, StoreError> {
    let meta = serde_json::to_string(rec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let now = now_us() as i64;
    store.with(|c| {
        let tx = c.transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO recordings (id, account_id, call_id, state, meta, created_us, updated_us)
             VALUES (?1, ?2, ?3, 'stored', ?4, ?5, ?5)",
            params![rec.recording_id, rec.account_id, rec.call_id, meta, now],
        )?;
        for url in &rec.urls {
            tx.execute(
                "INSERT OR IGNORE INTO deliveries (recording_id, url, state, attempts, next_attempt_us, since_us)
                 VALUES (?1, ?2, 'pending', 0, ?3, ?3)",
                params![rec.recording_id, url, now],
            )?;
        }
        refresh(&tx, &rec.recording_id)?;
        let state: String = tx.query_row(
            "SELECT state FROM recordings WHERE id = ?1",
            params![rec.recording_id],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok(state)
    })
}

/// Deliveries left `uploading` by a crash go back to `pending`. Returns how many.
pub fn recover(store: &Store) -> Result<usize, StoreError> {
    store.with(|c| {
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

/// Takes up to `limit` due deliveries and marks them `uploading`.
pub fn claim_due(store: &Store, now: u64, limit: usize) -> Result<Vec<Claim>, StoreError> {
    store.with(|c| {
        let tx = c.transaction()?;
        let rows: Vec<(String, String, i64, i64, String)> = {
            let mut st = tx.prepare(
                "SELECT d.recording_id, d.url, d.attempts, d.since_us, r.meta
                 FROM deliveries d JOIN recordings r ON r.id = d.recording_id
                 WHERE d.state = 'pending' AND d.next_attempt_us <= ?1
                 ORDER BY d.next_attempt_us LIMIT ?2",
            )?;
            let rows = st.query_map(params![now as i64, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?;
            rows.collect::<Result<_, _>>()?
        };
        let mut out = Vec::with_capacity(rows.len());
        for (id, url, attempts, since, meta) in rows {
            tx.execute(
                "UPDATE deliveries SET state = 'uploading' WHERE recording_id = ?1 AND url = ?2",
                params![id, url],
            )?;
            refresh(&tx, &id)?;
            out.push(Claim {
                meta: meta_of(&meta)?,
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
pub fn next_due(store: &Store) -> Result<Option<u64>, StoreError> {
    store.with(|c| {
        let v: Option<i64> = c.query_row(
            "SELECT MIN(next_attempt_us) FROM deliveries WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )?;
        Ok(v.map(|v| v as u64))
    })
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

/// Records an attempt's outcome; returns the recording's new state.
pub fn settle(store: &Store, id: &str, url: &str, outcome: &Outcome) -> Result<String, StoreError> {
    store.with(|c| {
        let tx = c.transaction()?;
        match outcome {
            Outcome::Delivered { status } => tx.execute(
                "UPDATE deliveries SET state = 'delivered', attempts = attempts + 1, last_status = ?3,
                 last_error = NULL, delivered_us = ?4 WHERE recording_id = ?1 AND url = ?2",
                params![id, url, status, now_us() as i64],
            )?,
            Outcome::Retry { next_us, error, status } => tx.execute(
                "UPDATE deliveries SET state = 'pending', attempts = attempts + 1, next_attempt_us = ?3,
                 last_error = ?4, last_status = ?5 WHERE recording_id = ?1 AND url = ?2",
                params![id, url, *next_us as i64, error, status],
            )?,
            Outcome::Failed { error, status } => tx.execute(
                "UPDATE deliveries SET state = 'failed', attempts = attempts + 1, last_error = ?3,
                 last_status = ?4 WHERE recording_id = ?1 AND url = ?2",
                params![id, url, error, status],
            )?,
        };
        refresh(&tx, id)?;
        let state: String =
            tx.query_row("SELECT state FROM recordings WHERE id = ?1", params![id], |r| r.get(0))?;
        tx.commit()?;
        Ok(state)
    })
}

fn deliveries(c: &rusqlite::Connection, id: &str) -> Result<Vec<DeliveryInfo>, StoreError> {
    let mut st = c.prepare(
        "SELECT url, state, attempts, next_attempt_us, last_error, last_status, delivered_us
         FROM deliveries WHERE recording_id = ?1 ORDER BY url",
    )?;
    let rows = st.query_map(params![id], |r| {
        Ok(DeliveryInfo {
            url: super::url::redact(&r.get::<_, String>(0)?),
            state: r.get(1)?,
            attempts: r.get::<_, i64>(2)? as u32,
            next_attempt_us: r.get::<_, i64>(3)? as u64,
            last_error: r.get(4)?,
            last_status: r.get::<_, Option<i64>>(5)?.map(|s| s as u16),
            delivered_us: r.get::<_, Option<i64>>(6)?.map(|s| s as u64),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn redact_meta(mut m: FinishedRecording) -> FinishedRecording {
    m.urls = m.urls.iter().map(|u| super::url::redact(u)).collect();
    m
}

/// One recording, with credentials redacted.
pub fn get(store: &Store, id: &str) -> Result<Option<Item>, StoreError> {
    store.with(|c| {
        let row: Option<(String, i64, i64, String)> = c
            .query_row(
                "SELECT state, created_us, updated_us, meta FROM recordings WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let Some((state, created, updated, meta)) = row else {
            return Ok(None);
        };
        Ok(Some(Item {
            state,
            created_us: created as u64,
            updated_us: updated as u64,
            meta: redact_meta(meta_of(&meta)?),
            deliveries: deliveries(c, id)?,
        }))
    })
}

/// Recordings matching `f`, newest first, with credentials redacted.
pub fn list(store: &Store, f: &Filter) -> Result<Vec<Item>, StoreError> {
    store.with(|c| {
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
                    f.state,
                    f.account_id,
                    f.call_id,
                    f.since_us.map(|v| v as i64),
                    f.until_us.map(|v| v as i64),
                    f.limit.unwrap_or(1000) as i64
                ],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, state, created, updated, meta) in rows {
            out.push(Item {
                state,
                created_us: created as u64,
                updated_us: updated as u64,
                meta: redact_meta(meta_of(&meta)?),
                deliveries: deliveries(c, &id)?,
            });
        }
        Ok(out)
    })
}

/// Puts failed deliveries of one recording (or of all, with `None`) back in the queue, with a
/// fresh give-up clock. Returns how many.
pub fn retry(store: &Store, id: Option<&str>) -> Result<usize, StoreError> {
    store.with(|c| {
        let tx = c.transaction()?;
        let now = now_us() as i64;
        let ids: Vec<String> = {
            let mut st = tx.prepare(
                "SELECT DISTINCT recording_id FROM deliveries WHERE state = 'failed' AND (?1 IS NULL OR recording_id = ?1)",
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

/// Every file path the spool knows (for finding orphans).
pub fn known_paths(store: &Store) -> Result<std::collections::HashSet<String>, StoreError> {
    store.with(|c| {
        let mut st = c.prepare("SELECT json_extract(meta, '$.file_path') FROM recordings")?;
        let rows = st.query_map([], |r| r.get::<_, Option<String>>(0))?;
        let mut set = std::collections::HashSet::new();
        for p in rows {
            if let Some(p) = p? {
                set.insert(p);
            }
        }
        Ok(set)
    })
}
