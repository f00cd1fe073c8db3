//! The supervisor: takes up, at start-up, every recording the journal says was still being
//! recorded when callrec stopped (a crash, a SIGKILL, an upgrade).
//!
//! FreeSWITCH keeps recording a call whose controller is gone. With the inbound link
//! ([`crate::inbound`], `freeswitch_esl`), each journaled recording's call is followed by UUID:
//! its RECORD_STOP finishes it exactly as the session would have (FreeSWITCH's `record_ms` and
//! completion cause); a call that no longer exists (it ended, or FreeSWITCH restarted) or that
//! hangs up without a RECORD_STOP for this file is finished from its file, which is then final.
//! Without the link, or while the link stays down longer than `esl_down_grace_ms`, the file is
//! watched until it has not grown for its quiet window (FreeSWITCH writes through a buffer, so
//! a file it still writes stays unchanged for seconds at a time: [`crate::recorder::quiet_window`]);
//! a file judged that way may still grow until the recording's time limit has passed, so it
//! is delivered with `may_grow_until_us` and the delivery keeps and watches it. Either way
//! `record_min_sec` applies, delivery gets the same metadata as if nothing had happened, and
//! the log says `recording re-adopted after restart` with the reason.
//!
//! A recording followed over the link can still be paused, resumed or stopped through the
//! control API ([`crate::outbound::live`]): the command goes over the link, the pause is added
//! to the journal row (so it stays listed), and a pause in force at the restart stays in force
//! (FreeSWITCH keeps it; the journal row lists it) until asked otherwise.
//!
//! Invariant: a journaled recording ends in exactly one of: kept (handed to delivery, which
//! replaces the journal row), discarded (file missing or too short; logged, row removed), or
//! still journaled (delivery refused it; taken up again at the next start).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::inbound::{Followed, Link};
use crate::outbound::live::{LiveCalls, LiveMsg};
use crate::outbound::session::{
    control_action, control_reason, note_control, CallView, ControlOutcome, RecordingView, Want,
};
use crate::recorder::StopInfo;
use crate::settings::webhook::HookEvent;
use crate::store::{Store, StoreError};
use crate::uploader::journal::JournalEntry;
use crate::uploader::Delivery;

/// How a watched file is looked at.
#[derive(Debug, Clone, Copy)]
pub struct Watch {
    /// Time between two looks at the file.
    pub poll: Duration,
}

/// Takes up every journaled recording in the background: returns how many there were.
pub async fn readopt(
    store: &Store,
    delivery: Arc<dyn Delivery>,
    watch: Watch,
    link: Option<Link>,
    live: Option<Arc<LiveCalls>>,
) -> Result<usize, StoreError> {
    let entries: Vec<(String, JournalEntry)> = store.journaled().await?;
    let n = entries.len();
    for (_, entry) in entries {
        let (store, delivery, link) = (store.clone(), delivery.clone(), link.clone());
        let live = live.clone();
        tokio::spawn(async move { finish(&store, &*delivery, entry, watch, link, live).await });
    }
    Ok(n)
}

/// How a re-adopted recording ended, before the keep-or-discard rule.
struct Ending {
    stop: StopInfo,
    /// Why it ended this way, for the log.
    reason: String,
    /// The file's size (`None`: missing).
    size: Option<u64>,
}

async fn finish(
    store: &Store,
    delivery: &dyn Delivery,
    mut e: JournalEntry,
    watch: Watch,
    link: Option<Link>,
    live: Option<Arc<LiveCalls>>,
) {
    let path = PathBuf::from(&e.rec.file_path);
    info!(
        recording_id = %e.rec.recording_id,
        call_id = %crate::telemetry::printable(&e.rec.call.call_id),
        account_id = %crate::telemetry::printable(e.rec.call.account_id.as_deref().unwrap_or("-")),
        following = if link.is_some() { "event socket" } else { "file" },
        "journaled recording found after restart; taking it up"
    );
    let ending = match &link {
        Some(link) => {
            // Reachable by the control API while it is followed over the link.
            let call_id = e.rec.call.call_id.clone();
            let api = live.as_ref().map(|l| {
                let rx = l.register(&call_id, e.rec.call.account_id.clone());
                l.update(
                    &call_id,
                    e.rec.call.account_id.as_deref(),
                    std::iter::once(e.rec.recording_id.as_str()),
                );
                rx
            });
            let followed = follow(link, &mut e, store, delivery, api).await;
            if let Some(l) = &live {
                l.remove(&call_id);
            }
            match followed {
                Some(ending) => ending,
                None => watch_file(&path, &e, watch, "the event socket link stayed down").await,
            }
        }
        None => {
            watch_file(
                &path,
                &e,
                watch,
                "callrec restarted while the call was recording; the file stopped growing",
            )
            .await
        }
    };
    settle(store, delivery, e, &path, ending).await;
}

/// Follows the call over the link until its recording ends; `None` when the link stayed down
/// too long (or the recording outlived its time limit) and the file must be watched instead.
async fn follow(
    link: &Link,
    e: &mut JournalEntry,
    store: &Store,
    delivery: &dyn Delivery,
    mut api: Option<tokio::sync::mpsc::UnboundedReceiver<Box<LiveMsg>>>,
) -> Option<Ending> {
    let uuid = e.rec.call.call_id.clone();
    let uuid = &uuid;
    let mut rx = link.follow(uuid);
    let mut stopped = false;
    let limit = Duration::from_secs(e.time_limit as u64 + 60);
    let path = e.rec.file_path.clone();
    let path = path.as_str();
    let ending = loop {
        tokio::select! {
            Some(msg) = async {
                match api.as_mut() {
                    Some(a) => a.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                control(link, e, store, delivery, &mut stopped, *msg).await;
                continue;
            }
            m = rx.recv() => match m {
                Some(Followed::Event(ev)) => {
                    use crate::event::EventName as N;
                    match ev.name() {
                        Some(N::RecordStop) if is_ours(&ev, e) => {
                            let mut stop = StopInfo::from_event(&ev);
                            stop.cause = format!("re-adopted after restart: {}", stop.cause);
                            let (size, _) = inspect(path, e, false).await;
                            break Some(Ending {
                                stop,
                                reason: "callrec restarted while the call was recording; FreeSWITCH's RECORD_STOP ended it".into(),
                                size,
                            });
                        }
                        Some(N::ChannelHangupComplete) => {
                            break Some(from_file(path, e, "the call ended without a RECORD_STOP for this file").await);
                        }
                        _ => {}
                    }
                }
                Some(Followed::Gone { restarted }) => {
                    let why = if restarted {
                        "FreeSWITCH restarted; the call is gone and its file is final"
                    } else {
                        "the call had ended while callrec was down; its file is final"
                    };
                    break Some(from_file(path, e, why).await);
                }
                // Followed recordings are re-filtered and re-checked on reconnect.
                Some(Followed::LinkLost) => {}
                None => break None,
            },
            _ = link.down_for(link.down_grace) => break None,
            _ = tokio::time::sleep(limit) => break None,
        }
    };
    link.unfollow(uuid);
    ending
}

/// A re-adopted recording as the control API shows it.
fn view(e: &JournalEntry, stopped: bool) -> RecordingView {
    let paused = crate::values::pause_in_force(&e.rec.pauses);
    RecordingView {
        id: e.rec.recording_id.clone(),
        call_id: e.rec.call.call_id.clone(),
        status: if stopped {
            "stopped"
        } else if paused.is_some() {
            "paused"
        } else {
            "in-progress"
        },
        pause_behavior: paused,
        pauses: e.rec.pauses.clone(),
        trigger: "re-adopted",
        started_us: Some(e.rec.start_us),
        format: e.rec.format.ext(),
    }
}

/// A control request for a re-adopted recording: the command over the link, the pause in the
/// journal row.
async fn control(
    link: &Link,
    e: &mut JournalEntry,
    store: &Store,
    delivery: &dyn Delivery,
    stopped: &mut bool,
    msg: LiveMsg,
) {
    let (recording_id, want, by, reply) = match msg {
        LiveMsg::View(reply) => {
            let _ = reply.send(CallView {
                call_id: e.rec.call.call_id.clone(),
                account_id: e.rec.call.account_id.clone(),
                caller_id_number: e.rec.call.caller_id_number.clone(),
                destination: e.rec.call.callee_number.clone(),
                started_us: e.rec.start_us,
                recordings: vec![view(e, *stopped)],
            });
            return;
        }
        LiveMsg::Control {
            recording_id,
            want,
            by,
            reply,
        } => (recording_id, want, by, reply),
    };
    if recording_id != e.rec.recording_id {
        let _ = reply.send(ControlOutcome::Unknown);
        return;
    }
    if *stopped {
        let _ = reply.send(ControlOutcome::NotRunning(view(e, true)));
        return;
    }
    let Some(action) = control_action(want, crate::values::pause_in_force(&e.rec.pauses)) else {
        let _ = reply.send(ControlOutcome::Unchanged(view(e, false)));
        return;
    };
    let command = format!(
        "uuid_record {} {action} {}",
        e.rec.call.call_id, e.rec.file_path
    );
    let token = by.clone().unwrap_or_else(|| "-".into());
    let outcome = match link.api(&command).await {
        Ok(text) if text.starts_with("+OK") => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64);
            let offset_ms = now.saturating_sub(e.rec.start_us) / 1000;
            note_control(&mut e.rec.pauses, want, offset_ms, by);
            *stopped |= want == Want::Stop;
            info!(recording_id = %e.rec.recording_id, call_id = %crate::telemetry::printable(&e.rec.call.call_id), token_id = %token, action, offset_ms, "re-adopted recording controlled");
            crate::telemetry::metrics::control(want.action());
            delivery.notify(HookEvent::Controlled, &e.rec, Some(&control_reason(want)));
            if let Err(err) = crate::uploader::journal::record(store, e).await {
                warn!(recording_id = %e.rec.recording_id, error = %err, "cannot write the pause to the journal row");
            }
            ControlOutcome::Done(view(e, *stopped))
        }
        Ok(text) => {
            warn!(recording_id = %e.rec.recording_id, token_id = %token, action, reply = %text, "FreeSWITCH refused the recording control");
            ControlOutcome::Refused(text)
        }
        Err(err) => ControlOutcome::NoReply(err.to_string()),
    };
    let _ = reply.send(outcome);
}

/// The RECORD_STOP is this recording's: same file, or the recording variable callrec set.
fn is_ours(ev: &crate::event::Event, e: &JournalEntry) -> bool {
    ev.get("Record-File-Path").as_deref() == Some(e.rec.file_path.as_str())
        || ev
            .get("Recording-Variable-callrec_recording_id")
            .as_deref()
            .is_some_and(|v| v == e.rec.recording_id)
}

/// The call is over: the file is final; measure it.
async fn from_file(path: &str, e: &JournalEntry, reason: &str) -> Ending {
    let (size, ms) = inspect(path, e, true).await;
    Ending {
        size,
        stop: StopInfo {
            record_ms: ms.unwrap_or(0),
            cause: format!("re-adopted after restart: {reason}"),
            discarded_by_freeswitch: false,
            from_disk: true,
            may_grow_until_us: None,
        },
        reason: reason.into(),
    }
}

/// The file's size and (when `measure`) its duration, off the runtime.
async fn inspect(path: &str, e: &JournalEntry, measure: bool) -> (Option<u64>, Option<u64>) {
    let p = PathBuf::from(path);
    let format = e.rec.format;
    tokio::task::spawn_blocking(move || crate::recorder::inspect(&p, format, measure))
        .await
        .unwrap_or_default()
}

/// Watches the file until it has not grown for its quiet window (FreeSWITCH may still be
/// recording it); the file may still grow until the recording's time limit has passed.
async fn watch_file(path: &Path, e: &JournalEntry, watch: Watch, reason: &str) -> Ending {
    let quiet = crate::recorder::quiet_window(e.write_buffer, e.rec.sample_rate);
    info!(
        recording_id = %e.rec.recording_id,
        call_id = %crate::telemetry::printable(&e.rec.call.call_id),
        quiet_ms = quiet.as_millis() as u64,
        "watching the file until it has not grown for the quiet window"
    );
    // At most the time limit, and a minute for the call's end to reach the file.
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(e.time_limit as u64 + 60) + quiet;
    crate::recorder::quiet::until_quiet(
        path,
        quiet,
        watch.poll,
        deadline,
        &CancellationToken::new(),
    )
    .await;
    let mut ending = from_file(&e.rec.file_path, e, "file stopped growing").await;
    ending.reason = reason.into();
    ending.stop.may_grow_until_us = Some(crate::recorder::may_grow_until_us(
        e.rec.start_us,
        e.time_limit,
    ));
    ending
}

/// Keeps or discards the recording by the session's rule, and logs the outcome.
async fn settle(store: &Store, delivery: &dyn Delivery, e: JournalEntry, path: &Path, end: Ending) {
    let id = e.rec.recording_id.clone();
    let call_id = crate::telemetry::printable(&e.rec.call.call_id).into_owned();
    let account_id =
        crate::telemetry::printable(e.rec.call.account_id.as_deref().unwrap_or("-")).into_owned();
    let size = end.size;
    crate::telemetry::metrics::inc(&crate::telemetry::metrics::METRICS.recordings_readopted_total);
    if let Some(discard) =
        crate::recorder::discard_reason(e.record_min_sec, &end.stop, size.is_some())
    {
        if size.is_some() {
            if let Err(err) = tokio::fs::remove_file(path).await {
                error!(%call_id, recording_id = %id, error = %err, "cannot delete discarded recording");
            }
        }
        let _ = store.forget_recording(&id).await;
        info!(%call_id, %account_id, recording_id = %id, reason = %end.reason, discarded = %discard, "recording re-adopted after restart: discarded");
        let mut rec = e.rec;
        rec.duration_ms = end.stop.record_ms;
        rec.size = size.unwrap_or(0);
        delivery.notify(HookEvent::Discarded, &rec, Some(&discard.to_string()));
        return;
    }
    let mut rec = e.rec;
    rec.duration_ms = end.stop.record_ms;
    rec.size = size.unwrap_or(0);
    rec.completion_cause = end.stop.cause;
    rec.may_grow_until_us = end.stop.may_grow_until_us;
    let rec_ms = rec.duration_ms;
    match delivery.accept(rec).await {
        Ok(()) => {
            info!(%call_id, %account_id, recording_id = %id, reason = %end.reason, duration_ms = rec_ms, "recording re-adopted after restart")
        }
        Err(err) => warn!(
            %call_id,
            %account_id,
            recording_id = %id,
            error = %err,
            "re-adopted recording could not be handed to delivery; it stays journaled for the next start"
        ),
    }
}
