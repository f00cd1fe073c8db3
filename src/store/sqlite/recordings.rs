//! Recordings in the SQLite file: the statements behind [`RecordingRows`] (the journal, the
//! spool's rows and deliveries, claims, settling, retries, moves between nodes). A recording's
//! state follows its deliveries by `store::recordings`' rule ([`RecordingState::of_deliveries`]).

use std::collections::HashSet;

use rusqlite::{params, Connection, OptionalExtension};

use super::{listed, Sqlite};
use crate::store::listing::Dialect;
use crate::store::recordings::{
    Filter, Outcome, RawClaim, RawDelivery, RawNew, RawRecording, RecordingRows,
};
use crate::store::{now_us, RecordingState, StoreError};
use crate::values::Destination;

/// Recomputes a recording's state from its deliveries and returns it.
pub(super) fn refresh(c: &Connection, id: &str) -> Result<RecordingState, StoreError> {
    let (total, pending, uploading, failed): (i64, i64, i64, i64) = c
        .prepare_cached(
            "SELECT COUNT(*), coalesce(SUM(state = 'pending'), 0),
                coalesce(SUM(state = 'uploading'), 0), coalesce(SUM(state = 'failed'), 0)
         FROM deliveries WHERE recording_id = ?1",
        )?
        .query_row(params![id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
    let state = RecordingState::of_deliveries(total, pending, uploading, failed);
    c.prepare_cached("UPDATE recordings SET state = ?2, updated_us = ?3 WHERE id = ?1")?
        .execute(params![id, state.as_str(), now_us() as i64])?;
    Ok(state)
}

/// Writes (or replaces) a recording's row of `node` in `state`.
pub(super) fn put_recording(
    c: &Connection,
    node: &str,
    rec: &RawNew,
    state: RecordingState,
    now: i64,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT OR REPLACE INTO recordings
         (id, node, account_id, call_id, file_path, state, meta, created_us, updated_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
    )?
    .execute(params![
        rec.id,
        node,
        rec.account_id,
        rec.call_id,
        rec.file_path,
        state.as_str(),
        rec.meta,
        now
    ])?;
    // A replaced row starts again without deliveries (as in PostgreSQL).
    c.prepare_cached("DELETE FROM deliveries WHERE recording_id = ?1")?
        .execute(params![rec.id])?;
    Ok(())
}

fn deliveries(c: &Connection, id: &str) -> Result<Vec<RawDelivery>, StoreError> {
    let mut st = c.prepare_cached(
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

#[async_trait::async_trait]
impl RecordingRows for Sqlite {
    async fn add_recording(
        &self,
        node: &str,
        rec: &RawNew,
        now: i64,
    ) -> Result<RecordingState, StoreError> {
        let node = node.to_owned();
        let rec = rec.clone();
        self.quick(move |c| {
            let node = node.as_str();

            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            put_recording(&tx, node, &rec, RecordingState::Stored, now)?;
            for d in &rec.destinations {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO deliveries
                     (recording_id, node, url, method, state, attempts, next_attempt_us, since_us)
                     VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?5)",
                )?
                .execute(params![rec.id, node, d.url, d.method.as_str(), now])?;
            }
            let state = refresh(&tx, &rec.id)?;
            tx.commit()?;
            Ok(state)
        })
        .await
    }

    async fn journal_recording(
        &self,
        node: &str,
        rec: &RawNew,
        now: i64,
    ) -> Result<(), StoreError> {
        let node = node.to_owned();
        let rec = rec.clone();
        self.quick(move |c| {
            let node = node.as_str();
            put_recording(c, node, &rec, RecordingState::Recording, now)
        })
        .await
    }

    async fn forget_recording(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.quick(move |c| {
            let id = id.as_str();
            Ok(
                c.prepare_cached("DELETE FROM recordings WHERE id = ?1 AND state = 'recording'")?
                    .execute(params![id])?
                    > 0,
            )
        })
        .await
    }

    async fn journaled(&self, node: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.journaled_of(Some(node)).await
    }

    async fn mentioning_since(
        &self,
        node: &str,
        since_us: i64,
        needle: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let node = node.to_owned();
        let needle = needle.to_owned();
        self.run(move |c| {
            let node = node.as_str();
            let needle = needle.as_str();
            let mut st = c.prepare_cached(
                "SELECT id, meta FROM recordings
                     WHERE created_us >= ?2 AND node = ?1 AND instr(meta, ?3) > 0
                     ORDER BY created_us",
            )?;
            let rows = st.query_map(params![node, since_us, needle], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
            Ok::<Vec<(String, String)>, StoreError>(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn recover_deliveries(&self, node: &str) -> Result<usize, StoreError> {
        let node = node.to_owned();
        self.run(move |c| {
            let node = node.as_str();
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let ids: Vec<String> = {
                let mut st = tx.prepare_cached(
                    "SELECT DISTINCT recording_id FROM deliveries
                     WHERE node = ?1 AND state = 'uploading'",
                )?;
                let rows = st.query_map(params![node], |r| r.get(0))?;
                rows.collect::<Result<_, _>>()?
            };
            let n = tx
                .prepare_cached(
                    "UPDATE deliveries SET state = 'pending'
                     WHERE node = ?1 AND state = 'uploading'",
                )?
                .execute(params![node])?;
            for id in &ids {
                refresh(&tx, id)?;
            }
            tx.commit()?;
            Ok(n)
        })
        .await
    }

    async fn claim_due(
        &self,
        node: &str,
        now: i64,
        limit: i64,
    ) -> Result<Vec<RawClaim>, StoreError> {
        let node = node.to_owned();
        self.quick(move |c| {
            let node = node.as_str();
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let rows: Vec<(String, RawClaim)> = {
                let mut st = tx.prepare_cached(
                    "SELECT d.recording_id, d.url, d.method, d.attempts, d.since_us, r.meta
                         FROM deliveries d JOIN recordings r ON r.id = d.recording_id
                         WHERE d.node = ?1 AND d.state = 'pending' AND d.next_attempt_us <= ?2
                         ORDER BY d.next_attempt_us LIMIT ?3",
                )?;
                let rows = st.query_map(params![node, now, limit], |r| {
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
                tx.prepare_cached(
                    "UPDATE deliveries SET state = 'uploading'
                         WHERE recording_id = ?1 AND url = ?2 AND method = ?3",
                )?
                .execute(params![id, claim.url, claim.method])?;
                refresh(&tx, &id)?;
                out.push(claim);
            }
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    async fn next_due(&self, node: &str) -> Result<Option<u64>, StoreError> {
        let node = node.to_owned();
        self.quick(move |c| {
            let node = node.as_str();
            let v: Option<i64> = c
                .prepare_cached(
                    "SELECT MIN(next_attempt_us) FROM deliveries
                     WHERE node = ?1 AND state = 'pending'",
                )?
                .query_row(params![node], |r| r.get(0))?;
            Ok(v.map(|v| v as u64))
        })
        .await
    }

    async fn settle(
        &self,
        id: &str,
        dest: &Destination,
        outcome: &Outcome,
    ) -> Result<RecordingState, StoreError> {
        let id = id.to_owned();
        let dest = dest.clone();
        let outcome = outcome.clone();
        self.quick(move |c| {
            let id = id.as_str();
            let (url, method) = (dest.url.as_str(), dest.method.as_str());

            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            match &outcome {
                Outcome::Delivered { status } => tx
                    .prepare_cached(
                        "UPDATE deliveries SET state = 'delivered', attempts = attempts + 1,
                     last_status = ?4, last_error = NULL, delivered_us = ?5
                     WHERE recording_id = ?1 AND url = ?2 AND method = ?3",
                    )?
                    .execute(params![id, url, method, status, now_us() as i64])?,
                Outcome::Retry {
                    next_us,
                    error,
                    status,
                } => tx
                    .prepare_cached(
                        "UPDATE deliveries SET state = 'pending', attempts = attempts + 1,
                     next_attempt_us = ?4, last_error = ?5, last_status = ?6
                     WHERE recording_id = ?1 AND url = ?2 AND method = ?3",
                    )?
                    .execute(params![id, url, method, *next_us as i64, error, status])?,
                Outcome::Failed { error, status } => tx
                    .prepare_cached(
                        "UPDATE deliveries SET state = 'failed', attempts = attempts + 1,
                     last_error = ?4, last_status = ?5
                     WHERE recording_id = ?1 AND url = ?2 AND method = ?3",
                    )?
                    .execute(params![id, url, method, error, status])?,
            };
            let state = refresh(&tx, id)?;
            tx.commit()?;
            Ok(state)
        })
        .await
    }

    async fn recording(&self, id: &str) -> Result<Option<RawRecording>, StoreError> {
        let id = id.to_owned();
        self.quick(move |c| {
            let id = id.as_str();
            let mut st = c.prepare_cached(
                "SELECT id, node, state, created_us, updated_us, meta FROM recordings
                     WHERE id = ?1",
            )?;
            let mut rows = st.query(params![id])?;
            match rows.next()? {
                Some(r) => Ok(Some(recording_row(c, r)?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn recordings(&self, f: &Filter) -> Result<Vec<RawRecording>, StoreError> {
        let f = f.clone();
        self.run(move |c| listed(c, f.sql(Dialect::Sqlite), |r| recording_row(c, r)))
            .await
    }

    async fn retry_failed(&self, id: Option<&str>, now: i64) -> Result<usize, StoreError> {
        let id = id.map(str::to_owned);
        self.run(move |c| {
            let id = id.as_deref();
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let ids: Vec<String> = {
                let mut st = tx.prepare_cached(
                    "SELECT DISTINCT recording_id FROM deliveries
                     WHERE state = 'failed' AND (?1 IS NULL OR recording_id = ?1)",
                )?;
                let rows = st.query_map(params![id], |r| r.get(0))?;
                rows.collect::<Result<_, _>>()?
            };
            let n = tx
                .prepare_cached(
                    "UPDATE deliveries SET state = 'pending', next_attempt_us = ?2, since_us = ?2
                 WHERE state = 'failed' AND (?1 IS NULL OR recording_id = ?1)",
                )?
                .execute(params![id, now])?;
            for r in &ids {
                refresh(&tx, r)?;
            }
            tx.commit()?;
            Ok(n)
        })
        .await
    }

    async fn reassign(&self, from: &str, to: &str, id: Option<&str>) -> Result<usize, StoreError> {
        let from = from.to_owned();
        let to = to.to_owned();
        let id = id.map(str::to_owned);
        self.run(move |c| {
            let from = from.as_str();
            let to = to.as_str();
            let id = id.as_deref();
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let ids: Vec<String> = {
                let mut st = tx.prepare_cached(
                    "SELECT id FROM recordings WHERE node = ?1 AND (?2 IS NULL OR id = ?2)",
                )?;
                let rows = st.query_map(params![from, id], |r| r.get(0))?;
                rows.collect::<Result<_, _>>()?
            };
            for r in &ids {
                tx.prepare_cached("UPDATE recordings SET node = ?2 WHERE id = ?1")?
                    .execute(params![r, to])?;
                tx.prepare_cached(
                    "UPDATE deliveries SET node = ?2,
                       state = CASE state WHEN 'uploading' THEN 'pending' ELSE state END
                     WHERE recording_id = ?1",
                )?
                .execute(params![r, to])?;
                refresh(&tx, r)?;
            }
            tx.commit()?;
            Ok(ids.len())
        })
        .await
    }

    async fn has_recording_path(&self, node: &str, path: &str) -> Result<bool, StoreError> {
        let node = node.to_owned();
        let path = path.to_owned();
        self.quick(move |c| {
            let node = node.as_str();
            let path = path.as_str();
            Ok(c.prepare_cached(
                "SELECT 1 FROM recordings WHERE file_path = ?1 AND node = ?2 LIMIT 1",
            )?
            .query_row(params![path, node], |_| Ok(()))
            .optional()?
            .is_some())
        })
        .await
    }

    async fn recording_paths_in(
        &self,
        node: &str,
        prefix: &str,
        end: &str,
    ) -> Result<HashSet<String>, StoreError> {
        let node = node.to_owned();
        let prefix = prefix.to_owned();
        let end = end.to_owned();
        let tail_from = prefix.chars().count() as i64 + 1;
        self.run(move |c| {
            let node = node.as_str();
            let prefix = prefix.as_str();
            let end = end.as_str();
            let mut st = c.prepare_cached(
                "SELECT file_path FROM recordings
                 WHERE file_path >= ?1 AND file_path < ?2 AND instr(substr(file_path, ?3), '/') = 0
                   AND node = ?4",
            )?;
            let rows = st.query_map(params![prefix, end, tail_from, node], |r| {
                r.get::<_, String>(0)
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}

impl Sqlite {
    /// The journaled recordings of `node` (`None`: of every node: the local journal of a node
    /// on a shared database holds this host's, whatever node they were written as).
    pub(in crate::store) async fn journaled_of(
        &self,
        node: Option<&str>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let node = node.map(str::to_owned);
        self.run(move |c| {
            let node = node.as_deref();
            let mut st = c.prepare_cached(
                "SELECT id, meta FROM recordings
                     WHERE state = 'recording' AND (?1 IS NULL OR node = ?1) ORDER BY created_us",
            )?;
            let rows = st.query_map(params![node], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok::<Vec<(String, String)>, StoreError>(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}
