//! Webhook events: the durable queue of notifications, in the same store (and under the same
//! rules) as the spool's deliveries.
//!
//! An event row is one notification for one webhook of one account: its `id` is the
//! `webhook-id` every attempt sends, its `body` the exact JSON every attempt posts. States:
//! `pending` → `sending` → `delivered` | `failed`; `sending` carries the node that claimed it
//! and until when (`claim_until_us`): a claim older than that (its node died) is due again.
//!
//! Invariants: an event is claimed by one worker at a time (SQLite: one writer; PostgreSQL:
//! `FOR UPDATE SKIP LOCKED`); a claim takes at most `per_hook` events of one webhook and none of
//! a webhook the caller is still sending to, so a slow receiver holds only its own events;
//! `body` and `id` never change after the insert.

use std::collections::HashSet;

use rusqlite::params;
use serde::Serialize;

use super::{now_us, Store, StoreError};

/// The state of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HookState {
    Pending,
    Sending,
    Delivered,
    Failed,
}

text_enum!(HookState { Pending => "pending", Sending => "sending", Delivered => "delivered", Failed => "failed" });

/// An event to queue.
#[derive(Debug, Clone)]
pub struct NewHookEvent {
    pub id: String,
    pub account_id: String,
    pub webhook_id: String,
    pub event_type: String,
    pub recording_id: Option<String>,
    pub body: String,
}

/// An event taken for an attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct HookClaim {
    pub id: String,
    pub account_id: String,
    pub webhook_id: String,
    pub event_type: String,
    pub body: String,
    /// Attempts before this one.
    pub attempts: u32,
    /// When its give-up clock started (µs).
    pub since_us: u64,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum HookOutcome {
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

/// An event as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HookRow {
    pub id: String,
    pub account_id: String,
    pub webhook_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub recording_id: Option<String>,
    /// The node that raised it.
    pub node: String,
    pub state: HookState,
    pub attempts: u32,
    pub created_us: u64,
    pub next_attempt_us: u64,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub delivered_us: Option<u64>,
}

/// Which events to list (newest first).
#[derive(Debug, Clone, Default)]
pub struct HookFilter {
    pub account_id: Option<String>,
    pub state: Option<HookState>,
    pub recording_id: Option<String>,
    pub limit: Option<u32>,
}

/// What one claim may take.
#[derive(Debug, Clone)]
pub struct ClaimLimits {
    /// Webhooks being sent to now (`(account, webhook)`): none of theirs is taken.
    pub busy: HashSet<(String, String)>,
    /// At most this many webhooks in one claim.
    pub hooks: usize,
    /// At most this many events of one webhook.
    pub per_hook: usize,
    /// A claim not settled by then is due again (its worker is gone).
    pub lease_until_us: u64,
}

/// Which `(account, webhook)` pairs to claim from: the first `hooks` distinct, not busy ones
/// of `due` (the webhooks of the oldest due events, in that order).
pub(super) fn pick_hooks(
    due: Vec<(String, String)>,
    limits: &ClaimLimits,
) -> Vec<(String, String)> {
    let mut seen = HashSet::new();
    due.into_iter()
        .filter(|h| !limits.busy.contains(h) && seen.insert(h.clone()))
        .take(limits.hooks)
        .collect()
}

pub(super) fn state_of(s: &str) -> Result<HookState, StoreError> {
    HookState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown event state {s:?}")))
}

/// The pairs `(account, webhook)` of busy hooks as `'account/webhook'` keys, for SQL.
pub(super) fn busy_keys(limits: &ClaimLimits) -> Vec<String> {
    limits
        .busy
        .iter()
        .map(|(a, h)| format!("{a}/{h}"))
        .collect()
}

/// Candidate rows read to find the webhooks with due events (oldest first).
pub(super) const CANDIDATES: i64 = 500;

impl Store {
    /// Queues events (one transaction).
    pub fn add_hook_events(&self, events: &[NewHookEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let now = now_us() as i64;
        if let Some(pg) = &self.pg {
            return pg.add_hook_events(&self.node, events, now);
        }
        self.with(|c| {
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
                        &*self.node,
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
    }

    /// Takes due events for an attempt, fairly across webhooks (the oldest-waiting webhooks
    /// first, at most `per_hook` each), marking them `sending` for this node.
    pub fn claim_hook_events(
        &self,
        now: u64,
        limits: &ClaimLimits,
    ) -> Result<Vec<HookClaim>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.claim_hook_events(&self.node, now as i64, limits);
        }
        let busy = busy_keys(limits);
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            // Claims whose worker is gone (its lease ran out) are due again.
            tx.prepare_cached(
                "UPDATE webhook_events SET state = 'pending', claimed_by = NULL,
                   claim_until_us = NULL
                 WHERE state = 'sending' AND claim_until_us < ?1",
            )?
            .execute(params![now as i64])?;
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
                let rows = st.query_map(params![now as i64, busy, CANDIDATES], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
                rows.collect::<Result<_, _>>()?
            };
            let mut out = Vec::new();
            for (account, hook) in pick_hooks(due, limits) {
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
                        now as i64,
                        account,
                        hook,
                        &*self.node,
                        limits.lease_until_us as i64,
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
    }

    /// Records an attempt's outcome.
    pub fn settle_hook_event(&self, id: &str, outcome: &HookOutcome) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.settle_hook_event(id, outcome);
        }
        self.with(|c| {
            match outcome {
                HookOutcome::Delivered { status } => c.execute(
                    "UPDATE webhook_events SET state = 'delivered', attempts = attempts + 1,
                       last_status = ?2, last_error = NULL, delivered_us = ?3,
                       claimed_by = NULL, claim_until_us = NULL
                     WHERE id = ?1",
                    params![id, status, now_us() as i64],
                )?,
                HookOutcome::Retry {
                    next_us,
                    error,
                    status,
                } => c.execute(
                    "UPDATE webhook_events SET state = 'pending', attempts = attempts + 1,
                       next_attempt_us = ?2, last_error = ?3, last_status = ?4,
                       claimed_by = NULL, claim_until_us = NULL
                     WHERE id = ?1",
                    params![id, *next_us as i64, error, status],
                )?,
                HookOutcome::Failed { error, status } => c.execute(
                    "UPDATE webhook_events SET state = 'failed', attempts = attempts + 1,
                       last_error = ?2, last_status = ?3, claimed_by = NULL, claim_until_us = NULL
                     WHERE id = ?1",
                    params![id, error, status],
                )?,
            };
            Ok(())
        })
    }

    /// A webhook's receiver is failing: its events wait until `until_us` with the one that
    /// failed (none is due before), and those this node claimed go back unattempted, instead of
    /// each trying a dead receiver in turn.
    pub fn defer_hook(
        &self,
        account: &str,
        webhook: &str,
        until_us: u64,
    ) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.defer_hook(&self.node, account, webhook, until_us as i64);
        }
        self.with(|c| {
            c.prepare_cached(
                "UPDATE webhook_events SET state = 'pending', claimed_by = NULL,
                   claim_until_us = NULL, next_attempt_us = MAX(next_attempt_us, ?4)
                 WHERE account_id = ?1 AND webhook_id = ?2
                   AND (state = 'pending' OR (state = 'sending' AND claimed_by = ?3))",
            )?
            .execute(params![account, webhook, &*self.node, until_us as i64])?;
            Ok(())
        })
    }

    /// When the next event is due (pending, or a lease running out).
    pub fn next_hook_due(&self) -> Result<Option<u64>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.next_hook_due();
        }
        self.with(|c| {
            let v: Option<i64> = c.query_row(
                "SELECT MIN(t) FROM (
                   SELECT MIN(next_attempt_us) AS t FROM webhook_events WHERE state = 'pending'
                   UNION ALL
                   SELECT MIN(claim_until_us) FROM webhook_events WHERE state = 'sending')",
                [],
                |r| r.get(0),
            )?;
            Ok(v.map(|v| v as u64))
        })
    }

    /// This node's events left `sending` by a crash go back to `pending`. Returns how many.
    pub fn recover_hook_events(&self) -> Result<usize, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.recover_hook_events(&self.node);
        }
        self.with(|c| {
            Ok(c.execute(
                "UPDATE webhook_events SET state = 'pending', claimed_by = NULL,
                   claim_until_us = NULL
                 WHERE state = 'sending' AND claimed_by = ?1",
                params![&*self.node],
            )?)
        })
    }

    /// Events matching `f`, newest first.
    pub fn hook_events(&self, f: &HookFilter) -> Result<Vec<HookRow>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.hook_events(f);
        }
        self.with(|c| {
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
    }

    /// Puts failed events (one, or all with `None`) back in the queue, due now, with a fresh
    /// give-up clock. Returns how many.
    pub fn retry_hook_events(&self, id: Option<&str>) -> Result<usize, StoreError> {
        let now = now_us() as i64;
        if let Some(pg) = &self.pg {
            return pg.retry_hook_events(id, now);
        }
        self.with(|c| {
            Ok(c.execute(
                "UPDATE webhook_events SET state = 'pending', next_attempt_us = ?2, since_us = ?2
                 WHERE state = 'failed' AND (?1 IS NULL OR id = ?1)",
                params![id, now],
            )?)
        })
    }
}
