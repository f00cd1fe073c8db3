//! The IO around one call's [`Session`]: the socket, timers, the rules, the disk and delivery.
//! It performs the session's actions and feeds every result back as an input, in the order
//! the results arrive; it decides nothing itself.
//!
//! Invariants: every command gets exactly one reply input (its reply, or why none came within
//! `command_timeout`); the reader task of the [`Connection`] always drains the socket; the
//! driver returns only when the session says `Done`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info_span, warn, Instrument};

use super::live::LiveMsg;
use super::session::{Action, ControlOutcome, ControlRequest, Input, Session, Settings, Timer};
use crate::connection::{wait_reply, Connection, Incoming};
use crate::esl::{Command, Disposition, Limits};
use crate::inbound::{Followed, Link, LinkState};
use crate::recorder;
use crate::rules::{CallInfo, PartyVariables, Planner};
use crate::telemetry::printable;
use crate::uploader::Delivery;

/// What every call shares.
pub struct SessionContext {
    pub session: Settings,
    pub command_timeout: Duration,
    pub plan_timeout: Duration,
    pub limits: Limits,
    pub party_variables: PartyVariables,
    /// Peers allowed to connect.
    pub allow_peers: Vec<super::allow::PeerNet>,
    pub planner: Arc<dyn Planner>,
    pub delivery: Arc<dyn Delivery>,
    /// Cancelled when the shutdown deadline has passed: sessions stop waiting and leave what
    /// FreeSWITCH still records journaled.
    pub abort: CancellationToken,
    /// Cancelled when shutdown starts: background offers to delivery stop (the journal keeps
    /// their recordings).
    pub shutdown: CancellationToken,
    /// Tracks the calls' background work (offers to delivery), waited for on shutdown.
    pub background: tokio_util::task::TaskTracker,
    /// The event-socket link calls are followed over once handed back (`follow = "inbound"`).
    pub link: Option<Link>,
    /// The calls followed now, for the control API.
    pub live: Arc<super::live::LiveCalls>,
}

/// Runs one outbound connection to its end. Never panics on what FreeSWITCH sends.
pub async fn run(stream: TcpStream, ctx: Arc<SessionContext>) {
    let _ = stream.set_nodelay(true);
    let mut conn = Connection::new(stream, ctx.limits, 16 * 1024, super::session::needs);
    let data = match conn.channel_data(ctx.command_timeout).await {
        Ok(d) => d,
        Err(why) => {
            warn!(peer = %conn.peer, error = %why, "no channel data from FreeSWITCH; closing with resume");
            // FreeSWITCH may have taken `connect` and be slow to answer: with `resume` the call
            // goes on when the socket closes instead of staying parked.
            let _ = conn.send(&Command::Resume);
            conn.shutdown().await;
            return;
        }
    };
    let info = CallInfo::from_channel_data(&data, &ctx.party_variables);
    // The account is recorded once it is known: now when the channel names it, else when the
    // rules have identified it (or found none: "-"), so the field appears once on every line.
    let span = info_span!(
        "call",
        call_id = %printable(&info.call.call_id),
        account_id = tracing::field::Empty
    );
    if let Some(a) = &info.call.account_id {
        span.record("account_id", tracing::field::display(printable(a)));
    }
    let _enter = span.enter();
    let mut settings = ctx.session.clone();
    let link_rx = match (&ctx.link, &settings.follow_tag) {
        (Some(link), Some(_)) if link.state() == LinkState::Up => {
            Some(link.attach(&info.call.call_id))
        }
        (Some(link), Some(_)) => {
            crate::telemetry::metrics::inc(
                &crate::telemetry::metrics::METRICS.follow_fallbacks_total,
            );
            if link.note_fallback() {
                warn!("event-socket link down: calls are followed over their own sockets until it is back (logged once per outage)");
            }
            settings.follow_tag = None;
            None
        }
        _ => {
            settings.follow_tag = None;
            None
        }
    };
    let uuid = info.call.call_id.clone();
    drop(_enter);
    let api = ctx.live.register(&uuid, info.call.account_id.clone());
    let session = Session::new(info, settings);
    let link = ctx.link.clone().filter(|_| link_rx.is_some());
    drive(
        Some(conn),
        session,
        ctx.clone(),
        link.map(|l| (l, link_rx, uuid.clone())),
        api,
    )
    .instrument(span)
    .await;
    ctx.live.remove(&uuid);
}

/// A call's events from the link.
type Route = tokio::sync::mpsc::UnboundedReceiver<Followed>;

/// The link a call is followed over: the handle, its events, the call's UUID.
type FollowLink = (Link, Option<Route>, String);

/// Waits (the link's down grace at most) for the link to return, routes the call's events
/// again, then asks FreeSWITCH for the channel (`uuid_dump <uuid> json`): whether it still
/// exists, is answered, is bridged. Routing comes first, so no event falls between the two.
async fn resync_call(link: Link, uuid: String) -> (Option<Route>, Input) {
    let deadline = Instant::now() + link.down_grace;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !link.up_within(left).await {
            let why = format!(
                "the event-socket link stayed down for {} ms",
                link.down_grace.as_millis()
            );
            return (None, Input::Resynced(Err(why)));
        }
        let route = link.attach(&uuid);
        let Ok(text) = link.api(&format!("uuid_dump {uuid} json")).await else {
            // Lost again (or too slow) before the answer: try on the next connection.
            link.detach(&uuid);
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        return (
            Some(route),
            Input::Resynced(super::session::channel_dump(text)),
        );
    }
}

async fn drive(
    mut conn: Option<Connection>,
    mut session: Session,
    ctx: Arc<SessionContext>,
    mut link: Option<FollowLink>,
    mut api: tokio::sync::mpsc::UnboundedReceiver<Box<LiveMsg>>,
) {
    // Control requests waiting for FreeSWITCH's answer, by their id.
    let mut controls: HashMap<u64, tokio::sync::oneshot::Sender<ControlOutcome>> = HashMap::new();
    let mut next_control = 0u64;
    let mut known = (usize::MAX, None::<String>);
    let mut pending: FuturesUnordered<BoxFuture<'static, Input>> = FuturesUnordered::new();
    let mut timers: HashMap<Timer, Instant> = HashMap::new();
    let mut ready: VecDeque<Input> = VecDeque::new();
    let (mut reading, mut aborted) = (true, false);
    let mut actions: VecDeque<Action> = session.start().into();
    // At most one: waiting for the link to return, then the call's events and state.
    let mut resync: Option<BoxFuture<'static, (Option<Route>, Input)>> = None;
    loop {
        while let Some(action) = actions.pop_front() {
            match action {
                Action::Send(id, Command::Api(line)) if conn.is_none() => {
                    // Released: `api` commands go over the link.
                    match &link {
                        // Written on the shared connection now; the reply comes from its
                        // reader.
                        Some((l, _, _)) => match l.send_api(&line) {
                            Ok(rx) => {
                                let t = ctx.command_timeout;
                                pending.push(Box::pin(async move {
                                    let r = wait_reply(rx, t).await.map(|r| r.text());
                                    Input::Reply(
                                        id,
                                        r.map(|t| (t.starts_with("+OK"), t))
                                            .map_err(|e| e.to_string()),
                                    )
                                }));
                            }
                            Err(e) => ready.push_back(Input::Reply(id, Err(e.to_string()))),
                        },
                        None => ready.push_back(Input::Reply(id, Err("no connection".into()))),
                    }
                }
                Action::Send(id, _) if conn.is_none() => {
                    ready.push_back(Input::Reply(id, Err("the socket was released".into())))
                }
                Action::Send(id, cmd) => match conn.as_ref().map(|c| c.send(&cmd)) {
                    Some(sent) => match sent {
                        Ok(rx) => {
                            let t = ctx.command_timeout;
                            pending.push(Box::pin(async move {
                                let r = wait_reply(rx, t).await;
                                Input::Reply(
                                    id,
                                    r.map(|r| (r.is_ok(), r.text())).map_err(|e| e.to_string()),
                                )
                            }));
                        }
                        Err(e) => ready.push_back(Input::Reply(id, Err(e.to_string()))),
                    },
                    None => ready.push_back(Input::Reply(id, Err("no connection".into()))),
                },
                Action::Plan {
                    call,
                    bridge_target,
                } => {
                    let (planner, t) = (ctx.planner.clone(), ctx.plan_timeout);
                    pending.push(Box::pin(async move {
                        let result = match tokio::time::timeout(t, planner.plan(&call)).await {
                            Ok(r) => r.map_err(|e| e.to_string()),
                            Err(_) => Err(format!("no decision within {} ms", t.as_millis())),
                        };
                        Input::Planned {
                            bridge_target,
                            result,
                        }
                    }));
                }
                Action::SetTimer(t, after) => {
                    timers.insert(t, Instant::now() + after);
                }
                Action::CreateDir(dir) => {
                    if let Err(e) = tokio::fs::create_dir_all(&dir).await {
                        warn!(error = %e, dir = %dir.display(), "cannot create recording directory");
                    }
                }
                Action::Inspect {
                    rec,
                    path,
                    format,
                    measure,
                } => {
                    pending.push(Box::pin(async move {
                        let inspect = move || recorder::inspect(&path, format, measure);
                        let (size, duration_ms) = tokio::task::spawn_blocking(inspect)
                            .await
                            .unwrap_or_default();
                        Input::Inspected {
                            rec,
                            size,
                            duration_ms,
                        }
                    }));
                }
                Action::Delete(path) => {
                    if let Err(e) = tokio::fs::remove_file(&path).await {
                        error!(error = %e, path = %path.display(), "cannot delete discarded recording");
                    }
                }
                Action::Deliver(rec, finished) => {
                    let keep = (*finished).clone();
                    let result = ctx
                        .delivery
                        .accept(*finished)
                        .await
                        .map_err(|e| e.to_string());
                    if result.is_err() {
                        // The store could not take it (a full disk): delivery is offered it
                        // again in the background; the journal row covers a restart meanwhile.
                        ctx.background.spawn(crate::uploader::offer_until_taken(
                            ctx.delivery.clone(),
                            keep,
                            ctx.shutdown.clone(),
                        ));
                    }
                    ready.push_back(Input::Delivered { rec, result });
                }
                Action::Journal(entry) => {
                    let id = entry.rec.recording_id.clone();
                    if let Err(e) = ctx.delivery.journal(*entry).await {
                        // Recording goes on: losing the journal row only loses crash safety.
                        error!(recording_id = %id, error = %e, "cannot journal the recording");
                    }
                }
                Action::Forget(id) => ctx.delivery.forget(id).await,
                Action::Notify(event, rec, reason) => {
                    ctx.delivery.notify(event, &rec, reason.as_deref())
                }
                Action::Close => {
                    if let Some(c) = conn.as_mut() {
                        // The call is still parked in `socket`: without `resume` FreeSWITCH
                        // would leave it there (mod_event_socket's listener_run).
                        let _ = c.send(&Command::Resume);
                        c.shutdown().await;
                    }
                    reading = false;
                }
                // Everything is accounted for: FreeSWITCH closes the lingering socket.
                Action::Exit => {
                    if let Some(c) = conn.as_mut() {
                        c.exit(Duration::from_secs(2)).await;
                    }
                }
                // Handed back and followed over the link: the socket goes now, not at hangup.
                Action::Release => {
                    crate::telemetry::metrics::inc(
                        &crate::telemetry::metrics::METRICS.sockets_released_total,
                    );
                    if let Some(mut c) = conn.take() {
                        tokio::spawn(async move { c.exit(Duration::from_secs(2)).await });
                    }
                    reading = false;
                }
                Action::Resync => match &link {
                    Some((l, _, uuid)) => {
                        resync = Some(Box::pin(resync_call(l.clone(), uuid.clone())))
                    }
                    None => ready.push_back(Input::Resynced(Err("no event-socket link".into()))),
                },
                Action::ControlDone(id, outcome) => {
                    if let Some(tx) = controls.remove(&id) {
                        let _ = tx.send(outcome);
                    }
                }
                Action::Done => {
                    if let Some((l, _, uuid)) = &link {
                        l.detach(uuid);
                    }
                    for (_, tx) in controls.drain() {
                        let _ = tx.send(ControlOutcome::NoReply("the call ended".into()));
                    }
                    return;
                }
            }
        }
        let input = match ready.pop_front() {
            Some(i) => i,
            None => {
                let next_timer = timers
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(t, at)| (*t, *at));
                let from_link = async {
                    match link.as_mut().and_then(|(_, rx, _)| rx.as_mut()) {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                };
                let from_socket = async {
                    match conn.as_mut() {
                        Some(c) if reading => c.next().await,
                        _ => std::future::pending().await,
                    }
                };
                tokio::select! {
                    Some(i) = pending.next(), if !pending.is_empty() => i,
                    (route, i) = async {
                        match resync.as_mut() {
                            Some(f) => f.await,
                            None => std::future::pending().await,
                        }
                    }, if resync.is_some() => {
                        resync = None;
                        if let (Some((_, rx, _)), Some(route)) = (link.as_mut(), route) {
                            *rx = Some(route);
                        }
                        i
                    }
                    f = from_link => match f {
                        Some(Followed::Event(e)) => Input::Event(Arc::unwrap_or_clone(e)),
                        Some(Followed::Gone { .. }) => continue,
                        Some(Followed::LinkLost) | None => {
                            if let Some((_, rx, _)) = link.as_mut() {
                                *rx = None;
                            }
                            Input::LinkLost
                        }
                    },
                    inc = from_socket => match inc {
                        Some(Incoming::Event(e)) => Input::Event(e),
                        Some(Incoming::Disconnect(d)) if d.disposition() == Disposition::Disconnect => Input::Disconnected,
                        Some(Incoming::Disconnect(_)) => continue,
                        Some(Incoming::Closed(err)) => { reading = false; Input::Closed(err.map(|e| e.to_string())) }
                        None => { reading = false; Input::Closed(None) }
                    },
                    _ = sleep_until(next_timer.map(|(_, at)| at)) => match next_timer {
                        Some((t, _)) => { timers.remove(&t); Input::Timer(t) }
                        None => continue,
                    },
                    _ = ctx.abort.cancelled(), if !aborted => { aborted = true; reading = false; Input::Abort }
                    Some(msg) = api.recv() => match *msg {
                        LiveMsg::View(reply) => { let _ = reply.send(session.view()); continue; }
                        LiveMsg::Control { recording_id, want, by, reply } => {
                            next_control += 1;
                            controls.insert(next_control, reply);
                            Input::Control(ControlRequest {
                                id: next_control,
                                recording_id,
                                want,
                                by,
                                now_us: wall_us(),
                            })
                        }
                    },
                }
            }
        };
        actions.extend(session.handle(input));
        // What the API can reach: the account once identified, every planned recording.
        let n = session.recordings().len();
        if known.0 != n || known.1.as_deref() != session.info().call.account_id.as_deref() {
            known = (n, session.info().call.account_id.clone());
            ctx.live.update(
                &session.info().call.call_id,
                session.info().call.account_id.as_deref(),
                session.recordings().iter().map(|r| r.id.as_str()),
            );
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Now, µs since the epoch (the time a control request arrived).
fn wall_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
