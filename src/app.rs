//! Wires the services together for `callrec serve` and runs them until a shutdown signal.
//!
//! Shutdown: stop accepting calls, let live calls finish for `shutdown_grace_ms`, then tell the
//! remaining sessions to finish their recordings from disk, and exit.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::admin::{self, ApiState};
use crate::config::Config;
use crate::outbound::{listener, SessionContext};
use crate::rules::planner::DocumentPlanner;
use crate::rules::Planner;
use crate::store::Store;
use crate::uploader::Delivery;

/// A running server (used by `callrec serve` and by tests).
pub struct Server {
    pub addr: std::net::SocketAddr,
    stop: CancellationToken,
    abort: CancellationToken,
    tracker: TaskTracker,
    accept_task: tokio::task::JoinHandle<()>,
    grace: Duration,
    link: Option<crate::inbound::Link>,
    live: Arc<crate::outbound::live::LiveCalls>,
}

impl Server {
    /// Binds the listener and starts accepting calls.
    pub async fn start(
        config: Config,
        planner: Arc<dyn Planner>,
        delivery: Arc<dyn Delivery>,
    ) -> anyhow::Result<Server> {
        let live = Arc::new(crate::outbound::live::LiveCalls::default());
        Server::start_with(config, planner, delivery, live).await
    }

    /// [`Server::start`] with the registry of live calls the API reaches them through.
    pub async fn start_with(
        config: Config,
        planner: Arc<dyn Planner>,
        delivery: Arc<dyn Delivery>,
        live: Arc<crate::outbound::live::LiveCalls>,
    ) -> anyhow::Result<Server> {
        config.validate()?;
        std::fs::create_dir_all(config.data_dir.join("recordings")).with_context(|| {
            format!(
                "cannot create {}",
                config.data_dir.join("recordings").display()
            )
        })?;
        let sock = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = sock.local_addr()?;
        let stop = CancellationToken::new();
        let abort = CancellationToken::new();
        let tracker = TaskTracker::new();
        let grace = Duration::from_millis(config.shutdown_grace_ms);
        // One long-lived connection to FreeSWITCH's event socket, when configured: calls are
        // followed over it once handed back, and journaled recordings are re-adopted over it.
        let link = config.link_config().map(crate::inbound::Link::start);
        let ctx = Arc::new(SessionContext {
            session: config.session_settings(),
            command_timeout: config.command_timeout(),
            plan_timeout: Duration::from_millis(config.plan_timeout_ms),
            limits: config.limits(),
            party_variables: config.party_variables(),
            allow_peers: config.allow_peers.clone(),
            planner,
            delivery,
            abort: abort.clone(),
            shutdown: stop.clone(),
            background: tracker.clone(),
            link: link.clone(),
            live: live.clone(),
        });
        let accept_task = tokio::spawn(listener::serve(
            sock,
            ctx,
            config.max_calls,
            stop.clone(),
            tracker.clone(),
        ));
        info!(%addr, "listening for FreeSWITCH outbound sockets");
        Ok(Server {
            link,
            live,
            addr,
            stop,
            abort,
            tracker,
            accept_task,
            grace,
        })
    }

    /// The event-socket link, when `freeswitch_esl` is set.
    pub fn link(&self) -> Option<crate::inbound::Link> {
        self.link.clone()
    }

    /// The calls followed now (what the control API reaches).
    pub fn live(&self) -> Arc<crate::outbound::live::LiveCalls> {
        self.live.clone()
    }

    /// Calls in progress.
    pub fn live_calls(&self) -> usize {
        self.tracker.len()
    }

    /// Graceful shutdown.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.accept_task.await;
        self.tracker.close();
        info!(
            live_calls = self.tracker.len(),
            "no longer accepting calls; waiting for live calls"
        );
        if tokio::time::timeout(self.grace, self.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                live_calls = self.tracker.len(),
                "shutdown grace over; finishing recordings from disk"
            );
            self.abort.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(10), self.tracker.wait()).await;
        }
        info!("stopped");
    }
}

/// Opens the configured store for this node: the PostgreSQL database of `database_url`, or the
/// SQLite file in the data directory (creating both if needed).
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    let store = match &config.database_url {
        Some(url) => {
            Store::connect_with_local(url, config.database_ca_file.as_deref(), &config.data_dir)
                .await
                .with_context(|| {
                    format!(
                        "cannot open the database {} (local journal in {})",
                        crate::uploader::url::redact(url),
                        config.data_dir.display()
                    )
                })?
        }
        None => Store::open(&config.data_dir)
            .with_context(|| format!("cannot open the store in {}", config.data_dir.display()))?,
    };
    Ok(store.for_node(&config.node_id).await?)
}

/// The upload service, running.
pub struct Uploads {
    pub delivery: Arc<crate::uploader::worker::SpoolDelivery>,
    stop: CancellationToken,
    tracker: TaskTracker,
    task: tokio::task::JoinHandle<()>,
}

impl Uploads {
    /// Recovers the spool (deliveries a crash left `uploading` go back to `pending`), reports
    /// recordings on disk that the spool does not know, and starts the upload loop.
    pub async fn start(config: &Config, store: Store) -> anyhow::Result<Uploads> {
        use crate::uploader::{http::Http, worker};
        let recovered = store.recover_deliveries().await?;
        if recovered > 0 {
            info!(
                recovered,
                "uploads interrupted by a restart are pending again"
            );
        }
        // The scan may take a while on a large tree: it must not delay taking calls.
        let s = store.clone();
        let dir = config.data_dir.join("recordings");
        tokio::spawn(async move {
            match crate::uploader::orphans(&s, &dir).await {
                Ok(orphans) => {
                    crate::telemetry::metrics::set(
                        &crate::telemetry::metrics::METRICS.orphaned_files,
                        orphans.len() as u64,
                    );
                    for p in orphans.iter().take(20) {
                        warn!(path = %p.display(), "recording file unknown to the spool; adopt it with `callrec recordings adopt`");
                    }
                    if !orphans.is_empty() {
                        warn!(count = orphans.len(), "orphaned recording files found");
                    }
                }
                Err(e) => warn!(error = %e, "cannot scan for orphaned recordings"),
            }
        });
        let http = Arc::new(Http::new(config.http_config())?);
        let wake = Arc::new(tokio::sync::Notify::new());
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        // Webhooks: the notices' writer and the sender, stopped with the uploads.
        let hooks_recovered = store.recover_hook_events().await?;
        if hooks_recovered > 0 {
            info!(
                recovered = hooks_recovered,
                "webhook events interrupted by a restart are pending again"
            );
        }
        // Its own handle: on SQLite a connection of its own, so the API's reads never wait
        // behind a retention batch (WAL readers do not wait for the writer).
        let retention_store = match store.backend() {
            "sqlite" => open_store(config).await?,
            _ => store.clone(),
        };
        tracker.spawn(crate::uploader::retention::run(
            retention_store,
            config.retention_config(),
            stop.clone(),
        ));
        let hooks_wake = Arc::new(tokio::sync::Notify::new());
        let notices = crate::hooks::Notifier::start(
            store.clone(),
            hooks_wake.clone(),
            stop.clone(),
            &tracker,
        );
        tracker.spawn(crate::hooks::sender::run(
            store.clone(),
            config.webhook_config(),
            hooks_wake,
            stop.clone(),
            tracker.clone(),
        ));
        let task = tokio::spawn(worker::run(
            store.clone(),
            http,
            worker::WorkerConfig {
                concurrency: config.upload_concurrency,
                keep_local_after_upload: config.keep_local_after_upload,
                notices: Some(notices.clone()),
            },
            wake.clone(),
            stop.clone(),
            tracker.clone(),
        ));
        Ok(Uploads {
            delivery: Arc::new(worker::SpoolDelivery {
                store,
                wake,
                tail: crate::uploader::tail::TailSettings {
                    poll: Duration::from_millis(config.disk_poll_ms.clamp(10, 10_000)),
                    write_buffer: config.record_write_buffer_bytes,
                    keep_local_after_upload: config.keep_local_after_upload,
                },
                stop: stop.clone(),
                notices: Some(notices),
            }),
            stop,
            tracker,
            task,
        })
    }

    /// Stops starting uploads; gives running ones `grace`, the rest stay in the spool.
    pub async fn shutdown(self, grace: Duration) {
        self.stop.cancel();
        let _ = self.task.await;
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            warn!("uploads still running at shutdown stay in the spool and resume at next start");
        }
    }
}

/// Moves the local journal's recordings to the shared database whenever it holds some and the
/// database answers (see [`crate::store`]'s fallback).
async fn move_local_journal(store: Store) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        if !store.has_local() {
            continue;
        }
        match store.move_local_to_database().await {
            Ok(_) => {}
            Err(crate::store::StoreError::Unreachable(_)) => {}
            Err(e) => {
                warn!(error = %e, "cannot move locally journaled recordings to the database")
            }
        }
    }
}

/// `callrec serve`: runs until SIGINT/SIGTERM.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    config.validate()?;
    let store = open_store(&config).await?;
    store.hold_node().await?;
    // Recordings a previous run journaled locally (the database was down, or the node used
    // SQLite before) move to the database in the background (`move_local_journal`, first at
    // once); the journal taken up at start-up reads the local file too, so none waits on it.
    info!(
        backend = store.backend(),
        node_id = store.node(),
        "store open"
    );
    // On a shared database the other nodes forward requests for this node's live recordings
    // to its API.
    let api_url = config.advertised_api_url();
    match store.register_api(&api_url).await {
        Ok(()) => {}
        Err(e) => {
            warn!(error = %e, "cannot record this node's API address: other nodes cannot reach its live recordings")
        }
    }
    match crate::rules::planner::report_invalid_documents(&store).await {
        Ok(0) => {}
        Ok(n) => warn!(
            count = n,
            "stored documents with settings that do not parse"
        ),
        Err(e) => warn!(error = %e, "cannot check the stored documents"),
    }
    // Every call's decision record, written off the call's path (the console explains calls
    // from it); stopped after the calls, so the last ones are kept.
    let decisions_stop = CancellationToken::new();
    let decisions_tracker = tokio_util::task::TaskTracker::new();
    let decisions = crate::rules::decision_log::DecisionLog::start(
        store.clone(),
        decisions_stop.clone(),
        &decisions_tracker,
    );
    let planner: Arc<dyn Planner> = Arc::new(DocumentPlanner {
        store: store.clone(),
        global: config.global_rule(),
        memory: Default::default(),
        decisions: Some(Arc::new(decisions)),
    });
    let api_stop = CancellationToken::new();
    let api_listener = TcpListener::bind(config.api_listen)
        .await
        .with_context(|| format!("cannot listen on {} (api_listen)", config.api_listen))?;
    let readiness = Arc::new(admin::Readiness {
        listener_up: std::sync::atomic::AtomicBool::new(false),
        recordings_dir: config.data_dir.join("recordings"),
        min_free_bytes: config.min_free_mb.saturating_mul(1024 * 1024),
    });
    std::fs::create_dir_all(&readiness.recordings_dir)
        .with_context(|| format!("cannot create {}", readiness.recordings_dir.display()))?;
    // Low space in the recordings directory is logged when it starts and ends (a metric too).
    // With a shared database: recordings journaled locally while it was unreachable move to it
    // as soon as it answers (checked every 2 s, one indexed query when there is nothing).
    let local_mover = tokio::spawn(move_local_journal(store.clone()));
    let space_watch = tokio::spawn(crate::recorder::space::watch(
        readiness.recordings_dir.clone(),
        readiness.min_free_bytes,
        Duration::from_millis(config.disk_poll_ms.clamp(10, 10_000)),
    ));
    let live = Arc::new(crate::outbound::live::LiveCalls::default());
    let api = tokio::spawn(admin::serve(
        api_listener,
        ApiState {
            store: store.clone(),
            readiness: Some(readiness.clone()),
            live: Some(live.clone()),
            policy: config.destination_policy,
            links: Default::default(),
        },
        api_stop.clone(),
    ));
    let uploads = Uploads::start(&config, store.clone()).await?;
    // Files a previous run judged final from disk that FreeSWITCH may still write: watched
    // again until it cannot.
    let watches = uploads.delivery.clone();
    tokio::spawn(async move {
        let n = watches.resume_watches().await;
        if n > 0 {
            info!(
                count = n,
                "recordings FreeSWITCH may still write (judged from disk before the restart): watching them again"
            );
        }
    });
    // Recordings a previous run journaled but never finished (it died mid-call): FreeSWITCH
    // kept recording them; finish them from their files, in the background.
    let watch = crate::supervisor::Watch {
        poll: Duration::from_millis(config.disk_poll_ms.max(10)),
    };
    let delivery: Arc<dyn Delivery> = uploads.delivery.clone();
    let server =
        Server::start_with(config, planner, uploads.delivery.clone(), live.clone()).await?;
    match crate::supervisor::readopt(&store, delivery, watch, server.link(), Some(server.live()))
        .await
    {
        Ok(0) => {}
        Ok(n) => info!(
            count = n,
            "recordings journaled by a previous run: taking them up again"
        ),
        Err(e) => warn!(error = %e, "cannot read the recording journal"),
    }
    readiness
        .listener_up
        .store(true, std::sync::atomic::Ordering::Relaxed);
    wait_for_signal().await;
    readiness
        .listener_up
        .store(false, std::sync::atomic::Ordering::Relaxed);
    info!("shutdown requested");
    server.shutdown().await;
    decisions_stop.cancel();
    decisions_tracker.close();
    decisions_tracker.wait().await;
    uploads.shutdown(Duration::from_secs(5)).await;
    api_stop.cancel();
    let _ = api.await;
    space_watch.abort();
    local_mover.abort();
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
