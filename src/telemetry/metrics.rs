//! Process-wide counters, served in the Prometheus text format at `GET /metrics` (admin token).
//!
//! Invariant: counters only go up; gauges are set. Cheap enough for hot paths (relaxed atomics).

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! metrics {
    ($($name:ident : $kind:literal, $help:literal;)*) => {
        /// All of callrec's metrics.
        #[derive(Default)]
        pub struct Metrics {
            $(pub $name: AtomicU64,)*
        }

        impl Metrics {
            /// Prometheus text exposition.
            pub fn render(&self) -> String {
                let mut s = String::new();
                $(
                    s.push_str(concat!("# HELP callrec_", stringify!($name), " ", $help, "\n"));
                    s.push_str(concat!("# TYPE callrec_", stringify!($name), " ", $kind, "\n"));
                    s.push_str(&format!(concat!("callrec_", stringify!($name), " {}\n"), self.$name.load(Ordering::Relaxed)));
                )*
                s
            }
        }
    };
}

metrics! {
    calls_accepted_total: "counter", "Calls FreeSWITCH handed to callrec.";
    calls_refused_total: "counter", "Connections closed at once (max_calls reached, or a peer outside allow_peers).";
    events_dropped_total: "counter", "Events a lagging call did not need, dropped because its queue was full.";
    calls_live: "gauge", "Calls being followed now.";
    recordings_started_total: "counter", "Recordings FreeSWITCH confirmed (RECORD_START).";
    recordings_kept_total: "counter", "Recordings handed to delivery.";
    recordings_discarded_total: "counter", "Recordings deleted (empty, or shorter than record_min_sec).";
    recordings_failed_total: "counter", "Recordings that could not be made (refused, no reply, lost).";
    uploads_delivered_total: "counter", "Deliveries that got a 2xx.";
    uploads_retried_total: "counter", "Attempts that failed and will be retried.";
    uploads_failed_total: "counter", "Deliveries that became failed (dead letter).";
    webhook_events_queued_total: "counter", "Webhook events written to the queue (one per subscribed webhook).";
    webhook_events_lost_total: "counter", "Webhook events dropped before reaching the queue (the in-memory buffer was full, or the store refused them).";
    decisions_kept_total: "counter", "Decision records kept (one per call the planner decided on).";
    decisions_lost_total: "counter", "Decision records dropped (the store refused them, or too many were held while it was unreachable).";
    decisions_pruned_total: "counter", "Decision records removed by retention (age or row bound).";
    webhooks_sent_total: "counter", "Webhook events a receiver answered with a 2xx.";
    webhooks_retried_total: "counter", "Webhook attempts that failed and will be retried.";
    webhooks_failed_total: "counter", "Webhook events given up on (dead letter).";
    orphaned_files: "gauge", "Recording files the spool did not know at the last start.";
    recordings_readopted_total: "counter", "Journaled recordings of a previous run finished after a restart (kept or discarded).";
    recordings_regrown_total: "counter", "Recordings judged final from a quiet file that grew afterwards and were delivered again whole.";
    follow_fallbacks_total: "counter", "Calls followed over their own socket because the event-socket link was down.";
    sockets_released_total: "counter", "Outbound sockets let go right after the hand-back (calls followed over the link).";
    esl_link_up: "gauge", "1 while the inbound event socket link to FreeSWITCH is up.";
    esl_link_losses_total: "counter", "Times the inbound event socket link was lost after being up.";
    freeswitch_restarts_total: "counter", "FreeSWITCH restarts seen by the link (Core-UUID changed).";
    disk_low: "gauge", "1 while the recordings directory has less free space than min_free_mb (or cannot be checked).";
    disk_low_total: "counter", "Times the recordings directory went below min_free_mb.";
    recordings_erased_total: "counter", "Recordings erased by retention (kept past their account's limit).";
    recordings_erased_on_request_total: "counter", "Recordings erased through the API or the CLI.";
}

/// Bytes of recording files on this node's disk per account directory, as of the last
/// retention pass (`callrec_local_bytes{account}`).
static LOCAL_BYTES: std::sync::Mutex<std::collections::BTreeMap<String, u64>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Replaces the per-account local bytes.
pub fn set_local_bytes(by_account: std::collections::BTreeMap<String, u64>) {
    if let Ok(mut m) = LOCAL_BYTES.lock() {
        *m = by_account;
    }
}

/// The control API's actions, counted per action (`callrec_recording_controls_total{action}`).
pub const CONTROL_ACTIONS: [&str; 3] = ["pause", "resume", "stop"];
static CONTROLS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

/// One control FreeSWITCH took (`pause`, `resume` or `stop`).
pub fn control(action: &str) {
    if let Some(i) = CONTROL_ACTIONS.iter().position(|a| *a == action) {
        CONTROLS[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// The labelled series, in the Prometheus text format.
pub fn render_labelled() -> String {
    let mut s = String::from(
        "# HELP callrec_recording_controls_total Recording controls FreeSWITCH took, by action.\n# TYPE callrec_recording_controls_total counter\n",
    );
    for (a, c) in CONTROL_ACTIONS.iter().zip(CONTROLS.iter()) {
        s.push_str(&format!(
            "callrec_recording_controls_total{{action=\"{a}\"}} {}\n",
            c.load(Ordering::Relaxed)
        ));
    }
    s.push_str("# HELP callrec_local_bytes Bytes of recording files on this node's disk, by account directory (last retention pass).\n# TYPE callrec_local_bytes gauge\n");
    if let Ok(m) = LOCAL_BYTES.lock() {
        for (account, bytes) in m.iter() {
            // Account directories are already made safe for paths; quotes and backslashes
            // cannot occur in them, but escape anyway.
            let a = account.replace('\\', "\\\\").replace('"', "\\\"");
            s.push_str(&format!("callrec_local_bytes{{account=\"{a}\"}} {bytes}\n"));
        }
    }
    s
}

/// The process's metrics.
pub static METRICS: std::sync::LazyLock<Metrics> = std::sync::LazyLock::new(Metrics::default);

pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub fn dec(c: &AtomicU64) {
    c.fetch_sub(1, Ordering::Relaxed);
}

pub fn set(c: &AtomicU64, v: u64) {
    c.store(v, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        inc(&m.calls_accepted_total);
        set(&m.orphaned_files, 3);
        let s = m.render();
        assert!(s.contains(
            "# TYPE callrec_calls_accepted_total counter\ncallrec_calls_accepted_total 1\n"
        ));
        assert!(s.contains("callrec_orphaned_files 3\n"));
    }
}
