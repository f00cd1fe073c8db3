//! The inbound link: callrec's one long-lived connection to FreeSWITCH's event socket
//! (`freeswitch_esl`, `event_socket.conf.xml`), through which calls are followed by UUID.
//!
//! A [`Link`] is a handle; one task owns the connection. It connects, authenticates, subscribes
//! to `event json RECORD_STOP CHANNEL_HANGUP_COMPLETE` and, before anything is followed, sets a
//! filter no event matches, so FreeSWITCH serialises nothing for callrec but the events of the
//! calls it follows (mod_event_socket: with filters set, only events matching one are sent).
//! [`Link::follow`] adds `filter Unique-ID <uuid>` and asks `api uuid_exists <uuid>` (a call a
//! previous run journaled). Live calls are followed without a per-call command: their session
//! sets the channel variable `callrec_follow` to this node's tag, one `filter
//! variable_callrec_follow <tag>` lets all of them through, and [`Link::attach`] routes each
//! call's events to its session; `api` commands for followed calls go over the link too.
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
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::connection::{Connection, Incoming, Reply};
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
    Follow {
        uuid: String,
        tx: mpsc::UnboundedSender<Followed>,
    },
    /// A live session's call: events dispatched by UUID, no command sent (the session set the
    /// follow variable on the channel itself).
    Attach {
        uuid: String,
        tx: mpsc::UnboundedSender<Followed>,
    },
    Unfollow(String),
    Api {
        command: String,
        reply: oneshot::Sender<Result<String, LinkError>>,
    },
}

/// A handle on the link; cheap to clone.
#[derive(Clone)]
pub struct Link {
    tx: mpsc::UnboundedSender<Request>,
    state: watch::Receiver<LinkState>,
    pub down_grace: Duration,
}

impl Link {
    /// Starts the link's task.
    pub fn start(cfg: LinkConfig) -> Link {
        let (tx, rx) = mpsc::unbounded_channel();
        let (state_tx, state) = watch::channel(LinkState::Connecting);
        let down_grace = cfg.down_grace;
        tokio::spawn(run(cfg, rx, state_tx));
        Link {
            tx,
            state,
            down_grace,
        }
    }

    /// Follows a call: its RECORD_STOP and CHANNEL_HANGUP_COMPLETE, or that it is gone.
    pub fn follow(&self, uuid: &str) -> mpsc::UnboundedReceiver<Followed> {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = self.tx.send(Request::Follow {
            uuid: uuid.to_string(),
            tx,
        });
        rx
    }

    pub fn unfollow(&self, uuid: &str) {
        let _ = self.tx.send(Request::Unfollow(uuid.to_string()));
    }

    /// Dispatches a live call's events (filtered in by its follow variable) to the receiver,
    /// until [`detach`](Self::detach) or [`Followed::LinkLost`].
    pub fn attach(&self, uuid: &str) -> mpsc::UnboundedReceiver<Followed> {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = self.tx.send(Request::Attach {
            uuid: uuid.to_string(),
            tx,
        });
        rx
    }

    /// Stops routing an attached call's events ([`unfollow`](Self::unfollow) serves both).
    pub fn detach(&self, uuid: &str) {
        self.unfollow(uuid)
    }

    /// Runs an `api` command over the link; its response body.
    pub async fn api(&self, command: &str) -> Result<String, LinkError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Api {
                command: command.to_string(),
                reply,
            })
            .map_err(|_| LinkError::Down)?;
        rx.await.map_err(|_| LinkError::Down)?
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

type Follows = HashMap<String, mpsc::UnboundedSender<Followed>>;

/// Live sessions' calls (no filter of their own, gone with the link).
type Attached = HashMap<String, mpsc::UnboundedSender<Followed>>;

async fn run(
    cfg: LinkConfig,
    mut rx: mpsc::UnboundedReceiver<Request>,
    state: watch::Sender<LinkState>,
) {
    let mut follows: Follows = HashMap::new();
    let mut attached: Attached = HashMap::new();
    let mut backoff = Duration::from_millis(100);
    let mut core: Option<String> = None;
    let mut outage_logged = false;
    loop {
        match open(&cfg).await {
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
                info!(freeswitch = %cfg.addr, following = follows.len(), "event socket link up");
                backoff = Duration::from_millis(100);
                let _ = state.send(LinkState::Up);
                crate::telemetry::metrics::set(&crate::telemetry::metrics::METRICS.esl_link_up, 1);
                let why = serve(
                    &cfg,
                    &mut conn,
                    &mut follows,
                    &mut attached,
                    &mut rx,
                    restarted,
                )
                .await;
                let _ = state.send(LinkState::Down);
                // Their events may have been missed: the sessions fall back to their files.
                for (_, tx) in attached.drain() {
                    let _ = tx.send(Followed::LinkLost);
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
        // Wait out the backoff while still taking requests.
        let sleep = tokio::time::sleep(backoff);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                r = rx.recv() => match r {
                    None => return,
                    Some(Request::Follow { uuid, tx }) => { follows.insert(uuid, tx); }
                    Some(Request::Attach { tx, .. }) => { let _ = tx.send(Followed::LinkLost); }
                    Some(Request::Unfollow(uuid)) => { follows.remove(&uuid); attached.remove(&uuid); }
                    Some(Request::Api { reply, .. }) => { let _ = reply.send(Err(LinkError::Down)); }
                },
            }
        }
        backoff = (backoff * 2).min(cfg.backoff_max);
    }
}

/// Connects, authenticates, subscribes; returns the connection and FreeSWITCH's Core-UUID.
async fn open(cfg: &LinkConfig) -> Result<(Connection, String), String> {
    let t = cfg.command_timeout;
    let stream = tokio::time::timeout(t, TcpStream::connect(&cfg.addr))
        .await
        .map_err(|_| format!("connect timed out after {t:?}"))?
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let mut conn = Connection::new(stream, cfg.limits, 64 * 1024);
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
    follows: &mut Follows,
    attached: &mut Attached,
    rx: &mut mpsc::UnboundedReceiver<Request>,
    restarted: bool,
) -> Result<(), String> {
    let t = cfg.command_timeout;
    // Everything followed before this connection: filter it again and check it still exists.
    let uuids: Vec<String> = follows.keys().cloned().collect();
    for uuid in uuids {
        add(conn, follows, &uuid, t, restarted).await?;
    }
    // `api` commands are pipelined: FreeSWITCH answers in order, and events keep flowing while
    // replies are awaited.
    type ApiWait = futures::future::BoxFuture<'static, Result<(), String>>;
    let mut replies: futures::stream::FuturesUnordered<ApiWait> = Default::default();
    loop {
        tokio::select! {
            inc = conn.next() => match inc {
                Some(Incoming::Event(e)) => dispatch(follows, attached, e),
                Some(Incoming::Disconnect(_)) => return Err("FreeSWITCH sent a disconnect notice".into()),
                Some(Incoming::Closed(Some(e))) => return Err(format!("protocol error: {e}")),
                Some(Incoming::Closed(None)) | None => return Err("connection closed".into()),
            },
            Some(r) = futures::StreamExt::next(&mut replies), if !replies.is_empty() => r?,
            r = rx.recv() => match r {
                None => return Ok(()),
                Some(Request::Follow { uuid, tx }) => {
                    follows.insert(uuid.clone(), tx);
                    add(conn, follows, &uuid, t, false).await?;
                }
                Some(Request::Attach { uuid, tx }) => {
                    attached.insert(uuid, tx);
                }
                Some(Request::Unfollow(uuid)) => {
                    attached.remove(&uuid);
                    if follows.remove(&uuid).is_some() {
                        let cmd = Command::FilterDelete { header: "Unique-ID".into(), value: Some(uuid) };
                        conn.request(&cmd, t).await.map_err(|e| format!("filter delete: {e}"))?;
                    }
                }
                Some(Request::Api { command, reply }) => {
                    match conn.send(&Command::Api(command)).await {
                        Ok(wait) => replies.push(Box::pin(async move {
                            match crate::connection::wait_reply(wait, t).await {
                                Ok(r) => {
                                    let _ = reply.send(Ok(r.text()));
                                    Ok(())
                                }
                                // A slow command fails alone: its late reply keeps its place
                                // and is dropped. A closed connection ends the link.
                                Err(e @ crate::connection::ConnError::Timeout(_)) => {
                                    let _ = reply.send(Err(LinkError::Failed(e.to_string())));
                                    Ok(())
                                }
                                Err(e) => {
                                    let _ = reply.send(Err(LinkError::Failed(e.to_string())));
                                    Err(format!("api: {e}"))
                                }
                            }
                        })),
                        Err(crate::connection::ConnError::Command(e)) => {
                            let _ = reply.send(Err(LinkError::Failed(e.to_string())));
                        }
                        Err(e) => {
                            let _ = reply.send(Err(LinkError::Failed(e.to_string())));
                            return Err(format!("api: {e}"));
                        }
                    }
                }
            },
        }
    }
}

/// Filters a followed call in and checks it exists; a missing call is reported gone.
async fn add(
    conn: &mut Connection,
    follows: &mut Follows,
    uuid: &str,
    t: Duration,
    restarted: bool,
) -> Result<(), String> {
    let cmd = Command::Filter {
        header: "Unique-ID".into(),
        value: uuid.to_string(),
    };
    if let Err(e) = cmd.validate() {
        // A UUID that cannot be a command argument names no call FreeSWITCH has.
        warn!(call_id = %crate::telemetry::printable(uuid), error = %e, "cannot follow this call id");
        if let Some(tx) = follows.remove(uuid) {
            let _ = tx.send(Followed::Gone { restarted });
        }
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
        if let Some(tx) = follows.remove(uuid) {
            let _ = tx.send(Followed::Gone { restarted });
        }
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

fn dispatch(follows: &mut Follows, attached: &mut Attached, e: Event) {
    let Some(uuid) = e.get("Unique-ID").map(|u| u.into_owned()) else {
        return;
    };
    let e = Arc::new(e);
    if let Some(tx) = attached.get(&uuid) {
        if tx.send(Followed::Event(e.clone())).is_err() {
            attached.remove(&uuid);
        }
    }
    if let Some(tx) = follows.get(&uuid) {
        if tx.send(Followed::Event(e)).is_err() {
            follows.remove(&uuid);
        }
    }
}
