//! The webhook sender: takes due events from the queue, fairly across webhooks, and posts each
//! to its webhook's `uri`, signed, one attempt at a time per webhook.
//!
//! Each attempt is one `POST` with `Content-Type: application/json`, the event's stored body,
//! and the headers `webhook-id` (the event's id, the same on every retry), `webhook-timestamp`
//! (the attempt's Unix seconds) and `webhook-signature` ([`super::sign`]). A 2xx delivers it;
//! a timeout, connection error, 408, 429 (after `Retry-After`) or 5xx is retried on the
//! spool's schedule until the event is older than the spool's give-up age; anything else fails
//! it. Redirects are not followed (a 3xx fails the attempt).
//!
//! Invariants: at most `concurrency` webhooks are being sent to at once and each by one task,
//! so a receiver that never answers holds one slot and its own events only (never an upload,
//! never another account's webhook); when an attempt is to be retried, every other event of
//! that webhook goes back unattempted to wait with it (a dead receiver is tried once per
//! backoff step, not once per event); the signing key is read from
//! the webhook document at send time and never logged; every attempt is one log line.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::net::guard::{Guard, Lookup, SystemLookup};
use crate::net::retry::{self, Policy};
use crate::settings::policy::{DestinationPolicy, Writer};
use crate::settings::webhook::{self, WebhookSettings};
use crate::store::webhooks::{ClaimLimits, HookClaim, HookOutcome};
use crate::store::{now_us, Kind, Store, StoreError};
use crate::telemetry::metrics::{self, METRICS};
use crate::telemetry::printable;

/// The longest the loop sleeps without looking at the queue (another node, or the CLI, may
/// have made events due).
const IDLE_POLL: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct SenderConfig {
    /// Webhooks sent to at once.
    pub concurrency: usize,
    /// Events of one webhook claimed together (sent one after the other).
    pub per_hook: usize,
    /// Per attempt.
    pub timeout: Duration,
    /// The spool's schedule.
    pub retry: Policy,
    pub policy: DestinationPolicy,
    /// Name resolution (the system's; tests pin names).
    pub lookup: Arc<dyn Lookup>,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            concurrency: 16,
            per_hook: 20,
            timeout: Duration::from_secs(10),
            retry: Policy::default(),
            policy: DestinationPolicy::Default,
            lookup: Arc::new(SystemLookup),
        }
    }
}

/// One HTTP client per writer row of the destination policy.
struct Clients {
    admin: reqwest::Client,
    account: reqwest::Client,
    admin_guard: Guard,
    account_guard: Guard,
}

impl Clients {
    fn new(cfg: &SenderConfig) -> Result<Clients, reqwest::Error> {
        let guard = |writer| Guard {
            policy: cfg.policy,
            writer,
            lookup: cfg.lookup.clone(),
        };
        let client = |g: &Guard| {
            reqwest::Client::builder()
                .dns_resolver(Arc::new(g.clone()))
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
                .user_agent(concat!("callrec/", env!("CARGO_PKG_VERSION")))
                .build()
        };
        let (admin_guard, account_guard) = (guard(Writer::Admin), guard(Writer::Account));
        Ok(Clients {
            admin: client(&admin_guard)?,
            account: client(&account_guard)?,
            admin_guard,
            account_guard,
        })
    }

    fn for_hook(&self, w: &WebhookSettings) -> (&reqwest::Client, &Guard) {
        if w.admin_written {
            (&self.admin, &self.admin_guard)
        } else {
            (&self.account, &self.account_guard)
        }
    }
}

type Busy = Arc<Mutex<HashSet<(String, String)>>>;

/// Runs the sender until `stop` is cancelled; unsent events stay in the queue.
pub async fn run(
    store: Store,
    cfg: SenderConfig,
    wake: Arc<Notify>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let clients = match Clients::new(&cfg) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            error!(error = %e, "webhook sender cannot start: no HTTP client");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    let busy: Busy = Arc::new(Mutex::new(HashSet::new()));
    loop {
        if stop.is_cancelled() {
            break;
        }
        let free = slots.available_permits();
        if free == 0 {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = wake.notified() => continue,
            }
        }
        let limits = ClaimLimits {
            busy: busy.lock().map(|b| b.clone()).unwrap_or_default(),
            hooks: free,
            per_hook: cfg.per_hook.max(1),
            lease_until_us: lease_until(&cfg),
        };
        let claimed = match store.claim_hook_events(now_us(), &limits).await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "webhook queue unavailable");
                Vec::new()
            }
        };
        let mut groups: Vec<((String, String), Vec<HookClaim>)> = Vec::new();
        for c in claimed {
            let key = (c.account_id.clone(), c.webhook_id.clone());
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, g)) => g.push(c),
                None => groups.push((key, vec![c])),
            }
        }
        let started = groups.len();
        for (key, group) in groups {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            if let Ok(mut b) = busy.lock() {
                b.insert(key.clone());
            }
            let (store, clients, cfg, wake, busy) = (
                store.clone(),
                clients.clone(),
                cfg.clone(),
                wake.clone(),
                busy.clone(),
            );
            tracker.spawn(async move {
                send_group(&store, &clients, &cfg, group).await;
                if let Ok(mut b) = busy.lock() {
                    b.remove(&key);
                }
                drop(permit);
                wake.notify_one();
            });
        }
        if started > 0 {
            continue;
        }
        if busy.lock().map(|b| !b.is_empty()).unwrap_or(false) {
            // Whatever is due belongs to webhooks being sent to: the next claim can take
            // something only once one of them is done (it wakes us) or new events are queued
            // (the notifier wakes us). Claiming meanwhile would spin.
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
            }
            continue;
        }
        let next = store.next_hook_due().await.ok().flatten();
        let wait = match next {
            Some(t) => Duration::from_micros(t.saturating_sub(now_us())).min(IDLE_POLL),
            None => IDLE_POLL,
        };
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// A claim not settled by then was left by a worker that is gone: a whole group's attempts,
/// each up to the timeout, and a margin.
fn lease_until(cfg: &SenderConfig) -> u64 {
    let per = cfg.timeout + Duration::from_secs(5);
    now_us() + (per * cfg.per_hook.max(1) as u32 + Duration::from_secs(60)).as_micros() as u64
}

/// Sends one webhook's claimed events in order.
async fn send_group(store: &Store, clients: &Clients, cfg: &SenderConfig, group: Vec<HookClaim>) {
    let Some(first) = group.first() else { return };
    let (account, hook) = (first.account_id.clone(), first.webhook_id.clone());
    let hook_doc = match store.get(Kind::Webhook, &account, &hook).await {
        Ok(d) => d,
        Err(e) => {
            warn!(account_id = %printable(&account), webhook_id = %printable(&hook), error = %e, "cannot read the webhook; its events wait");
            let later = now_us() + 5_000_000;
            let _ = store.defer_hook(&account, &hook, later).await;
            return;
        }
    };
    let settings = hook_doc
        .as_ref()
        .map(|d| webhook::parse(&d.body))
        .transpose();
    let why_not = match &settings {
        Ok(None) => Some("the webhook was deleted".to_string()),
        Ok(Some(w)) if !w.enabled => Some("the webhook is disabled".to_string()),
        Ok(Some(w)) if w.secret.is_none() => Some("the webhook has no secret".to_string()),
        Err(e) => Some(format!("the stored webhook is not valid: {e}")),
        _ => None,
    };
    let w = match (why_not, settings) {
        (None, Ok(Some(w))) => w,
        (why, _) => {
            let why = why.unwrap_or_default();
            for c in &group {
                metrics::inc(&METRICS.webhooks_failed_total);
                error!(account_id = %printable(&c.account_id), webhook_id = %printable(&c.webhook_id), webhook_msg_id = %c.id, event = %c.event_type, reason = %why, "webhook event failed for good (dead letter)");
                settle(
                    store,
                    c,
                    HookOutcome::Failed {
                        error: why.clone(),
                        status: None,
                    },
                )
                .await;
            }
            return;
        }
    };
    for c in &group {
        let outcome = attempt(clients, cfg, &w, c).await;
        let retry_at = match &outcome {
            HookOutcome::Retry { next_us, .. } => Some(*next_us),
            _ => None,
        };
        settle(store, c, outcome).await;
        if let Some(next) = retry_at {
            // The receiver is failing: every other event of this webhook waits with this one,
            // unattempted (the rest of this group included).
            if let Err(e) = store.defer_hook(&account, &hook, next).await {
                warn!(account_id = %printable(&account), webhook_id = %printable(&hook), error = %e, "cannot defer the webhook's other events; their claims run out");
            }
            return;
        }
    }
}

async fn settle(store: &Store, c: &HookClaim, outcome: HookOutcome) {
    let mut wait = Duration::from_millis(250);
    for _ in 0..8 {
        match store.settle_hook_event(&c.id, &outcome).await {
            Ok(()) => return,
            Err(StoreError::Unreachable(_)) => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                error!(webhook_msg_id = %c.id, error = %e, "cannot record the webhook attempt's outcome; it will be sent again");
                return;
            }
        }
    }
    warn!(webhook_msg_id = %c.id, "database unreachable: the webhook attempt's outcome is lost; the event will be sent again once its claim runs out");
}

/// One attempt, logged and counted.
async fn attempt(
    clients: &Clients,
    cfg: &SenderConfig,
    w: &WebhookSettings,
    c: &HookClaim,
) -> HookOutcome {
    let shown = crate::net::userinfo::redact(&w.uri);
    info!(account_id = %printable(&c.account_id), webhook_id = %printable(&c.webhook_id), webhook_msg_id = %c.id, event = %c.event_type, url = %shown, attempt = c.attempts + 1, "webhook attempt");
    let outcome = post(clients, cfg, w, c).await;
    let outcome = match outcome {
        HookOutcome::Retry { error, status, .. }
            if now_us().saturating_sub(c.since_us) > cfg.retry.give_up_after.as_micros() as u64 =>
        {
            HookOutcome::Failed {
                error: format!("{error} (given up: older than the give-up age)"),
                status,
            }
        }
        o => o,
    };
    match &outcome {
        HookOutcome::Delivered { status } => {
            metrics::inc(&METRICS.webhooks_sent_total);
            info!(account_id = %printable(&c.account_id), webhook_id = %printable(&c.webhook_id), webhook_msg_id = %c.id, event = %c.event_type, status, "webhook delivered");
        }
        HookOutcome::Retry {
            next_us,
            error,
            status,
        } => {
            metrics::inc(&METRICS.webhooks_retried_total);
            warn!(account_id = %printable(&c.account_id), webhook_id = %printable(&c.webhook_id), webhook_msg_id = %c.id, event = %c.event_type, status = %status.map_or("-".to_string(), |s| s.to_string()), error = %error, retry_in_ms = next_us.saturating_sub(now_us()) / 1000, "webhook failed; will retry");
        }
        HookOutcome::Failed { error, status } => {
            metrics::inc(&METRICS.webhooks_failed_total);
            error!(account_id = %printable(&c.account_id), webhook_id = %printable(&c.webhook_id), webhook_msg_id = %c.id, event = %c.event_type, status = %status.map_or("-".to_string(), |s| s.to_string()), error = %error, "webhook event failed for good (dead letter)");
        }
    }
    outcome
}

async fn post(
    clients: &Clients,
    cfg: &SenderConfig,
    w: &WebhookSettings,
    c: &HookClaim,
) -> HookOutcome {
    let (client, guard) = clients.for_hook(w);
    let retry_later = |error: String, status: Option<u16>, after: Option<Duration>| {
        let delay = after.unwrap_or_else(|| cfg.retry.delay(c.attempts + 1, retry::jitter()));
        HookOutcome::Retry {
            next_us: now_us() + delay.as_micros() as u64,
            error,
            status,
        }
    };
    if let Some(why) = guard.literal_refused(&w.uri) {
        return HookOutcome::Failed {
            error: format!("refused by destination_policy: {why}"),
            status: None,
        };
    }
    let Some(secret) = &w.secret else {
        return HookOutcome::Failed {
            error: "the webhook has no secret".into(),
            status: None,
        };
    };
    let ts = time::OffsetDateTime::now_utc().unix_timestamp();
    let sig = super::sign::signature(secret, &c.id, ts, c.body.as_bytes());
    let sent = client
        .post(&w.uri)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", &c.id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .body(c.body.clone())
        .timeout(cfg.timeout)
        .send()
        .await;
    match sent {
        Ok(resp) => {
            let status = resp.status().as_u16();
            if resp.status().is_success() {
                return HookOutcome::Delivered { status };
            }
            let after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry::parse_retry_after(v, ts))
                .map(|d| d.min(Duration::from_secs(3600)));
            if retry::retryable_status(status) {
                retry_later(format!("HTTP {status}"), Some(status), after)
            } else {
                HookOutcome::Failed {
                    error: format!("HTTP {status}"),
                    status: Some(status),
                }
            }
        }
        Err(e) => {
            let kind = if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            // The URL may carry credentials: only the error's kind and source are logged.
            let mut detail = String::new();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                detail = s.to_string();
                src = s.source();
            }
            let msg = if detail.is_empty() {
                kind.to_string()
            } else {
                format!("{kind}: {detail}")
            };
            retry_later(msg, None, None)
        }
    }
}
