//! Webhook events on PostgreSQL: the same queue as SQLite's (`store::webhooks`), shared by every
//! node; any node may send any event, each claimed with `FOR UPDATE SKIP LOCKED`.

use super::*;
use crate::store::webhooks::{
    busy_keys, pick_hooks, state_of, ClaimLimits, HookClaim, HookFilter, HookOutcome, HookRow,
    HookRows, HookState, NewHookEvent, CANDIDATES,
};

fn status_i32(s: &Option<u16>) -> Option<i32> {
    s.map(i32::from)
}

#[async_trait::async_trait]
impl HookRows for Pg {
    async fn add_hook_events(
        &self,
        node: &str,
        events: &[NewHookEvent],
        now: i64,
    ) -> Result<(), StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            for e in events {
                cached_execute(
                    &tx,
                    "INSERT INTO webhook_events (id, account_id, webhook_id, node, type,
                       recording_id, body, state, attempts, next_attempt_us, since_us, created_us)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8, $8)
                     ON CONFLICT (id) DO NOTHING",
                    &[
                        &e.id,
                        &e.account_id,
                        &e.webhook_id,
                        &node,
                        &e.event_type,
                        &e.recording_id,
                        &e.body,
                        &now,
                    ],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn claim_hook_events(
        &self,
        node: &str,
        now: i64,
        limits: &ClaimLimits,
    ) -> Result<Vec<HookClaim>, StoreError> {
        let busy = busy_keys(limits);
        self.run(async {
            let c = self.client().await?;
            // Claims whose worker is gone (its lease ran out) are due again.
            cached_execute(
                &c,
                "UPDATE webhook_events SET state = 'pending', claimed_by = NULL,
                   claim_until_us = NULL
                 WHERE state = 'sending' AND claim_until_us < $1",
                &[&now],
            )
            .await?;
            let due: Vec<(String, String)> = cached_query(
                &c,
                "SELECT account_id, webhook_id FROM webhook_events
                 WHERE state = 'pending' AND next_attempt_us <= $1
                   AND NOT (account_id || '/' || webhook_id = ANY($2))
                 ORDER BY next_attempt_us LIMIT $3",
                &[&now, &busy, &CANDIDATES],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
            let lease = limits.lease_until_us as i64;
            let per_hook = limits.per_hook as i64;
            let mut out = Vec::new();
            for (account, hook) in pick_hooks(due, limits) {
                // Rows another node holds are skipped, not waited for.
                let rows = cached_query(
                    &c,
                    "WITH picked AS (
                       SELECT id FROM webhook_events
                       WHERE account_id = $2 AND webhook_id = $3
                         AND state = 'pending' AND next_attempt_us <= $1
                       ORDER BY next_attempt_us, created_us LIMIT $6
                       FOR UPDATE SKIP LOCKED)
                     UPDATE webhook_events w SET state = 'sending', claimed_by = $4,
                       claim_until_us = $5
                     FROM picked WHERE w.id = picked.id
                     RETURNING w.id, w.account_id, w.webhook_id, w.type, w.body, w.attempts,
                               w.since_us, w.next_attempt_us, w.created_us",
                    &[&now, &account, &hook, &node, &lease, &per_hook],
                )
                .await?;
                let mut batch: Vec<((i64, i64), HookClaim)> = rows
                    .iter()
                    .map(|r| {
                        (
                            (r.get::<_, i64>(7), r.get::<_, i64>(8)),
                            HookClaim {
                                id: r.get(0),
                                account_id: r.get(1),
                                webhook_id: r.get(2),
                                event_type: r.get(3),
                                body: r.get(4),
                                attempts: r.get::<_, i32>(5) as u32,
                                since_us: r.get::<_, i64>(6) as u64,
                            },
                        )
                    })
                    .collect();
                batch.sort_by_key(|(k, _)| *k);
                out.extend(batch.into_iter().map(|(_, c)| c));
            }
            Ok(out)
        })
        .await
    }

    async fn settle_hook_event(&self, id: &str, outcome: &HookOutcome) -> Result<(), StoreError> {
        self.run(async {
            let c = self.client().await?;
            match outcome {
                HookOutcome::Delivered { status } => {
                    cached_execute(
                        &c,
                        "UPDATE webhook_events SET state = 'delivered', attempts = attempts + 1,
                           last_status = $2, last_error = NULL, delivered_us = $3,
                           claimed_by = NULL, claim_until_us = NULL
                         WHERE id = $1",
                        &[&id, &i32::from(*status), &(crate::store::now_us() as i64)],
                    )
                    .await?
                }
                HookOutcome::Retry {
                    next_us,
                    error,
                    status,
                } => {
                    cached_execute(
                        &c,
                        "UPDATE webhook_events SET state = 'pending', attempts = attempts + 1,
                           next_attempt_us = $2, last_error = $3, last_status = $4,
                           claimed_by = NULL, claim_until_us = NULL
                         WHERE id = $1",
                        &[&id, &(*next_us as i64), error, &status_i32(status)],
                    )
                    .await?
                }
                HookOutcome::Failed { error, status } => {
                    cached_execute(
                        &c,
                        "UPDATE webhook_events SET state = 'failed', attempts = attempts + 1,
                           last_error = $2, last_status = $3, claimed_by = NULL,
                           claim_until_us = NULL
                         WHERE id = $1",
                        &[&id, error, &status_i32(status)],
                    )
                    .await?
                }
            };
            Ok(())
        })
        .await
    }

    async fn defer_hook(
        &self,
        node: &str,
        account: &str,
        webhook: &str,
        until_us: i64,
    ) -> Result<(), StoreError> {
        self.run(async {
            let c = self.client().await?;
            cached_execute(
                &c,
                "UPDATE webhook_events SET state = 'pending', claimed_by = NULL,
                   claim_until_us = NULL, next_attempt_us = GREATEST(next_attempt_us, $4)
                 WHERE account_id = $1 AND webhook_id = $2
                   AND (state = 'pending' OR (state = 'sending' AND claimed_by = $3))",
                &[&account, &webhook, &node, &until_us],
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn next_hook_due(&self) -> Result<Option<u64>, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let v: Option<i64> = cached_query_one(
                &c,
                "SELECT LEAST(
                   (SELECT MIN(next_attempt_us) FROM webhook_events WHERE state = 'pending'),
                   (SELECT MIN(claim_until_us) FROM webhook_events WHERE state = 'sending'))",
                &[],
            )
            .await?
            .get(0);
            Ok(v.map(|v| v as u64))
        })
        .await
    }

    async fn recover_hook_events(&self, node: &str) -> Result<usize, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let n = cached_execute(
                &c,
                "UPDATE webhook_events SET state = 'pending', claimed_by = NULL,
                   claim_until_us = NULL
                 WHERE state = 'sending' AND claimed_by = $1",
                &[&node],
            )
            .await?;
            Ok(n as usize)
        })
        .await
    }

    async fn hook_events(&self, f: &HookFilter) -> Result<Vec<HookRow>, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let rows = cached_query(
                &c,
                "SELECT id, account_id, webhook_id, type, recording_id, node, state, attempts,
                        created_us, next_attempt_us, last_status, last_error, delivered_us
                 FROM webhook_events
                 WHERE ($1::text IS NULL OR account_id = $1) AND ($2::text IS NULL OR state = $2)
                   AND ($3::text IS NULL OR recording_id = $3)
                 ORDER BY created_us DESC, id LIMIT $4",
                &[
                    &f.account_id,
                    &f.state.map(HookState::as_str),
                    &f.recording_id,
                    &i64::from(f.limit.unwrap_or(1000)),
                ],
            )
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(HookRow {
                        id: r.get(0),
                        account_id: r.get(1),
                        webhook_id: r.get(2),
                        event_type: r.get(3),
                        recording_id: r.get(4),
                        node: r.get(5),
                        state: state_of(r.get(6))?,
                        attempts: r.get::<_, i32>(7) as u32,
                        created_us: r.get::<_, i64>(8) as u64,
                        next_attempt_us: r.get::<_, i64>(9) as u64,
                        last_status: r.get::<_, Option<i32>>(10).map(|s| s as u16),
                        last_error: r.get(11),
                        delivered_us: r.get::<_, Option<i64>>(12).map(|s| s as u64),
                    })
                })
                .collect()
        })
        .await
    }

    async fn retry_hook_events(&self, id: Option<&str>, now: i64) -> Result<usize, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let n = cached_execute(
                &c,
                "UPDATE webhook_events SET state = 'pending', next_attempt_us = $2, since_us = $2
                 WHERE state = 'failed' AND ($1::text IS NULL OR id = $1)",
                &[&id, &now],
            )
            .await?;
            Ok(n as usize)
        })
        .await
    }
}
