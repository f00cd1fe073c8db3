//! Webhook events in the SQLite file: the statements behind [`HookRows`]. Which webhooks are
//! due, fairly, is `store::webhooks`' rule ([`pick_hooks`]).

use rusqlite::params;

use super::Sqlite;
use crate::store::webhooks::{
    busy_keys, pick_hooks, state_of, ClaimLimits, HookClaim, HookFilter, HookOutcome, HookRow,
    HookRows, HookState, NewHookEvent, CANDIDATES,
};
use crate::store::{now_us, StoreError};

#[async_trait::async_trait]
impl HookRows for Sqlite {
    async fn add_hook_events(
        &self,
        node: &str,
        events: &[NewHookEvent],
        now: i64,
    ) -> Result<(), StoreError> {
        let node = node.to_owned();
        let events = events.to_vec();
        self.quick(move |c| {
            let node = node.as_str();
            let events = events.as_slice();
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT OR IGNORE INTO webhook_events (id, account_id, webhook_id, node, type,
                       recording_id, body, state, attempts, next_attempt_us, since_us, created_us)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', 0, ?8, ?8, ?8)",
                )?;
                for e in events {
                    st.execute(params![
                        e.id,
                        e.account_id,
                        e.webhook_id,
                        node,
                        e.event_type,
                        e.recording_id,
                        e.body,
                        now
                    ])?;
                }
            }
            tx.commit()?;
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
        let node = node.to_owned();
        let busy = busy_keys(limits);
        let limits = limits.clone();
        self.run(move |c| {
            let node = node.as_str();

            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            // Claims whose worker is gone (its lease ran out) are due again.
            tx.prepare_cached(
                "UPDATE webhook_events SET state = 'pending', claimed_by = NULL,
                   claim_until_us = NULL
                 WHERE state = 'sending' AND claim_until_us < ?1",
            )?
            .execute(params![now])?;
            // The oldest due events name the webhooks to serve (busy ones skipped).
            let due: Vec<(String, String)> = {
                let mut st = tx.prepare_cached(
                    "SELECT account_id, webhook_id FROM webhook_events
                     WHERE state = 'pending' AND next_attempt_us <= ?1
                       AND account_id || '/' || webhook_id NOT IN (SELECT value FROM json_each(?2))
                     ORDER BY next_attempt_us LIMIT ?3",
                )?;
                let busy =
                    serde_json::to_string(&busy).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let rows = st.query_map(params![now, busy, CANDIDATES], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
                rows.collect::<Result<_, _>>()?
            };
            let mut out = Vec::new();
            for (account, hook) in pick_hooks(due, &limits) {
                let mut st = tx.prepare_cached(
                    "UPDATE webhook_events SET state = 'sending', claimed_by = ?4,
                       claim_until_us = ?5
                     WHERE id IN (SELECT id FROM webhook_events
                                  WHERE account_id = ?2 AND webhook_id = ?3
                                    AND state = 'pending' AND next_attempt_us <= ?1
                                  ORDER BY next_attempt_us LIMIT ?6)
                     RETURNING id, account_id, webhook_id, type, body, attempts, since_us,
                               next_attempt_us, created_us",
                )?;
                let rows = st.query_map(
                    params![
                        now,
                        account,
                        hook,
                        node,
                        limits.lease_until_us,
                        limits.per_hook as i64
                    ],
                    |r| {
                        Ok((
                            (r.get::<_, i64>(7)?, r.get::<_, i64>(8)?),
                            HookClaim {
                                id: r.get(0)?,
                                account_id: r.get(1)?,
                                webhook_id: r.get(2)?,
                                event_type: r.get(3)?,
                                body: r.get(4)?,
                                attempts: r.get::<_, i64>(5)? as u32,
                                since_us: r.get::<_, i64>(6)? as u64,
                            },
                        ))
                    },
                )?;
                let mut batch: Vec<((i64, i64), HookClaim)> = rows.collect::<Result<_, _>>()?;
                // RETURNING does not keep the subquery's order.
                batch.sort_by_key(|(k, _)| *k);
                out.extend(batch.into_iter().map(|(_, c)| c));
            }
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    async fn settle_hook_event(&self, id: &str, outcome: &HookOutcome) -> Result<(), StoreError> {
        let id = id.to_owned();
        let outcome = outcome.clone();
        self.quick(move |c| {
            let id = id.as_str();

            match &outcome {
                HookOutcome::Delivered { status } => c
                    .prepare_cached(
                        "UPDATE webhook_events SET state = 'delivered', attempts = attempts + 1,
                       last_status = ?2, last_error = NULL, delivered_us = ?3,
                       claimed_by = NULL, claim_until_us = NULL
                     WHERE id = ?1",
                    )?
                    .execute(params![id, status, now_us() as i64])?,
                HookOutcome::Retry {
                    next_us,
                    error,
                    status,
                } => c
                    .prepare_cached(
                        "UPDATE webhook_events SET state = 'pending', attempts = attempts + 1,
                       next_attempt_us = ?2, last_error = ?3, last_status = ?4,
                       claimed_by = NULL, claim_until_us = NULL
                     WHERE id = ?1",
                    )?
                    .execute(params![id, *next_us as i64, error, status])?,
                HookOutcome::Failed { error, status } => c
                    .prepare_cached(
                        "UPDATE webhook_events SET state = 'failed', attempts = attempts + 1,
                       last_error = ?2, last_status = ?3, claimed_by = NULL, claim_until_us = NULL
                     WHERE id = ?1",
                    )?
                    .execute(params![id, error, status])?,
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
        let node = node.to_owned();
        let account = account.to_owned();
        let webhook = webhook.to_owned();
        self.run(move |c| {
            let node = node.as_str();
            let account = account.as_str();
            let webhook = webhook.as_str();
            c.prepare_cached(
                "UPDATE webhook_events SET state = 'pending', claimed_by = NULL,
                   claim_until_us = NULL, next_attempt_us = MAX(next_attempt_us, ?4)
                 WHERE account_id = ?1 AND webhook_id = ?2
                   AND (state = 'pending' OR (state = 'sending' AND claimed_by = ?3))",
            )?
            .execute(params![account, webhook, node, until_us])?;
            Ok(())
        })
        .await
    }

    async fn next_hook_due(&self) -> Result<Option<u64>, StoreError> {
        self.quick(move |c| {
            let v: Option<i64> = c
                .prepare_cached(
                    "SELECT MIN(t) FROM (
                   SELECT MIN(next_attempt_us) AS t FROM webhook_events WHERE state = 'pending'
                   UNION ALL
                   SELECT MIN(claim_until_us) FROM webhook_events WHERE state = 'sending')",
                )?
                .query_row([], |r| r.get(0))?;
            Ok(v.map(|v| v as u64))
        })
        .await
    }

    async fn recover_hook_events(&self, node: &str) -> Result<usize, StoreError> {
        let node = node.to_owned();
        self.run(move |c| {
            let node = node.as_str();
            Ok(c.prepare_cached(
                "UPDATE webhook_events SET state = 'pending', claimed_by = NULL,
                   claim_until_us = NULL
                 WHERE state = 'sending' AND claimed_by = ?1",
            )?
            .execute(params![node])?)
        })
        .await
    }

    async fn hook_events(&self, f: &HookFilter) -> Result<Vec<HookRow>, StoreError> {
        let f = f.clone();
        self.run(move |c| {
            let mut st = c.prepare_cached(
                "SELECT id, account_id, webhook_id, type, recording_id, node, state, attempts,
                        created_us, next_attempt_us, last_status, last_error, delivered_us
                 FROM webhook_events
                 WHERE (?1 IS NULL OR account_id = ?1) AND (?2 IS NULL OR state = ?2)
                   AND (?3 IS NULL OR recording_id = ?3)
                 ORDER BY created_us DESC, id LIMIT ?4",
            )?;
            let mut rows = st.query(params![
                f.account_id,
                f.state.map(HookState::as_str),
                f.recording_id,
                f.limit.unwrap_or(1000) as i64
            ])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                let state: String = r.get(6)?;
                out.push(HookRow {
                    id: r.get(0)?,
                    account_id: r.get(1)?,
                    webhook_id: r.get(2)?,
                    event_type: r.get(3)?,
                    recording_id: r.get(4)?,
                    node: r.get(5)?,
                    state: state_of(&state)?,
                    attempts: r.get::<_, i64>(7)? as u32,
                    created_us: r.get::<_, i64>(8)? as u64,
                    next_attempt_us: r.get::<_, i64>(9)? as u64,
                    last_status: r.get::<_, Option<i64>>(10)?.map(|s| s as u16),
                    last_error: r.get(11)?,
                    delivered_us: r.get::<_, Option<i64>>(12)?.map(|s| s as u64),
                });
            }
            Ok(out)
        })
        .await
    }

    async fn retry_hook_events(&self, id: Option<&str>, now: i64) -> Result<usize, StoreError> {
        let id = id.map(str::to_owned);
        self.run(move |c| {
            let id = id.as_deref();
            Ok(c.prepare_cached(
                "UPDATE webhook_events SET state = 'pending', next_attempt_us = ?2, since_us = ?2
                 WHERE state = 'failed' AND (?1 IS NULL OR id = ?1)",
            )?
            .execute(params![id, now])?)
        })
        .await
    }
}
