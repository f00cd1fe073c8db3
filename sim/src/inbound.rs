//! One inbound event-socket connection, as mod_event_socket serves it (`inbound-*.txt`): the
//! `auth/request` greeting, `auth`, then `api`/`bgapi` against any channel, `event`, `filter`,
//! `sendmsg <uuid>`, `exit`; events of every call of the switch, interleaved.
//!
//! Invariants:
//! - before a good `auth`, every command but `auth` and `exit` gets `-ERR command not found`; a
//!   wrong password gets `-ERR invalid`, the disconnect notice, and the socket closes;
//! - a reply is written before any event that follows its command (events wait while a command
//!   is being answered), as the captures show;
//! - an event is written only when subscribed and let through by the filters, with
//!   `event_handler`'s rules: with any filter set, an event passes only if some `+` filter's
//!   header equals its value (case-insensitive; `/regex/` not modelled) and no `-` filter matches;
//! - `bgapi` results are BACKGROUND_JOB events on the switch's bus (no `Job-Owner-UUID`), so a
//!   connection not subscribed to BACKGROUND_JOB never sees them, as captured.

use std::sync::Arc;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::broadcast::error::RecvError;

use crate::bus::{BusEvent, Shared};
use crate::call::{read_command, Subscriptions};
use crate::clock::{date_gmt, date_local, wall_us};
use crate::wire::{self, Headers};

struct Listener {
    authed: bool,
    sub: Subscriptions,
    /// `filter` headers in the order added: (name, value).
    filters: Vec<(String, String)>,
}

impl Listener {
    /// mod_event_socket's filter check for one event.
    fn passes(&self, h: &Headers) -> bool {
        if self.filters.is_empty() {
            return true;
        }
        let mut send = false;
        for (name, raw) in &self.filters {
            let Some((_, hval)) = h.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) else {
                continue;
            };
            let mut pos = true;
            let mut v = raw.as_str();
            while let Some(c) = v.chars().next() {
                match c {
                    '+' => pos = true,
                    '-' => pos = false,
                    ' ' => {}
                    _ => break,
                }
                v = &v[1..];
            }
            if send && pos {
                continue;
            }
            if hval.eq_ignore_ascii_case(v) {
                if pos {
                    send = true;
                } else {
                    return false;
                }
            }
        }
        send
    }
}

pub(crate) async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    shared.listener_opened();
    let mut bus = shared.bus.subscribe();
    let mut kill = shared.kill.subscribe();
    let mut reload = shared.reload.subscribe();
    let (rd, mut w) = stream.into_split();
    let mut reader = BufReader::new(rd);
    let mut l = Listener {
        authed: false,
        sub: Subscriptions::default(),
        filters: Vec::new(),
    };
    if w.write_all(wire::AUTH_REQUEST).await.is_ok() {
        loop {
            tokio::select! {
                biased;
                _ = kill.changed() => break,
                _ = reload.changed() => {
                    let _ = w.write_all(&wire::inbound_disconnect_notice()).await;
                    break;
                }
                cmd = read_command(&mut reader) => {
                    let Ok(Some(cmd)) = cmd else { break };
                    match command(&mut l, &shared, cmd).await {
                        Step::Write(bytes) => {
                            if w.write_all(&bytes).await.is_err() {
                                break;
                            }
                        }
                        Step::Close(bytes) => {
                            let _ = w.write_all(&bytes).await;
                            break;
                        }
                    }
                }
                // Always drained: an event is judged by the subscription in force when it comes.
                ev = bus.recv() => match ev {
                    Ok(ev) => {
                        if let Some(bytes) = deliver(&l, &ev) {
                            if let Ok(mut s) = shared.stats.lock() {
                                s.events_sent += 1;
                            }
                            if w.write_all(&bytes).await.is_err() {
                                break;
                            }
                            if ev.name == "CHANNEL_ANSWER" {
                                let uuid = ev.headers.iter().find(|(k, _)| k == "Unique-ID");
                                if let Some((_, uuid)) = uuid {
                                    shared.wrote(uuid, &ev.name, std::time::Instant::now());
                                }
                            }
                        }
                    }
                    // FreeSWITCH drops events for a listener whose queue is full.
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break,
                },
            }
        }
    }
    let _ = w.shutdown().await;
    shared.listener_closed();
}

fn deliver(l: &Listener, ev: &BusEvent) -> Option<Vec<u8>> {
    if !l.authed || !l.sub.wants(&ev.name) || !l.passes(&ev.headers) {
        return None;
    }
    Some(l.sub.serialize(&ev.headers, ev.body.as_deref()))
}

enum Step {
    Write(Vec<u8>),
    Close(Vec<u8>),
}

async fn command(l: &mut Listener, shared: &Arc<Shared>, cmd: crate::wire::Command) -> Step {
    let line = cmd.line.trim_end().to_string();
    if let Ok(mut s) = shared.stats.lock() {
        s.commands.push(line.clone());
    }
    let lower = line.to_ascii_lowercase();
    let word = lower.split(' ').next().unwrap_or("").to_string();
    if word == "exit" {
        let mut out = wire::reply("+OK bye");
        out.extend(wire::inbound_disconnect_notice());
        return Step::Close(out);
    }
    if !l.authed {
        if let Some(pass) = line.strip_prefix("auth ") {
            if pass == shared.password {
                l.authed = true;
                return Step::Write(wire::reply("+OK accepted"));
            }
            if let Ok(mut s) = shared.stats.lock() {
                s.auth_failures += 1;
            }
            let mut out = wire::reply("-ERR invalid");
            out.extend(wire::inbound_disconnect_notice());
            return Step::Close(out);
        }
        return Step::Write(wire::reply("-ERR command not found"));
    }
    let text = match word.as_str() {
        "api" => {
            let rest = line.get(4..).unwrap_or("").to_string();
            let body = shared.api(&rest, false, cmd.received_at).await;
            return Step::Write(wire::api_response(&body));
        }
        "bgapi" => {
            let rest = line.get(6..).unwrap_or("").to_string();
            let job = cmd.job_uuid();
            let received_at = cmd.received_at;
            let sh = shared.clone();
            let j = job.clone();
            tokio::spawn(async move {
                let body = sh.api(&rest, true, received_at).await;
                let (api_cmd, arg) = rest.split_once(' ').unwrap_or((rest.as_str(), ""));
                let now = wall_us();
                let mut h: Headers = vec![
                    ("Event-Name".into(), "BACKGROUND_JOB".into()),
                    ("Core-UUID".into(), sh.core_uuid()),
                    ("FreeSWITCH-Hostname".into(), "vm".into()),
                    ("FreeSWITCH-Switchname".into(), "vm".into()),
                    ("FreeSWITCH-IPv4".into(), "192.0.2.2".into()),
                    ("FreeSWITCH-IPv6".into(), "fd00::2".into()),
                    ("Event-Date-Local".into(), date_local(now)),
                    ("Event-Date-GMT".into(), date_gmt(now)),
                    ("Event-Date-Timestamp".into(), now.to_string()),
                    ("Event-Calling-File".into(), "mod_event_socket.c".into()),
                    ("Event-Calling-Function".into(), "api_exec".into()),
                    ("Event-Calling-Line-Number".into(), "1572".into()),
                    ("Event-Sequence".into(), "1".into()),
                    ("Job-UUID".into(), j),
                    ("Job-Command".into(), api_cmd.to_string()),
                ];
                if !arg.is_empty() {
                    h.push(("Job-Command-Arg".into(), arg.to_string()));
                }
                sh.publish("BACKGROUND_JOB", &h, Some(&body));
            });
            return Step::Write(wire::bgapi_reply(&job));
        }
        "event" => l.sub.event_command(&line),
        "nixevent" => l.sub.nixevent_command(&line),
        "noevents" => l.sub.noevents_command(),
        "filter" => filter(l, &line),
        "sendmsg" => {
            let uuid = line[7..].trim().to_string();
            let uuid = if uuid.is_empty() {
                cmd.header("session-id").unwrap_or("").to_string()
            } else {
                uuid
            };
            shared.sendmsg(&uuid, cmd.clone())
        }
        "linger" | "nolinger" => "-ERR not controlling a session".into(),
        _ => "-ERR command not found".into(),
    };
    Step::Write(wire::reply(&text))
}

/// `filter <header> <value>`, `filter add …`, `filter delete <header> [<value>]|all`.
fn filter(l: &mut Listener, line: &str) -> String {
    let rest = line[6..].trim_start();
    let (name, val) = match rest.split_once(' ') {
        Some((n, v)) => (n, Some(v)),
        None => (rest, None),
    };
    match (name, val) {
        (n, Some(v)) if n.eq_ignore_ascii_case("delete") => {
            let (h, hv) = match v.split_once(' ') {
                Some((h, hv)) => (h, Some(hv)),
                None => (v, None),
            };
            if h.eq_ignore_ascii_case("all") {
                l.filters.clear();
            } else {
                l.filters.retain(|(fname, fval)| {
                    !(fname.eq_ignore_ascii_case(h) && hv.is_none_or(|hv| hv == fval))
                });
            }
            format!("+OK filter deleted. [{h}][{}]", hv.unwrap_or("(null)"))
        }
        (n, Some(v)) => {
            let (n, v) = if n.eq_ignore_ascii_case("add") {
                match v.split_once(' ') {
                    Some((n2, v2)) => (n2, v2),
                    None => (v, ""),
                }
            } else {
                (n, v)
            };
            l.filters.push((n.to_string(), v.to_string()));
            format!("+OK filter added. [{n}]=[{v}]")
        }
        _ => "-ERR invalid syntax".into(),
    }
}
