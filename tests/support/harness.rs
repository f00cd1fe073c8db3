//! A callrec server on a free loopback port with a scripted plan and a delivery that records
//! what it was given, for session tests against callrec-sim.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use callrec::app::Server;
use callrec::config::Config;
use callrec::rules::{CallInfo, Plan, PlanError, PlannedRecording, Planner, RecordCall};
use callrec::uploader::{Delivery, DeliveryError, FinishedRecording, LocalStore};
use futures::future::BoxFuture;

/// Plans the same recordings for every call, and remembers the calls it was asked about.
pub struct FixedPlanner {
    pub plans: Vec<RecordCall>,
    pub seen: Mutex<Vec<CallInfo>>,
    /// Simulates a slow settings store.
    pub delay: Mutex<Option<std::time::Duration>>,
}

impl FixedPlanner {
    pub fn set_delay(&self, d: std::time::Duration) {
        *self.delay.lock().unwrap() = Some(d);
    }
}

impl Planner for FixedPlanner {
    fn plan<'a>(&'a self, call: &'a CallInfo) -> BoxFuture<'a, Result<Plan, PlanError>> {
        if let Ok(mut s) = self.seen.lock() {
            s.push(call.clone());
        }
        let out: Vec<PlannedRecording> = self
            .plans
            .iter()
            .enumerate()
            .map(|(i, rc)| PlannedRecording::new(rc.clone(), format!("test plan {i}")))
            .collect();
        let delay = *self.delay.lock().unwrap();
        Box::pin(async move {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            Ok(out.into())
        })
    }
}

/// Stores locally (metadata JSON beside the file) and keeps a copy of each record.
#[derive(Default)]
pub struct Collect {
    pub got: Mutex<Vec<FinishedRecording>>,
}

impl Delivery for Collect {
    fn accept(&self, rec: FinishedRecording) -> BoxFuture<'_, Result<(), DeliveryError>> {
        Box::pin(async move {
            LocalStore.accept(rec.clone()).await?;
            if let Ok(mut g) = self.got.lock() {
                g.push(rec);
            }
            Ok(())
        })
    }
}

pub struct Harness {
    pub server: Option<Server>,
    /// The simulated switch calls are placed on when following over the link.
    pub switch: Option<callrec_sim::Switch>,
    pub addr: std::net::SocketAddr,
    pub planner: Arc<FixedPlanner>,
    pub delivery: Arc<Collect>,
    pub dir: tempfile::TempDir,
}

impl Harness {
    pub async fn start(plans: Vec<RecordCall>) -> Harness {
        Harness::start_with(plans, |_| {}).await
    }

    pub async fn start_with(plans: Vec<RecordCall>, tweak: impl FnOnce(&mut Config)) -> Harness {
        Harness::start_in(plans, tweak, super::follow::inbound()).await
    }

    /// A harness that follows calls over the event-socket link whatever `FOLLOW_MODE` says.
    pub async fn start_linked(plans: Vec<RecordCall>, tweak: impl FnOnce(&mut Config)) -> Harness {
        Harness::start_in(plans, tweak, true).await
    }

    /// A harness that follows calls over the link (`inbound`) or over their sockets.
    pub async fn start_mode(
        plans: Vec<RecordCall>,
        tweak: impl FnOnce(&mut Config),
        inbound: bool,
    ) -> Harness {
        Harness::start_in(plans, tweak, inbound).await
    }

    async fn start_in(
        plans: Vec<RecordCall>,
        tweak: impl FnOnce(&mut Config),
        inbound: bool,
    ) -> Harness {
        callrec::telemetry::init(false);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_path_buf(),
            record_stop_grace_ms: 300,
            disk_poll_ms: 20,
            shutdown_grace_ms: 2_000,
            ..Config::default()
        };
        let switch = super::follow::configure_mode(&mut config, inbound).await;
        tweak(&mut config);
        let planner = Arc::new(FixedPlanner {
            plans,
            seen: Mutex::new(vec![]),
            delay: Mutex::new(None),
        });
        let delivery = Arc::new(Collect::default());
        let server = Server::start(config, planner.clone(), delivery.clone())
            .await
            .expect("server starts");
        super::follow::link_up(&server).await;
        Harness {
            switch,
            addr: server.addr,
            server: Some(server),
            planner,
            delivery,
            dir,
        }
    }

    /// Places a call on this harness's FreeSWITCH.
    pub async fn dial(
        &self,
        spec: callrec_sim::CallSpec,
    ) -> std::io::Result<callrec_sim::CallHandle> {
        super::follow::dial(&self.switch, self.addr, spec).await
    }

    /// Places a call that runs `dialplan` on this harness's FreeSWITCH (its `socket` actions
    /// name the controller themselves).
    pub fn place(
        &self,
        dialplan: std::sync::Arc<callrec_sim::Dialplan>,
        spec: callrec_sim::CallSpec,
    ) -> callrec_sim::CallHandle {
        match &self.switch {
            Some(sw) => sw.place(dialplan, spec),
            None => callrec_sim::place(dialplan, spec),
        }
    }

    /// Waits until the call's socket is closed and callrec has finished with every call (over
    /// the link the socket closes right after the hand-back, long before the call ends).
    pub async fn closed(&self, call: &callrec_sim::CallHandle) -> callrec_sim::CallReport {
        call.closed().await;
        self.idle().await;
        call.report()
    }

    /// Waits until no call is in progress.
    pub async fn idle(&self) {
        if let Some(s) = &self.server {
            tokio::time::timeout(std::time::Duration::from_secs(30), async {
                while s.live_calls() > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            })
            .await
            .expect("every call finished");
        }
    }

    /// Calls are followed over the event-socket link in this run.
    pub fn link_mode(&self) -> bool {
        self.switch.is_some()
    }

    pub fn delivered(&self) -> Vec<FinishedRecording> {
        self.delivery.got.lock().unwrap().clone()
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every file under the recordings tree.
    pub fn files(&self) -> Vec<PathBuf> {
        fn walk(p: &Path, out: &mut Vec<PathBuf>) {
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    let path = e.path();
                    if path.is_dir() {
                        walk(&path, out);
                    } else {
                        out.push(path);
                    }
                }
            }
        }
        let mut v = vec![];
        walk(&self.dir.path().join("recordings"), &mut v);
        v.sort();
        v
    }

    pub async fn shutdown(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

/// A WAV `record_call` with `extra` applied (the session tests' usual rule).
pub fn wav(extra: impl FnOnce(&mut RecordCall)) -> RecordCall {
    let mut rc = RecordCall {
        format: callrec::rules::AudioFormat::Wav,
        ..RecordCall::default()
    };
    extra(&mut rc);
    rc
}
