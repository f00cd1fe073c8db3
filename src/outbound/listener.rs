//! The outbound socket listener: one task per call, at most `max_calls` at once.
//!
//! Invariant: a connection is never accepted and left waiting. From a peer outside
//! `allow_peers`, or over the limit, it is closed at once, which ends FreeSWITCH's `socket` application so the dialplan goes on with its next
//! action (the fallback route) instead of parking the caller.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, warn};

use super::driver::{self, SessionContext};
use crate::telemetry::metrics::{self, METRICS};

/// Accepts calls until `stop` is cancelled. Sessions run on `tracker`.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<SessionContext>,
    max_calls: usize,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let max = max_calls;
    let slots = Arc::new(Semaphore::new(max));
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                error!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !ctx.allow_peers.iter().any(|n| n.contains(peer.ip())) {
            metrics::inc(&METRICS.calls_refused_total);
            warn!(%peer, "connection from a peer not in allow_peers: closed");
            drop(stream);
            continue;
        }
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                let ctx = ctx.clone();
                metrics::inc(&METRICS.calls_accepted_total);
                metrics::inc(&METRICS.calls_live);
                tracker.spawn(async move {
                    driver::run(stream, ctx).await;
                    metrics::dec(&METRICS.calls_live);
                    drop(permit);
                });
            }
            Err(_) => {
                metrics::inc(&METRICS.calls_refused_total);
                warn!(%peer, max_calls = max, "at the call limit: connection refused, FreeSWITCH continues the dialplan unrecorded");
                drop(stream);
            }
        }
    }
}
