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
use crate::telemetry::metrics::{self, METRICS};
use crate::telemetry::printable;
use crate::uploader::journal::JournalEntry;
use crate::uploader::{CallMeta, FinishedRecording, RecordingKind};
use crate::values::AudioFormat;

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
    /// A dialplan application run by a callflow (`sendmsg execute` with this `Event-UUID`);
    /// `starts` is the recording it begins (the `record` application).
    Execute {
        app_uuid: String,
        app: String,
        arg: String,
        starts: Option<RecIdx>,
    },
}

/// The tone played before `record_caller` records.
pub const BEEP: &str = "tone_stream://%(500,0,800)";
/// `record`'s silence detection: energy threshold and seconds of silence that end it.
pub const SILENCE_THRESH: u32 = 200;
pub const SILENCE_HITS: u32 = 5;

/// A callflow running on the call, one module at a time.
struct FlowRun {
    id: String,
    /// The module to run after the current one.
    next: Option<Flow>,
    /// Applications of the current module still to run, in order (with the recording the
    /// `record` application begins).
    apps: VecDeque<(String, String, Option<RecIdx>)>,
    /// The application run whose CHANNEL_EXECUTE_COMPLETE the flow waits for.
    waiting: Option<String>,
    /// Recordings the flow's `record_call start` made (what `record_call stop` stops).
    started: Vec<RecIdx>,
    /// The devices `device`/`user` modules ring (resolved by the planner).
    endpoints: std::collections::BTreeMap<String, Vec<crate::callflow::Endpoint>>,
    /// The flow has handed the call on (dialplan, hangup): nothing more to run.
    over: bool,
}

/// One call.
pub struct Session {
    settings: Settings,
    info: CallInfo,
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
            caller = %printable(&i.caller_id_number),
            caller_name = %printable(&i.caller_id_name),
            destination = %printable(&i.destination),
            user_id = %printable(i.user_id.as_deref().unwrap_or("-")),
            device_id = %printable(i.device_id.as_deref().unwrap_or("-")),
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

    fn plan_or_nothing(&mut self, result: Result<Plan, String>) -> Plan {
        match result {
            Ok(p) => p,
            Err(e) => {
                error!(error = %e, "recording rules unavailable or too slow: call not recorded");
                Plan::default()
            }
        }
    }

    /// Once the subscriptions are acknowledged and the plan is in: plan the recordings, queue
    /// the starts and the hand-back.
    fn after_setup(&mut self, out: &mut Vec<Action>) {
        let Phase::Setup {
            replies,
            plan: Some(_),
        } = &self.phase
        else {
            return;
        };
        if *replies != self.setup_replies {
            return;
        }
        let Phase::Setup {
            plan: Some(mut plan),
            ..
        } = std::mem::replace(&mut self.phase, Phase::Starting)
        else {
            return;
        };
        let callflow = plan.callflow.take();
        self.identified(&plan);
        self.nothing_to_follow =
            plan.recordings.is_empty() && callflow.is_none() && plan.callee_never_records;
        if self.link && !self.nothing_to_follow {
            if callflow.is_some() {
                // A callflow waits on CHANNEL_EXECUTE_COMPLETE, which the link does not carry:
                // the call keeps its socket.
                self.follow_over_socket(out);
            } else {
                self.queue.push_back(Purpose::Follow);
            }
        }
        if plan.recordings.is_empty() {
            info!("no recording: no rule matched");
        }
        for p in plan.recordings {
            self.add_planned(p);
        }
        for idx in 0..self.recordings.len() {
            let t = self.recordings[idx].settings.trigger();
            if t == Trigger::Immediately || (t == Trigger::OnAnswer && self.answered) {
                self.queue.push_back(Purpose::Start(idx));
            }
        }
        if let Some(cf) = callflow {
            info!(callflow_id = %cf.id, "callflow matched: running it");
            self.flow = Some(FlowRun {
                id: cf.id,
                next: Some(cf.flow),
                apps: VecDeque::new(),
                waiting: None,
                started: Vec::new(),
                endpoints: cf.endpoints,
                over: false,
            });
            // The call stays in the socket while the flow runs; its events are followed.
            self.phase = Phase::Following;
            self.next_queued(out);
            self.advance_flow(out);
            return;
        }
        let dest = self.info.destination.clone();
        self.hand_back(&dest, None, out);
    }

    /// Hands the call back to the dialplan. With `context` named: `transfer <extension> XML
    /// <context>`. Without: a call from the drop-in extension goes on where it was (`resume`
    /// when the socket is let go now, else a transfer into its own context, which its guard
    /// variable makes skip the callrec extension); any other goes to `continue_context`. An
    /// argument FreeSWITCH would split (spaces, braces…) is never sent: the socket is closed
    /// with `resume`, so the dialplan goes on after `socket`.
    fn hand_back(&mut self, extension: &str, context: Option<&str>, out: &mut Vec<Action>) {
        if context.is_none() && self.in_place() && self.lets_socket_go() {
            self.queue.push_back(Purpose::Resume);
            self.next_queued(out);
            return;
        }
        let context = match context {
            Some(c) => c.to_string(),
            None if self.in_place() => self.info.context.clone(),
            None => self.settings.continue_context.clone(),
        };
        if !safe_destination(extension) || !safe_destination(&context) {
            warn!(
                destination = %extension.escape_debug(),
                context = %context.escape_debug(),
                "destination or context has characters unsafe in a transfer; closing the socket so the dialplan goes on after `socket`"
            );
            self.queue.clear();
            self.abandon("destination unsafe to hand back", out);
            return;
        }
        if self.in_place() {
            self.queue.push_back(Purpose::ClearResume);
        }
        self.queue
            .push_back(Purpose::Transfer(format!("{extension} XML {context}")));
        self.next_queued(out);
    }

    /// Whether the socket goes as soon as the call is handed back: followed over the link, or
    /// nothing to follow.
    fn lets_socket_go(&self) -> bool {
        (self.link && self.flow.is_none()) || self.nothing_to_follow
    }

    /// A planned recording joins the call (waiting for its trigger), with its reason logged.
    fn add_planned(&mut self, plan: PlannedRecording) -> RecIdx {
        let rec = Recording::with_id((self.ids)(), plan, &self.dir());
        info!(
            recording_id = %rec.id,
            reason = %rec.reason,
            trigger = rec.settings.trigger().as_str(),
            format = rec.settings.format.ext(),
            "rule matched"
        );
        self.recordings.push(rec);
        self.recordings.len() - 1
    }

    /// Takes the parties the rules identified where the channel variables were silent.
    fn identified(&mut self, plan: &Plan) {
        if self.info.account_id.is_none() {
            let shown = plan.account_id.as_deref().unwrap_or("-");
            tracing::Span::current()
                .record("account_id", tracing::field::display(printable(shown)));
            self.info.account_id = plan.account_id.clone();
        }
        if self.info.user_id.is_none() {
            self.info.user_id = plan.user_id.clone();
        }
        if self.info.device_id.is_none() {
            self.info.device_id = plan.device_id.clone();
        }
    }

    fn dir(&self) -> PathBuf {
        paths::recording_dir(
            &self.settings.data_dir,
            self.info.account_id.as_deref(),
            self.info.started_us,
        )
    }

    /// Sends the next queued command, unless one is in flight.
    fn next_queued(&mut self, out: &mut Vec<Action>) {
        if !self.in_flight.is_empty() || self.closed {
            return;
        }
        while let Some(p) = self.queue.pop_front() {
            match p {
                Purpose::Start(idx) => {
                    let cmd = match self.recordings[idx]
                        .start_command(&self.info.call_id, self.settings.write_buffer)
                    {
                        Ok(c) => c,
                        Err(e) => {
                            self.fail(idx, format!("cannot build command: {e}"));
                            continue;
                        }
                    };
                    if let Some(parent) = self.recordings[idx].path.parent() {
                        out.push(Action::CreateDir(parent.to_path_buf()));
                    }
                    out.push(Action::Journal(Box::new(self.journal_entry(idx))));
                    self.recordings[idx].state = State::Starting;
                    out.push(self.send(cmd, Purpose::Start(idx)));
                }
                Purpose::Transfer(arg) => {
                    let cmd = Command::SendMsg(SendMsg::execute("transfer", Some(arg.clone())));
                    out.push(self.send(cmd, Purpose::Transfer(arg)));
                }
                Purpose::Resume => {
                    if !self.lets_socket_go() {
                        // The link fell back to the socket since the hand-back was queued:
                        // the socket stays, so the call moves by transfer instead.
                        let dest = self.info.destination.clone();
                        let ctx = self.info.context.clone();
                        self.hand_back(&dest, Some(&ctx), out);
                        return;
                    }
                    out.push(self.send(Command::Resume, Purpose::Resume));
                }
                Purpose::ClearResume => {
                    let cmd = Command::Api(format!(
                        "uuid_setvar {} socket_resume false",
                        self.info.call_id
                    ));
                    out.push(self.send(cmd, Purpose::ClearResume));
                    // Pipelined: the transfer goes right behind it, without waiting for this
                    // reply, so the moment where callrec could die between the two (leaving the
                    // call parked with resume off) is as short as it can be.
                    continue;
                }
                Purpose::Stop(idx) => {
                    let cmd = self.recordings[idx].stop_command(&self.info.call_id);
                    out.push(self.send(cmd, Purpose::Stop(idx)));
                }
                Purpose::Execute {
                    app_uuid,
                    app,
                    arg,
                    starts,
                } => {
                    let mut msg =
                        SendMsg::execute(app.clone(), (!arg.is_empty()).then(|| arg.clone()));
                    msg.event_uuid = Some(app_uuid.clone());
                    if let Some(idx) = starts {
                        if let Some(parent) = self.recordings[idx].path.parent() {
                            out.push(Action::CreateDir(parent.to_path_buf()));
                        }
                        out.push(Action::Journal(Box::new(self.journal_entry(idx))));
                        self.recordings[idx].state = State::Starting;
                        info!(recording_id = %self.recordings[idx].id, path = %self.recordings[idx].path.display(), "recording the caller");
                    }
                    let purpose = Purpose::Execute {
                        app_uuid,
                        app,
                        arg,
                        starts,
                    };
                    out.push(self.send(Command::SendMsg(msg), purpose));
                }
                Purpose::Follow => {
                    let tag = self.settings.follow_tag.clone().unwrap_or_default();
                    let cmd = Command::Api(format!(
                        "uuid_setvar {} {} {tag}",
                        self.info.call_id,
                        crate::inbound::FOLLOW_VARIABLE
                    ));
                    if cmd.validate().is_err() {
                        self.follow_over_socket(out);
                        continue;
                    }
                    out.push(self.send(cmd, Purpose::Follow));
                }
                Purpose::Subscribe => continue,
            }
            return;
        }
    }

    fn on_reply(&mut self, id: CmdId, result: ReplyResult, out: &mut Vec<Action>) {
        let Some(pos) = self.in_flight.iter().position(|(c, _)| *c == id) else {
            return;
        };
        let (_, purpose) = self.in_flight.remove(pos);
        match purpose {
            Purpose::Follow => match result {
                Ok((true, _)) => {}
                Ok((false, text)) => {
                    warn!(reply = %text, "cannot mark the call for the event-socket link; following it over its socket");
                    self.follow_over_socket(out);
                }
                Err(e) => {
                    warn!(error = %e, "no reply marking the call for the event-socket link; following it over its socket");
                    self.follow_over_socket(out);
                }
            },
            Purpose::Subscribe => match result {
                Ok((true, _)) => {}
                Ok((false, text)) => {
                    warn!(reply = %text, "subscription refused (is the socket opened with `async full`?)")
                }
                Err(e) => {
                    warn!(error = %e, "no reply to subscription; closing so the dialplan's fallback routes the call");
                    self.closed = true;
                    out.push(Action::Close);
                    out.push(Action::Done);
                    self.phase = Phase::Over;
                    return;
                }
            },
            Purpose::Start(idx) => match result {
                Ok((true, _)) => info!(
                    recording_id = %self.recordings[idx].id,
                    path = %self.recordings[idx].path.display(),
                    "recording requested"
                ),
                Ok((false, text)) => {
                    self.fail(idx, format!("FreeSWITCH refused uuid_record: {text}"));
                    // Refused: nothing records, so nothing stays journaled. (Without a reply
                    // FreeSWITCH may be recording: the row stays for RECORD_STOP or a restart.)
                    out.push(Action::Forget(self.recordings[idx].id.clone()));
                }
                Err(e) => self.fail(idx, format!("uuid_record not acknowledged: {e}")),
            },
            Purpose::Stop(idx) => match result {
                Ok((true, _)) => {
                    info!(recording_id = %self.recordings[idx].id, "recording stop requested by the callflow")
                }
                Ok((false, text)) => {
                    warn!(recording_id = %self.recordings[idx].id, reply = %text, "FreeSWITCH refused to stop the recording")
                }
                Err(e) => {
                    warn!(recording_id = %self.recordings[idx].id, error = %e, "recording stop not acknowledged")
                }
            },
            Purpose::Execute { app, starts, .. } => match result {
                Ok((true, _)) => {}
                Ok((false, text)) => {
                    self.flow_failed(&format!("FreeSWITCH refused {app}: {text}"), starts, out)
                }
                Err(e) => self.flow_failed(&format!("{app} not acknowledged: {e}"), starts, out),
            },
            Purpose::ClearResume => match result {
                Ok((true, _)) => {}
                Ok((false, text)) => {
                    error!(reply = %text, "could not clear socket_resume before the transfer; FreeSWITCH may keep the call in its old extension")
                }
                Err(e) => {
                    error!(error = %e, "clearing socket_resume not acknowledged before the transfer")
                }
            },
            Purpose::Resume => match result {
                Ok((true, _)) => {
                    info!("call handed back to the dialplan: it goes on after the callrec extension once the socket closes");
                    self.handed_back(out);
                }
                Ok((false, text)) => {
                    error!(reply = %text, "resume refused; closing the socket");
                    self.abandon("the call could not be handed back", out);
                }
                Err(e) => {
                    error!(error = %e, "resume not acknowledged; closing the socket");
                    self.abandon("the call could not be handed back", out);
                }
            },
            Purpose::Transfer(arg) => match result {
                Ok((true, _)) => {
                    info!(to = %arg, "call handed back to the dialplan");
                    self.handed_back(out);
                }
                // A call left parked in the socket would wait forever: close, and FreeSWITCH's
                // dialplan goes on with its fallback.
                Ok((false, text)) => {
                    error!(reply = %text, "transfer refused; closing the socket so the dialplan's fallback routes the call");
                    self.abandon("the call could not be handed back", out);
                }
                Err(e) => {
                    error!(error = %e, "transfer not acknowledged; closing the socket so the dialplan's fallback routes the call");
                    self.abandon("the call could not be handed back", out);
                }
            },
        }
        if let Phase::Setup { replies, .. } = &mut self.phase {
            *replies += 1;
            self.after_setup(out);
            return;
        }
        self.next_queued(out);
    }

    /// FreeSWITCH took the hand-back: follow the call, letting the socket go now when the link
    /// follows it or there is nothing to follow.
    fn handed_back(&mut self, out: &mut Vec<Action>) {
        self.phase = Phase::Following;
        if self.nothing_to_follow && !self.closed {
            // Nothing to record now or on a bridge: let the call go at once.
            info!("nothing to record on this call: not following it");
            out.push(if self.link {
                Action::Release
            } else {
                Action::Exit
            });
            self.released = self.link;
            self.closed = true;
        } else if self.link && self.flow.is_none() && !self.closed {
            self.released = true;
            info!("outbound socket released; following the call over the event-socket link");
            out.push(Action::Release);
        }
    }

    fn fail(&mut self, idx: RecIdx, why: String) {
        let rec = &mut self.recordings[idx];
        error!(recording_id = %rec.id, reason = %why, "recording failed");
        metrics::inc(&METRICS.recordings_failed_total);
        rec.state = State::Failed(why);
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

    /// The call could not be handed back: say what happens to each planned recording, close
    /// the socket, and follow what FreeSWITCH is recording from the files.
    fn abandon(&mut self, why: &str, out: &mut Vec<Action>) {
        for r in &mut self.recordings {
            if matches!(r.state, State::Waiting(_)) {
                info!(recording_id = %r.id, reason = why, "recording not started");
                r.state = State::Finished;
            }
        }
        self.queue.clear();
        self.phase = Phase::Following;
        out.push(Action::Close);
        self.on_closed(None, out);
    }

    fn on_event(&mut self, e: Event, out: &mut Vec<Action>) {
        let Some(name) = e.name() else { return };
        match name {
            EventName::ChannelAnswer => {
                self.answered = true;
                self.start_waiting(Trigger::OnAnswer, out)
            }
            EventName::ChannelExecuteComplete => {
                let done = e.application_uuid();
                if let Some(run) = &mut self.flow {
                    if done.is_some() && run.waiting.as_deref() == done.as_deref() {
                        run.waiting = None;
                        self.advance_flow(out);
                    }
                }
            }
            EventName::ChannelBridge => self.on_bridged(&e, out),
            EventName::RecordStart => {
                if let Some(idx) = self.find(&e) {
                    let rec = &mut self.recordings[idx];
                    if matches!(rec.state, State::Starting | State::Failed(_)) {
                        rec.state = State::Recording {
                            started_us: e.timestamp_us(),
                        };
                    }
                    info!(recording_id = %rec.id, "recording started");
                    metrics::inc(&METRICS.recordings_started_total);
                }
            }
            EventName::RecordStop => {
                if let Some(idx) = self.find(&e) {
                    self.finish(idx, StopInfo::from_event(&e), out);
                }
            }
            EventName::ChannelHangupComplete => {
                self.hangup_complete = true;
                if let Some(run) = self.flow.take() {
                    if !run.over {
                        info!(callflow_id = %run.id, "callflow stopped: the call ended");
                    }
                }
                let cause = e.hangup_cause().map(|c| c.into_owned()).unwrap_or_default();
                info!(hangup_cause = %printable(&cause), "call hung up");
                for r in &mut self.recordings {
                    if let State::Waiting(t) = r.state {
                        info!(recording_id = %r.id, trigger = t.as_str(), "recording not started: the call ended first");
                        r.state = State::Finished;
                    }
                }
                if self.unfinished() > 0 {
                    out.push(Action::SetTimer(
                        Timer::Grace,
                        self.settings.record_stop_grace,
                    ));
                }
            }
            _ => {}
        }
    }

    /// The call is bridged (CHANNEL_BRIDGE, or a channel dump naming the other leg): start
    /// what waits for answer or bridge, and plan for the callee once.
    fn on_bridged(&mut self, e: &Event, out: &mut Vec<Action>) {
        self.start_waiting(Trigger::OnAnswer, out);
        self.start_waiting(Trigger::OnBridge, out);
        if let Some(target) = e.get("Other-Leg-Destination-Number") {
            let target = target.into_owned();
            if target != self.info.destination && !self.bridge_planned {
                self.bridge_planned = true;
                let mut call = self.info.clone();
                call.destination = target.clone();
                out.push(Action::Plan {
                    call,
                    bridge_target: Some(target),
                });
            }
        }
    }

    /// The link went while the call was followed over it: an outage, not an ending.
    /// FreeSWITCH records on, so running recordings stay open and recordings waiting for
    /// answer or bridge keep waiting; once the link is back (within `esl_down_grace_ms`) the
    /// call is followed again and its state asked for ([`Action::Resync`]). Only a link that
    /// stays down past the grace hands the recordings to their files.
    fn on_link_lost(&mut self, out: &mut Vec<Action>) {
        if self.closed || !self.link {
            // Already over, or followed over its socket (a callflow, a fallback): the link's
            // loss changes nothing for this call.
            return;
        }
        if !self.released {
            // Still deciding, the socket still open: follow the call over it instead.
            warn!(
                "event-socket link lost before the hand-back: following the call over its socket"
            );
            return self.follow_over_socket(out);
        }
        // Commands in flight get no reply now; what they did shows in the channel's state and
        // in the events that follow.
        self.in_flight.clear();
        self.queue.clear();
        let running = self
            .recordings
            .iter()
            .filter(|r| r.state.awaits_stop())
            .count();
        let waiting = self
            .recordings
            .iter()
            .filter(|r| matches!(r.state, State::Waiting(_)))
            .count();
        if self.hangup_complete {
            // The call is over: its files are final; the grace timer after hangup finishes
            // what RECORD_STOP has not.
            self.closed = true;
        } else if running + waiting > 0 {
            warn!(
                running,
                waiting,
                "event-socket link lost: the call's recordings stay open; following the call again when the link is back"
            );
            out.push(Action::Resync);
        } else {
            self.closed = true;
        }
    }

    fn on_resynced(&mut self, result: Result<Option<Event>, String>, out: &mut Vec<Action>) {
        let why = match result {
            Ok(Some(dump)) => {
                let answered = dump.get("Answer-State").is_some_and(|a| a == "answered");
                let bridged = dump.get("Other-Leg-Unique-ID").is_some();
                info!(
                    answered,
                    bridged, "event-socket link back: following the call again"
                );
                if answered {
                    self.answered = true;
                    self.start_waiting(Trigger::OnAnswer, out);
                }
                if bridged {
                    self.on_bridged(&dump, out);
                }
                return;
            }
            Ok(None) => {
                // The channel is gone, so FreeSWITCH has closed its files: they are final.
                let why = "the call ended while the event-socket link was down";
                for idx in 0..self.recordings.len() {
                    if self.recordings[idx].state.awaits_stop() {
                        info!(recording_id = %self.recordings[idx].id, reason = why, "finishing the recording from its file, which is final");
                        self.finish_from_disk(idx, why, out);
                    }
                }
                why.to_string()
            }
            Err(e) => {
                // The link stayed down past its grace: the files are all there is to go by.
                self.watch_started(out);
                e
            }
        };
        for r in &mut self.recordings {
            if matches!(r.state, State::Waiting(_)) {
                info!(recording_id = %r.id, reason = %why, "recording not started");
                r.state = State::Finished;
            }
        }
        self.closed = true;
    }

    /// Runs the callflow until it has to wait (for an application to complete) or is over.
    fn advance_flow(&mut self, out: &mut Vec<Action>) {
        loop {
            if self.hangup_complete || self.closed {
                return;
            }
            let Some(run) = self.flow.as_mut() else {
                return;
            };
            if run.waiting.is_some() {
                return;
            }
            if let Some((app, arg, starts)) = run.apps.pop_front() {
                let app_uuid = (self.ids)();
                run.waiting = Some(app_uuid.clone());
                self.queue.push_back(Purpose::Execute {
                    app_uuid,
                    app,
                    arg,
                    starts,
                });
                self.next_queued(out);
                return;
            }
            if run.over {
                return;
            }
            let id = run.id.clone();
            let endpoints = run.endpoints.clone();
            let Some(node) = run.next.take() else {
                // A flow that runs out of modules ends the call, as Kazoo's does.
                info!(callflow_id = %id, "callflow ended: hanging up");
                run.over = true;
                run.apps
                    .push_back(("hangup".into(), "NORMAL_CLEARING".into(), None));
                continue;
            };
            run.next = node.next().cloned();
            let module_name = node.module.name();
            info!(callflow_id = %id, module = module_name, "callflow module");
            match node.module {
                Module::RecordCall {
                    action: RecordAction::Start,
                    params,
                } => self.flow_record_start(&id, &params, out),
                Module::RecordCall {
                    action: RecordAction::Stop,
                    ..
                } => self.flow_record_stop(out),
                Module::RecordCaller(rc) => self.flow_record_caller(&id, &rc),
                Module::Answer => self.flow_apps([("answer", String::new())]),
                Module::Play { media } => self.flow_apps([("playback", media)]),
                Module::Hangup { cause } => {
                    self.flow_apps([("hangup", cause.unwrap_or_else(|| "NORMAL_CLEARING".into()))]);
                    self.flow_over();
                }
                Module::Dialplan { context, extension } => {
                    let ext = extension.unwrap_or_else(|| self.info.destination.clone());
                    self.flow_over();
                    self.hand_back(&ext, context.as_deref(), out);
                }
                Module::Device { id: target } | Module::User { id: target } => {
                    let key = format!("{module_name}:{target}");
                    let dial = endpoints.get(&key).and_then(|e| {
                        crate::callflow::dial_string(e, &self.settings.bridge_profile)
                    });
                    match dial {
                        Some(d) => self.flow_apps([("bridge", d)]),
                        None => {
                            self.flow_failed(
                                &format!("{key} names no device that can be called"),
                                None,
                                out,
                            );
                            return;
                        }
                    }
                }
            }
        }
    }

    fn flow_apps<const N: usize>(&mut self, apps: [(&str, String); N]) {
        if let Some(run) = self.flow.as_mut() {
            for (app, arg) in apps {
                run.apps.push_back((app.to_string(), arg, None));
            }
        }
    }

    fn flow_over(&mut self) {
        if let Some(run) = self.flow.as_mut() {
            run.over = true;
        }
    }

    /// A module could not run: say why and hand the call back to the dialplan, never leaving it
    /// parked in the socket.
    fn flow_failed(&mut self, why: &str, starts: Option<RecIdx>, out: &mut Vec<Action>) {
        if let Some(idx) = starts {
            self.fail(idx, why.to_string());
            out.push(Action::Forget(self.recordings[idx].id.clone()));
        }
        let Some(run) = self.flow.take() else { return };
        error!(callflow_id = %run.id, reason = %why, "callflow cannot go on; handing the call back to the dialplan");
        if self.hangup_complete || self.closed {
            return;
        }
        let dest = self.info.destination.clone();
        self.hand_back(&dest, None, out);
    }

    /// `record_call start`: a recording of the call with the module's settings (the same
    /// machinery as rule-made ones), unless the leg already records exactly that.
    fn flow_record_start(
        &mut self,
        flow_id: &str,
        params: &crate::rules::model::Params,
        out: &mut Vec<Action>,
    ) {
        let Some(settings) = params.resolve(true) else {
            return;
        };
        let plan = PlannedRecording::new(settings, format!("callflow {flow_id} record_call start"));
        let Some(plan) = self.join_running(plan) else {
            return;
        };
        let t = plan.settings.trigger();
        let idx = self.add_planned(plan);
        if let Some(run) = self.flow.as_mut() {
            run.started.push(idx);
        }
        if t == Trigger::Immediately || (t == Trigger::OnAnswer && self.answered) {
            self.queue.push_back(Purpose::Start(idx));
            self.next_queued(out);
        }
    }

    /// Never the same leg twice: when a recording with the same settings is planned or running,
    /// it also goes where `plan` would (its destinations, local copy, reason), and `None` is
    /// returned; otherwise `plan` comes back to be started.
    fn join_running(&mut self, plan: PlannedRecording) -> Option<PlannedRecording> {
        let Some(r) = self.recordings.iter_mut().find(|r| {
            r.settings.same_recording(&plan.settings)
                && !matches!(r.state, State::Finished | State::Failed(_))
        }) else {
            return Some(plan);
        };
        for d in plan.destinations {
            if !r.destinations.contains(&d) {
                r.destinations.push(d);
            }
        }
        r.keep_local |= plan.keep_local;
        r.reason = format!("{}; {}", r.reason, plan.reason);
        info!(recording_id = %r.id, reason = %plan.reason, "the leg already records with these settings; destinations joined");
        None
    }

    /// `record_call stop`: stops what this flow's `record_call start` began.
    fn flow_record_stop(&mut self, out: &mut Vec<Action>) {
        let started = self
            .flow
            .as_ref()
            .map(|r| r.started.clone())
            .unwrap_or_default();
        let mut stopped = 0;
        for idx in started {
            match self.recordings[idx].state {
                State::Starting | State::Recording { .. } => {
                    self.queue.push_back(Purpose::Stop(idx));
                    stopped += 1;
                }
                State::Waiting(_) => {
                    info!(recording_id = %self.recordings[idx].id, "recording not started: stopped by the callflow first");
                    self.recordings[idx].state = State::Finished;
                }
                _ => {}
            }
        }
        if stopped == 0 {
            info!("record_call stop: no recording of this callflow is running");
        }
        self.next_queued(out);
    }

    /// `record_caller`: answer if needed, beep, then record the caller with the `record`
    /// application (ends on `#`, on silence, on the time limit or on hangup).
    fn flow_record_caller(&mut self, flow_id: &str, rc: &RecordCaller) {
        let settings = RecordCall {
            format: rc.format.unwrap_or_default(),
            time_limit: rc.time_limit(),
            url: rc.url.as_ref().map(|u| u.as_str().to_string()),
            method: rc.method.unwrap_or_default(),
            ..RecordCall::default()
        };
        let plan = PlannedRecording::new(settings, format!("callflow {flow_id} record_caller"));
        let mut rec = Recording::with_id((self.ids)(), plan, &self.dir());
        rec.kind = RecordingKind::Caller;
        info!(recording_id = %rec.id, reason = %rec.reason, format = rec.settings.format.ext(), "rule matched");
        let arg = format!(
            "{} {} {SILENCE_THRESH} {SILENCE_HITS}",
            rec.path_str(),
            rec.settings.time_limit
        );
        self.recordings.push(rec);
        let idx = self.recordings.len() - 1;
        let answered = self.answered;
        if let Some(run) = self.flow.as_mut() {
            if !answered {
                run.apps.push_back(("answer".into(), String::new(), None));
            }
            run.apps
                .push_back(("set".into(), "playback_terminators=#".into(), None));
            run.apps.push_back(("playback".into(), BEEP.into(), None));
            run.apps.push_back(("record".into(), arg, Some(idx)));
        }
    }

    /// The bridge revealed the callee: start what the callee's settings add (never a second
    /// recording with settings already in use on this leg).
    fn on_bridge_plan(
        &mut self,
        target: String,
        result: Result<Plan, String>,
        out: &mut Vec<Action>,
    ) {
        let plan = match result {
            Ok(p) => p.recordings,
            Err(e) => {
                error!(error = %e, "recording rules unavailable for the bridge target");
                return;
            }
        };
        if self.hangup_complete || self.closed {
            return;
        }
        let dir = self.dir();
        for p in plan {
            let Some(p) = self.join_running(p) else {
                continue;
            };
            let rec = Recording::with_id((self.ids)(), p, &dir);
            info!(
                recording_id = %rec.id,
                reason = %rec.reason,
                bridge_target = %printable(&target),
                "rule matched for the bridged callee"
            );
            self.recordings.push(rec);
            self.queue
                .push_back(Purpose::Start(self.recordings.len() - 1));
        }
        self.next_queued(out);
    }

    fn start_waiting(&mut self, trigger: Trigger, out: &mut Vec<Action>) {
        for idx in 0..self.recordings.len() {
            if self.recordings[idx].state == State::Waiting(trigger)
                && !self.queue.contains(&Purpose::Start(idx))
            {
                self.queue.push_back(Purpose::Start(idx));
            }
        }
        self.next_queued(out);
    }

    /// The recording a RECORD_START/STOP is about: by our id variable, else by path.
    fn find(&self, e: &Event) -> Option<RecIdx> {
        if let Some(id) = e.recording_variable("callrec_recording_id") {
            if let Some(i) = self.recordings.iter().position(|r| r.id == id) {
                return Some(i);
            }
        }
        let path = e.record_file_path()?;
        self.recordings
            .iter()
            .position(|r| r.path.as_os_str() == std::ffi::OsStr::new(path.as_ref()))
    }

    fn on_closed(&mut self, err: Option<String>, out: &mut Vec<Action>) {
        if self.closed {
            return;
        }
        self.closed = true;
        match err {
            Some(e) => error!(error = %e, "connection to FreeSWITCH failed"),
            None if !self.hangup_complete => {
                warn!("FreeSWITCH closed the connection before the call ended")
            }
            None => {}
        }
        // Commands in flight will get no reply: their recordings are watched like the rest.
        self.in_flight.clear();
        self.flow = None;
        self.queue.clear();
        if self.phase != Phase::Following {
            self.phase = Phase::Following;
        }
        // Recordings still waiting for their trigger can no longer see it.
        for r in &mut self.recordings {
            if matches!(r.state, State::Waiting(_)) {
                info!(recording_id = %r.id, reason = "the call's events can no longer be followed", "recording not started");
                r.state = State::Finished;
            }
        }
        self.watch_started(out);
    }

    /// FreeSWITCH keeps recording until the call ends: started recordings whose RECORD_STOP
    /// cannot be seen any more are watched on disk until they have not grown for their quiet
    /// window (twice the write buffer's interval, plus a margin).
    fn watch_started(&mut self, out: &mut Vec<Action>) {
        let poll_ms = self.settings.disk_poll.as_millis().max(1) as u64;
        let mut watching = false;
        for r in &mut self.recordings {
            if r.state.awaits_stop() {
                let quiet = r.quiet_window(self.settings.write_buffer);
                warn!(
                    recording_id = %r.id,
                    quiet_ms = quiet.as_millis() as u64,
                    "RECORD_STOP will not arrive; watching the file on disk until it has not grown for the quiet window"
                );
                let max_wait_ms = (r.settings.time_limit as u64 + 60) * 1000;
                let grace_ms = self.settings.record_stop_grace.as_millis() as u64;
                let unconfirmed = matches!(r.state, State::Starting);
                r.state = State::Watching {
                    started_us: r.state.started_us(),
                    last_size: None,
                    stable_polls: 0,
                    quiet_polls: recorder::quiet::looks(quiet, self.settings.disk_poll),
                    polls_left: max_wait_ms.div_ceil(poll_ms) as u32,
                    absent_polls_left: unconfirmed
                        .then_some((grace_ms.div_ceil(poll_ms) as u32).max(3)),
                };
                watching = true;
            }
        }
        if watching {
            out.push(Action::SetTimer(Timer::DiskPoll, self.settings.disk_poll));
        }
    }

    fn on_timer(&mut self, t: Timer, out: &mut Vec<Action>) {
        match t {
            Timer::Grace => {
                for idx in 0..self.recordings.len() {
                    if self.recordings[idx].state.awaits_stop() {
                        warn!(
                            recording_id = %self.recordings[idx].id,
                            grace_ms = self.settings.record_stop_grace.as_millis() as u64,
                            "no RECORD_STOP after hangup; finishing from the file on disk"
                        );
                        self.finish_from_disk(idx, "hangup without RECORD_STOP", out);
                    }
                }
            }
            Timer::DiskPoll => {
                let mut watching = false;
                for (idx, r) in self.recordings.iter().enumerate() {
                    if matches!(r.state, State::Watching { .. }) {
                        watching = true;
                        out.push(Action::Inspect {
                            rec: idx,
                            path: r.path.clone(),
                            format: r.settings.format,
                            measure: false,
                        });
                    }
                }
                if watching {
                    out.push(Action::SetTimer(Timer::DiskPoll, self.settings.disk_poll));
                }
            }
        }
    }

    fn on_inspected(
        &mut self,
        idx: RecIdx,
        size: Option<u64>,
        duration_ms: Option<u64>,
        out: &mut Vec<Action>,
    ) {
        match &mut self.recordings[idx].state {
            State::Watching {
                last_size,
                stable_polls,
                quiet_polls,
                polls_left,
                absent_polls_left,
                ..
            } => {
                if size.is_some() && size == *last_size {
                    *stable_polls += 1;
                } else {
                    *stable_polls = 0;
                }
                *last_size = size;
                *polls_left = polls_left.saturating_sub(1);
                if size.is_some() {
                    *absent_polls_left = None;
                } else if let Some(n) = absent_polls_left {
                    *n = n.saturating_sub(1);
                }
                if *absent_polls_left == Some(0) {
                    // The journal row stays: if FreeSWITCH did record after all, a restart
                    // finds the file; if not, the restart discards the row as file-missing.
                    self.fail(
                        idx,
                        "the connection was lost before FreeSWITCH acknowledged uuid_record, and no file appeared".into(),
                    );
                } else if *stable_polls >= *quiet_polls {
                    self.finish_quiet(idx, out);
                } else if *polls_left == 0 {
                    self.fail(idx, "connection lost and the file never settled".into());
                }
            }
            State::Finishing { started_us, stop } => {
                let (started_us, mut stop) = (*started_us, stop.clone());
                if stop.from_disk {
                    stop.record_ms = duration_ms.unwrap_or(0);
                }
                self.decide(idx, started_us, stop, size, out);
            }
            _ => {}
        }
    }

    /// The recording has ended for certain (the call is over): its file is final.
    fn finish_from_disk(&mut self, idx: RecIdx, cause: &str, out: &mut Vec<Action>) {
        let stop = StopInfo {
            record_ms: 0,
            cause: cause.to_string(),
            discarded_by_freeswitch: false,
            from_disk: true,
            may_grow_until_us: None,
        };
        self.finish(idx, stop, out);
    }

    /// The file has not grown for its quiet window: it is taken as it is, but FreeSWITCH may
    /// still write it until the recording's time limit has passed.
    fn finish_quiet(&mut self, idx: RecIdx, out: &mut Vec<Action>) {
        let r = &self.recordings[idx];
        let start = r.state.started_us().unwrap_or(self.info.started_us);
        let stop = StopInfo {
            record_ms: 0,
            cause: "connection lost; file stopped growing".into(),
            discarded_by_freeswitch: false,
            from_disk: true,
            may_grow_until_us: Some(recorder::may_grow_until_us(start, r.settings.time_limit)),
        };
        self.finish(idx, stop, out);
    }

    /// A recording has ended: inspect its file, then keep or discard it.
    fn finish(&mut self, idx: RecIdx, stop: StopInfo, out: &mut Vec<Action>) {
        let rec = &mut self.recordings[idx];
        if matches!(rec.state, State::Finished | State::Finishing { .. }) {
            return;
        }
        let measure = stop.from_disk;
        rec.state = State::Finishing {
            started_us: rec.state.started_us(),
            stop,
        };
        out.push(Action::Inspect {
            rec: idx,
            path: rec.path.clone(),
            format: rec.settings.format,
            measure,
        });
    }

    /// Keep (deliver) or discard a finished recording, and say which.
    fn decide(
        &mut self,
        idx: RecIdx,
        started_us: Option<u64>,
        stop: StopInfo,
        size: Option<u64>,
        out: &mut Vec<Action>,
    ) {
        let rec = &self.recordings[idx];
        info!(
            recording_id = %rec.id,
            record_ms = stop.record_ms,
            cause = %stop.cause,
            from_disk = stop.from_disk,
            "recording stopped"
        );
        if let Some(reason) =
            recorder::discard_reason(rec.settings.record_min_sec, &stop, size.is_some())
        {
            if size.is_some() {
                out.push(Action::Delete(rec.path.clone()));
            }
            info!(recording_id = %rec.id, reason = %reason, "recording discarded");
            metrics::inc(&METRICS.recordings_discarded_total);
            out.push(Action::Forget(rec.id.clone()));
            self.recordings[idx].state = State::Finished;
            return;
        }
        let mut finished = self.finished_meta(idx, started_us);
        finished.duration_ms = stop.record_ms;
        finished.size = size.unwrap_or(0);
        finished.completion_cause = stop.cause;
        finished.may_grow_until_us = stop.may_grow_until_us;
        out.push(Action::Deliver(idx, Box::new(finished)));
    }

    /// What delivery will get for recording `idx` (duration, size and cause still to fill in).
    fn finished_meta(&self, idx: RecIdx, started_us: Option<u64>) -> FinishedRecording {
        let rec = &self.recordings[idx];
        FinishedRecording {
            call: call_meta(&self.info),
            recording_id: rec.id.clone(),
            start_us: started_us.unwrap_or(self.info.started_us),
            duration_ms: 0,
            format: rec.settings.format,
            sample_rate: rec.settings.record_sample_rate,
            stereo: rec.settings.record_stereo,
            file_path: rec.path_str(),
            size: 0,
            destinations: rec.destinations.clone(),
            keep_local: rec.keep_local,
            origin: rec.reason.clone(),
            completion_cause: "recording".into(),
            sequence: idx as u32,
            kind: rec.kind,
            may_grow_until_us: None,
        }
    }

    /// The journal row of recording `idx`, written before FreeSWITCH is asked to record it.
    fn journal_entry(&self, idx: RecIdx) -> JournalEntry {
        let r = &self.recordings[idx];
        JournalEntry {
            rec: self.finished_meta(idx, None),
            record_min_sec: r.settings.record_min_sec,
            time_limit: r.settings.time_limit,
            write_buffer: r.write_buffer(self.settings.write_buffer),
        }
    }
}

/// What every recording of the call carries about the call itself.
fn call_meta(i: &CallInfo) -> CallMeta {
    CallMeta {
        call_id: i.call_id.clone(),
        account_id: i.account_id.clone(),
        user_id: i.user_id.clone(),
        device_id: i.device_id.clone(),
        caller_id_name: i.caller_id_name.clone(),
        caller_id_number: i.caller_id_number.clone(),
        callee_number: i.destination.clone(),
        callee_name: i.callee_id_name.clone(),
        direction: i.direction.clone(),
        interaction_id: i.interaction_id.clone(),
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
