//! The two ways callrec follows a call, for tests that must pass in both: over the call's own
//! socket (`follow = "socket"`, the default here) or over the event-socket link to a simulated
//! switch (`FOLLOW_MODE=inbound`, which `scripts/test` runs too).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use callrec::app::Server;
use callrec::config::{Config, FollowMode};
use callrec::inbound::LinkState;
use callrec_sim::{CallHandle, CallSpec, Switch};

/// Whether this run follows calls over the event-socket link.
pub fn inbound() -> bool {
    std::env::var("FOLLOW_MODE").is_ok_and(|m| m == "inbound")
}

/// Sets `config` up for this run's mode; in inbound mode, the switch calls must be placed on.
pub async fn configure(config: &mut Config) -> Option<Switch> {
    configure_mode(config, inbound()).await
}

/// Sets `config` up to follow over the link (`inbound`) or over the socket.
pub async fn configure_mode(config: &mut Config, inbound: bool) -> Option<Switch> {
    if !inbound {
        config.freeswitch_esl = None;
        config.follow = FollowMode::Socket;
        return None;
    }
    let sw = Switch::new("ClueCon");
    let addr = sw.listen_inbound().await.expect("inbound listener");
    config.freeswitch_esl = Some(addr.to_string());
    config.follow = FollowMode::Inbound;
    Some(sw)
}

/// Waits until the server's link is up (inbound mode), so the next call is followed over it.
pub async fn link_up(server: &Server) {
    if let Some(link) = server.link() {
        tokio::time::timeout(Duration::from_secs(10), async {
            while link.state() != LinkState::Up {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the event-socket link comes up");
    }
}

/// Places a call: on the switch in inbound mode, standalone otherwise.
pub async fn dial(
    switch: &Option<Switch>,
    addr: SocketAddr,
    spec: CallSpec,
) -> std::io::Result<CallHandle> {
    match switch {
        Some(sw) => sw.dial(addr, spec).await,
        None => callrec_sim::dial(addr, spec).await,
    }
}
