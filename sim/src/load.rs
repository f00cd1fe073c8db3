//! A load generator: places calls at a steady rate against a controller, holds many at once,
//! and measures how long the controller takes from CHANNEL_ANSWER to `uuid_record`.
//!
//! Each call: dial (or run `dialplan`, whose `socket` dials) → wait for the hand-back
//! (`transfer` or `resume`) → answer → wait for `uuid_record` →
//! stay up for `hold` (wall clock) → `talk` of virtual audio → caller hangs up → wait for the
//! controller to close. Used by `callrec-lab` and by `benches/load.rs`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{dial, place, CallSpec, Dialplan};

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub target: SocketAddr,
    pub calls: usize,
    /// Calls placed per second.
    pub rate: f64,
    /// Wall time each call stays up after it is answered.
    pub hold: Duration,
    /// Virtual audio time per call (the recording's length).
    pub talk: Duration,
    /// Give up on a call step after this long.
    pub step_timeout: Duration,
    /// Extra channel variables for every call (e.g. `callrec_account_id`).
    pub variables: Vec<(String, String)>,
    /// Place the calls on this switch (its inbound event socket sees them).
    pub switch: Option<crate::Switch>,
    /// Run each call through this dialplan from context `public` (its `socket` actions name
    /// the controller) instead of dialling `target` straight away.
    pub dialplan: Option<Arc<Dialplan>>,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            target: SocketAddr::from(([127, 0, 0, 1], 8084)),
            calls: 100,
            rate: 20.0,
            hold: Duration::from_secs(5),
            talk: Duration::from_secs(1),
            step_timeout: Duration::from_secs(60),
            variables: vec![("callrec_account_id".into(), "lab".into())],
            switch: None,
            dialplan: None,
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub placed: usize,
    /// Connection refused or closed by the controller before `connect`.
    pub refused: usize,
    /// Handed back to the dialplan (`transfer`, or `resume` for the drop-in extension).
    pub handed_back: usize,
    /// `uuid_record` received after the answer.
    pub recorded: usize,
    /// Controller said `exit` after the hangup.
    pub completed: usize,
    pub timeouts: usize,
    /// CHANNEL_ANSWER written → `uuid_record` read, per recorded call.
    pub answer_to_record: Vec<Duration>,
    /// How long each call's outbound socket stayed open (placed → closed).
    pub socket_held: Vec<Duration>,
    /// Events written on the calls' own sockets, in all.
    pub socket_events: usize,
    pub peak_live: usize,
    pub elapsed: Duration,
}

/// The `q` quantile (0..=1) of `v`.
pub fn quantile(v: &[Duration], q: f64) -> Option<Duration> {
    let mut v = v.to_vec();
    if v.is_empty() {
        return None;
    }
    v.sort();
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v.get(i).copied()
}

impl LoadReport {
    /// The `q` quantile (0..=1) of answer→uuid_record latency.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let mut v = self.answer_to_record.clone();
        if v.is_empty() {
            return None;
        }
        v.sort();
        let i = ((v.len() - 1) as f64 * q).round() as usize;
        v.get(i).copied()
    }
}

/// Runs the load; `live` counts calls in progress (readable while it runs).
pub async fn run(cfg: LoadConfig, live: Arc<AtomicUsize>) -> LoadReport {
    let report = Arc::new(Mutex::new(LoadReport::default()));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(cfg.calls);
    let interval = Duration::from_secs_f64(1.0 / cfg.rate.max(0.001));
    let mut next = tokio::time::Instant::now();
    for i in 0..cfg.calls {
        tokio::time::sleep_until(next).await;
        next += interval;
        let cfg = cfg.clone();
        let report = report.clone();
        let live = live.clone();
        tasks.push(tokio::spawn(async move {
            let n = live.fetch_add(1, Ordering::Relaxed) + 1;
            if let Ok(mut r) = report.lock() {
                r.placed += 1;
                r.peak_live = r.peak_live.max(n);
            }
            one_call(i, &cfg, &report).await;
            live.fetch_sub(1, Ordering::Relaxed);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut r = report.lock().map(|r| r.clone()).unwrap_or_default();
    r.elapsed = start.elapsed();
    r
}

async fn one_call(i: usize, cfg: &LoadConfig, report: &Mutex<LoadReport>) {
    let bump = |f: fn(&mut LoadReport)| {
        if let Ok(mut r) = report.lock() {
            f(&mut r);
        }
    };
    let mut spec = CallSpec::new(&format!("1555{:07}", i % 10_000_000), "1000");
    for (k, v) in &cfg.variables {
        spec = spec.var(k, v);
    }
    let placed = match (&cfg.switch, &cfg.dialplan) {
        (Some(sw), Some(dp)) => Ok(sw.place(dp.clone(), spec)),
        (None, Some(dp)) => Ok(place(dp.clone(), spec)),
        (Some(sw), None) => sw.dial(cfg.target, spec).await,
        (None, None) => dial(cfg.target, spec).await,
    };
    let Ok(call) = placed else {
        bump(|r| r.refused += 1);
        return;
    };
    let t = cfg.step_timeout;
    let resumed = |r: &crate::CallReport| r.commands.iter().any(|c| c.line == "resume");
    let handed = tokio::time::timeout(
        t,
        call.wait_until(|r| {
            r.closed || r.transferred_to.is_some() || resumed(r) || r.sockets_refused > 0
        }),
    )
    .await;
    match handed {
        Ok(r) if r.transferred_to.is_some() || resumed(&r) => bump(|r| r.handed_back += 1),
        Ok(r) if r.commands.is_empty() => {
            bump(|r| r.refused += 1);
            return;
        }
        Ok(_) => return,
        Err(_) => {
            bump(|r| r.timeouts += 1);
            return;
        }
    }
    call.answer();
    let rec = tokio::time::timeout(t, call.wait_for_command("api uuid_record")).await;
    if let Ok(cmd) = rec {
        if let Some(answered) = call.report().answer_sent_at {
            let lat = cmd.received_at.saturating_duration_since(answered);
            if let Ok(mut r) = report.lock() {
                r.recorded += 1;
                r.answer_to_record.push(lat);
            }
        }
    }
    tokio::time::sleep(cfg.hold).await;
    call.advance(cfg.talk);
    call.hangup("NORMAL_CLEARING");
    match tokio::time::timeout(t, call.closed()).await {
        Ok(r) => {
            if let Ok(mut rep) = report.lock() {
                if r.app_exited {
                    rep.completed += 1;
                }
                rep.socket_events += r.events_sent.len();
                if let (Some(a), Some(b)) = (r.dialled_at, r.closed_at) {
                    rep.socket_held.push(b.saturating_duration_since(a));
                }
            }
        }
        Err(_) => bump(|r| r.timeouts += 1),
    }
}
