//! One simulated call: the connection to the controller, FreeSWITCH's command handling, and
//! the [`CallHandle`] a test uses to play the caller and the rest of the dialplan.
//!
//! Invariant: replies go out in command order, and the events a command causes follow its
//! reply (as in the captures); events are only sent when the controller subscribed to them.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};

use crate::channel::{Channel, OtherLeg};
use crate::clock::{uuid_v4, wall_us};
use crate::media::{self, Format};
use crate::spec::CallSpec;
use crate::wire::{self, Headers};

/// A command the controller sent, as FreeSWITCH parsed it.
#[derive(Debug, Clone)]
pub struct Command {
    /// The first line, e.g. `api uuid_record … start …`.
    pub line: String,
    /// The following `Name: value` lines (sendmsg, bgapi).
    pub headers: Vec<(String, String)>,
    /// When the simulator read it (for latency measurements).
    pub received_at: std::time::Instant,
}

impl Command {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A finished recording as FreeSWITCH saw it.
#[derive(Debug, Clone)]
pub struct RecordingReport {
    pub path: String,
    pub vars: Vec<(String, String)>,
    pub limit_s: u64,
    pub rate: u32,
    pub channels: u16,
    pub ms: u64,
    pub cause: String,
    /// Written by the `record` application rather than `uuid_record`.
    pub app: bool,
    /// FreeSWITCH deleted it (empty file).
    pub discarded: bool,
}

/// What happened on a call, for assertions.
#[derive(Debug, Clone, Default)]
pub struct CallReport {
    pub commands: Vec<Command>,
    pub events_sent: Vec<String>,
    pub recordings: Vec<RecordingReport>,
    /// Where the controller transferred the call (`dest XML context`).
    pub transferred_to: Option<String>,
    pub answered: bool,
    pub hung_up: bool,
    /// The socket is closed (by either side).
    pub closed: bool,
    /// The controller sent `exit`.
    pub app_exited: bool,
    /// When CHANNEL_ANSWER was written to the socket.
    pub answer_sent_at: Option<std::time::Instant>,
}

#[derive(Debug)]
enum Control {
    Answer,
    Hangup(String),
    Advance(Duration),
    Bridge(String),
    Unbridge,
    Kill,
    KillOnNextCommand,
    Sync(tokio::sync::oneshot::Sender<()>),
    Hold(bool),
}

/// The test's side of a call.
#[derive(Clone)]
pub struct CallHandle {
    pub uuid: String,
    ctl: mpsc::UnboundedSender<Control>,
    report: Arc<Mutex<CallReport>>,
    changed: Arc<Notify>,
}

impl CallHandle {
    fn send(&self, c: Control) {
        // The call task may be gone (socket closed); controls then do nothing, as on a dead
        // channel.
        let _ = self.ctl.send(c);
    }

    /// The continuation dialplan (or the callee) answers.
    pub fn answer(&self) {
        self.send(Control::Answer)
    }

    /// The caller hangs up (BYE) with this cause.
    pub fn hangup(&self, cause: &str) {
        self.send(Control::Hangup(cause.to_string()))
    }

    /// Moves the call's clock forward: audio accrues, recording limits fire.
    pub fn advance(&self, d: Duration) {
        self.send(Control::Advance(d))
    }

    /// The dialplan bridges to `number`, which answers at once.
    pub fn bridge(&self, number: &str) {
        self.send(Control::Bridge(number.to_string()))
    }

    /// The far end of the bridge hangs up; the caller stays.
    pub fn unbridge(&self) {
        self.send(Control::Unbridge)
    }

    /// FreeSWITCH drops the socket at once, without notices.
    pub fn kill_socket(&self) {
        self.send(Control::Kill)
    }

    /// FreeSWITCH stops answering commands (they are read and logged, then wait) until
    /// [`release_replies`](Self::release_replies): a switch stuck in a slow API call.
    pub fn hold_replies(&self) {
        self.send(Control::Hold(true))
    }

    /// Answers the held commands, in order.
    pub fn release_replies(&self) {
        self.send(Control::Hold(false))
    }

    /// Returns once every control sent before it has been carried out.
    pub async fn sync(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Control::Sync(tx));
        let _ = rx.await;
    }

    /// FreeSWITCH drops the socket when the next command arrives, before replying.
    pub fn kill_on_next_command(&self) {
        self.send(Control::KillOnNextCommand)
    }

    pub fn report(&self) -> CallReport {
        self.report.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Waits until `pred` holds for the call's report.
    pub async fn wait_until(&self, mut pred: impl FnMut(&CallReport) -> bool) -> CallReport {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let r = self.report();
            if pred(&r) {
                return r;
            }
            notified.await;
        }
    }

    /// Waits for a command whose first line starts with `prefix`; returns it.
    pub async fn wait_for_command(&self, prefix: &str) -> Command {
        let r = self
            .wait_until(|r| r.commands.iter().any(|c| c.line.starts_with(prefix)))
            .await;
        r.commands
            .into_iter()
            .find(|c| c.line.starts_with(prefix))
            .expect("just seen")
    }

    /// Waits until `n` commands starting with `prefix` have arrived.
    pub async fn wait_for_commands(&self, prefix: &str, n: usize) -> Vec<Command> {
        let r = self
            .wait_until(|r| {
                r.commands
                    .iter()
                    .filter(|c| c.line.starts_with(prefix))
                    .count()
                    >= n
            })
            .await;
        r.commands
            .into_iter()
            .filter(|c| c.line.starts_with(prefix))
            .collect()
    }

    /// Waits until the socket is closed.
    pub async fn closed(&self) -> CallReport {
        self.wait_until(|r| r.closed).await
    }
}

/// Places a call: connects to the controller and starts playing FreeSWITCH. Fails as the
/// `socket` application would (e.g. connection refused), and then the dialplan goes on.
pub async fn dial(addr: SocketAddr, spec: CallSpec) -> std::io::Result<CallHandle> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(start(stream, spec))
}

fn start(stream: TcpStream, spec: CallSpec) -> CallHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let report = Arc::new(Mutex::new(CallReport::default()));
    let changed = Arc::new(Notify::new());
    let handle = CallHandle {
        uuid: spec.uuid.clone(),
        ctl: tx,
        report: report.clone(),
        changed: changed.clone(),
    };
    let (rd, wr) = stream.into_split();
    let now = wall_us();
    static SESSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let session_id = SESSION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let sim = Sim {
        ch: Channel::new(&spec, now, session_id),
        spec,
        w: wr,
        now_us: now,
        seq: 480,
        connected: false,
        events_on: false,
        myevents: false,
        all_events: false,
        subs: HashSet::new(),
        format: EventFmt::Plain,
        linger: None,
        park_countdown: None,
        parked: true,
        hung_up: false,
        closed: false,
        kill_next: false,
        hold: false,
        held: Vec::new(),
        recordings: Vec::new(),
        app_record: None,
        playback: None,
        report,
        changed,
    };
    tokio::spawn(sim.run(rd, rx));
    handle
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventFmt {
    Plain,
    Json,
    Xml,
}

struct ActiveRecording {
    path: String,
    start_us: u64,
    /// `uuid_record mask` periods (virtual µs); an open one has no end yet.
    masks: Vec<(u64, Option<u64>)>,
    limit_s: u64,
    vars: Vec<(String, String)>,
    rate: u32,
    channels: u16,
    format: Format,
}

struct AppRecording {
    rec: ActiveRecording,
    app_uuid: String,
}

/// The channel events `myevents` turns on (mod_event_socket.c).
const MYEVENTS: &[&str] = &[
    "CHANNEL_ANSWER",
    "CHANNEL_APPLICATION",
    "CHANNEL_BRIDGE",
    "CHANNEL_CREATE",
    "CHANNEL_DATA",
    "CHANNEL_DESTROY",
    "CHANNEL_EXECUTE",
    "CHANNEL_EXECUTE_COMPLETE",
    "CHANNEL_HANGUP",
    "CHANNEL_HANGUP_COMPLETE",
    "CHANNEL_ORIGINATE",
    "CHANNEL_UUID",
    "CHANNEL_OUTGOING",
    "CHANNEL_PARK",
    "CHANNEL_PROGRESS",
    "CHANNEL_PROGRESS_MEDIA",
    "CHANNEL_STATE",
    "CHANNEL_UNBRIDGE",
    "CHANNEL_UNPARK",
    "DETECTED_SPEECH",
    "DTMF",
    "NOTALK",
    "TALK",
];

/// Event names `event` accepts (a subset of switch_event_types_t that matters here).
const KNOWN_EVENTS: &[&str] = &[
    "ALL",
    "CUSTOM",
    "CHANNEL_CALLSTATE",
    "RECORD_START",
    "RECORD_STOP",
    "MEDIA_BUG_START",
    "MEDIA_BUG_STOP",
    "BACKGROUND_JOB",
    "PLAYBACK_START",
    "PLAYBACK_STOP",
    "HEARTBEAT",
    "API",
    "PRIVATE_COMMAND",
];

/// Applications the simulated dialplan knows; executing any other hangs the call up with
/// DESTINATION_OUT_OF_ORDER, as FreeSWITCH does.
const KNOWN_APPS: &[&str] = &[
    "answer",
    "pre_answer",
    "transfer",
    "playback",
    "record",
    "hangup",
    "set",
    "export",
    "park",
    "sleep",
    "log",
    "info",
    "echo",
    "ring_ready",
    "bridge",
    "record_session",
    "socket",
];

struct Sim {
    spec: CallSpec,
    ch: Channel,
    w: OwnedWriteHalf,
    now_us: u64,
    seq: u64,
    connected: bool,
    events_on: bool,
    myevents: bool,
    all_events: bool,
    subs: HashSet<String>,
    format: EventFmt,
    linger: Option<i64>,
    park_countdown: Option<usize>,
    /// Parked in the `socket` application (until transfer or hangup).
    parked: bool,
    hung_up: bool,
    closed: bool,
    kill_next: bool,
    hold: bool,
    held: Vec<Command>,
    recordings: Vec<ActiveRecording>,
    app_record: Option<AppRecording>,
    /// A running `playback`: (application uuid, argument, virtual end time).
    playback: Option<(String, String, u64)>,
    report: Arc<Mutex<CallReport>>,
    changed: Arc<Notify>,
}

type Io = std::io::Result<()>;

impl Sim {
    async fn run(mut self, rd: OwnedReadHalf, mut ctl: mpsc::UnboundedReceiver<Control>) {
        let mut reader = BufReader::new(rd);
        let mut ctl_open = true;
        // The channel outlives its socket: after the socket closes, the test can still answer,
        // advance and hang up (FreeSWITCH keeps recording a call whose controller is gone).
        loop {
            if self.closed && (self.hung_up || !ctl_open) {
                break;
            }
            tokio::select! {
                cmd = read_command(&mut reader), if !self.closed => match cmd {
                    Ok(Some(cmd)) => {
                        if self.on_command(cmd).await.is_err() {
                            self.socket_closed().await;
                        }
                    }
                    _ => self.socket_closed().await,
                },
                c = ctl.recv(), if ctl_open => match c {
                    Some(c) => {
                        if self.on_control(c).await.is_err() {
                            self.socket_closed().await;
                        }
                    }
                    None => ctl_open = false,
                },
            }
        }
        self.socket_closed().await;
    }

    async fn socket_closed(&mut self) {
        if !self.closed {
            self.closed = true;
            let _ = self.w.shutdown().await;
        }
        self.update(|r| r.closed = true);
    }

    fn update(&self, f: impl FnOnce(&mut CallReport)) {
        if let Ok(mut r) = self.report.lock() {
            f(&mut r);
        }
        self.changed.notify_waiters();
    }

    async fn send(&mut self, bytes: &[u8]) -> Io {
        if self.closed {
            return Ok(());
        }
        if self.w.write_all(bytes).await.is_err() {
            self.socket_closed().await;
        }
        Ok(())
    }

    fn subscribed(&self, name: &str) -> bool {
        self.events_on
            && (self.all_events || self.subs.contains(name))
            && !self.spec.lose_events.iter().any(|l| l == name)
    }

    /// Sends an event if the controller listens for it.
    async fn emit(
        &mut self,
        name: &str,
        calling: (&str, &str, u32),
        front: Headers,
        back: Headers,
        body: Option<&str>,
    ) -> Io {
        self.seq += 1;
        if !self.subscribed(name) {
            return Ok(());
        }
        let mut h = self.ch.event_base(name, calling, self.now_us, self.seq);
        h.extend(front);
        self.ch.channel_headers(&mut h);
        h.extend(back);
        let bytes = match self.format {
            EventFmt::Plain => wire::plain_event(&h, body),
            EventFmt::Json => wire::json_event(&h, body),
            EventFmt::Xml => xml_event(&h, body),
        };
        let n = name.to_string();
        self.update(|r| r.events_sent.push(n));
        self.send(&bytes).await
    }

    async fn reply(&mut self, text: &str) -> Io {
        self.send(&wire::reply(text)).await
    }

    async fn on_command(&mut self, cmd: Command) -> Io {
        let c2 = cmd.clone();
        self.update(|r| r.commands.push(c2));
        if self.hold {
            self.held.push(cmd);
            return Ok(());
        }
        self.process(cmd).await
    }

    async fn process(&mut self, cmd: Command) -> Io {
        if self.kill_next {
            self.kill_next = false;
            self.socket_closed().await;
            return Ok(());
        }
        let line = cmd.line.trim_end().to_string();
        let lower = line.to_ascii_lowercase();
        let word = lower.split(' ').next().unwrap_or("").to_string();
        if !self.connected {
            if word == "connect" {
                self.connected = true;
                self.seq += 1;
                let data = self.ch.channel_data(self.now_us, self.seq, self.spec.full);
                return self.send(&wire::channel_data(&data)).await;
            }
            return self.reply("-ERR command not found").await;
        }
        match word.as_str() {
            "connect" => {
                self.seq += 1;
                let data = self.ch.channel_data(self.now_us, self.seq, self.spec.full);
                return self.send(&wire::channel_data(&data)).await;
            }
            "getvar" => {
                let name = line.split_once(' ').map(|x| x.1).unwrap_or("");
                let v = self.ch.var(name).unwrap_or("").to_string();
                let text = if v.is_empty() {
                    "-ERR command not found".to_string()
                } else {
                    v
                };
                self.reply(&text).await?;
            }
            "myevents" => {
                if self.myevents {
                    self.reply("-ERR aready enabled.").await?;
                } else {
                    self.myevents = true;
                    self.events_on = true;
                    self.subs.extend(MYEVENTS.iter().map(|s| s.to_string()));
                    if lower.contains("json") {
                        self.format = EventFmt::Json;
                    } else if lower.contains("xml") {
                        self.format = EventFmt::Xml;
                    }
                    self.reply("+OK Events Enabled").await?;
                    self.park_countdown =
                        (self.spec.park_after > 0).then_some(self.spec.park_after);
                    return Ok(());
                }
            }
            "sendmsg" => {
                let target = line[7..].trim();
                if !target.is_empty() && target != self.ch.uuid {
                    self.reply(&format!("-ERR invalid session id [{target}]"))
                        .await?;
                } else {
                    self.reply("+OK").await?;
                    self.park_tick().await?;
                    return self.sendmsg(&cmd).await;
                }
            }
            _ if !self.spec.full => self.reply("-ERR command not found").await?,
            "api" => {
                let rest = line.get(4..).unwrap_or("").to_string();
                let (body, after) = self.api(&rest);
                self.send(&wire::api_response(&body)).await?;
                self.park_tick().await?;
                return self.run_after(after).await;
            }
            "bgapi" => {
                let rest = line.get(6..).unwrap_or("").to_string();
                let job = cmd
                    .header("Job-UUID")
                    .map(str::to_string)
                    .unwrap_or_else(uuid_v4);
                self.send(&wire::bgapi_reply(&job)).await?;
                let (body, after) = self.api(&rest);
                self.run_after(after).await?;
                let (api_cmd, arg) = rest.split_once(' ').unwrap_or((rest.as_str(), ""));
                let front = vec![
                    ("Job-UUID".into(), job.clone()),
                    ("Job-Command".into(), api_cmd.to_string()),
                    ("Job-Command-Arg".into(), arg.to_string()),
                ];
                return self.emit_job(front, &body).await;
            }
            "linger" => {
                let arg = line.get(7..).map(str::trim).unwrap_or("");
                let secs: i64 = if arg.is_empty() {
                    -1
                } else {
                    arg.parse().unwrap_or(0)
                };
                self.linger = Some(secs);
                if secs == -1 {
                    self.reply("+OK will linger").await?;
                } else {
                    self.reply(&format!("+OK will linger {secs} seconds"))
                        .await?;
                }
            }
            "nolinger" => {
                self.linger = None;
                self.reply("+OK will not linger").await?;
            }
            "event" => {
                let mut keys = 0;
                for (i, tok) in line.split(' ').skip(1).enumerate() {
                    let up = tok.to_ascii_uppercase();
                    if i == 0 {
                        match up.as_str() {
                            "PLAIN" => {
                                self.format = EventFmt::Plain;
                                continue;
                            }
                            "JSON" => {
                                self.format = EventFmt::Json;
                                continue;
                            }
                            "XML" => {
                                self.format = EventFmt::Xml;
                                continue;
                            }
                            _ => {}
                        }
                    }
                    if up == "ALL" {
                        self.all_events = true;
                        keys += 1;
                    } else if KNOWN_EVENTS.contains(&up.as_str())
                        || MYEVENTS.contains(&up.as_str())
                        || up.starts_with("CHANNEL_")
                    {
                        self.subs.insert(up);
                        keys += 1;
                    }
                }
                if keys == 0 {
                    self.reply("-ERR no keywords supplied").await?;
                } else {
                    self.events_on = true;
                    let f = match self.format {
                        EventFmt::Plain => "plain",
                        EventFmt::Json => "json",
                        EventFmt::Xml => "xml",
                    };
                    self.reply(&format!("+OK event listener enabled {f}"))
                        .await?;
                }
            }
            "nixevent" => {
                for tok in line.split(' ').skip(1) {
                    self.subs.remove(&tok.to_ascii_uppercase());
                }
                self.reply("+OK events nixed").await?;
            }
            "noevents" => {
                if self.events_on {
                    self.events_on = false;
                    self.all_events = false;
                    self.subs.clear();
                    self.reply("+OK no longer listening for events").await?;
                } else {
                    self.reply("-ERR not listening for events").await?;
                }
            }
            "filter" => {
                let mut parts = line.splitn(3, ' ').skip(1);
                let h = parts.next().unwrap_or("");
                let v = parts.next().unwrap_or("");
                self.reply(&format!("+OK filter added. [{h}]=[{v}]"))
                    .await?;
            }
            "resume" => self.reply("+OK").await?,
            "exit" => {
                self.reply("+OK bye").await?;
                let d = wire::disconnect_notice(&self.ch.uuid);
                self.send(&d).await?;
                self.update(|r| r.app_exited = true);
                self.socket_closed().await;
                return Ok(());
            }
            _ => self.reply("-ERR command not found").await?,
        }
        self.park_tick().await
    }

    /// CHANNEL_PARK fires a little after `myevents`; see `CallSpec::park_after`.
    async fn park_tick(&mut self) -> Io {
        match self.park_countdown {
            Some(n) if n <= 1 => {
                self.park_countdown = None;
                self.emit(
                    "CHANNEL_PARK",
                    ("switch_ivr.c", "switch_ivr_park", 1001),
                    vec![],
                    vec![],
                    None,
                )
                .await
            }
            Some(n) => {
                self.park_countdown = Some(n - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }

    async fn emit_job(&mut self, front: Headers, body: &str) -> Io {
        self.seq += 1;
        if !self.subscribed("BACKGROUND_JOB") {
            return Ok(());
        }
        let mut h = self.ch.event_base(
            "BACKGROUND_JOB",
            ("mod_event_socket.c", "api_exec", 1572),
            self.now_us,
            self.seq,
        );
        // Outbound: the job belongs to the controlled channel.
        let mut front = front;
        front.insert(1, ("Job-Owner-UUID".into(), self.ch.uuid.clone()));
        h.splice(0..0, front);
        let bytes = match self.format {
            EventFmt::Plain => wire::plain_event(&h, Some(body)),
            EventFmt::Json => wire::json_event(&h, Some(body)),
            EventFmt::Xml => xml_event(&h, Some(body)),
        };
        self.update(|r| r.events_sent.push("BACKGROUND_JOB".into()));
        self.send(&bytes).await
    }

    async fn on_control(&mut self, c: Control) -> Io {
        match c {
            Control::Answer => self.answer_via_app().await,
            Control::Hangup(cause) => self.hangup(&cause, false).await,
            Control::Advance(d) => self.advance(d).await,
            Control::Bridge(number) => self.bridge(&number).await,
            Control::Unbridge => self.unbridge().await,
            Control::Kill => {
                self.socket_closed().await;
                Ok(())
            }
            Control::KillOnNextCommand => {
                self.kill_next = true;
                Ok(())
            }
            Control::Sync(tx) => {
                let _ = tx.send(());
                Ok(())
            }
            Control::Hold(on) => {
                self.hold = on;
                if !on {
                    for cmd in std::mem::take(&mut self.held) {
                        self.process(cmd).await?;
                    }
                }
                Ok(())
            }
        }
    }

    fn app_headers(app: &str, arg: &str, app_uuid: &str) -> Headers {
        vec![
            ("Application".into(), app.into()),
            ("Application-Data".into(), arg.into()),
            ("Application-UUID".into(), app_uuid.into()),
        ]
    }

    async fn execute(&mut self, app: &str, arg: &str, app_uuid: &str) -> Io {
        self.ch.set_var("current_application", app);
        self.ch.set_var("current_application_data", arg);
        let back = Self::app_headers(app, arg, app_uuid);
        self.emit(
            "CHANNEL_EXECUTE",
            ("switch_core_session.c", "switch_core_session_exec", 2946),
            vec![],
            back,
            None,
        )
        .await
    }

    async fn execute_complete(
        &mut self,
        app: &str,
        arg: &str,
        app_uuid: &str,
        response: &str,
    ) -> Io {
        let mut back = Self::app_headers(app, arg, app_uuid);
        back.insert(2, ("Application-Response".into(), response.into()));
        self.emit(
            "CHANNEL_EXECUTE_COMPLETE",
            ("switch_core_session.c", "switch_core_session_exec", 2992),
            vec![],
            back,
            None,
        )
        .await
    }

    async fn answer(&mut self) -> Io {
        if self.ch.answered_us != 0 || self.hung_up {
            return Ok(());
        }
        self.ch.answered_us = self.now_us;
        self.ch.answer_state = "answered";
        self.emit(
            "CHANNEL_ANSWER",
            (
                "switch_channel.c",
                "switch_channel_perform_mark_answered",
                3753,
            ),
            vec![],
            vec![],
            None,
        )
        .await?;
        let at = std::time::Instant::now();
        self.update(|r| {
            r.answered = true;
            r.answer_sent_at = Some(at);
        });
        self.set_callstate("ACTIVE").await
    }

    /// Changes `Channel-Call-State` and says so with CHANNEL_CALLSTATE.
    async fn set_callstate(&mut self, new: &'static str) -> Io {
        let previous = std::mem::replace(&mut self.ch.call_state, new);
        self.emit(
            "CHANNEL_CALLSTATE",
            (
                "switch_channel.c",
                "switch_channel_perform_set_callstate",
                360,
            ),
            vec![],
            vec![("Original-Channel-Call-State".into(), previous.into())],
            None,
        )
        .await
    }

    async fn answer_via_app(&mut self) -> Io {
        if self.ch.answered_us != 0 || self.hung_up {
            return Ok(());
        }
        let u = uuid_v4();
        self.execute("answer", "", &u).await?;
        self.answer().await?;
        self.execute_complete("answer", "", &u, "_none_").await
    }

    async fn sendmsg(&mut self, cmd: &Command) -> Io {
        if self.hung_up {
            return Ok(());
        }
        let call_command = cmd
            .header("call-command")
            .unwrap_or("")
            .to_ascii_lowercase();
        match call_command.as_str() {
            "execute" => {
                let app = cmd.header("execute-app-name").unwrap_or("").to_string();
                let arg = cmd.header("execute-app-arg").unwrap_or("").to_string();
                let app_uuid = cmd
                    .header("Event-UUID")
                    .map(str::to_string)
                    .unwrap_or_else(uuid_v4);
                self.run_app(&app, &arg, &app_uuid).await
            }
            "hangup" => {
                let cause = cmd
                    .header("hangup-cause")
                    .unwrap_or("NORMAL_CLEARING")
                    .to_string();
                self.hangup(&cause, false).await
            }
            _ => Ok(()),
        }
    }

    async fn run_app(&mut self, app: &str, arg: &str, app_uuid: &str) -> Io {
        if !KNOWN_APPS.contains(&app) {
            return self.hangup("DESTINATION_OUT_OF_ORDER", false).await;
        }
        match app {
            "answer" => {
                self.execute(app, arg, app_uuid).await?;
                self.answer().await?;
                self.execute_complete(app, arg, app_uuid, "_none_").await
            }
            "transfer" => {
                self.execute(app, arg, app_uuid).await?;
                let mut parts = arg.split_whitespace();
                let dest = parts.next().unwrap_or("").to_string();
                let _dialplan = parts.next();
                let context = parts.next().unwrap_or(&self.ch.context).to_string();
                self.ch.destination = dest.clone();
                self.ch.context = context.clone();
                self.ch.transfer_us = self.now_us;
                self.update(|r| r.transferred_to = Some(format!("{dest} XML {context}")));
                self.execute_complete(app, arg, app_uuid, "_none_").await?;
                self.leave_socket_app("_none_").await?;
                self.ch.state = ("CS_ROUTING", 2);
                self.emit_state().await?;
                self.ch.state = ("CS_EXECUTE", 4);
                self.emit_state().await
            }
            "hangup" => {
                self.execute(app, arg, app_uuid).await?;
                let cause = if arg.is_empty() {
                    "NORMAL_CLEARING"
                } else {
                    arg
                };
                self.hangup(cause, false).await
            }
            "set" | "export" => {
                self.execute(app, arg, app_uuid).await?;
                if let Some((k, v)) = arg.split_once('=') {
                    self.ch.set_var(k, v);
                }
                self.execute_complete(app, arg, app_uuid, "_none_").await
            }
            "playback" => {
                self.finish_playback().await?;
                self.execute(app, arg, app_uuid).await?;
                let ms = tone_stream_ms(arg);
                if ms == 0 {
                    return self
                        .execute_complete(app, arg, app_uuid, "FILE PLAYED")
                        .await;
                }
                self.playback = Some((
                    app_uuid.to_string(),
                    arg.to_string(),
                    self.now_us + ms * 1000,
                ));
                Ok(())
            }
            "record" => {
                self.execute(app, arg, app_uuid).await?;
                let mut parts = arg.split_whitespace();
                let path = parts.next().unwrap_or("").to_string();
                let limit_s = parts.next().and_then(|l| l.parse().ok()).unwrap_or(0);
                let Some(format) = Format::from_path(&path) else {
                    return self.execute_complete(app, arg, app_uuid, "_none_").await;
                };
                let rec = ActiveRecording {
                    path: path.clone(),
                    start_us: self.now_us,
                    masks: Vec::new(),
                    limit_s,
                    vars: vec![],
                    rate: 8000,
                    channels: 1,
                    format,
                };
                self.app_record = Some(AppRecording {
                    rec,
                    app_uuid: app_uuid.to_string(),
                });
                self.ch.set_var("silence_hits_exhausted", "false");
                self.emit(
                    "RECORD_START",
                    ("switch_ivr_play_say.c", "switch_ivr_record_file_event", 437),
                    vec![],
                    vec![("Record-File-Path".into(), path)],
                    None,
                )
                .await
            }
            _ => {
                self.execute(app, arg, app_uuid).await?;
                self.execute_complete(app, arg, app_uuid, "_none_").await
            }
        }
    }

    async fn emit_state(&mut self) -> Io {
        self.emit(
            "CHANNEL_STATE",
            (
                "switch_core_state_machine.c",
                "switch_core_session_run",
                628,
            ),
            vec![],
            vec![],
            None,
        )
        .await
    }

    async fn leave_socket_app(&mut self, response: &str) -> Io {
        if !self.parked {
            return Ok(());
        }
        self.parked = false;
        self.emit(
            "CHANNEL_UNPARK",
            ("switch_ivr.c", "switch_ivr_park", 1190),
            vec![],
            vec![],
            None,
        )
        .await?;
        let arg = "127.0.0.1:8084 async full";
        self.execute_complete("socket", arg, &uuid_v4(), response)
            .await
    }

    /// `api` commands. Returns the response body and what happens after it is sent.
    fn api(&mut self, rest: &str) -> (String, Vec<After>) {
        let (name, args) = rest.split_once(' ').unwrap_or((rest, ""));
        let args: Vec<&str> = args.split(' ').filter(|a| !a.is_empty()).collect();
        let ours = |u: &str| u == self.ch.uuid && !self.hung_up;
        match name {
            "uuid_record" => self.uuid_record(&args),
            "uuid_kill" => {
                if args.first().is_some_and(|u| ours(u)) {
                    let cause = args.get(1).unwrap_or(&"NORMAL_CLEARING").to_string();
                    ("+OK\n".into(), vec![After::Kill(cause)])
                } else {
                    ("-ERR No such channel!\n".into(), vec![])
                }
            }
            "uuid_getvar" => match args.as_slice() {
                [u, var, ..] if ours(u) => (
                    self.ch.var(var).unwrap_or("_undef_").to_string(),
                    vec![],
                ),
                _ => ("-ERR No such channel!\n".into(), vec![]),
            },
            "uuid_setvar" => match args.as_slice() {
                [u, var, value @ ..] if ours(u) => {
                    self.ch.set_var(var, &value.join(" "));
                    ("+OK\n".into(), vec![])
                }
                _ => ("-ERR No such channel!\n".into(), vec![]),
            },
            "uuid_exists" => (
                (args.first().is_some_and(|u| ours(u))).to_string(),
                vec![],
            ),
            "version" => (
                "FreeSWITCH Version 1.10.12-release~64bit ( 64bit)\n".into(),
                vec![],
            ),
            "status" => ("UP 0 years, 0 days, 0 hours, 8 minutes, 34 seconds, 653 milliseconds, 0 microseconds\nFreeSWITCH (Version 1.10.12-release  64bit) is ready\n".into(), vec![]),
            other => (format!("-ERR {other} Command not found!\n"), vec![]),
        }
    }

    fn uuid_record(&mut self, args: &[&str]) -> (String, Vec<After>) {
        const USAGE: &str =
            "-USAGE: <uuid> [start|stop|mask|unmask] <path> [<limit>] [<recording_vars>]\n";
        if args.len() < 3 {
            return (USAGE.into(), vec![]);
        }
        if args[0] != self.ch.uuid || self.hung_up {
            return ("-ERR Cannot locate session!\n".into(), vec![]);
        }
        let path = args[2].to_string();
        match args[1] {
            "start" => {
                let Some(format) = Format::from_path(&path) else {
                    return ("-ERR Cannot record session!\n".into(), vec![]);
                };
                let limit_s = args.get(3).and_then(|l| l.parse().ok()).unwrap_or(0);
                let vars = args
                    .get(4)
                    .map(|v| parse_var_block(&callrec_esl::header::percent_decode(v.as_bytes())))
                    .unwrap_or_default();
                let lookup = |name: &str| {
                    vars.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.clone())
                        .or_else(|| self.ch.var(name).map(str::to_string))
                };
                let rate = lookup("record_sample_rate")
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(8000);
                let stereo = lookup("RECORD_STEREO").is_some_and(|v| is_true(&v));
                let rec = ActiveRecording {
                    path,
                    start_us: self.now_us,
                    masks: Vec::new(),
                    limit_s,
                    vars,
                    rate,
                    channels: if stereo { 2 } else { 1 },
                    format,
                };
                let pre_answer = self.ch.answered_us == 0 && self.ch.progress_media_us == 0;
                self.recordings.push(rec);
                let idx = self.recordings.len() - 1;
                let mut after = vec![];
                if pre_answer {
                    after.push(After::PreAnswer);
                }
                after.push(After::Started(idx));
                ("+OK Success\n".into(), after)
            }
            "stop" => {
                let idx: Vec<usize> = if path == "all" {
                    (0..self.recordings.len()).collect()
                } else {
                    self.recordings
                        .iter()
                        .position(|r| r.path == path)
                        .into_iter()
                        .collect()
                };
                if idx.is_empty() {
                    return ("-ERR Cannot stop record session!\n".into(), vec![]);
                }
                (
                    "+OK Success\n".into(),
                    vec![After::Stop(idx, "success-maxtime")],
                )
            }
            action @ ("mask" | "unmask") => {
                let now = self.now_us;
                match self.recordings.iter_mut().find(|r| r.path == path) {
                    Some(r) => {
                        let open = r.masks.last().is_some_and(|m| m.1.is_none());
                        if action == "mask" && !open {
                            r.masks.push((now, None));
                        } else if action == "unmask" && open {
                            if let Some(m) = r.masks.last_mut() {
                                m.1 = Some(now);
                            }
                        }
                        ("+OK Success\n".into(), vec![])
                    }
                    None => ("-ERR Cannot mask recording session!\n".into(), vec![]),
                }
            }
            _ => (USAGE.into(), vec![]),
        }
    }

    async fn run_after(&mut self, after: Vec<After>) -> Io {
        for a in after {
            match a {
                After::PreAnswer => {
                    self.ch.progress_media_us = self.now_us;
                    self.ch.answer_state = "early";
                    self.emit(
                        "CHANNEL_PROGRESS_MEDIA",
                        (
                            "switch_channel.c",
                            "switch_channel_perform_mark_pre_answered",
                            3546,
                        ),
                        vec![],
                        vec![],
                        None,
                    )
                    .await?;
                    self.set_callstate("EARLY").await?;
                }
                After::Started(idx) => {
                    let Some(r) = self.recordings.get(idx) else {
                        continue;
                    };
                    let path = r.path.clone();
                    let mut back: Headers = vec![("Record-File-Path".into(), path.clone())];
                    back.extend(
                        r.vars
                            .iter()
                            .map(|(k, v)| (format!("Recording-Variable-{k}"), v.clone())),
                    );
                    self.emit(
                        "RECORD_START",
                        ("switch_ivr_async.c", "record_callback", 1287),
                        vec![],
                        back,
                        None,
                    )
                    .await?;
                    self.emit(
                        "MEDIA_BUG_START",
                        ("switch_core_media_bug.c", "switch_core_media_bug_add", 1028),
                        vec![
                            ("Media-Bug-Function".into(), "session_record".into()),
                            ("Media-Bug-Target".into(), path),
                        ],
                        vec![],
                        None,
                    )
                    .await?;
                }
                After::Stop(mut idx, cause) => {
                    idx.sort_unstable();
                    for i in idx.into_iter().rev() {
                        let r = self.recordings.remove(i);
                        self.finish_recording(r, cause).await?;
                    }
                }
                After::Kill(cause) => self.hangup(&cause, true).await?,
            }
        }
        Ok(())
    }

    /// Writes the file, sets the `record_*` variables and emits RECORD_STOP.
    async fn finish_recording(&mut self, r: ActiveRecording, cause: &str) -> Io {
        let ms = (self.now_us.saturating_sub(r.start_us)) / 1000;
        let samples = ms * 8;
        let (cause, discarded, size) = if ms == 0 {
            let _ = std::fs::remove_file(&r.path);
            ("empty-file", true, 0)
        } else {
            let silent: Vec<(u64, u64)> = r
                .masks
                .iter()
                .map(|(a, b)| {
                    let end = b.unwrap_or(self.now_us);
                    (
                        (a - r.start_us) / 1000,
                        (end.saturating_sub(r.start_us)) / 1000,
                    )
                })
                .collect();
            let size = media::write_masked(&r.path, r.format, r.rate, r.channels, ms, &silent)
                .unwrap_or(0);
            (cause, false, size)
        };
        self.ch.set_var("record_file_size", &size.to_string());
        self.ch.set_var("record_samples", &samples.to_string());
        self.ch.set_var("record_seconds", &(ms / 1000).to_string());
        self.ch.set_var("record_ms", &ms.to_string());
        self.ch.set_var("record_completion_cause", cause);
        if discarded {
            self.ch.set_var("RECORD_DISCARDED", "true");
        }
        let mut back: Headers = vec![("Record-File-Path".into(), r.path.clone())];
        back.extend(
            r.vars
                .iter()
                .map(|(k, v)| (format!("Recording-Variable-{k}"), v.clone())),
        );
        back.push(("Record-Completion-Cause".into(), cause.into()));
        self.emit(
            "RECORD_STOP",
            ("switch_ivr_async.c", "send_record_stop_event", 1184),
            vec![],
            back,
            None,
        )
        .await?;
        self.emit(
            "MEDIA_BUG_STOP",
            (
                "switch_core_media_bug.c",
                "switch_core_media_bug_destroy",
                84,
            ),
            vec![
                ("Media-Bug-Function".into(), "session_record".into()),
                ("Media-Bug-Target".into(), r.path.clone()),
            ],
            vec![],
            None,
        )
        .await?;
        let report = RecordingReport {
            path: r.path,
            vars: r.vars,
            limit_s: r.limit_s,
            rate: r.rate,
            channels: r.channels,
            ms,
            cause: cause.to_string(),
            app: false,
            discarded,
        };
        self.update(|rep| rep.recordings.push(report));
        Ok(())
    }

    /// Ends a `record` application recording (limit reached or hangup).
    async fn finish_app_recording(&mut self) -> Io {
        let Some(a) = self.app_record.take() else {
            return Ok(());
        };
        let r = a.rec;
        let ms = (self.now_us.saturating_sub(r.start_us)) / 1000;
        let size = media::write(&r.path, r.format, r.rate, r.channels, ms).unwrap_or(0);
        self.ch.set_var("record_file_size", &size.to_string());
        self.ch.set_var("record_samples", &(ms * 8).to_string());
        self.ch.set_var("record_seconds", &(ms / 1000).to_string());
        self.ch.set_var("record_ms", &ms.to_string());
        self.emit(
            "RECORD_STOP",
            ("switch_ivr_play_say.c", "switch_ivr_record_file_event", 437),
            vec![],
            vec![("Record-File-Path".into(), r.path.clone())],
            None,
        )
        .await?;
        let report = RecordingReport {
            path: r.path.clone(),
            vars: vec![],
            limit_s: r.limit_s,
            rate: r.rate,
            channels: r.channels,
            ms,
            cause: String::new(),
            app: true,
            discarded: false,
        };
        self.update(|rep| rep.recordings.push(report));
        let arg = if r.limit_s > 0 {
            format!("{} {}", r.path, r.limit_s)
        } else {
            r.path.clone()
        };
        self.execute_complete("record", &arg, &a.app_uuid, "_none_")
            .await
    }

    /// Ends a running playback (its end time passed, another replaced it, or hangup).
    async fn finish_playback(&mut self) -> Io {
        let Some((u, arg, _)) = self.playback.take() else {
            return Ok(());
        };
        self.execute_complete("playback", &arg, &u, "FILE PLAYED")
            .await
    }

    async fn advance(&mut self, d: Duration) -> Io {
        let target = self.now_us + d.as_micros() as u64;
        if let Some((_, _, end)) = &self.playback {
            if *end <= target {
                let end = *end;
                let keep = self.now_us;
                self.now_us = end.max(keep);
                self.finish_playback().await?;
            }
        }
        loop {
            // The next limit to fire: FreeSWITCH compares whole epoch seconds.
            let deadline = |start_us: u64, limit: u64| (start_us / 1_000_000 + limit) * 1_000_000;
            let next_rec = self
                .recordings
                .iter()
                .enumerate()
                .filter(|(_, r)| r.limit_s > 0)
                .map(|(i, r)| (deadline(r.start_us, r.limit_s), i))
                .min();
            let next_app = self
                .app_record
                .as_ref()
                .filter(|a| a.rec.limit_s > 0)
                .map(|a| deadline(a.rec.start_us, a.rec.limit_s));
            match (next_rec, next_app) {
                (Some((t, i)), app) if t <= target && app.is_none_or(|a| t <= a) => {
                    self.now_us = self.now_us.max(t);
                    let r = self.recordings.remove(i);
                    self.finish_recording(r, "success-maxtime").await?;
                }
                (_, Some(t)) if t <= target => {
                    self.now_us = self.now_us.max(t);
                    self.finish_app_recording().await?;
                }
                _ => break,
            }
        }
        self.now_us = target;
        Ok(())
    }

    async fn bridge(&mut self, number: &str) -> Io {
        let u = uuid_v4();
        let arg = format!("sofia/test/{number}@127.0.0.1:5090");
        self.execute("bridge", &arg, &u).await?;
        let b = uuid_v4();
        self.ch.other_leg = Some(OtherLeg {
            uuid: b.clone(),
            number: number.to_string(),
            answered_us: self.now_us,
        });
        self.answer().await?;
        self.ch.bridged_us = self.now_us;
        self.ch.set_var("signal_bond", &b);
        let front = vec![
            ("Bridge-A-Unique-ID".into(), self.ch.uuid.clone()),
            ("Bridge-B-Unique-ID".into(), b.clone()),
        ];
        self.emit(
            "CHANNEL_BRIDGE",
            ("switch_ivr_bridge.c", "audio_bridge_on_exchange_media", 786),
            front,
            vec![],
            None,
        )
        .await?;
        self.ch.set_var("bridge_uuid", &b);
        Ok(())
    }

    async fn unbridge(&mut self) -> Io {
        let Some(o) = self.ch.other_leg.clone() else {
            return Ok(());
        };
        let front = vec![
            ("Bridge-A-Unique-ID".into(), self.ch.uuid.clone()),
            ("Bridge-B-Unique-ID".into(), o.uuid.clone()),
        ];
        self.ch.set_var("bridge_hangup_cause", "NORMAL_CLEARING");
        self.emit(
            "CHANNEL_UNBRIDGE",
            ("switch_ivr_bridge.c", "audio_bridge_on_exchange_media", 896),
            front,
            vec![],
            None,
        )
        .await?;
        let arg = format!("sofia/test/{}@127.0.0.1:5090", o.number);
        self.execute_complete("bridge", &arg, &uuid_v4(), "_none_")
            .await
    }

    /// The hangup sequence of the captures. `killed` (uuid_kill) sends the linger notice right
    /// after CHANNEL_HANGUP, before RECORD_STOP, as observed.
    async fn hangup(&mut self, cause: &str, killed: bool) -> Io {
        if self.hung_up {
            return Ok(());
        }
        self.hung_up = true;
        self.ch.hangup_us = self.now_us;
        self.ch.hangup_cause = Some(cause.to_string());
        self.ch.answer_state = "hangup";
        self.ch.set_var("hangup_cause", cause);
        self.emit(
            "CHANNEL_HANGUP",
            ("switch_channel.c", "switch_channel_perform_hangup", 3244),
            vec![],
            vec![],
            None,
        )
        .await?;
        if killed {
            if let Some(t) = self.linger {
                let n = wire::linger_notice(&self.ch.uuid, &self.ch.name, t);
                self.send(&n).await?;
            }
        }
        self.finish_playback().await?;
        if self.app_record.is_some() {
            self.finish_app_recording().await?;
        }
        self.leave_socket_app("_none_").await?;
        self.ch.state = ("CS_HANGUP", 10);
        self.emit_state().await?;
        let active: Vec<ActiveRecording> = self.recordings.drain(..).collect();
        for r in active {
            self.finish_recording(r, "success-silence").await?;
        }
        self.set_callstate("HANGUP").await?;
        self.ch.state = ("CS_REPORTING", 11);
        self.emit_state().await?;
        self.emit(
            "CHANNEL_HANGUP_COMPLETE",
            (
                "switch_core_state_machine.c",
                "switch_core_session_reporting_state",
                947,
            ),
            vec![("Hangup-Cause".into(), cause.to_string())],
            vec![],
            None,
        )
        .await?;
        self.update(|r| r.hung_up = true);
        match self.linger {
            Some(t) => {
                if !killed {
                    let n = wire::linger_notice(&self.ch.uuid, &self.ch.name, t);
                    self.send(&n).await?;
                }
            }
            None => {
                let d = wire::disconnect_notice(&self.ch.uuid);
                self.send(&d).await?;
                self.socket_closed().await;
            }
        }
        Ok(())
    }
}

enum After {
    PreAnswer,
    Started(usize),
    Stop(Vec<usize>, &'static str),
    Kill(String),
}

/// Length of a `tone_stream://%(on,off,freq);loops=N` playback in ms (0 when unknown).
fn tone_stream_ms(arg: &str) -> u64 {
    let Some(spec) = arg.strip_prefix("tone_stream://%(") else {
        return 0;
    };
    let mut nums = spec.split([',', ')']).map(|n| n.trim().parse::<u64>().ok());
    let (Some(Some(on)), Some(Some(off))) = (nums.next(), nums.next()) else {
        return 0;
    };
    let loops = arg
        .split(';')
        .find_map(|p| p.strip_prefix("loops="))
        .and_then(|l| l.parse::<u64>().ok())
        .unwrap_or(1);
    (on + off) * loops
}

fn is_true(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "true" | "yes" | "on" | "1" | "enabled" | "active" | "allow"
    )
}

/// `{a=b,c=d}` as mod_commands parses the 5th `uuid_record` argument.
fn parse_var_block(s: &str) -> Vec<(String, String)> {
    let inner = s
        .trim()
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or("");
    inner
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn xml_event(h: &Headers, body: Option<&str>) -> Vec<u8> {
    fn esc(s: &str) -> String {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    }
    let mut s = String::from("<event>\n  <headers>\n");
    for (n, v) in h {
        s.push_str(&format!(
            "    <{n}>{}</{n}>\n",
            esc(&callrec_esl::header::percent_encode(v))
        ));
    }
    s.push_str("  </headers>\n");
    if let Some(b) = body {
        s.push_str(&format!(
            "  <Content-Length>{}</Content-Length>\n  <body>{}</body>\n",
            b.len(),
            esc(b)
        ));
    }
    s.push_str("</event>");
    let mut v = format!(
        "Content-Length: {}\nContent-Type: text/event-xml\n\n",
        s.len()
    )
    .into_bytes();
    v.extend_from_slice(s.as_bytes());
    v
}

/// Reads one command: lines up to a blank line. `None` at end of stream.
async fn read_command(r: &mut BufReader<OwnedReadHalf>) -> std::io::Result<Option<Command>> {
    let mut first: Option<String> = None;
    let mut headers = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let l = line.trim_end_matches(['\n', '\r']);
        if l.is_empty() {
            match first.take() {
                Some(f) => {
                    return Ok(Some(Command {
                        line: f,
                        headers,
                        received_at: std::time::Instant::now(),
                    }))
                }
                None => continue,
            }
        }
        match &first {
            None => first = Some(l.to_string()),
            Some(_) => {
                if let Some((k, v)) = l.split_once(':') {
                    headers.push((k.trim().to_string(), v.trim_start().to_string()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_blocks() {
        assert_eq!(
            parse_var_block("{callrec_recording_id=rec-1,record_sample_rate=16000}"),
            vec![
                ("callrec_recording_id".to_string(), "rec-1".to_string()),
                ("record_sample_rate".to_string(), "16000".to_string())
            ]
        );
        assert!(parse_var_block("nope").is_empty());
    }
}
