//! Recordings on PostgreSQL: the journal, the spool's rows and deliveries, claims with
//! `FOR UPDATE SKIP LOCKED` naming the node, settling attempts, retries, moves between nodes and
//! the import of a node's local fallback journal.

use super::*;
use crate::store::recordings::RecordingRows;

// --- recordings ------------------------------------------------------------------------------

/// Recomputes a recording's state from its deliveries and returns it (one statement).
async fn refresh(c: &impl GenericClient, id: &str) -> Result<RecordingState, StoreError> {
    let row = cached_query_opt(
        c,
        "UPDATE recordings r SET updated_us = $2, state = CASE
             WHEN d.total = 0 THEN 'stored' WHEN d.uploading > 0 THEN 'uploading'
             WHEN d.pending > 0 THEN 'pending' WHEN d.failed > 0 THEN 'failed'
             ELSE 'delivered' END
         FROM (SELECT COUNT(*) AS total,
                      COUNT(*) FILTER (WHERE state = 'pending') AS pending,
                      COUNT(*) FILTER (WHERE state = 'uploading') AS uploading,
                      COUNT(*) FILTER (WHERE state = 'failed') AS failed
               FROM deliveries WHERE recording_id = $1) d
         WHERE r.id = $1 RETURNING r.state",
        &[&id, &(crate::store::now_us() as i64)],
    )
    .await?;
    let state: String = match row {
        Some(r) => r.get(0),
        None => return Ok(RecordingState::Stored),
    };
    RecordingState::parse(&state)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown state {state:?}")))
}

/// [`refresh`] for each recording named in `ids` (once each, duplicates allowed).
async fn refresh_each(c: &impl GenericClient, ids: &[String]) -> Result<(), StoreError> {
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        if seen.insert(id) {
            refresh(c, id).await?;
        }
    }
    Ok(())
}

async fn put_recording(
    c: &impl GenericClient,
    node: &str,
    rec: &RawNew,
    state: RecordingState,
    now: i64,
) -> Result<(), StoreError> {
    cached_execute(
        c,
        "INSERT INTO recordings
         (id, node, account_id, call_id, file_path, state, meta, created_us, updated_us)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
         ON CONFLICT (id) DO UPDATE SET node = $2, account_id = $3, call_id = $4,
           file_path = $5, state = $6, meta = $7, created_us = $8, updated_us = $8",
        &[
            &rec.id,
            &node,
            &rec.account_id,
            &rec.call_id,
            &rec.file_path,
            &state.as_str(),
            &rec.meta,
            &now,
        ],
    )
    .await?;
    // A replaced row starts again without deliveries, as SQLite's INSERT OR REPLACE leaves it.
    cached_execute(
        c,
        "DELETE FROM deliveries WHERE recording_id = $1",
        &[&rec.id],
    )
    .await?;
    Ok(())
}

async fn deliveries(c: &impl GenericClient, id: &str) -> Result<Vec<RawDelivery>, StoreError> {
    let rows = cached_query(c,
            "SELECT url, method, state, attempts, next_attempt_us, last_error, last_status,
                    delivered_us
             FROM deliveries WHERE recording_id = $1 ORDER BY url COLLATE \"C\", method COLLATE \"C\"",
            &[&id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| RawDelivery {
            url: r.get(0),
            method: r.get(1),
            state: r.get(2),
            attempts: i64::from(r.get::<_, i32>(3)),
            next: r.get(4),
            last_error: r.get(5),
            last_status: r.get::<_, Option<i32>>(6).map(i64::from),
            delivered: r.get(7),
        })
        .collect())
}

/// A recording from its `id, node, state, created_us, updated_us, meta` columns.
async fn recording_of(c: &impl GenericClient, r: &Row) -> Result<RawRecording, StoreError> {
    let id: String = r.get(0);
    Ok(RawRecording {
        node: r.get(1),
        state: r.get(2),
        created: r.get(3),
        updated: r.get(4),
        meta: r.get(5),
        deliveries: deliveries(c, &id).await?,
    })
}

fn status_of(s: &Option<u16>) -> Option<i32> {
    s.map(i32::from)
}

#[async_trait::async_trait]
impl RecordingRows for Pg {
    async fn add_recording(
        &self,
        node: &str,
        rec: &RawNew,
        now: i64,
    ) -> Result<RecordingState, StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            put_recording(&tx, node, rec, RecordingState::Stored, now).await?;
            for d in &rec.destinations {
                cached_execute(
                    &tx,
                    "INSERT INTO deliveries
                     (recording_id, node, url, method, state, attempts, next_attempt_us, since_us)
                     VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5) ON CONFLICT DO NOTHING",
                    &[&rec.id, &node, &d.url, &d.method.as_str(), &now],
                )
                .await?;
            }
            let state = refresh(&tx, &rec.id).await?;
            tx.commit().await?;
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
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            put_recording(&tx, node, rec, RecordingState::Recording, now).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn forget_recording(&self, id: &str) -> Result<bool, StoreError> {
        self.run(async {
            let c = self.client().await?;
            Ok(cached_execute(
                &c,
                "DELETE FROM recordings WHERE id = $1 AND state = 'recording'",
                &[&id],
            )
            .await?
                > 0)
        })
        .await
    }

    async fn journaled(&self, node: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let rows = cached_query(
                &c,
                "SELECT id, meta FROM recordings WHERE node = $1 AND state = 'recording'
                     ORDER BY created_us",
                &[&node],
            )
            .await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
        .await
    }

    async fn mentioning_since(
        &self,
        node: &str,
        since_us: i64,
        needle: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let rows = cached_query(
                &c,
                "SELECT id, meta FROM recordings
                     WHERE created_us >= $2 AND node = $1 AND strpos(meta, $3) > 0
                     ORDER BY created_us",
                &[&node, &since_us, &needle],
            )
            .await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
        .await
    }

    async fn recover_deliveries(&self, node: &str) -> Result<usize, StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            let ids: Vec<String> = cached_query(
                &tx,
                "UPDATE deliveries SET state = 'pending' WHERE node = $1 AND state = 'uploading'
                     RETURNING recording_id",
                &[&node],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
            refresh_each(&tx, &ids).await?;
            tx.commit().await?;
            Ok(ids.len())
        })
        .await
    }

    async fn claim_due(
        &self,
        node: &str,
        now: i64,
        limit: i64,
    ) -> Result<Vec<RawClaim>, StoreError> {
        self.run(async {
            let c = self.client().await?;
            // One statement: rows another worker holds are skipped, not waited for (each
            // claim is one worker's alone); a recording with a delivery `uploading` is
            // `uploading` whatever its others are, so its state is set, not recomputed. Two
            // workers may claim deliveries of the same recordings: their rows are locked in id
            // order, so neither waits for the other in a cycle (a deadlock, seen in the store
            // suite's racing claims).
            let rows = cached_query(
                &c,
                "WITH due AS (
                     SELECT recording_id, url, method FROM deliveries
                     WHERE node = $1 AND state = 'pending' AND next_attempt_us <= $2
                     ORDER BY next_attempt_us LIMIT $3
                     FOR UPDATE SKIP LOCKED),
                 claimed AS (
                     UPDATE deliveries d SET state = 'uploading' FROM due
                     WHERE d.recording_id = due.recording_id AND d.url = due.url
                       AND d.method = due.method
                     RETURNING d.recording_id, d.url, d.method, d.attempts, d.since_us,
                               d.next_attempt_us),
                 ordered AS (
                     SELECT id FROM recordings WHERE id IN (SELECT recording_id FROM claimed)
                     ORDER BY id FOR UPDATE),
                 marked AS (
                     UPDATE recordings SET state = 'uploading', updated_us = $4
                     WHERE id IN (SELECT id FROM ordered))
                 SELECT c.recording_id, c.url, c.method, c.attempts, c.since_us, r.meta,
                        c.next_attempt_us
                 FROM claimed c JOIN recordings r ON r.id = c.recording_id
                 ORDER BY c.next_attempt_us",
                &[&node, &now, &limit, &(crate::store::now_us() as i64)],
            )
            .await?;
            Ok(rows
                .iter()
                .map(|r| RawClaim {
                    url: r.get(1),
                    method: r.get(2),
                    attempts: i64::from(r.get::<_, i32>(3)),
                    since: r.get(4),
                    meta: r.get(5),
                })
                .collect())
        })
        .await
    }

    async fn next_due(&self, node: &str) -> Result<Option<u64>, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let v: Option<i64> = cached_query_one(
                &c,
                "SELECT MIN(next_attempt_us) FROM deliveries WHERE node = $1 AND state = 'pending'",
                &[&node],
            )
            .await?
            .get(0);
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
        let (url, method) = (dest.url.as_str(), dest.method.as_str());
        let now = crate::store::now_us() as i64;
        // One statement (so one round trip, atomically): the delivery's update, and the
        // recording's state from its deliveries as they are after it (the statement's snapshot
        // predates the update, so the settled delivery counts with its new state, `$4`).
        const STATE: &str = "
             counts AS (
                 SELECT COUNT(*) AS total,
                        COUNT(*) FILTER (WHERE s = 'pending') AS pending,
                        COUNT(*) FILTER (WHERE s = 'uploading') AS uploading,
                        COUNT(*) FILTER (WHERE s = 'failed') AS failed
                 FROM (SELECT CASE WHEN url = $2 AND method = $3 THEN $4 ELSE state END AS s
                       FROM deliveries WHERE recording_id = $1) x)
             UPDATE recordings r SET updated_us = $5, state = CASE
                 WHEN c.total = 0 THEN 'stored' WHEN c.uploading > 0 THEN 'uploading'
                 WHEN c.pending > 0 THEN 'pending' WHEN c.failed > 0 THEN 'failed'
                 ELSE 'delivered' END
             FROM counts c WHERE r.id = $1 RETURNING r.state";
        // The outcome's columns: the new state, and what it leaves of the last attempt
        // (`$8`, the next attempt, only for a retry; `$9`, when delivered, only for a delivery).
        let (state, status, error, next, delivered) = match outcome {
            Outcome::Delivered { status } => ("delivered", Some(*status), None, None, Some(now)),
            Outcome::Retry {
                next_us,
                error,
                status,
            } => (
                "pending",
                *status,
                Some(error.as_str()),
                Some(*next_us as i64),
                None,
            ),
            Outcome::Failed { error, status } => {
                ("failed", *status, Some(error.as_str()), None, None)
            }
        };
        let sql = format!(
            "WITH upd AS (UPDATE deliveries SET state = $4, attempts = attempts + 1,
                 last_status = $6, last_error = $7,
                 next_attempt_us = coalesce($8, next_attempt_us),
                 delivered_us = coalesce($9, delivered_us)
                 WHERE recording_id = $1 AND url = $2 AND method = $3), {STATE}"
        );
        self.run(async {
            let c = self.client().await?;
            let row = cached_query_opt(
                &c,
                &sql,
                &[
                    &id,
                    &url,
                    &method,
                    &state,
                    &now,
                    &status_of(&status),
                    &error,
                    &next,
                    &delivered,
                ],
            )
            .await?;
            let state: String = match row {
                Some(r) => r.get(0),
                None => return Ok(RecordingState::Stored),
            };
            RecordingState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown state {state:?}")))
        })
        .await
    }

    async fn recording(&self, id: &str) -> Result<Option<RawRecording>, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let row = cached_query_opt(
                &c,
                "SELECT id, node, state, created_us, updated_us, meta FROM recordings
                     WHERE id = $1",
                &[&id],
            )
            .await?;
            match row {
                Some(r) => Ok(Some(recording_of(&c, &r).await?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn recordings(&self, f: &Filter) -> Result<Vec<RawRecording>, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let (sql, values) = f.sql(crate::store::listing::Dialect::Postgres);
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                values.iter().map(|v| v as _).collect();
            let rows = cached_query(&c, &sql, &params).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(recording_of(&c, r).await?);
            }
            Ok(out)
        })
        .await
    }

    async fn retry_failed(&self, id: Option<&str>, now: i64) -> Result<usize, StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            let ids: Vec<String> = cached_query(
                &tx,
                "UPDATE deliveries SET state = 'pending', next_attempt_us = $2, since_us = $2
                     WHERE state = 'failed' AND ($1::text IS NULL OR recording_id = $1)
                     RETURNING recording_id",
                &[&id, &now],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
            refresh_each(&tx, &ids).await?;
            tx.commit().await?;
            Ok(ids.len())
        })
        .await
    }

    async fn reassign(&self, from: &str, to: &str, id: Option<&str>) -> Result<usize, StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            let ids: Vec<String> = cached_query(
                &tx,
                "UPDATE recordings SET node = $2
                     WHERE node = $1 AND ($3::text IS NULL OR id = $3) RETURNING id",
                &[&from, &to, &id],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
            for r in &ids {
                cached_execute(
                    &tx,
                    "UPDATE deliveries SET node = $2,
                       state = CASE state WHEN 'uploading' THEN 'pending' ELSE state END
                     WHERE recording_id = $1",
                    &[r, &to],
                )
                .await?;
                refresh(&tx, r).await?;
            }
            tx.commit().await?;
            Ok(ids.len())
        })
        .await
    }

    async fn has_recording_path(&self, node: &str, path: &str) -> Result<bool, StoreError> {
        self.run(async {
            let c = self.client().await?;
            Ok(cached_query_opt(
                &c,
                "SELECT 1 FROM recordings WHERE node = $1 AND file_path = $2 LIMIT 1",
                &[&node, &path],
            )
            .await?
            .is_some())
        })
        .await
    }

    async fn recording_paths_in(
        &self,
        node: &str,
        prefix: &str,
        end: &str,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let rows = cached_query(
                &c,
                "SELECT file_path FROM recordings
                     WHERE node = $1 AND file_path ~>=~ $2 AND file_path ~<~ $3
                       AND strpos(substr(file_path, char_length($2) + 1), '/') = 0",
                &[&node, &prefix, &end],
            )
            .await?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
        .await
    }
}

impl Pg {
    /// Writes recordings moved from a node's local journal, replacing the database's rows of
    /// the same ids (the local ones are newer), in one transaction.
    pub(in crate::store) async fn import(
        &self,
        node: &str,
        batch: &[Moved],
    ) -> Result<(), StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            for m in batch {
                cached_execute(
                    &tx,
                    "INSERT INTO recordings
                     (id, node, account_id, call_id, file_path, state, meta, created_us, updated_us)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     ON CONFLICT (id) DO UPDATE SET node = $2, account_id = $3, call_id = $4,
                       file_path = $5, state = $6, meta = $7, created_us = $8, updated_us = $9",
                    &[
                        &m.id,
                        &node,
                        &m.account_id,
                        &m.call_id,
                        &m.file_path,
                        &m.state,
                        &m.meta,
                        &m.created,
                        &m.updated,
                    ],
                )
                .await?;
                cached_execute(
                    &tx,
                    "DELETE FROM deliveries WHERE recording_id = $1",
                    &[&m.id],
                )
                .await?;
                for d in &m.deliveries {
                    cached_execute(
                        &tx,
                        "INSERT INTO deliveries
                         (recording_id, node, url, method, state, attempts, next_attempt_us,
                          since_us, last_error, last_status, delivered_us)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                        &[
                            &m.id,
                            &node,
                            &d.url,
                            &d.method,
                            // A local `uploading` was cut short: try it again.
                            &if d.state == "uploading" {
                                "pending"
                            } else {
                                d.state.as_str()
                            },
                            &(d.attempts as i32),
                            &d.next,
                            &d.since,
                            &d.last_error,
                            &d.last_status.map(|s| s as i32),
                            &d.delivered,
                        ],
                    )
                    .await?;
                }
                refresh(&tx, &m.id).await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }
}

impl tokio_postgres::types::ToSql for crate::store::listing::Bound {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Self::Text(t) => t.to_sql(ty, out),
            Self::Int(i) => i.to_sql(ty, out),
        }
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <String as tokio_postgres::types::ToSql>::accepts(ty)
            || <i64 as tokio_postgres::types::ToSql>::accepts(ty)
    }

    tokio_postgres::types::to_sql_checked!();
}
