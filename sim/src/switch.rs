//! A whole FreeSWITCH: the channels it carries and mod_event_socket's inbound listener (the
//! `127.0.0.1:8021` side), so a test can model what only a switch-wide view shows: one
//! connection following many calls, `api` commands against any channel, a restart.
//!
//! Invariants:
//! - a channel placed with [`Switch::dial`] is registered under its UUID until its call task
//!   ends; inbound `api uuid_*`/`sendmsg <uuid>` reach it through that registry and are answered
//!   by the channel itself, exactly as on its own socket;
//! - every event a registered channel emits is published once to all inbound listeners, whatever
//!   its own socket subscribed to; each listener applies its own subscription and filters
//!   (mod_event_socket's `event_handler` rules) and counts what it serialised;
//! - [`Switch::stop`] is the process dying: every channel's files are written as far as they got,
//!   no further event or notice is sent, every socket closes; [`Switch::start`] comes back on the
//!   same port with a new `Core-UUID`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

use crate::bus::{Control, InboundStats, Shared};
use crate::call::{dial_on, place_on, CallHandle};
use crate::clock::uuid_v4;
use crate::spec::CallSpec;

/// A simulated FreeSWITCH process.
#[derive(Clone)]
pub struct Switch {
    shared: Arc<Shared>,
    inbound: Arc<Mutex<Option<Inbound>>>,
}

struct Inbound {
    addr: SocketAddr,
    accept: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switch")
            .field("core_uuid", &self.core_uuid())
            .field("inbound", &self.inbound_addr())
            .finish()
    }
}

impl Switch {
    /// A switch whose event socket takes `password` (FreeSWITCH's default is `ClueCon`).
    pub fn new(password: &str) -> Switch {
        let (bus, _) = broadcast::channel(1 << 16);
        let (kill, _) = watch::channel(0);
        let (reload, _) = watch::channel(0);
        Switch {
            shared: Arc::new(Shared {
                password: password.to_string(),
                core_uuid: Mutex::new(uuid_v4()),
                calls: Mutex::new(HashMap::new()),
                bus,
                kill,
                reload,
                listeners: AtomicU64::new(0),
                stats: Mutex::new(InboundStats::default()),
            }),
            inbound: Arc::new(Mutex::new(None)),
        }
    }

    /// Starts the inbound event socket on a free loopback port; returns its address.
    pub async fn listen_inbound(&self) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accept = tokio::spawn(accept_loop(listener, self.shared.clone()));
        if let Ok(mut i) = self.inbound.lock() {
            *i = Some(Inbound {
                addr,
                accept: Some(accept),
            });
        }
        Ok(addr)
    }

    /// The inbound event socket's address, once listening.
    pub fn inbound_addr(&self) -> Option<SocketAddr> {
        self.inbound.lock().ok()?.as_ref().map(|i| i.addr)
    }

    /// Places a call on this switch: its `socket` application dials the controller at `addr`.
    pub async fn dial(&self, addr: SocketAddr, spec: CallSpec) -> std::io::Result<CallHandle> {
        dial_on(addr, spec, Some(self.shared.clone())).await
    }

    /// Places a call on this switch that runs `dialplan` from `spec.context` (see
    /// [`place`](crate::place)).
    pub fn place(&self, dialplan: Arc<crate::Dialplan>, spec: CallSpec) -> CallHandle {
        place_on(dialplan, spec, self.shared.clone())
    }

    /// The process's `Core-UUID` (new after every [`start`](Self::start)).
    pub fn core_uuid(&self) -> String {
        self.shared.core_uuid()
    }

    /// Whether a channel with this UUID exists.
    pub fn has_channel(&self, uuid: &str) -> bool {
        self.shared.call(uuid).is_some()
    }

    /// Closes every inbound connection (a network blip); the listener stays up.
    pub fn drop_inbound(&self) {
        self.shared.kill.send_modify(|g| *g += 1);
    }

    /// `unload mod_event_socket` (or a firewall in between): every inbound connection closes
    /// and new ones are refused; calls go on. [`load_event_socket`](Self::load_event_socket)
    /// brings it back on the same port.
    pub async fn unload_event_socket(&self) {
        self.stop_listening().await;
        self.drop_inbound();
    }

    /// The inbound listener stops accepting (connections already open are not touched).
    async fn stop_listening(&self) {
        let accept = self
            .inbound
            .lock()
            .ok()
            .and_then(|mut i| i.as_mut().and_then(|i| i.accept.take()));
        if let Some(a) = accept {
            a.abort();
            let _ = a.await;
        }
    }

    /// `load mod_event_socket`: listening again on the old port, same process (same Core-UUID).
    pub async fn load_event_socket(&self) -> std::io::Result<()> {
        let Some(addr) = self.inbound_addr() else {
            return Ok(());
        };
        let listener = TcpListener::bind(addr).await?;
        let accept = tokio::spawn(accept_loop(listener, self.shared.clone()));
        if let Ok(mut i) = self.inbound.lock() {
            if let Some(i) = i.as_mut() {
                i.accept = Some(accept);
            }
        }
        Ok(())
    }

    /// `reload mod_event_socket` (an operator's command, for example after an ACL change): every
    /// event-socket connection closes, inbound ones after the disconnect notice, and every
    /// call's outbound socket too; the calls and their recordings go on; the listener is back
    /// about 100 ms later, same process (same Core-UUID).
    pub async fn reload_event_socket(&self) {
        self.stop_listening().await;
        self.shared.reload.send_modify(|g| *g += 1);
        let calls: Vec<_> = self
            .shared
            .calls
            .lock()
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default();
        for tx in calls {
            let _ = tx.send(Control::Kill);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let _ = self.load_event_socket().await;
    }

    /// FreeSWITCH dies: every channel is gone with its files written so far, every socket closes,
    /// the event socket stops listening.
    pub async fn stop(&self) {
        self.unload_event_socket().await;
        let calls: Vec<_> = self
            .shared
            .calls
            .lock()
            .map(|mut c| c.drain().collect())
            .unwrap_or_default();
        for (_, tx) in calls {
            let (stx, srx) = tokio::sync::oneshot::channel();
            if tx.send(Control::Crash).is_ok() && tx.send(Control::Sync(stx)).is_ok() {
                let _ = srx.await;
            }
        }
    }

    /// FreeSWITCH is back: a new `Core-UUID`, the event socket listening on its old port.
    pub async fn start(&self) -> std::io::Result<()> {
        if let Ok(mut c) = self.shared.core_uuid.lock() {
            *c = uuid_v4();
        }
        self.load_event_socket().await
    }

    /// [`stop`](Self::stop) then [`start`](Self::start).
    pub async fn restart(&self) -> std::io::Result<()> {
        self.stop().await;
        self.start().await
    }

    pub fn inbound_stats(&self) -> InboundStats {
        self.shared
            .stats
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Waits until an inbound client has sent a command starting with `prefix` `n` times.
    pub async fn wait_for_inbound_commands(&self, prefix: &str, n: usize) {
        loop {
            let seen = self
                .inbound_stats()
                .commands
                .iter()
                .filter(|c| c.starts_with(prefix))
                .count();
            if seen >= n {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        if let Ok(mut s) = shared.stats.lock() {
            s.connections += 1;
        }
        tokio::spawn(crate::inbound::serve(stream, shared.clone()));
    }
}
