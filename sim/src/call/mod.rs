//! One simulated call: the connection to the controller, FreeSWITCH's command handling, and
//! the [`CallHandle`] a test uses to play the caller and the rest of the dialplan.
//!
//! Invariant: replies go out in command order, and the events a command causes follow its
//! reply (as in the captures); events are only sent when the controller subscribed to them.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};

use crate::bus::{Control, Shared};
use crate::channel::{Channel, OtherLeg};
use crate::clock::{uuid_v4, wall_us};
use crate::dialplan::{Dialplan, DialplanAction};
use crate::media::{self, Format};
use crate::spec::CallSpec;
use crate::wire::{self, Headers};

mod apps;
mod controls;
mod media_bugs;
mod route;
mod socket;

pub(crate) use crate::wire::read_command;
pub use crate::wire::Command;
use media_bugs::{ActiveRecording, AppRecording};

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
    /// Commands the channel received: on its socket, and `api` commands naming it from inbound
    /// connections (recorded as `api …`).
    pub commands: Vec<Command>,
    /// FreeSWITCH died under the call (see [`Switch::restart`](crate::Switch::restart)).
    pub crashed: bool,
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
    /// When the call was placed (its socket connected) and when the socket closed.
    pub dialled_at: Option<std::time::Instant>,
    pub closed_at: Option<std::time::Instant>,
    /// A call placed through a [`Dialplan`]: each application the channel's own dialplan ran,
    /// as `app data` with its `${…}` expanded (the socket's `sendmsg` ones are in `commands`).
    pub dialplan: Vec<String>,
    /// Extensions each hunt matched, as `context/extension`.
    pub hunted: Vec<String>,
    /// `socket` applications that reached the controller, and those refused.
    pub sockets: usize,
    pub sockets_refused: usize,
    /// The socket closed without `resume` (nor `socket_resume=true`) while the call was parked
    /// in it: FreeSWITCH leaves the call parked until the caller hangs up.
    pub stuck_in_park: bool,
    /// A `socket_resume` misuse FreeSWITCH would act on against the dialplan (see
    /// `call/route.rs`): what happened.
    pub resume_hazard: Option<String>,
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
    dial_on(addr, spec, None).await
}

/// Places a call that runs `dialplan` from `spec.context`, as FreeSWITCH routes a new
/// channel: its `socket` actions dial the controller they name, and everything else the
/// dialplan does (hunting again after a transfer, `resume`, a refused socket) happens as
/// `call/route.rs` describes.
pub fn place(dialplan: Arc<Dialplan>, spec: CallSpec) -> CallHandle {
    start(None, spec, None, Some(dialplan))
}

pub(crate) fn place_on(dialplan: Arc<Dialplan>, spec: CallSpec, switch: Arc<Shared>) -> CallHandle {
    start(None, spec, Some(switch), Some(dialplan))
}

/// [`dial`] for a channel of a [`Switch`](crate::Switch), whose inbound listeners see its events
/// and can command it.
pub(crate) async fn dial_on(
    addr: SocketAddr,
    spec: CallSpec,
    switch: Option<Arc<Shared>>,
) -> std::io::Result<CallHandle> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(start(Some(stream), spec, switch, None))
}

fn start(
    stream: Option<TcpStream>,
    spec: CallSpec,
    switch: Option<Arc<Shared>>,
    dialplan: Option<Arc<Dialplan>>,
) -> CallHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let report = Arc::new(Mutex::new(CallReport {
        dialled_at: Some(std::time::Instant::now()),
        ..CallReport::default()
    }));
    let changed = Arc::new(Notify::new());
    let handle = CallHandle {
        uuid: spec.uuid.clone(),
        ctl: tx,
        report: report.clone(),
        changed: changed.clone(),
    };
    let in_socket = stream.is_some();
    let (rd, wr) = match stream.map(TcpStream::into_split) {
        Some((r, w)) => (Some(r), Some(w)),
        None => (None, None),
    };
    let now = wall_us();
    static SESSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let session_id = SESSION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Some(sw) = &switch {
        sw.register(&spec.uuid, tx_for_switch(&handle));
    }
    let mut sim = Sim {
        switch,
        ch: Channel::new(&spec, now, session_id),
        spec,
        w: wr,
        new_reader: rd,
        socket_arg: "127.0.0.1:8084 async full".into(),
        resume_flag: false,
        unpark_pending: false,
        route: dialplan.map(route::Route::new),
        now_us: now,
        seq: 480,
        connected: false,
        sub: Subscriptions::default(),
        park_countdown: None,
        parked: in_socket,
        hung_up: false,
        closed: !in_socket,
        faults: Faults::default(),
        recordings: Vec::new(),
        app_record: None,
        playback: None,
        bridge_run: None,
        report,
        changed,
    };
    sim.route_start();
    tokio::spawn(sim.run(rx));
    handle
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventFmt {
    Plain,
    Json,
    Xml,
}

/// What the controller subscribed to, and how events are serialised for it.
pub(crate) struct Subscriptions {
    pub(crate) events_on: bool,
    myevents: bool,
    all_events: bool,
    names: HashSet<String>,
    format: EventFmt,
    /// `linger` seconds, when asked.
    linger: Option<i64>,
}

impl Default for Subscriptions {
    fn default() -> Self {
        Subscriptions {
            events_on: false,
            myevents: false,
            all_events: false,
            names: HashSet::new(),
            format: EventFmt::Plain,
            linger: None,
        }
    }
}

/// Faults a test injects (see [`CallHandle`]).
#[derive(Default)]
struct Faults {
    /// Drop the socket when the next command arrives.
    kill_next: bool,
    /// Hold replies (and the commands' effects) until released.
    hold: bool,
    held: Vec<Command>,
    /// `api` commands from an inbound connection held the same way.
    held_api: Vec<(String, tokio::sync::oneshot::Sender<String>, bool)>,
}

struct Sim {
    /// The FreeSWITCH this channel belongs to, when the test models one.
    switch: Option<Arc<Shared>>,
    spec: CallSpec,
    ch: Channel,
    /// The controller's socket, while the call has one.
    w: Option<OwnedWriteHalf>,
    /// A socket just opened, for the read loop to take.
    new_reader: Option<OwnedReadHalf>,
    /// The running `socket` application's argument.
    socket_arg: String,
    /// mod_event_socket's LFLAG_RESUME: the controller sent `resume` on this socket.
    resume_flag: bool,
    /// The socket closed with resume: leave the park (async, from the run loop).
    unpark_pending: bool,
    /// The channel's own dialplan, for calls [`place`]d through one.
    route: Option<route::Route>,
    now_us: u64,
    seq: u64,
    connected: bool,
    sub: Subscriptions,
    park_countdown: Option<usize>,
    /// Parked in the `socket` application (until a transfer, the hangup, or the socket closing
    /// with `resume`).
    parked: bool,
    hung_up: bool,
    closed: bool,
    faults: Faults,
    recordings: Vec<ActiveRecording>,
    app_record: Option<AppRecording>,
    /// A running `playback`: (application uuid, argument, virtual end time).
    playback: Option<(String, String, u64)>,
    /// A running `bridge`: (application uuid, argument).
    bridge_run: Option<(String, String)>,
    report: Arc<Mutex<CallReport>>,
    changed: Arc<Notify>,
}

type Io = std::io::Result<()>;

fn tx_for_switch(h: &CallHandle) -> mpsc::UnboundedSender<Control> {
    h.ctl.clone()
}
