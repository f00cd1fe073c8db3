//! The session's control room: a live recording paused, resumed or stopped on request (the
//! control API), and the view of the call and its recordings the API shows.
//!
//! `silence` pauses with `uuid_record <uuid> mask <path>` (the file keeps its length, silent),
//! `skip` with `pause` (the paused time is absent from the file); `in-progress` undoes either
//! (`unmask` / `resume`); `stopped` is `uuid_record <uuid> stop <path>`, after which the recording
//! ends and is kept as usual. FreeSWITCH sends no event for a pause, so the pause is recorded
//! here when FreeSWITCH acknowledges it, with its offset on the call's clock and who asked.
//!
//! Invariants: a request gets exactly one [`Action::ControlDone`]; asking for the state a
//! recording is already in changes nothing and sends nothing; only a running recording is
//! controlled (one waiting for its trigger, finished or discarded answers with its status); the
//! command goes through the queue like any other, so it never overtakes a start or a hand-back.

use super::*;
use crate::values::{Pause, PauseBehavior};

/// What the API asks for a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Pause(PauseBehavior),
    Resume,
    Stop,
}

impl Want {
    pub fn action(self) -> &'static str {
        match self {
            Want::Pause(_) => "pause",
            Want::Resume => "resume",
            Want::Stop => "stop",
        }
    }
}

/// One control request, with the driver's id to answer it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlRequest {
    pub id: u64,
    pub recording_id: String,
    pub want: Want,
    /// The API token's id, for the audit trail.
    pub by: Option<String>,
    /// When the request arrived (µs since the epoch): the pause's offset is measured from it.
    pub now_us: u64,
}

/// A recording as the control API shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RecordingView {
    pub id: String,
    pub call_id: String,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_behavior: Option<PauseBehavior>,
    pub pauses: Vec<Pause>,
    pub trigger: &'static str,
    /// RECORD_START's time, µs since the epoch, once FreeSWITCH started it.
    pub started_us: Option<u64>,
    pub format: &'static str,
}

/// A live call as the `channels` resource shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CallView {
    pub call_id: String,
    pub account_id: Option<String>,
    pub caller_id_number: String,
    pub destination: String,
    pub started_us: u64,
    pub recordings: Vec<RecordingView>,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlOutcome {
    /// FreeSWITCH took the command.
    Done(RecordingView),
    /// The recording already was as asked: nothing sent.
    Unchanged(RecordingView),
    /// Not running (waiting, finished, discarded, failed): its view says which.
    NotRunning(RecordingView),
    /// FreeSWITCH's `-ERR …`.
    Refused(String),
    /// No answer from FreeSWITCH (why).
    NoReply(String),
    /// This call has no recording with that id.
    Unknown,
}

/// The `uuid_record` action that brings a recording paused as `paused` to `want`; `None` when
/// it already is there (nothing to send).
pub fn control_action(want: Want, paused: Option<PauseBehavior>) -> Option<&'static str> {
    match (want, paused) {
        (Want::Pause(_), Some(_)) | (Want::Resume, None) => None,
        (Want::Pause(PauseBehavior::Silence), None) => Some("mask"),
        (Want::Pause(PauseBehavior::Skip), None) => Some("pause"),
        (Want::Resume, Some(PauseBehavior::Silence)) => Some("unmask"),
        (Want::Resume, Some(PauseBehavior::Skip)) => Some("resume"),
        (Want::Stop, _) => Some("stop"),
    }
}

/// A control as a webhook's `reason`: `pause:silence`, `pause:skip`, `resume` or `stop`.
pub fn control_reason(want: Want) -> String {
    match want {
        Want::Pause(b) => format!("pause:{}", b.as_str()),
        w => w.action().to_string(),
    }
}

/// What FreeSWITCH took, in the recording's pauses: a pause begins at `offset_ms`, a resume ends
/// the one in force there (a stop changes no pause).
pub fn note_control(pauses: &mut Vec<Pause>, want: Want, offset_ms: u64, by: Option<String>) {
    match want {
        Want::Pause(behavior) => pauses.push(Pause {
            start_ms: offset_ms,
            end_ms: None,
            behavior,
            by,
        }),
        Want::Resume => {
            if let Some(p) = pauses.last_mut() {
                p.end_ms = Some(offset_ms.max(p.start_ms));
            }
        }
        Want::Stop => {}
    }
}

impl Session {
    /// The call and its recordings, as the API shows them.
    pub fn view(&self) -> CallView {
        CallView {
            call_id: self.info.call.call_id.clone(),
            account_id: self.info.call.account_id.clone(),
            caller_id_number: self.info.call.caller_id_number.clone(),
            destination: self.info.call.callee_number.clone(),
            started_us: self.info.started_us,
            recordings: (0..self.recordings.len())
                .map(|i| self.recording_view(i))
                .collect(),
        }
    }

    pub(super) fn recording_view(&self, idx: RecIdx) -> RecordingView {
        let r = &self.recordings[idx];
        RecordingView {
            id: r.id.clone(),
            call_id: self.info.call.call_id.clone(),
            status: r.status(),
            pause_behavior: r.paused(),
            pauses: r.pauses.clone(),
            trigger: r.settings.trigger().as_str(),
            started_us: r.started_us(),
            format: r.settings.format.ext(),
        }
    }

    pub(super) fn on_control(&mut self, req: ControlRequest, out: &mut Vec<Action>) {
        let Some(idx) = self
            .recordings
            .iter()
            .position(|r| r.id == req.recording_id)
        else {
            out.push(Action::ControlDone(req.id, ControlOutcome::Unknown));
            return;
        };
        let rec = &self.recordings[idx];
        if !rec.is_running() || rec.stop_requested || self.closed {
            out.push(Action::ControlDone(
                req.id,
                ControlOutcome::NotRunning(self.recording_view(idx)),
            ));
            return;
        }
        let Some(action) = control_action(req.want, rec.paused()) else {
            out.push(Action::ControlDone(
                req.id,
                ControlOutcome::Unchanged(self.recording_view(idx)),
            ));
            return;
        };
        self.queue.push_back(Purpose::Control { idx, req, action });
        self.next_queued(out);
    }

    pub(super) fn send_control(
        &mut self,
        idx: RecIdx,
        req: ControlRequest,
        action: &'static str,
    ) -> Action {
        let cmd = if action == "stop" {
            self.recordings[idx].stop_command(&self.info.call.call_id)
        } else {
            self.recordings[idx].control_command(&self.info.call.call_id, action)
        };
        self.send(cmd, Purpose::Control { idx, req, action })
    }

    pub(super) fn on_control_reply(
        &mut self,
        idx: RecIdx,
        req: ControlRequest,
        action: &'static str,
        result: ReplyResult,
        out: &mut Vec<Action>,
    ) {
        let rec_id = self.recordings[idx].id.clone();
        let by = req.by.clone().unwrap_or_else(|| "-".into());
        let outcome = match result {
            Ok((true, _)) => {
                let r = &mut self.recordings[idx];
                let offset_ms = r
                    .started_us()
                    .map_or(0, |s| req.now_us.saturating_sub(s) / 1000);
                note_control(&mut r.pauses, req.want, offset_ms, req.by.clone());
                if req.want == Want::Stop {
                    r.stop_requested = true;
                }
                match req.want {
                    Want::Pause(behavior) => {
                        info!(recording_id = %rec_id, token_id = %by, pause_behavior = behavior.as_str(), offset_ms, "recording paused")
                    }
                    Want::Resume => {
                        info!(recording_id = %rec_id, token_id = %by, offset_ms, "recording resumed")
                    }
                    Want::Stop => {
                        info!(recording_id = %rec_id, token_id = %by, offset_ms, "recording stop requested")
                    }
                }
                metrics::control(req.want.action());
                // The journal row carries the pauses: a restart keeps them listed, and the
                // recording's metadata has them however it ends.
                out.push(Action::Journal(Box::new(self.journal_entry(idx))));
                let meta = self.finished_meta(idx, self.recordings[idx].started_us());
                out.push(Action::Notify(
                    HookEvent::Controlled,
                    Box::new(meta),
                    Some(control_reason(req.want)),
                ));
                ControlOutcome::Done(self.recording_view(idx))
            }
            Ok((false, text)) => {
                warn!(recording_id = %rec_id, token_id = %by, action, reply = %text, "FreeSWITCH refused the recording control");
                ControlOutcome::Refused(text)
            }
            Err(e) => {
                warn!(recording_id = %rec_id, token_id = %by, action, error = %e, "recording control not acknowledged");
                ControlOutcome::NoReply(e)
            }
        };
        out.push(Action::ControlDone(req.id, outcome));
    }
}
