//! The inbound link: callrec's one long-lived connection to FreeSWITCH's event socket
//! (`freeswitch_esl`, `event_socket.conf.xml`), through which calls are followed by UUID.
//!
//! A [`Link`] is a handle; one task owns the connection. It connects, authenticates, subscribes
//! to `event json` of the five [`LINK_EVENTS`] and, before anything is followed, sets a
//! filter no event matches, so FreeSWITCH serialises nothing for callrec but the events of the
//! calls it follows (mod_event_socket: with filters set, only events matching one are sent).
//! [`Link::follow`] adds `filter Unique-ID <uuid>` and asks `api uuid_exists <uuid>` (a call a
//! previous run journaled). Live calls are followed without a per-call command: their session
//! sets the channel variable `callrec_follow` to this node's tag, one `filter
//! variable_callrec_follow <tag>` lets all of them through, and [`Link::attach`] routes each
//! call's events to its session; `api` commands for followed calls go over the link too.
//! Neither takes a hop through the link's task: the connection's reader routes each event to
//! its follower, and a session writes its commands on the shared connection itself
//! ([`Link::send_api`]), its reply coming straight back from the reader.
//!
//! Invariants:
//! - the link reconnects for ever, with backoff doubling from 100 ms to `backoff_max`; an outage
//!   is logged once when it starts and once when it ends, never per attempt;
//! - every followed UUID is re-filtered and re-checked with `uuid_exists` on every (re)connect,
//!   so a call that ended while the link was down is reported [`Followed::Gone`], never waited
//!   for in vain; a changed `Core-UUID` means FreeSWITCH restarted, and it is logged and reported;
//! - events reach a follower in FreeSWITCH's order; a follower's channel never blocks the link;
//! - the password never reaches a log line; no value from the network is unwrapped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::connection::{wait_reply, Commander, Connection, Incoming, Reply, Router};
use crate::esl::{Command, EventFormat, Limits};
use crate::event::Event;

/// Matches no channel: keeps FreeSWITCH from serialising events nobody follows.
const NO_CALL: &str = "00000000-0000-0000-0000-000000000000";

/// Where and how to reach the event socket.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    pub addr: String,
    pub password: String,
    pub command_timeout: Duration,
    pub backoff_max: Duration,
    /// How long a follower keeps waiting while the link is down.
    pub down_grace: Duration,
    pub limits: Limits,
    /// Calls whose `callrec_follow` variable has this value are followed over the link (the
    /// sessions set it; one filter for them all). `None`: no call is followed that way.
    pub follow_tag: Option<String>,
}

/// The channel variable a session sets so that the link receives the call's events.
pub const FOLLOW_VARIABLE: &str = "callrec_follow";

/// The events the link subscribes to: what a session or a re-adoption acts on, nothing more.
pub const LINK_EVENTS: [&str; 5] = [
    "CHANNEL_ANSWER",
    "CHANNEL_BRIDGE",
    "CHANNEL_HANGUP_COMPLETE",
    "RECORD_START",
    "RECORD_STOP",
];

/// What a follower receives about its call.
#[derive(Debug)]
pub enum Followed {
    /// RECORD_STOP or CHANNEL_HANGUP_COMPLETE of the call.
    Event(Arc<Event>),
    /// FreeSWITCH says the call does not exist (any more).
    Gone {
        /// FreeSWITCH restarted since the link last saw it.
        restarted: bool,
    },
    /// The link was lost: events of an attached call may have been missed.
    LinkLost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Connecting,
    Up,
    Down,
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the event socket link is down")]
    Down,
    #[error("no answer from FreeSWITCH: {0}")]
    Failed(String),
}

enum Request {
    /// Filter the call in and check it exists (the route is already in place).
    Follow(String),
    /// Delete the call's filter (the route is already gone).
    Unfollow(String),
}

type Tx = mpsc::UnboundedSender<Followed>;

/// Who receives which call's events. Shared by the handles, the link's task and the
/// connection's reader, which routes each event without a task hop.
#[derive(Default)]
struct Routes {
    /// Calls followed with a filter of their own (re-adopted recordings).
    follows: HashMap<String, Tx>,
    /// Live sessions' calls: no filter of their own, gone with the connection.
    attached: HashMap<String, Tx>,
    /// The connection is up: a call attached now will see its events.
    up: bool,
}

type SharedRoutes = Arc<Mutex<Routes>>;

/// A handle on the link; cheap to clone.
#[derive(Clone)]
pub struct Link {
    tx: mpsc::UnboundedSender<Request>,
    state: watch::Receiver<LinkState>,
    routes: SharedRoutes,
    /// Writes on the current connection; `None` while it is down.
    commander: Arc<Mutex<Option<Commander>>>,
    /// A call was followed over its own socket during the current outage (cleared when the
    /// link is up again): one log line per outage.
    fallback_noted: Arc<AtomicBool>,
    command_timeout: Duration,
    pub down_grace: Duration,
}

impl Link {
    /// Starts the link's task.
    pub fn start(cfg: LinkConfig) -> Link {
        let (tx, rx) = mpsc::unbounded_channel();
        let (state_tx, state) = watch::channel(LinkState::Connecting);
        let routes = SharedRoutes::default();
        let commander = Arc::new(Mutex::new(None));
        let fallback_noted = Arc::new(AtomicBool::new(false));
        let link = Link {
            tx,
            state,
            routes: routes.clone(),
            commander: commander.clone(),
            fallback_noted: fallback_noted.clone(),
            command_timeout: cfg.command_timeout,
            down_grace: cfg.down_grace,
        };
        tokio::spawn(run(cfg, rx, state_tx, routes, commander, fallback_noted));
        link
    }

    /// Notes that a call is followed over its own socket because the link is down: true for
    /// the first such call of the current outage.
    pub fn note_fallback(&self) -> bool {
        !self.fallback_noted.swap(true, Ordering::Relaxed)
    }

    /// Follows a call: its RECORD_STOP and CHANNEL_HANGUP_COMPLETE, or that it is gone.
    pub fn follow(&self, uuid: &str) -> mpsc::UnboundedReceiver<Followed> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut r) = self.routes.lock() {
            r.follows.insert(uuid.to_string(), tx);
        }
        let _ = self.tx.send(Request::Follow(uuid.to_string()));
        rx
    }

    /// Stops following or routing the call.
    pub fn unfollow(&self, uuid: &str) {
        let filtered = match self.routes.lock() {
            Ok(mut r) => {
                r.attached.remove(uuid);
                r.follows.remove(uuid).is_some()
            }
            Err(_) => false,
        };
        if filtered {
            let _ = self.tx.send(Request::Unfollow(uuid.to_string()));
        }
    }

    /// Dispatches a live call's events (filtered in by its follow variable) to the receiver,
    /// until [`detach`](Self::detach) or [`Followed::LinkLost`] (at once when the link is
    /// not up).
    pub fn attach(&self, uuid: &str) -> mpsc::UnboundedReceiver<Followed> {
        let (tx, rx) = mpsc::unbounded_channel();
        match self.routes.lock() {
            Ok(mut r) if r.up => {
                r.attached.insert(uuid.to_string(), tx);
            }
            _ => {
                let _ = tx.send(Followed::LinkLost);
            }
        }
        rx
    }

    /// Stops routing an attached call's events ([`unfollow`](Self::unfollow) serves both).
    pub fn detach(&self, uuid: &str) {
        self.unfollow(uuid)
    }

    /// Sends an `api` command over the link now, without a task hop; the receiver gets the
    /// response (FreeSWITCH answers a connection's commands in order).
    pub fn send_api(&self, command: &str) -> Result<oneshot::Receiver<Reply>, LinkError> {
        let commander = self
            .commander
            .lock()
            .ok()
            .and_then(|c| c.clone())
            .ok_or(LinkError::Down)?;
        commander
            .send(&Command::Api(command.to_string()))
            .map_err(|e| LinkError::Failed(e.to_string()))
    }

    /// Runs an `api` command over the link; its response body. A slow command fails alone
    /// after the command timeout: its late reply keeps its place and is dropped.
    pub async fn api(&self, command: &str) -> Result<String, LinkError> {
        let rx = self.send_api(command)?;
        wait_reply(rx, self.command_timeout)
            .await
            .map(|r| r.text())
            .map_err(|e| LinkError::Failed(e.to_string()))
    }

    /// Whether the link is up, or comes up within `wait`.
    pub async fn up_within(&self, wait: Duration) -> bool {
        let mut st = self.state.clone();
        let up = async {
            loop {
                if *st.borrow_and_update() == LinkState::Up {
                    return true;
                }
                if st.changed().await.is_err() {
                    return false;
                }
            }
        };
        tokio::time::timeout(wait, up).await.unwrap_or(false)
    }

    pub fn state(&self) -> LinkState {
        *self.state.borrow()
    }

    /// Resolves once the link has been down (or never up) for `grace` without a break.
    pub async fn down_for(&self, grace: Duration) {
        let mut st = self.state.clone();
        loop {
            while *st.borrow_and_update() == LinkState::Up {
                if st.changed().await.is_err() {
                    return;
                }
            }
            let deadline = tokio::time::Instant::now() + grace;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => return,
                    r = st.changed() => {
                        if r.is_err() {
                            return;
                        }
                        // Failed reconnects re-announce `Down`; only `Up` ends the outage.
                        if *st.borrow_and_update() == LinkState::Up {
                            break;
                        }
                    }
                }
            }
        }
    }
}

async fn run(
    cfg: LinkConfig,
    mut rx: mpsc::UnboundedReceiver<Request>,
    state: watch::Sender<LinkState>,
    routes: SharedRoutes,
    commander: Arc<Mutex<Option<Commander>>>,
    fallback_noted: Arc<AtomicBool>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut core: Option<String> = None;
    let mut outage_logged = false;
    loop {
        match open(&cfg, &routes).await {
            Ok((mut conn, this_core)) => {
                let restarted = core.as_ref().is_some_and(|c| *c != this_core);
                if restarted {
                    warn!(
                        freeswitch = %cfg.addr,
                        "FreeSWITCH restarted (new Core-UUID): its calls are gone; their recordings are finished from their files"
                    );
                    crate::telemetry::metrics::inc(
                        &crate::telemetry::metrics::METRICS.freeswitch_restarts_total,
                    );
                }
                core = Some(this_core);
                let following = match routes.lock() {
                    Ok(mut r) => {
                        r.up = true;
                        r.follows.len()
                    }
                    Err(_) => 0,
                };
                if let Ok(mut c) = commander.lock() {
                    *c = Some(conn.commander());
                }
                info!(freeswitch = %cfg.addr, following, "event socket link up");
                fallback_noted.store(false, Ordering::Relaxed);
                backoff = Duration::from_millis(100);
                let _ = state.send(LinkState::Up);
                crate::telemetry::metrics::set(&crate::telemetry::metrics::METRICS.esl_link_up, 1);
                let why = serve(&cfg, &mut conn, &routes, &mut rx, restarted).await;
                if let Ok(mut c) = commander.lock() {
                    *c = None;
                }
                let _ = state.send(LinkState::Down);
                // Their events may have been missed: the sessions follow their calls again once
                // the link is back (or, past the grace, judge them from their files).
                if let Ok(mut r) = routes.lock() {
                    r.up = false;
                    for (_, tx) in r.attached.drain() {
                        let _ = tx.send(Followed::LinkLost);
                    }
                }
                crate::telemetry::metrics::set(&crate::telemetry::metrics::METRICS.esl_link_up, 0);
                match why {
                    Ok(()) => return,
                    Err(e) => {
                        warn!(freeswitch = %cfg.addr, error = %e, "event socket link lost; reconnecting");
                        crate::telemetry::metrics::inc(
                            &crate::telemetry::metrics::METRICS.esl_link_losses_total,
                        );
                        outage_logged = true;
                    }
                }
            }
            Err(e) => {
                let _ = state.send(LinkState::Down);
                if !outage_logged {
                    warn!(
                        freeswitch = %cfg.addr,
                        error = %e,
                        "cannot reach FreeSWITCH's event socket; retrying with backoff (logged once per outage)"
                    );
                    outage_logged = true;
                }
            }
        }
        // Wait out the backoff; follows asked for meanwhile are filtered on the reconnect.
        let sleep = tokio::time::sleep(backoff);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                r = rx.recv() => if r.is_none() { return },
            }
        }
        backoff = (backoff * 2).min(cfg.backoff_max);
    }
}

/// Connects, authenticates, subscribes; returns the connection and FreeSWITCH's Core-UUID.
async fn open(cfg: &LinkConfig, routes: &SharedRoutes) -> Result<(Connection, String), String> {
    let t = cfg.command_timeout;
    let stream = tokio::time::timeout(t, TcpStream::connect(&cfg.addr))
        .await
        .map_err(|_| format!("connect timed out after {t:?}"))?
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let r = routes.clone();
    let router: Router = Arc::new(move |e| {
        dispatch(&r, e);
        None
    });
    // Every event is routed to its follower on the reader; none waits in the queue.
    let mut conn = Connection::with_router(
        stream,
        cfg.limits,
        64 * 1024,
        Some(router),
        crate::connection::all_needed,
    );
    let auth = Command::Auth {
        password: cfg.password.clone(),
    };
    match conn.request(&auth, t).await {
        Ok(r) if r.is_ok() => {}
        Ok(r) => {
            return Err(format!(
                "FreeSWITCH refused the password ({}); check freeswitch_password against event_socket.conf.xml",
                crate::telemetry::printable(&r.text())
            ))
        }
        Err(e) => return Err(format!("auth: {e}")),
    }
    let mut setup = vec![
        Command::Event {
            format: EventFormat::Json,
            events: LINK_EVENTS.iter().map(|e| e.to_string()).collect(),
        },
        Command::Filter {
            header: "Unique-ID".into(),
            value: NO_CALL.into(),
        },
    ];
    if let Some(tag) = &cfg.follow_tag {
        setup.push(Command::Filter {
            header: format!("variable_{FOLLOW_VARIABLE}"),
            value: tag.clone(),
        });
    }
    for cmd in &setup {
        match conn.request(cmd, t).await {
            Ok(r) if r.is_ok() => {}
            Ok(r) => {
                return Err(format!(
                    "setup refused: {}",
                    crate::telemetry::printable(&r.text())
                ))
            }
            Err(e) => return Err(format!("setup: {e}")),
        }
    }
    let core = match conn
        .request(&Command::Api("global_getvar core_uuid".into()), t)
        .await
    {
        Ok(Reply::Api(a)) => a.text().trim().to_string(),
        Ok(_) => String::new(),
        Err(e) => return Err(format!("global_getvar: {e}")),
    };
    Ok((conn, core))
}

/// Runs one connection until it fails (`Err`) or every handle is gone (`Ok`).
async fn serve(
    cfg: &LinkConfig,
    conn: &mut Connection,
    routes: &SharedRoutes,
    rx: &mut mpsc::UnboundedReceiver<Request>,
    restarted: bool,
) -> Result<(), String> {
    let t = cfg.command_timeout;
    // Everything followed before this connection: filter it again and check it still exists.
    let uuids: Vec<String> = match routes.lock() {
        Ok(r) => r.follows.keys().cloned().collect(),
        Err(_) => Vec::new(),
    };
    for uuid in uuids {
        add(conn, routes, &uuid, t, restarted).await?;
    }
    loop {
        tokio::select! {
            // Events are routed by the reader; only the end of the connection comes here.
            inc = conn.next() => match inc {
                Some(Incoming::Event(_)) => {}
                Some(Incoming::Disconnect(_)) => return Err("FreeSWITCH sent a disconnect notice".into()),
                Some(Incoming::Closed(Some(e))) => return Err(format!("protocol error: {e}")),
                Some(Incoming::Closed(None)) | None => return Err("connection closed".into()),
            },
            r = rx.recv() => match r {
                None => return Ok(()),
                Some(Request::Follow(uuid)) => add(conn, routes, &uuid, t, false).await?,
                Some(Request::Unfollow(uuid)) => {
                    let cmd = Command::FilterDelete { header: "Unique-ID".into(), value: Some(uuid) };
                    if cmd.validate().is_ok() {
                        conn.request(&cmd, t).await.map_err(|e| format!("filter delete: {e}"))?;
                    }
                }
            },
        }
    }
}

/// Filters a followed call in and checks it exists; a missing call is reported gone.
async fn add(
    conn: &mut Connection,
    routes: &SharedRoutes,
    uuid: &str,
    t: Duration,
    restarted: bool,
) -> Result<(), String> {
    let gone = |routes: &SharedRoutes| {
        if let Some(tx) = routes.lock().ok().and_then(|mut r| r.follows.remove(uuid)) {
            let _ = tx.send(Followed::Gone { restarted });
        }
    };
    let cmd = Command::Filter {
        header: "Unique-ID".into(),
        value: uuid.to_string(),
    };
    if let Err(e) = cmd.validate() {
        // A UUID that cannot be a command argument names no call FreeSWITCH has.
        warn!(call_id = %crate::telemetry::printable(uuid), error = %e, "cannot follow this call id");
        gone(routes);
        return Ok(());
    }
    conn.request(&cmd, t)
        .await
        .map_err(|e| format!("filter: {e}"))?;
    let exists = conn
        .request(&Command::Api(format!("uuid_exists {uuid}")), t)
        .await
        .map_err(|e| format!("uuid_exists: {e}"))?;
    if exists.text() != "true" {
        gone(routes);
        let del = Command::FilterDelete {
            header: "Unique-ID".into(),
            value: Some(uuid.to_string()),
        };
        conn.request(&del, t)
            .await
            .map_err(|e| format!("filter delete: {e}"))?;
    }
    Ok(())
}

/// Runs on the connection's reader: hands the event to whoever follows its call.
fn dispatch(routes: &SharedRoutes, e: Event) {
    let Some(uuid) = e.get("Unique-ID").map(|u| u.into_owned()) else {
        return;
    };
    let Ok(mut r) = routes.lock() else { return };
    let e = Arc::new(e);
    if let Some(tx) = r.attached.get(&uuid) {
        if tx.send(Followed::Event(e.clone())).is_err() {
            r.attached.remove(&uuid);
        }
    }
    if let Some(tx) = r.follows.get(&uuid) {
        if tx.send(Followed::Event(e)).is_err() {
            r.follows.remove(&uuid);
        }
    }
}
