//! Recordings judged final from a file that had stopped growing, while FreeSWITCH may still be
//! writing it: the call could not be followed to its end (no event-socket link, the link down
//! past its grace, the call's socket lost), so callrec took the file as it was once it had not
//! grown for its quiet window. FreeSWITCH writes through a buffer and stops every recording
//! at its time limit, so until `may_grow_until_us` the file can still grow.
//!
//! Invariants:
//! - such a file is never removed before `may_grow_until_us` (the upload loop keeps it too);
//! - growth after the judgement is logged, and once the file has been quiet again the
//!   recording is spooled again, whole: its deliveries start over with the new size and
//!   duration (never while one of them is uploading, so no earlier attempt settles the new
//!   ones), and the metadata file is rewritten;
//! - after the deadline a delivered recording's local copy is removed unless it is to be kept
//!   (an undelivered one is removed by the upload loop once delivered);
//! - on shutdown the watch ends and the file stays on disk; the next start takes every watch
//!   whose deadline has not passed up again ([`resume`]), from the metadata the spool holds.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::spool;
use super::{FinishedRecording, LocalStore};
use crate::store::{RecordingState, Store};
use crate::telemetry::printable;

/// How the files are watched.
#[derive(Debug, Clone, Copy)]
pub struct TailSettings {
    /// Time between two looks at a file.
    pub poll: Duration,
    /// The write buffer `uuid_record` recordings were started with (bytes per channel).
    pub write_buffer: u64,
    /// Delivered files stay on disk anyway.
    pub keep_local_after_upload: bool,
}

/// Watches `rec`'s file until FreeSWITCH can no longer write it (returns at once when the
/// recording was not judged from a quiet file).
pub async fn watch(
    store: Store,
    wake: Arc<Notify>,
    mut rec: FinishedRecording,
    cfg: TailSettings,
    stop: CancellationToken,
) {
    let Some(until) = rec.may_grow_until_us else {
        return;
    };
    let buffer = match rec.kind {
        crate::values::RecordingKind::Call => cfg.write_buffer,
        crate::values::RecordingKind::Caller => crate::recorder::DEFAULT_WRITE_BUFFER,
    };
    let quiet = crate::recorder::quiet_window(buffer, rec.sample_rate);
    let path = PathBuf::from(&rec.file_path);
    let call_id = printable(&rec.call.call_id).into_owned();
    loop {
        let now = spool::now_us();
        match size_of(&path).await {
            None => {
                warn!(%call_id, recording_id = %rec.recording_id, "recording file gone while FreeSWITCH could still write it; nothing more to watch");
                return;
            }
            Some(s) if s != rec.size => {
                warn!(
                    %call_id,
                    recording_id = %rec.recording_id,
                    judged_bytes = rec.size,
                    now_bytes = s,
                    "recording grew after it was judged final: FreeSWITCH was still writing it; it is delivered again, whole, once the file is quiet"
                );
                let left = Duration::from_micros(until.saturating_sub(spool::now_us()));
                let deadline = tokio::time::Instant::now() + left;
                let settled =
                    crate::recorder::quiet::until_quiet(&path, quiet, cfg.poll, deadline, &stop)
                        .await;
                let Some(settled) = settled.filter(|_| !stop.is_cancelled()) else {
                    return;
                };
                if !redeliver(&store, &wake, &mut rec, settled, cfg.poll, &stop).await {
                    return;
                }
                continue;
            }
            Some(_) => {}
        }
        if now >= until {
            break;
        }
        let left = Duration::from_micros(until - now);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(cfg.poll.min(left)) => {}
        }
    }
    if rec.keep_local || cfg.keep_local_after_upload {
        return;
    }
    if state_of(&store, &rec.recording_id).await == Some(RecordingState::Delivered) {
        for p in [
            rec.file_path.clone(),
            LocalStore::sidecar_path(&rec.file_path),
        ] {
            if let Err(e) = tokio::fs::remove_file(&p).await {
                if e.kind() != std::io::ErrorKind::NotFound {
                    warn!(%call_id, recording_id = %rec.recording_id, path = %p, error = %e, "cannot remove delivered file");
                }
            }
        }
        info!(%call_id, recording_id = %rec.recording_id, "FreeSWITCH can no longer write the recording: local copy removed");
    }
}

/// The recording's state in the spool (`None` when it cannot be read).
async fn state_of(store: &Store, id: &str) -> Option<RecordingState> {
    store
        .recording::<serde_json::Value>(id)
        .await
        .ok()
        .flatten()
        .map(|r| r.state)
}

/// Takes up, at start-up, the watches a previous run left (its recordings' metadata still says
/// FreeSWITCH may write them); returns how many. Runs in the background.
pub async fn resume(
    store: Store,
    wake: Arc<Notify>,
    cfg: TailSettings,
    stop: CancellationToken,
) -> usize {
    let now = spool::now_us();
    // A watch lasts at most the longest time limit and a minute from the judgement, which is
    // when the row was written.
    let longest = (crate::settings::model::TIME_LIMIT_RANGE.1 as u64 + 120) * 1_000_000;
    let rows = store
        .mentioning_since::<FinishedRecording>(now.saturating_sub(longest), "may_grow_until_us")
        .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            warn!(error = %e, "cannot read the recordings FreeSWITCH may still write; their files stay on disk");
            return 0;
        }
    };
    let mut n = 0;
    for (_, rec) in rows {
        if rec.may_grow_until_us.is_some_and(|t| t > now) {
            n += 1;
            tokio::spawn(watch(store.clone(), wake.clone(), rec, cfg, stop.clone()));
        }
    }
    n
}

async fn size_of(path: &Path) -> Option<u64> {
    tokio::fs::metadata(path).await.ok().map(|m| m.len())
}

/// Spools the recording again with the file as it is now (once none of its deliveries is
/// uploading); `false` on shutdown.
async fn redeliver(
    store: &Store,
    wake: &Notify,
    rec: &mut FinishedRecording,
    size: u64,
    poll: Duration,
    stop: &CancellationToken,
) -> bool {
    let (p, format) = (PathBuf::from(&rec.file_path), rec.format);
    let ms = tokio::task::spawn_blocking(move || crate::recorder::measure_file(&p, format))
        .await
        .ok()
        .flatten();
    let before = rec.duration_ms;
    rec.size = size;
    rec.duration_ms = ms.unwrap_or(rec.duration_ms);
    loop {
        if state_of(store, &rec.recording_id).await != Some(RecordingState::Uploading) {
            match spool::enqueue(store, rec).await {
                Ok(_) => break,
                Err(e) => {
                    warn!(recording_id = %rec.recording_id, error = %e, "cannot spool the grown recording yet; retrying")
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return false,
            _ = tokio::time::sleep(poll) => {}
        }
    }
    if let Err(e) = LocalStore::write_sidecar(rec).await {
        warn!(recording_id = %rec.recording_id, error = %e, "cannot rewrite the metadata file");
    }
    crate::telemetry::metrics::inc(&crate::telemetry::metrics::METRICS.recordings_regrown_total);
    info!(
        call_id = %printable(&rec.call.call_id),
        recording_id = %rec.recording_id,
        before_ms = before,
        duration_ms = rec.duration_ms,
        "recording queued again whole after it grew"
    );
    wake.notify_one();
    true
}
