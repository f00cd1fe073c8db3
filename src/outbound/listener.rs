//! The outbound socket listener: one task per call, at most `max_calls` at once.
//!
//! Invariant: a connection is never accepted and left waiting. Over the limit (or while
//! shutting down) a call is handed straight back: `connect`, `resume`, `exit`, which is what
//! FreeSWITCH needs to let the `socket` application return (without `connect` it waits for one;
//! without `resume` it leaves the call parked, mod_event_socket.c), so the dialplan goes on with
//! its next action unrecorded. A peer outside `allow_peers` gets the same and nothing more:
//! nothing it sends is read as a call, and a FreeSWITCH left out of `allow_peers` by mistake
//! still routes its calls (unrecorded, with a warning per call) instead of stranding them.

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
    // Hand-backs of refused calls in progress, bounded like the calls themselves.
    let refusals = Arc::new(Semaphore::new(max.clamp(16, 1024)));
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
            warn!(%peer, "connection from a peer not in allow_peers: handed back unrecorded");
            if let Ok(permit) = refusals.clone().try_acquire_owned() {
                tracker.spawn(async move {
                    hand_back_unrecorded(stream).await;
                    drop(permit);
                });
            }
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
                warn!(%peer, max_calls = max, "at the call limit: call handed back unrecorded, FreeSWITCH continues the dialplan");
                match refusals.clone().try_acquire_owned() {
                    Ok(permit) => {
                        tracker.spawn(async move {
                            hand_back_unrecorded(stream).await;
                            drop(permit);
                        });
                    }
                    Err(_) => drop(stream),
                }
            }
        }
    }
}

/// Lets a call FreeSWITCH handed over go on unrecorded: `connect` (so `socket` stops waiting
/// for one), `resume` (so it does not stay parked when the socket closes), `exit`; then waits,
/// at most 2 s, for FreeSWITCH to close, so the commands are read before our side goes.
async fn hand_back_unrecorded(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let work = async {
        stream.write_all(b"connect\n\nresume\n\nexit\n\n").await?;
        let mut buf = [0u8; 8192];
        while stream.read(&mut buf).await? > 0 {}
        Ok::<_, std::io::Error>(())
    };
    if let Err(e) = tokio::time::timeout(Duration::from_secs(2), work)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
    {
        warn!(error = %e, "handing a refused call back did not finish cleanly");
    }
}
