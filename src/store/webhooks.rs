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

/// What a backend does with the webhook events' queue: statements only; which webhooks are
/// due first is [`pick_hooks`], applied by each backend inside its claim.
#[async_trait::async_trait]
pub(super) trait HookRows {
    /// Queues `events` as `node`'s, due at `now` (one transaction).
    async fn add_hook_events(
        &self,
        node: &str,
        events: &[NewHookEvent],
        now: i64,
    ) -> Result<(), StoreError>;
    /// Takes due events for `node`, fairly across webhooks, marking them `sending`.
    async fn claim_hook_events(
        &self,
        node: &str,
        now: i64,
        limits: &ClaimLimits,
    ) -> Result<Vec<HookClaim>, StoreError>;
    async fn settle_hook_event(&self, id: &str, outcome: &HookOutcome) -> Result<(), StoreError>;
    async fn defer_hook(
        &self,
        node: &str,
        account: &str,
        webhook: &str,
        until_us: i64,
    ) -> Result<(), StoreError>;
    async fn next_hook_due(&self) -> Result<Option<u64>, StoreError>;
    async fn recover_hook_events(&self, node: &str) -> Result<usize, StoreError>;
    async fn hook_events(&self, f: &HookFilter) -> Result<Vec<HookRow>, StoreError>;
    async fn retry_hook_events(&self, id: Option<&str>, now: i64) -> Result<usize, StoreError>;
}

impl Store {
    /// Queues events (one transaction).
    pub async fn add_hook_events(&self, events: &[NewHookEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        self.db()
            .add_hook_events(&self.node, events, now_us() as i64)
            .await
    }

    /// Takes due events for an attempt, fairly across webhooks (the oldest-waiting webhooks
    /// first, at most `per_hook` each), marking them `sending` for this node.
    pub async fn claim_hook_events(
        &self,
        now: u64,
        limits: &ClaimLimits,
    ) -> Result<Vec<HookClaim>, StoreError> {
        self.db()
            .claim_hook_events(&self.node, now as i64, limits)
            .await
    }

    /// Records an attempt's outcome.
    pub async fn settle_hook_event(
        &self,
        id: &str,
        outcome: &HookOutcome,
    ) -> Result<(), StoreError> {
        self.db().settle_hook_event(id, outcome).await
    }

    /// A webhook's receiver is failing: its events wait until `until_us` with the one that
    /// failed (none is due before), and those this node claimed go back unattempted, instead of
    /// each trying a dead receiver in turn.
    pub async fn defer_hook(
        &self,
        account: &str,
        webhook: &str,
        until_us: u64,
    ) -> Result<(), StoreError> {
        self.db()
            .defer_hook(&self.node, account, webhook, until_us as i64)
            .await
    }

    /// When the next event is due (pending, or a lease running out).
    pub async fn next_hook_due(&self) -> Result<Option<u64>, StoreError> {
        self.db().next_hook_due().await
    }

    /// This node's events left `sending` by a crash go back to `pending`. Returns how many.
    pub async fn recover_hook_events(&self) -> Result<usize, StoreError> {
        self.db().recover_hook_events(&self.node).await
    }

    /// Events matching `f`, newest first.
    pub async fn hook_events(&self, f: &HookFilter) -> Result<Vec<HookRow>, StoreError> {
        self.db().hook_events(f).await
    }

    /// Puts failed events (one, or all with `None`) back in the queue, due now, with a fresh
    /// give-up clock. Returns how many.
    pub async fn retry_hook_events(&self, id: Option<&str>) -> Result<usize, StoreError> {
        self.db().retry_hook_events(id, now_us() as i64).await
    }
}
