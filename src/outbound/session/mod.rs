//! One call, as a pure state machine: [`Session::handle`] takes an [`Input`] (a reply, an
//! event, a timer, a file inspected, the rules' plan…) and returns the [`Action`]s to perform
//! (commands to send, timers to set, files to inspect or delete, recordings to deliver). No
//! sockets, no clock, no tokio: [`super::driver`] performs the actions and feeds the results
//! back. Log lines are written here, with `tracing`, where the decision is made.
//!
//! Order of work: subscribe (pipelined) while the rules decide; then start the recordings that
//! start at once and hand the call back to the dialplan (`transfer` into the continuation
//! context), one command at a time; then follow its events: start recordings on answer or
//! bridge, correlate RECORD_START/STOP by `callrec_recording_id` (or path), and finish every
//! recording — from RECORD_STOP, or from the file on disk when RECORD_STOP never comes.
//!
//! A lost event-socket link is an outage, not an ending: recordings stay open and the call is
//! followed again when the link is back ([`Action::Resync`]). A file is final when FreeSWITCH
//! said so (RECORD_STOP) or the call is over; otherwise it is judged only once it has not grown
//! for its quiet window ([`recorder::quiet_window`]) and delivered as possibly still growing
//! (`may_grow_until_us`), never as certainly complete.
//!
//! Invariants: the call is handed back whatever the rules say and before anything slow; every
//! planned recording ends in exactly one log line saying kept, discarded (and why), not started
//! or failed (and why), or (at shutdown) stays journaled for the next start; nothing from the
//! channel data reaches a file name unsanitised; the session is `Done` only when every
//! recording is accounted for.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use tracing::{error, info, warn};

use crate::callflow::{Flow, Module, RecordAction, RecordCaller};
use crate::esl::{Command, EventFormat, SendMsg};
use crate::event::{Event, EventName};
use crate::recorder::{self, paths, Recording, State, StopInfo};
use crate::rules::{CallInfo, Plan, PlannedRecording, RecordCall, Trigger};
use crate::settings::webhook::HookEvent;
use crate::telemetry::metrics::{self, METRICS};
use crate::telemetry::printable;
use crate::uploader::journal::JournalEntry;
use crate::uploader::{FinishedRecording, RecordingKind};
use crate::values::AudioFormat;

mod commands;
mod control;
mod flow;
mod lifecycle;
mod resync;

pub use control::{
    control_action, control_reason, note_control, CallView, ControlOutcome, ControlRequest,
    RecordingView, Want,
};
use flow::FlowRun;
pub use flow::{BEEP, SILENCE_HITS, SILENCE_THRESH};

/// What the session needs to know of callrec's configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    /// Dialplan context calls are handed back to.
    pub continue_context: String,
    /// After hangup, how long to wait for RECORD_STOP before measuring the file.
    pub record_stop_grace: Duration,
    /// How often a file is polled once the connection is lost.
    pub disk_poll: Duration,
    /// The write buffer every `uuid_record` pins (`enable_file_write_buffering`), bytes per
    /// channel: it sets how long a file FreeSWITCH still writes can stay unchanged.
    pub write_buffer: u64,
    /// The sofia profile callflows bridge `route` devices through.
    pub bridge_profile: String,
    /// Follow the call over the event-socket link: set `callrec_follow=<tag>` on the channel,
    /// take no events on the socket, and release the socket once the call is handed back.
    /// `None`: follow over the socket to the end.
    pub follow_tag: Option<String>,
}

/// Which command a reply belongs to.
pub type CmdId = u64;

/// A recording, by its place in the call.
pub type RecIdx = usize;

/// The reply to a command: `Ok(true/false, text)` (`+OK`/`-ERR`), or why none came.
pub type ReplyResult = Result<(bool, String), String>;

/// The session's timers (one of each at most).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// `record_stop_grace` after hangup.
    Grace,
    /// Next poll of the files being watched.
    DiskPoll,
}

/// Something that happened.
#[derive(Debug)]
pub enum Input {
    /// The rules' decision for the call (or, with `bridge_target`, for the callee the bridge
    /// revealed); `Err` when they failed or were too slow.
    Planned {
        bridge_target: Option<String>,
        result: Result<Plan, String>,
    },
    Reply(CmdId, ReplyResult),
    Event(Event),
    /// FreeSWITCH's disconnect notice with `Content-Disposition: disconnect`.
    Disconnected,
    /// The socket closed, with the error when the stream was malformed.
    Closed(Option<String>),
    /// The event-socket link the call is followed over was lost: events may have been missed.
    LinkLost,
    /// The answer to [`Action::Resync`]: the channel as FreeSWITCH has it now (`uuid_dump`),
    /// `None` when the call is gone, `Err` when the link did not come back in time.
    Resynced(Result<Option<Event>, String>),
    Timer(Timer),
    /// A file's size and (when asked) its duration.
    Inspected {
        rec: RecIdx,
        size: Option<u64>,
        duration_ms: Option<u64>,
    },
    /// Delivery took the recording (or could not).
    Delivered {
        rec: RecIdx,
        result: Result<(), String>,
    },
    /// The shutdown deadline passed: finish every recording from its file now.
    Abort,
    /// The control API asks to pause, resume or stop a recording.
    Control(ControlRequest),
}

/// Something to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send a command; its reply (or why none came) is fed back as [`Input::Reply`].
    Send(CmdId, Command),
    /// Ask the rules; fed back as [`Input::Planned`].
    Plan {
        call: CallInfo,
        bridge_target: Option<String>,
    },
    /// (Re)arm a timer; fed back as [`Input::Timer`].
    SetTimer(Timer, Duration),
    /// FreeSWITCH creates missing directories itself; failing here is only a warning.
    CreateDir(PathBuf),
    /// Stat the file (and measure its duration when `measure`); fed back as
    /// [`Input::Inspected`].
    Inspect {
        rec: RecIdx,
        path: PathBuf,
        format: AudioFormat,
        measure: bool,
    },
    /// Remove a discarded recording's file.
    Delete(PathBuf),
    /// Hand a kept recording to delivery; fed back as [`Input::Delivered`].
    Deliver(RecIdx, Box<FinishedRecording>),
    /// Journal a recording before FreeSWITCH is asked to record it (so a crash leaves a row,
    /// never an anonymous file). Performed before the next action.
    Journal(Box<JournalEntry>),
    /// A journaled recording ended without being kept.
    Forget(String),
    /// Tell webhooks what happened to a recording (`reason`: why it failed or was discarded,
    /// or which control it got). Never waits.
    Notify(HookEvent, Box<FinishedRecording>, Option<String>),
    /// Send `resume` and close our side of the socket, so the dialplan goes on after `socket`
    /// (its fallback, or the context's own routing after the drop-in extension); stop reading.
    /// Only while the call is still parked in the socket (never after a transfer: FreeSWITCH
    /// would reset the live channel).
    Close,
    /// The call is handed back and followed over the link: send `exit` on the socket and let
    /// it go; later commands go over the link.
    Release,
    /// Everything is accounted for: send `exit` and let FreeSWITCH close the socket.
    Exit,
    /// Once the link is back (within its grace), route the call's events again and ask for
    /// the channel's state; fed back as [`Input::Resynced`].
    Resync,
    /// The answer to [`Input::Control`] with this id.
    ControlDone(u64, ControlOutcome),
    /// The session is over.
    Done,
}

/// Where the call is.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Subscriptions sent; waiting for their replies and for the plan.
    Setup {
        replies: usize,
        plan: Option<Box<Plan>>,
    },
    /// Commands queued one at a time (starts, then the transfer).
    Starting,
    /// Handed back (or given up on): following the call to its end.
    Following,
    /// `Done` was returned.
    Over,
}

/// What a command in flight was for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Purpose {
    Subscribe,
    /// `uuid_setvar <uuid> callrec_follow <tag>`: the link's filter lets the call's events in.
    Follow,
    Start(RecIdx),
    /// `sendmsg execute transfer <arg>` ("<extension> XML <context>").
    Transfer(String),
    /// `resume`: when the socket closes, FreeSWITCH goes on with the dialplan right after the
    /// `socket` action (the drop-in extension's hand-back).
    Resume,
    /// `uuid_setvar <uuid> socket_resume false`, pipelined right before a transfer of a call the
    /// drop-in extension handed over with `socket_resume=true` (else FreeSWITCH's
    /// `socket_function` would set CS_EXECUTE over the transfer).
    ClearResume,
    /// `uuid_record <uuid> stop <path>` (a callflow's `record_call stop`).
    Stop(RecIdx),
    /// `uuid_record <uuid> pause|resume|mask|unmask|stop <path>` asked for by the control API.
    Control {
        idx: RecIdx,
        req: ControlRequest,
        action: &'static str,
    },
    /// A dialplan application run by a callflow (`sendmsg execute` with this `Event-UUID`);
    /// `starts` is the recording it begins (the `record` application).
    Execute {
        app_uuid: String,
        app: String,
        arg: String,
        starts: Option<RecIdx>,
    },
}

/// One call.
pub struct Session {
    settings: Settings,
    info: CallInfo,
    /// The account's public key its recordings are encrypted to before they are kept.
    encrypt_to: Option<String>,
    recordings: Vec<Recording>,
    phase: Phase,
    next_cmd: CmdId,
    in_flight: Vec<(CmdId, Purpose)>,
    /// Commands waiting for the previous one's reply.
    queue: VecDeque<Purpose>,
    hangup_complete: bool,
    closed: bool,
    bridge_planned: bool,
    /// The channel is answered (from the channel data, then CHANNEL_ANSWER).
    answered: bool,
    /// Events come over the link, not the socket.
    link: bool,
    /// The socket was let go (`exit`); commands go over the link.
    released: bool,
    /// Replies the setup waits for before the plan is acted on (the subscriptions).
    setup_replies: usize,
    /// Nothing is recorded and nothing could be (no rule for a bridged callee): the call is let
    /// go once handed back, not followed.
    nothing_to_follow: bool,
    flow: Option<FlowRun>,
    /// New recording ids (tests inject fixed ones).
    ids: Box<dyn FnMut() -> String + Send>,
}

/// The events a session acts on: its connection never drops them, however far the session lags
/// (every other event may be dropped from a full queue).
pub fn needs(e: &Event) -> bool {
    matches!(
        e.name(),
        Some(
            EventName::RecordStart
                | EventName::RecordStop
                | EventName::ChannelAnswer
                | EventName::ChannelBridge
                | EventName::ChannelExecuteComplete
                | EventName::ChannelHangupComplete
        )
    )
}

/// What FreeSWITCH's answer to `uuid_dump <uuid> json` says: the channel as it is now (one JSON
/// object, mod_commands' unfired CHANNEL_DATA event), `None` when it names no channel (`-ERR No
/// such channel!`: the call is gone), or why the answer means neither.
pub fn channel_dump(text: String) -> Result<Option<Event>, String> {
    if text.starts_with('{') {
        let shown = printable(&text.chars().take(120).collect::<String>()).into_owned();
        Event::from_json(bytes::Bytes::from(text), 0)
            .map(Some)
            .map_err(|e| format!("unreadable uuid_dump answer ({e}): {shown}"))
    } else if text.starts_with("-ERR") {
        Ok(None)
    } else {
        Err(format!(
            "unexpected uuid_dump answer: {}",
            printable(&text.chars().take(120).collect::<String>())
        ))
    }
}

/// Destination numbers are put in a `transfer` argument, which FreeSWITCH splits on spaces.
fn safe_destination(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 128
        && d.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+*#._@:-".contains(c))
}

impl Session {
    pub fn new(info: CallInfo, settings: Settings) -> Session {
        Session::with_ids(info, settings, || uuid::Uuid::new_v4().to_string())
    }

    /// A session whose recordings get their ids from `ids`.
    pub fn with_ids(
        info: CallInfo,
        settings: Settings,
        ids: impl FnMut() -> String + Send + 'static,
    ) -> Session {
        let link = settings.follow_tag.is_some();
        Session {
            settings,
            link,
            released: false,
            setup_replies: if link { 0 } else { 3 },
            nothing_to_follow: false,
            answered: info.answered,
            info,
            recordings: Vec::new(),
            phase: Phase::Setup {
                replies: 0,
                plan: None,
            },
            next_cmd: 0,
            in_flight: Vec::new(),
            queue: VecDeque::new(),
            hangup_complete: false,
            closed: false,
            bridge_planned: false,
            flow: None,
            encrypt_to: None,
            ids: Box::new(ids),
        }
    }

    /// The drop-in extension handed the call over (see [`CallInfo::in_place`]).
    fn in_place(&self) -> bool {
        self.info.in_place
    }

    pub fn info(&self) -> &CallInfo {
        &self.info
    }

    pub fn recordings(&self) -> &[Recording] {
        &self.recordings
    }

    /// The first actions: subscribe (pipelined) and ask the rules.
    pub fn start(&mut self) -> Vec<Action> {
        let i = &self.info;
        info!(
            caller = %printable(&i.call.caller_id_number),
            caller_name = %printable(&i.call.caller_id_name),
            destination = %printable(&i.call.callee_number),
            user_id = %printable(i.call.user_id.as_deref().unwrap_or("-")),
            device_id = %printable(i.call.device_id.as_deref().unwrap_or("-")),
            "call accepted"
        );
        let mut out = Vec::new();
        // Followed over the link, the socket carries no events: nothing to subscribe to.
        if !self.link {
            self.subscribe(&mut out);
        }
        out.push(Action::Plan {
            call: self.info.clone(),
            bridge_target: None,
        });
        out
    }

    /// The socket's subscriptions (pipelined): the call's own events, lingering after hangup.
    fn subscribe(&mut self, out: &mut Vec<Action>) {
        for cmd in [
            Command::MyEvents {
                uuid: None,
                format: Some(EventFormat::Json),
            },
            Command::Linger(None),
            Command::Event {
                format: EventFormat::Json,
                events: vec!["RECORD_START".into(), "RECORD_STOP".into()],
            },
        ] {
            out.push(self.send(cmd, Purpose::Subscribe));
        }
    }

    /// The call goes back to being followed over its socket (a callflow runs in it, or the
    /// link could not take it).
    fn follow_over_socket(&mut self, out: &mut Vec<Action>) {
        if self.link && !self.released {
            self.link = false;
            self.subscribe(out);
        }
    }

    /// Feeds one input; returns what to do.
    pub fn handle(&mut self, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        if self.phase == Phase::Over {
            return out;
        }
        match input {
            Input::Planned {
                bridge_target: None,
                result,
            } => {
                let plan = self.plan_or_nothing(result);
                if let Phase::Setup { plan: p, .. } = &mut self.phase {
                    *p = Some(Box::new(plan));
                }
                self.after_setup(&mut out);
            }
            Input::Planned {
                bridge_target: Some(target),
                result,
            } => self.on_bridge_plan(target, result, &mut out),
            Input::Reply(id, result) => self.on_reply(id, result, &mut out),
            Input::Event(e) => self.on_event(e, &mut out),
            Input::Disconnected | Input::Closed(None) => self.on_closed(None, &mut out),
            Input::Closed(Some(e)) => self.on_closed(Some(e), &mut out),
            Input::LinkLost => self.on_link_lost(&mut out),
            Input::Resynced(result) => self.on_resynced(result, &mut out),
            Input::Timer(t) => self.on_timer(t, &mut out),
            Input::Inspected {
                rec,
                size,
                duration_ms,
            } => self.on_inspected(rec, size, duration_ms, &mut out),
            Input::Delivered { rec, result } => {
                let id = &self.recordings[rec].id;
                match result {
                    Ok(()) => {
                        info!(recording_id = %id, "recording kept");
                        metrics::inc(&METRICS.recordings_kept_total);
                    }
                    Err(e) => error!(
                        recording_id = %id,
                        error = %e,
                        path = %self.recordings[rec].path.display(),
                        "recording kept on disk but delivery could not take it yet; retrying in the background (the journal keeps it across a restart)"
                    ),
                }
                self.recordings[rec].state = State::Finished;
            }
            Input::Control(req) => self.on_control(req, &mut out),
            Input::Abort => {
                warn!(
                    unfinished = self.unfinished(),
                    "shutdown deadline: recordings still running are left to the next start"
                );
                // Still parked in `socket`, with no hand-back on its way: let it go on.
                let parked = matches!(self.phase, Phase::Setup { .. } | Phase::Starting)
                    && !self
                        .in_flight
                        .iter()
                        .any(|(_, p)| matches!(p, Purpose::Transfer(_) | Purpose::Resume));
                if parked && !self.closed {
                    warn!("shutdown deadline before the call was handed back: closing with resume, the dialplan goes on");
                    out.push(Action::Close);
                }
                // FreeSWITCH goes on writing these files: they stay journaled, and the next
                // start takes them up (over the event socket, or from their files).
                for r in &mut self.recordings {
                    if r.state.is_running() {
                        warn!(recording_id = %r.id, "callrec shut down while FreeSWITCH records: the recording stays journaled; the next start takes it up");
                        r.state = State::Finished;
                    }
                }
                for r in &mut self.recordings {
                    if matches!(r.state, State::Waiting(_)) {
                        info!(recording_id = %r.id, reason = "callrec shut down first", "recording not started");
                        r.state = State::Finished;
                    }
                }
                // No more events will be read; end once the files are accounted for.
                self.closed = true;
                self.in_flight.clear();
                self.queue.clear();
                self.phase = Phase::Following;
            }
        }
        self.maybe_done(&mut out);
        out
    }

    fn send(&mut self, cmd: Command, purpose: Purpose) -> Action {
        self.next_cmd += 1;
        self.in_flight.push((self.next_cmd, purpose));
        Action::Send(self.next_cmd, cmd)
    }

    /// Recordings whose end is still to come or still being handled.
    fn unfinished(&self) -> usize {
        self.recordings
            .iter()
            .filter(|r| r.state.is_running() || matches!(r.state, State::Finishing { .. }))
            .count()
    }

    /// The call has ended (or cannot be followed) and every recording is accounted for.
    fn maybe_done(&mut self, out: &mut Vec<Action>) {
        let ended = self.hangup_complete || self.closed;
        if self.phase != Phase::Following || !ended || self.unfinished() > 0 {
            return;
        }
        if !self.closed && !self.released {
            out.push(Action::Exit);
        }
        info!(recordings = self.recordings.len(), "call finished");
        out.push(Action::Done);
        self.phase = Phase::Over;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_dumps() {
        let dump =
            channel_dump(r#"{"Event-Name":"CHANNEL_DATA","Answer-State":"answered"}"#.into());
        let dump = dump.unwrap().unwrap();
        assert_eq!(dump.get("Answer-State").unwrap(), "answered");
        assert!(channel_dump("-ERR No such channel!\n".into())
            .unwrap()
            .is_none());
        assert!(channel_dump("+OK what".into())
            .unwrap_err()
            .contains("unexpected"));
        assert!(channel_dump("{not json".into())
            .unwrap_err()
            .contains("unreadable"));
    }

    #[test]
    fn destinations() {
        for ok in ["1000", "+15551234567", "*97", "user@example.com", "a.b-c_d"] {
            assert!(safe_destination(ok), "{ok}");
        }
        for bad in ["", "1000 XML evil", "1000\nexit", "a'b", "${x}"] {
            assert!(!safe_destination(bad), "{bad}");
        }
    }
}
