//! The supervisor: takes up, at start-up, every recording the journal says was still being
//! recorded when callrec stopped (a crash, a SIGKILL, an upgrade).
//!
//! FreeSWITCH keeps recording a call whose controller is gone, so each journaled recording's file
//! is watched until it stops growing, then finished exactly as the session would have finished
//! it: `record_min_sec` applies, delivery gets the same metadata, and the log says `recording
//! re-adopted after restart` with the reason.
//!
//! Invariant: a journaled recording ends in exactly one of: kept (handed to delivery, which
//! replaces the journal row), discarded (file missing or too short; logged, row removed), or
//! still journaled (delivery refused it; taken up again at the next start).

use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};

use crate::store::{Store, StoreError};
use crate::uploader::journal::JournalEntry;
use crate::uploader::Delivery;

/// How a watched file is judged.
#[derive(Debug, Clone, Copy)]
pub struct Watch {
    /// Time between two looks at the file.
    pub poll: Duration,
    /// Looks with the same size that make it finished.
    pub stable_polls: u32,
}

/// Takes up every journaled recording in the background: returns how many there were.
pub fn readopt(
    store: &Store,
    delivery: Arc<dyn Delivery>,
    watch: Watch,
) -> Result<usize, StoreError> {
    let entries: Vec<(String, JournalEntry)> = store.journaled()?;
    let n = entries.len();
    for (_, entry) in entries {
        let (store, delivery) = (store.clone(), delivery.clone());
        tokio::spawn(async move { finish(&store, &*delivery, entry, watch).await });
    }
    Ok(n)
}

/// Watches one journaled recording's file until it stops growing, then keeps or discards it.
async fn finish(store: &Store, delivery: &dyn Delivery, e: JournalEntry, watch: Watch) {
    let path = std::path::PathBuf::from(&e.rec.file_path);
    let id = e.rec.recording_id.clone();
    info!(
        recording_id = %id,
        call_id = %crate::telemetry::printable(&e.rec.call.call_id),
        account_id = %crate::telemetry::printable(e.rec.call.account_id.as_deref().unwrap_or("-")),
        "journaled recording found after restart; watching its file"
    );
    // FreeSWITCH may still be recording: at most the time limit, and a minute for the call's
    // end to reach the file.
    let max_polls =
        ((e.time_limit as u64 + 60) * 1000 / watch.poll.as_millis().max(1) as u64) as u32;
    let (mut last, mut stable) = (None, 0);
    let mut size = None;
    for _ in 0..max_polls.max(watch.stable_polls + 1) {
        size = tokio::fs::metadata(&path).await.ok().map(|m| m.len());
        if size.is_some() && size == last {
            stable += 1;
            if stable >= watch.stable_polls {
                break;
            }
        } else {
            stable = 0;
        }
        last = size;
        tokio::time::sleep(watch.poll).await;
    }
    let format = e.rec.format;
    let p = path.clone();
    let (size, ms) =
        tokio::task::spawn_blocking(move || crate::recorder::inspect(&p, format, true))
            .await
            .unwrap_or((size, None));
    // The same rule the session applies when RECORD_STOP never came.
    let stop = crate::recorder::StopInfo {
        record_ms: ms.unwrap_or(0),
        cause: "re-adopted after restart: file stopped growing".into(),
        discarded_by_freeswitch: false,
        from_disk: true,
    };
    if let Some(reason) = crate::recorder::discard_reason(e.record_min_sec, &stop, size.is_some()) {
        if size.is_some() {
            if let Err(err) = tokio::fs::remove_file(&path).await {
                error!(recording_id = %id, error = %err, "cannot delete discarded recording");
            }
        }
        let s = store.clone();
        let i = id.clone();
        let _ = tokio::task::spawn_blocking(move || s.forget_recording(&i)).await;
        info!(recording_id = %id, reason = %reason, "recording re-adopted after restart: discarded");
        return;
    }
    let mut rec = e.rec;
    rec.duration_ms = stop.record_ms;
    rec.size = size.unwrap_or(0);
    rec.completion_cause = stop.cause;
    match delivery.accept(rec).await {
        Ok(()) => info!(
            recording_id = %id,
            reason = "callrec restarted while the call was recording; the file stopped growing",
            "recording re-adopted after restart"
        ),
        Err(err) => warn!(
            recording_id = %id,
            error = %err,
            "re-adopted recording could not be handed to delivery; it stays journaled for the next start"
        ),
    }
}
