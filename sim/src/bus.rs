//! What a simulated FreeSWITCH's parts share: the registry of channels by UUID (each reached
//! through its [`Control`] channel), the bus every channel publishes its events on for the
//! inbound listeners, the process's Core-UUID, and `api`/`sendmsg` against any channel. Below
//! `call`, `switch` and `inbound`, which all use it; it imports none of them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};

use crate::wire::{Command, Headers};

#[derive(Debug)]
pub(crate) enum Control {
    Answer,
    Hangup(String),
    Advance(Duration),
    Bridge(String),
    Unbridge,
    Kill,
    KillOnNextCommand,
    Sync(tokio::sync::oneshot::Sender<()>),
    Hold(bool),
    /// An `api` command from an inbound connection: the body goes back on the sender, before
    /// the command's effects (`api`: FreeSWITCH writes the response first) or after them
    /// (`bgapi`: the BACKGROUND_JOB follows the events the command fired, as captured).
    Api {
        line: String,
        reply: tokio::sync::oneshot::Sender<String>,
        background: bool,
        /// When the inbound connection read it.
        received_at: std::time::Instant,
    },
    /// An inbound connection wrote one of the call's events (`answer_sent_at` is when
    /// CHANNEL_ANSWER reached the wire, whichever connection carried it).
    Wrote {
        event: String,
        at: std::time::Instant,
    },
    /// A `sendmsg <uuid>` from an inbound connection.
    SendMsg(Command),
    /// FreeSWITCH's process dies: files are written as far as they got, nothing more is sent.
    Crash,
}

/// One event as a channel emitted it, before any listener serialises it.
#[derive(Debug)]
pub(crate) struct BusEvent {
    pub name: String,
    pub headers: Headers,
    pub body: Option<String>,
}

/// What the inbound side saw, for assertions and benchmarks.
#[derive(Debug, Clone, Default)]
pub struct InboundStats {
    /// Connections accepted.
    pub connections: u64,
    /// `auth` with a wrong password.
    pub auth_failures: u64,
    /// Events serialised and written to inbound listeners.
    pub events_sent: u64,
    /// Every command line inbound clients sent, in order of arrival.
    pub commands: Vec<String>,
}

pub(crate) struct Shared {
    pub password: String,
    pub(crate) core_uuid: Mutex<String>,
    pub(crate) calls: Mutex<HashMap<String, mpsc::UnboundedSender<Control>>>,
    pub bus: broadcast::Sender<Arc<BusEvent>>,
    /// Bumped when every inbound connection must close (restart, network drop).
    pub kill: watch::Sender<u64>,
    /// Bumped when mod_event_socket unloads in an orderly way (`reload mod_event_socket`):
    /// every inbound connection gets the disconnect notice, then closes.
    pub reload: watch::Sender<u64>,
    pub(crate) listeners: AtomicU64,
    pub stats: Mutex<InboundStats>,
}

impl Shared {
    pub(crate) fn register(&self, uuid: &str, tx: mpsc::UnboundedSender<Control>) {
        if let Ok(mut c) = self.calls.lock() {
            c.insert(uuid.to_string(), tx);
        }
    }

    pub(crate) fn unregister(&self, uuid: &str) {
        if let Ok(mut c) = self.calls.lock() {
            c.remove(uuid);
        }
    }

    /// Tells the call an inbound connection wrote its event (for latency figures).
    pub(crate) fn wrote(&self, uuid: &str, event: &str, at: std::time::Instant) {
        if let Some(tx) = self.call(uuid) {
            let _ = tx.send(Control::Wrote {
                event: event.to_string(),
                at,
            });
        }
    }

    pub(crate) fn call(&self, uuid: &str) -> Option<mpsc::UnboundedSender<Control>> {
        self.calls.lock().ok()?.get(uuid).cloned()
    }

    pub(crate) fn has_listeners(&self) -> bool {
        self.listeners.load(Ordering::Relaxed) > 0
    }

    pub(crate) fn listener_opened(&self) {
        self.listeners.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn listener_closed(&self) {
        self.listeners.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn core_uuid(&self) -> String {
        self.core_uuid.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Hands a channel's event to every inbound listener, with this process's Core-UUID.
    pub(crate) fn publish(&self, name: &str, headers: &Headers, body: Option<&str>) {
        let mut headers = headers.clone();
        if let Some(h) = headers.iter_mut().find(|(k, _)| k == "Core-UUID") {
            h.1 = self.core_uuid();
        }
        let _ = self.bus.send(Arc::new(BusEvent {
            name: name.to_string(),
            headers,
            body: body.map(str::to_string),
        }));
    }

    /// An `api` command from an inbound connection: the body FreeSWITCH answers with.
    pub(crate) async fn api(
        &self,
        rest: &str,
        background: bool,
        received_at: std::time::Instant,
    ) -> String {
        let (name, args) = rest.split_once(' ').unwrap_or((rest, ""));
        let target = args.split(' ').find(|a| !a.is_empty());
        match name {
            "uuid_record" | "uuid_kill" | "uuid_getvar" | "uuid_setvar" | "uuid_exists"
            | "uuid_transfer" | "uuid_broadcast" | "uuid_dump" => {
                if let Some(tx) = target.and_then(|u| self.call(u)) {
                    let (rtx, rrx) = tokio::sync::oneshot::channel();
                    let c = Control::Api {
                        line: rest.to_string(),
                        reply: rtx,
                        background,
                        received_at,
                    };
                    if tx.send(c).is_ok() {
                        if let Ok(body) = rrx.await {
                            return body;
                        }
                    }
                }
                no_channel(name, args)
            }
            "global_getvar" if args.trim() == "core_uuid" => self.core_uuid(),
            "version" => crate::wire::VERSION.into(),
            "status" => crate::wire::STATUS.into(),
            other => format!("-ERR {other} Command not found!\n"),
        }
    }

    /// `sendmsg <uuid>` from an inbound connection: the reply text.
    pub(crate) fn sendmsg(&self, uuid: &str, cmd: Command) -> String {
        match self.call(uuid) {
            Some(tx) if tx.send(Control::SendMsg(cmd)).is_ok() => "+OK".into(),
            _ => format!("-ERR invalid session id [{uuid}]"),
        }
    }
}

/// mod_commands' answers when the UUID names no channel.
fn no_channel(name: &str, args: &str) -> String {
    let argc = args.split(' ').filter(|a| !a.is_empty()).count();
    match name {
        "uuid_record" if argc < 3 => {
            "-USAGE: <uuid> [start|stop|mask|unmask] <path> [<limit>] [<recording_vars>]\n".into()
        }
        "uuid_record" => "-ERR Cannot locate session!\n".into(),
        "uuid_exists" => "false".into(),
        _ => "-ERR No such channel!\n".into(),
    }
}
