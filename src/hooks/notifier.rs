//! From "this happened to a recording" to rows in the webhook queue. [`Notifier::notify`] never
//! waits (it is called from a call's session and from the uploader); one writer task turns each
//! notice into one event per subscribed, enabled webhook of the recording's account, and writes
//! them in batches.
//!
//! Each notice is also an outcome of the call's decision record (`store::decisions`), written by
//! a second task in lingering batches (the call's path never waits for either).
//!
//! Invariants: notices are written in the order they were raised; a notice whose account has
//! no webhook for its type costs one read and writes nothing; while the store cannot be reached
//! notices wait in memory (at most [`BUFFER`], oldest dropped first, each drop logged and
//! counted) and are written when it returns; on shutdown the writer writes what it holds before
//! it ends.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::settings::webhook::{self, HookEvent};
use crate::store::decisions::Outcome;
use crate::store::webhooks::NewHookEvent;
use crate::store::{Kind, Store, StoreError};
use crate::telemetry::metrics::{self, METRICS};
use crate::telemetry::printable;

/// Notices held while the store is unreachable.
pub const BUFFER: usize = 100_000;

/// Notices written per store transaction.
const BATCH: usize = 512;

/// How long decision outcomes gather before they are written.
const OUTCOME_LINGER: Duration = Duration::from_millis(250);

/// Outcomes per store transaction: small, so a call's own write never waits long behind them.
const OUTCOME_TX_ROWS: usize = 8;

/// Something that happened to one recording.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub event: HookEvent,
    pub account_id: String,
    pub call_id: String,
    pub recording_id: String,
    /// µs since the epoch.
    pub at_us: u64,
    /// The recording's metadata (the body's `data`).
    pub data: Value,
}

impl Notice {
    /// The JSON every attempt posts: `{"type", "timestamp" (RFC 3339), "data"}`.
    pub fn body(&self) -> String {
        let ts = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.at_us) * 1000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        json!({"type": self.event.as_str(), "timestamp": ts, "data": self.data}).to_string()
    }
}

/// Raises notices; cheap to clone.
#[derive(Clone, Debug)]
pub struct Notifier {
    tx: mpsc::UnboundedSender<Notice>,
    outcomes: mpsc::UnboundedSender<Outcome>,
}

impl Notifier {
    /// Starts the writer task on `tracker`; it ends after `stop`, once it has written (or
    /// tried once more to write) what it holds.
    /// `wake` is notified after each write (the sender's, so a new event goes out at once).
    pub fn start(
        store: Store,
        wake: Arc<Notify>,
        stop: CancellationToken,
        tracker: &TaskTracker,
    ) -> Notifier {
        let (tx, rx) = mpsc::unbounded_channel();
        let (otx, orx) = mpsc::unbounded_channel();
        tracker.spawn(outcome_loop(store.clone(), orx, stop.clone()));
        tracker.spawn(write_loop(store, rx, wake, stop));
        Notifier { tx, outcomes: otx }
    }

    /// Queues a notice (never waits): an outcome for the call's decision record, and, with an
    /// account, the webhook events.
    pub fn notify(&self, n: Notice) {
        let _ = self.outcomes.send(Outcome {
            call_id: n.call_id.clone(),
            at_us: n.at_us,
            event: n.event.as_str().to_string(),
            recording_id: Some(n.recording_id.clone()),
            reason: n
                .data
                .get("reason")
                .and_then(|r| r.as_str())
                .map(str::to_string),
        });
        if n.account_id.is_empty() {
            return;
        }
        if self.tx.send(n).is_err() {
            // The writer ended (shutdown): nothing can be written any more.
            metrics::inc(&METRICS.webhook_events_lost_total);
            warn!("webhook notice raised after shutdown: not queued");
        }
    }
}

async fn write_loop(
    store: Store,
    mut rx: mpsc::UnboundedReceiver<Notice>,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut held: VecDeque<Notice> = VecDeque::new();
    let mut wait = Duration::from_millis(250);
    loop {
        if held.is_empty() {
            tokio::select! {
                n = rx.recv() => match n {
                    Some(n) => held.push_back(n),
                    None => return,
                },
                _ = stop.cancelled() => {
                    rx.close();
                    while let Ok(n) = rx.try_recv() {
                        held.push_back(n);
                    }
                    flush_once(&store, &mut held).await;
                    return;
                }
            }
        }
        while let Ok(n) = rx.try_recv() {
            held.push_back(n);
        }
        while held.len() > BUFFER {
            if let Some(n) = held.pop_front() {
                metrics::inc(&METRICS.webhook_events_lost_total);
                error!(call_id = %printable(&n.call_id), account_id = %printable(&n.account_id), recording_id = %n.recording_id, event = n.event.as_str(), "webhook notice dropped: too many held while the store is unreachable");
            }
        }
        match write_batch(&store, &mut held).await {
            Ok(()) => {
                wait = Duration::from_millis(250);
                wake.notify_one();
            }
            Err(()) => {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled() => {
                        flush_once(&store, &mut held).await;
                        return;
                    }
                }
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Outcomes gather for [`OUTCOME_LINGER`] and go in one transaction (a few commits a second
/// whatever the call rate, so calls' own writes seldom wait behind them); held while the store
/// is unreachable (at most [`BUFFER`], oldest dropped first); one more try at shutdown.
async fn outcome_loop(
    store: Store,
    mut rx: mpsc::UnboundedReceiver<Outcome>,
    stop: CancellationToken,
) {
    let mut held: Vec<Outcome> = Vec::new();
    let mut wait = OUTCOME_LINGER;
    loop {
        if held.is_empty() {
            tokio::select! {
                o = rx.recv() => match o {
                    Some(o) => held.push(o),
                    None => return,
                },
                _ = stop.cancelled() => {}
            }
        }
        if !stop.is_cancelled() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => {}
            }
        }
        while let Ok(o) = rx.try_recv() {
            held.push(o);
        }
        if held.len() > BUFFER {
            let drop = held.len() - BUFFER;
            held.drain(..drop);
            warn!(
                dropped = drop,
                "decision outcomes dropped: too many held while the store is unreachable"
            );
        }
        if !held.is_empty() {
            let mut rest = std::mem::take(&mut held);
            let mut result = Ok(());
            while !rest.is_empty() && result.is_ok() {
                let tail = rest.split_off(rest.len().min(OUTCOME_TX_ROWS));
                let chunk = rest;
                rest = tail;
                // Each transaction its own store call: calls' writes get the store between.
                result = match store.add_outcomes(&chunk).await {
                    Ok(()) => Ok(()),
                    Err(e) => Err((e, chunk)),
                };
            }
            match result {
                Ok(()) => wait = OUTCOME_LINGER,
                Err((StoreError::Unreachable(_), mut batch)) => {
                    batch.extend(rest);
                    held = batch;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err((e, mut batch)) => {
                    batch.extend(rest);
                    warn!(count = batch.len(), error = %e, "decision outcomes not kept: store error");
                }
            }
        }
        if stop.is_cancelled() {
            // One more try for what is held and what arrived meanwhile, then the end.
            rx.close();
            while let Ok(o) = rx.try_recv() {
                held.push(o);
            }
            if !held.is_empty() {
                let batch = std::mem::take(&mut held);
                let n = batch.len();
                let mut done = Ok(());
                for c in batch.chunks(OUTCOME_TX_ROWS) {
                    done = store.add_outcomes(c).await;
                    if done.is_err() {
                        break;
                    }
                }
                if done.is_err() {
                    warn!(
                        count = n,
                        "decision outcomes not kept at shutdown: the store is unreachable"
                    );
                }
            }
            return;
        }
    }
}

/// Shutdown: one more try for everything held; what stays unwritten is logged.
async fn flush_once(store: &Store, held: &mut VecDeque<Notice>) {
    while !held.is_empty() {
        if write_batch(store, held).await.is_err() {
            for n in held.drain(..) {
                metrics::inc(&METRICS.webhook_events_lost_total);
                error!(call_id = %printable(&n.call_id), account_id = %printable(&n.account_id), recording_id = %n.recording_id, event = n.event.as_str(), "webhook notice not queued at shutdown: the store is unreachable");
            }
        }
    }
}

/// Writes the first [`BATCH`] held notices. `Err`: the store is unreachable (they stay held);
/// any other store error drops them with a log line each (they would fail again).
async fn write_batch(store: &Store, held: &mut VecDeque<Notice>) -> Result<(), ()> {
    let batch: Vec<Notice> = held.iter().take(BATCH).cloned().collect();
    let result = events_for(store, &batch).await;
    let n = batch.len();
    match result {
        Ok(written) => {
            held.drain(..n);
            for (e, n) in written {
                metrics::inc(&METRICS.webhook_events_queued_total);
                info!(call_id = %printable(&n.call_id), account_id = %printable(&n.account_id), recording_id = %n.recording_id, webhook_id = %printable(&e.webhook_id), event = n.event.as_str(), webhook_msg_id = %e.id, "webhook event queued");
            }
            Ok(())
        }
        Err(StoreError::Unreachable(e)) => {
            warn!(held = held.len(), error = %e, "database unreachable: webhook notices held in memory until it returns");
            Err(())
        }
        Err(e) => {
            held.drain(..n);
            for n in &batch {
                metrics::inc(&METRICS.webhook_events_lost_total);
                error!(call_id = %printable(&n.call_id), account_id = %printable(&n.account_id), recording_id = %n.recording_id, event = n.event.as_str(), error = %e, "webhook notice not queued: store error");
            }
            Ok(())
        }
    }
}

/// The events of `batch` (one per subscribed, enabled webhook), written in one transaction.
async fn events_for(
    store: &Store,
    batch: &[Notice],
) -> Result<Vec<(NewHookEvent, Notice)>, StoreError> {
    let mut hooks: HashMap<&str, Vec<(String, webhook::WebhookSettings)>> = HashMap::new();
    let mut out = Vec::new();
    for n in batch {
        if !hooks.contains_key(n.account_id.as_str()) {
            let docs = store.list(Kind::Webhook, &n.account_id).await?;
            let parsed = docs
                .into_iter()
                .filter_map(|d| match webhook::parse(&d.body) {
                    Ok(w) => Some((d.id, w)),
                    Err(e) => {
                        warn!(account_id = %printable(&n.account_id), webhook_id = %printable(&d.id), error = %e, "stored webhook is not valid: skipped");
                        None
                    }
                })
                .collect();
            hooks.insert(&n.account_id, parsed);
        }
        let body = n.body();
        for (id, w) in hooks.get(n.account_id.as_str()).into_iter().flatten() {
            if w.wants(n.event) {
                out.push((
                    NewHookEvent {
                        id: format!("msg_{}", uuid::Uuid::new_v4().simple()),
                        account_id: n.account_id.clone(),
                        webhook_id: id.clone(),
                        event_type: n.event.as_str().to_string(),
                        recording_id: Some(n.recording_id.clone()),
                        body: body.clone(),
                    },
                    n.clone(),
                ));
            }
        }
    }
    let rows: Vec<NewHookEvent> = out.iter().map(|(e, _)| e.clone()).collect();
    store.add_hook_events(&rows).await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_type_timestamp_and_data() {
        let n = Notice {
            event: HookEvent::Started,
            account_id: "a".into(),
            call_id: "c".into(),
            recording_id: "r".into(),
            at_us: 1_614_265_330_500_000,
            data: json!({"recording_id": "r"}),
        };
        let v: Value = serde_json::from_str(&n.body()).unwrap();
        assert_eq!(
            v,
            json!({"type": "recording.started", "timestamp": "2021-02-25T15:02:10.5Z", "data": {"recording_id": "r"}})
        );
    }
}
