//! The decision log: keeps every call's decision record (from the planner) in the store, off the
//! call's path. [`DecisionLog::keep`] never waits; one writer task writes records in batches.
//!
//! Invariants: records are written in the order they were made, gathered for at most
//! [`LINGER`] (a few transactions a second, whatever the call rate); while the store cannot be
//! reached they wait in memory (at most [`BUFFER`], oldest dropped first, drops logged with the
//! call's id and counted); on shutdown the writer tries once more with what it holds. A record
//! is explanation, not a recording: losing one never touches a call or a file.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, warn};

use super::decision::{Decision, DecisionSink};
use crate::store::decisions::NewDecision;
use crate::store::{Store, StoreError};
use crate::telemetry::metrics::{self, METRICS};
use crate::telemetry::printable;

/// Records held while the store is unreachable.
pub const BUFFER: usize = 50_000;

/// Records gathered before they are written without waiting out [`LINGER`].
const BATCH: usize = 512;

/// Records per store transaction: small, so a call's own write (its journal row) never waits
/// behind more than a fraction of a millisecond of these.
const TX_ROWS: usize = 4;

/// How long records gather before they are written.
const LINGER: Duration = Duration::from_millis(250);

/// Hands decision records to the writer; cheap to clone.
#[derive(Clone, Debug)]
pub struct DecisionLog {
    tx: mpsc::UnboundedSender<Decision>,
}

impl DecisionLog {
    /// Starts the writer on `tracker`; it ends after `stop`, once it has tried to write what
    /// it holds.
    pub fn start(store: Store, stop: CancellationToken, tracker: &TaskTracker) -> DecisionLog {
        let (tx, rx) = mpsc::unbounded_channel();
        tracker.spawn(write_loop(store, rx, stop));
        DecisionLog { tx }
    }
}

impl DecisionSink for DecisionLog {
    fn keep(&self, d: Decision) {
        if self.tx.send(d).is_err() {
            metrics::inc(&METRICS.decisions_lost_total);
        }
    }
}

fn row(d: &Decision) -> NewDecision {
    NewDecision {
        id: uuid::Uuid::new_v4().simple().to_string(),
        call_id: d.call_id.clone(),
        account_id: d.account_id.clone(),
        created_us: d.at_us,
        caller: d.caller.number.clone(),
        callee: d.callee.number.clone(),
        planned: d.planned.len() as u32,
        body: serde_json::to_string(d).unwrap_or_else(|_| "{}".into()),
    }
}

async fn write_loop(
    store: Store,
    mut rx: mpsc::UnboundedReceiver<Decision>,
    stop: CancellationToken,
) {
    let mut held: VecDeque<NewDecision> = VecDeque::new();
    let mut wait = Duration::from_millis(250);
    loop {
        if held.is_empty() {
            tokio::select! {
                d = rx.recv() => match d {
                    Some(d) => held.push_back(row(&d)),
                    None => return,
                },
                _ = stop.cancelled() => {
                    rx.close();
                    while let Ok(d) = rx.try_recv() {
                        held.push_back(row(&d));
                    }
                    let _ = write_batch(&store, &mut held, true).await;
                    return;
                }
            }
        }
        // Records gather for a moment and go in one transaction: a few commits a second however
        // many calls arrive, so calls' own writes (the journal) seldom wait behind them.
        if held.len() < BATCH {
            tokio::select! {
                _ = tokio::time::sleep(LINGER) => {}
                _ = stop.cancelled() => {}
            }
        }
        while let Ok(d) = rx.try_recv() {
            held.push_back(row(&d));
        }
        while held.len() > BUFFER {
            if let Some(d) = held.pop_front() {
                metrics::inc(&METRICS.decisions_lost_total);
                error!(call_id = %printable(&d.call_id), account_id = %printable(d.account_id.as_deref().unwrap_or("-")), "decision record dropped: too many held while the store is unreachable");
            }
        }
        if write_batch(&store, &mut held, false).await.is_ok() {
            wait = Duration::from_millis(250);
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => {
                let _ = write_batch(&store, &mut held, true).await;
                return;
            }
        }
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

/// Writes every held record, [`TX_ROWS`] per transaction. `Err`: the store is unreachable (they
/// stay held, or at shutdown (`all`) are logged as lost); any other store error drops that
/// transaction's records with a log line each (they would fail again).
async fn write_batch(store: &Store, held: &mut VecDeque<NewDecision>, all: bool) -> Result<(), ()> {
    loop {
        let batch: Vec<NewDecision> = held.iter().take(TX_ROWS).cloned().collect();
        if batch.is_empty() {
            return Ok(());
        }
        let n = batch.len();
        match store.add_decisions(&batch).await {
            Ok(()) => {
                held.drain(..n);
                for _ in 0..n {
                    metrics::inc(&METRICS.decisions_kept_total);
                }
            }
            Err(StoreError::Unreachable(e)) => {
                if all {
                    for d in held.drain(..) {
                        metrics::inc(&METRICS.decisions_lost_total);
                        error!(call_id = %printable(&d.call_id), "decision record not kept at shutdown: the store is unreachable");
                    }
                } else {
                    warn!(held = held.len(), error = %e, "database unreachable: decision records held in memory until it returns");
                }
                return Err(());
            }
            Err(e) => {
                held.drain(..n);
                for d in &batch {
                    metrics::inc(&METRICS.decisions_lost_total);
                    error!(call_id = %printable(&d.call_id), error = %e, "decision record not kept: store error");
                }
            }
        }
    }
}
