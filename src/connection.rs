//! One event-socket connection: commands out, replies matched to them, events fanned in.
//!
//! Invariants:
//! - FreeSWITCH answers commands strictly in order, one reply each (`command/reply` or
//!   `api/response`), so replies are matched first-in first-out; a command whose caller gave up
//!   waiting keeps its place, and its late reply is dropped rather than given to the next one;
//! - a reader task owns the socket's read side and always drains it, whatever the session is
//!   doing, so FreeSWITCH's send queue never backs up because of callrec;
//! - writing is synchronous and cannot be cancelled half-way: a command's waiter is queued and
//!   its bytes written (or, when the socket's buffer is full, queued for a flush task) under one
//!   lock, so any number of [`Commander`]s can share a connection and commands stay whole and in
//!   the order of their waiters;
//! - a [`Router`] given at creation sees every event first, on the reader task, and keeps the
//!   ones it delivers itself (the inbound link routes by UUID without a task hop);
//! - an event that cannot be decoded is logged and skipped (framing is intact); a framing error
//!   ends the connection, and every command still waiting for a reply fails at once;
//! - events wait for the session in a bounded [`EventQueue`]: when a lagging session lets it
//!   fill, events it does not act on are dropped (and counted); the ones it needs (RECORD_*,
//!   CHANNEL_ANSWER/BRIDGE/EXECUTE_COMPLETE/HANGUP_COMPLETE, notices, the close) never are.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};
use tokio_util::codec::FramedRead;

use crate::esl::{
    ApiResponse, Command, CommandError, CommandReply, DisconnectNotice, EslCodec, Limits, Message,
    ProtocolError,
};
use crate::event::Event;

/// The reply to one command.
#[derive(Debug, Clone)]
pub enum Reply {
    Command(CommandReply),
    Api(ApiResponse),
}

impl Reply {
    /// `+OK…` for command replies, `+OK…` bodies for API responses.
    pub fn is_ok(&self) -> bool {
        match self {
            Reply::Command(r) => r.is_ok(),
            Reply::Api(a) => a.is_ok(),
        }
    }

    pub fn text(&self) -> String {
        match self {
            Reply::Command(r) => r.text().into_owned(),
            Reply::Api(a) => a.text().trim_end().to_string(),
        }
    }
}

/// Everything FreeSWITCH sends that is not a reply.
#[derive(Debug)]
pub enum Incoming {
    Event(Event),
    Disconnect(DisconnectNotice),
    /// The socket closed; with the protocol error when the stream was malformed.
    Closed(Option<ProtocolError>),
}

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("connection closed")]
    Closed,
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("write failed: {0}")]
    Io(#[from] std::io::Error),
}

/// What the writers share: replies awaited, bytes not yet accepted by the socket.
#[derive(Default)]
struct Outbox {
    waiters: VecDeque<oneshot::Sender<Reply>>,
    /// Written by the flush task when the socket's send buffer was full.
    unsent: Vec<u8>,
    flushing: bool,
    /// The reader saw the end, or a write failed: nothing more is sent.
    closed: bool,
}

/// Sends commands on a connection from any task; cheap to clone. Replies come from the
/// connection's reader, in order.
#[derive(Clone)]
pub struct Commander {
    half: Arc<OwnedWriteHalf>,
    outbox: Arc<Mutex<Outbox>>,
    /// Signalled when the flush task has written everything (or given up).
    drained: Arc<Notify>,
}

impl Commander {
    /// Sends `cmd` without waiting: the receiver gets its reply. Never blocks and is never
    /// half-done: the bytes are written now or queued for the flush task.
    pub fn send(&self, cmd: &Command) -> Result<oneshot::Receiver<Reply>, ConnError> {
        let bytes = cmd.to_bytes()?;
        let (tx, rx) = oneshot::channel();
        let mut o = self.outbox.lock().map_err(|_| ConnError::Closed)?;
        if o.closed {
            return Err(ConnError::Closed);
        }
        // Queue before writing, so the reply can never arrive ahead of its waiter.
        o.waiters.push_back(tx);
        if !o.unsent.is_empty() {
            o.unsent.extend_from_slice(&bytes);
            return Ok(rx);
        }
        let written = match self.half.try_write(&bytes) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(e) => {
                o.closed = true;
                o.waiters.clear();
                return Err(ConnError::Io(e));
            }
        };
        if written < bytes.len() {
            o.unsent.extend_from_slice(&bytes[written..]);
            if !o.flushing {
                o.flushing = true;
                tokio::spawn(flush(
                    self.half.clone(),
                    self.outbox.clone(),
                    self.drained.clone(),
                ));
            }
        }
        Ok(rx)
    }

    /// Waits until every queued byte is written (or the connection is closed).
    async fn flushed(&self) {
        loop {
            let drained = self.drained.notified();
            let pending = self
                .outbox
                .lock()
                .map(|o| o.flushing && !o.closed)
                .unwrap_or(false);
            if !pending {
                return;
            }
            drained.await;
        }
    }
}

/// Writes what the socket would not take at once; ends when nothing is left.
async fn flush(half: Arc<OwnedWriteHalf>, outbox: Arc<Mutex<Outbox>>, drained: Arc<Notify>) {
    loop {
        if half.writable().await.is_err() {
            break;
        }
        let Ok(mut o) = outbox.lock() else { break };
        if o.closed {
            o.unsent.clear();
            o.flushing = false;
            drop(o);
            drained.notify_waiters();
            return;
        }
        match half.try_write(&o.unsent) {
            Ok(n) => {
                o.unsent.drain(..n);
                if o.unsent.is_empty() {
                    o.flushing = false;
                    drop(o);
                    drained.notify_waiters();
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
    }
    // The socket failed: nothing more goes out, and no reply will come.
    if let Ok(mut o) = outbox.lock() {
        o.closed = true;
        o.unsent.clear();
        o.waiters.clear();
        o.flushing = false;
    }
    drained.notify_waiters();
}

/// Sees each event on the reader task: `None` when it delivered the event itself, `Some` to
/// queue it for [`Connection::next`].
pub type Router = Arc<dyn Fn(Event) -> Option<Event> + Send + Sync>;

/// Which events the connection's user acts on: those are never dropped, whatever the queue's
/// length (the user's own list: the connection does not know what a session needs).
pub type Needed = fn(&Event) -> bool;

/// Every event is needed (a connection whose events are all routed, or kept).
pub fn all_needed(_: &Event) -> bool {
    true
}

/// Events waiting for the session, at most `cap` of the droppable kind.
#[derive(Debug)]
pub struct EventQueue {
    items: VecDeque<Incoming>,
    cap: usize,
    needed: Needed,
    /// Events dropped because the queue was full.
    pub dropped: u64,
}

impl EventQueue {
    pub fn new(cap: usize, needed: Needed) -> EventQueue {
        EventQueue {
            items: VecDeque::new(),
            cap,
            needed,
            dropped: 0,
        }
    }

    /// Never dropped: the events the user needs, notices and the close.
    fn keeps(&self, i: &Incoming) -> bool {
        match i {
            Incoming::Event(e) => (self.needed)(e),
            Incoming::Disconnect(_) | Incoming::Closed(_) => true,
        }
    }

    /// Queues `i`; false when it was dropped (the queue is full and the session does not need it).
    pub fn push(&mut self, i: Incoming) -> bool {
        if self.items.len() >= self.cap && !self.keeps(&i) {
            self.dropped += 1;
            return false;
        }
        self.items.push_back(i);
        true
    }

    pub fn pop(&mut self) -> Option<Incoming> {
        self.items.pop_front()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Droppable events a connection holds for a lagging session.
pub const EVENT_QUEUE_CAP: usize = 1024;

pub struct Connection {
    commander: Commander,
    incoming: Arc<(Mutex<EventQueue>, Notify)>,
    /// The reader's `Closed` has been handed out: nothing more will come.
    closed_taken: bool,
    reader: tokio::task::JoinHandle<()>,
    /// Stream offset reached by the reader, for logs.
    pub peer: String,
}

impl Connection {
    /// A connection whose queue never drops the events `needed` says its user acts on.
    pub fn new(
        stream: TcpStream,
        limits: Limits,
        read_buffer: usize,
        needed: Needed,
    ) -> Connection {
        Connection::with_router(stream, limits, read_buffer, None, needed)
    }

    /// A connection whose events go through `router` first.
    pub fn with_router(
        stream: TcpStream,
        limits: Limits,
        read_buffer: usize,
        router: Option<Router>,
        needed: Needed,
    ) -> Connection {
        let peer = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "?".into());
        let (rd, writer) = stream.into_split();
        let outbox = Arc::new(Mutex::new(Outbox::default()));
        let incoming = Arc::new((
            Mutex::new(EventQueue::new(EVENT_QUEUE_CAP, needed)),
            Notify::new(),
        ));
        let queue = incoming.clone();
        let tx = Sender(queue);
        let w = outbox.clone();
        let reader = tokio::spawn(async move {
            let mut frames = FramedRead::with_capacity(rd, EslCodec::new(limits), read_buffer);
            loop {
                let frame = match frames.next().await {
                    Some(Ok(f)) => f,
                    Some(Err(e)) => {
                        tx.send(Incoming::Closed(Some(e)));
                        break;
                    }
                    None => {
                        tx.send(Incoming::Closed(None));
                        break;
                    }
                };
                let offset = frame.offset();
                let msg = match Message::from_frame(frame) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, offset, "skipping undecodable event");
                        continue;
                    }
                };
                let reply = match msg {
                    Message::Reply(r) => Reply::Command(r),
                    Message::ApiResponse(a) => Reply::Api(a),
                    Message::Event(e) => {
                        let e = match &router {
                            Some(route) => route(e),
                            None => Some(e),
                        };
                        if let Some(e) = e {
                            tx.send(Incoming::Event(e));
                        }
                        continue;
                    }
                    Message::Disconnect(d) => {
                        tx.send(Incoming::Disconnect(d));
                        continue;
                    }
                    other => {
                        tracing::debug!(kind = other.kind(), offset, "ignoring frame");
                        continue;
                    }
                };
                let waiter = w.lock().ok().and_then(|mut o| o.waiters.pop_front());
                match waiter {
                    // A dropped receiver means its command timed out; the reply is discarded.
                    Some(tx) => drop(tx.send(reply)),
                    None => {
                        tracing::warn!(reply = %reply.text(), offset, "reply with no command waiting")
                    }
                }
            }
            // No reply will come any more: fail every waiting command now instead of letting
            // each run into its timeout.
            if let Ok(mut o) = w.lock() {
                o.closed = true;
                o.waiters.clear();
            }
        });
        Connection {
            commander: Commander {
                half: Arc::new(writer),
                outbox,
                drained: Arc::new(Notify::new()),
            },
            incoming,
            closed_taken: false,
            reader,
            peer,
        }
    }

    /// Sends a command without waiting: the receiver gets its reply.
    pub fn send(&self, cmd: &Command) -> Result<oneshot::Receiver<Reply>, ConnError> {
        self.commander.send(cmd)
    }

    /// A handle that sends on this connection from other tasks.
    pub fn commander(&self) -> Commander {
        self.commander.clone()
    }

    /// Sends a command and waits for its reply.
    pub async fn request(&mut self, cmd: &Command, timeout: Duration) -> Result<Reply, ConnError> {
        let rx = self.send(cmd)?;
        wait_reply(rx, timeout).await
    }

    /// Outbound mode's first exchange: `connect`, answered with the channel data.
    pub async fn channel_data(&mut self, timeout: Duration) -> Result<Event, String> {
        match self.request(&Command::Connect, timeout).await {
            Ok(Reply::Command(r)) => r
                .channel_data()
                .ok_or_else(|| format!("connect reply without channel data: {}", r.text())),
            Ok(other) => Err(format!("unexpected reply to connect: {}", other.text())),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Sends `exit` and lets FreeSWITCH close the socket, waiting at most `patience` for each.
    pub async fn exit(&mut self, patience: Duration) {
        if let Ok(rx) = self.send(&Command::Exit) {
            let _ = wait_reply(rx, patience).await;
        }
        let drain = async { while self.next().await.is_some() {} };
        let _ = tokio::time::timeout(patience, drain).await;
    }

    /// The next event, notice or close; `None` once the close has been taken.
    pub async fn next(&mut self) -> Option<Incoming> {
        loop {
            let (q, ready) = &*self.incoming;
            match q.lock().map(|mut q| q.pop()) {
                Ok(Some(i)) => {
                    if matches!(i, Incoming::Closed(_)) {
                        self.closed_taken = true;
                    }
                    return Some(i);
                }
                Ok(None) if self.closed_taken => return None,
                Ok(None) => {}
                Err(_) => return None,
            }
            // `notify_one` keeps a permit when nobody waits, so a push between the check and
            // here is not missed.
            ready.notified().await;
        }
    }

    /// Half-closes our side once everything queued is written.
    pub async fn shutdown(&mut self) {
        self.commander.flushed().await;
        let stream: &TcpStream = self.commander.half.as_ref().as_ref();
        let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write);
    }
}

/// Waits for a pipelined reply.
pub async fn wait_reply(
    rx: oneshot::Receiver<Reply>,
    timeout: Duration,
) -> Result<Reply, ConnError> {
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(_)) => Err(ConnError::Closed),
        Err(_) => Err(ConnError::Timeout(timeout)),
    }
}

/// The reader's side of the event queue.
struct Sender(Arc<(Mutex<EventQueue>, Notify)>);

impl Sender {
    fn send(&self, i: Incoming) {
        let (q, ready) = &*self.0;
        let kept = q.lock().map(|mut q| q.push(i)).unwrap_or(false);
        if kept {
            ready.notify_one();
        } else {
            crate::telemetry::metrics::inc(
                &crate::telemetry::metrics::METRICS.events_dropped_total,
            );
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str) -> Incoming {
        Incoming::Event(Event::from_pairs([("Event-Name", name)]))
    }

    fn stops(e: &Event) -> bool {
        e.name() == Some(crate::event::EventName::RecordStop)
    }

    #[test]
    fn a_flood_is_bounded_and_needed_events_are_never_dropped() {
        let mut q = EventQueue::new(EVENT_QUEUE_CAP, stops);
        let mut needed_in = 0;
        for i in 0..100_000 {
            if i % 1000 == 0 {
                q.push(event("RECORD_STOP"));
                needed_in += 1;
            } else {
                q.push(event("CHANNEL_STATE"));
            }
        }
        q.push(Incoming::Closed(None));
        assert!(q.len() <= EVENT_QUEUE_CAP + needed_in + 1, "{}", q.len());
        assert_eq!(
            q.dropped as usize,
            100_000 - needed_in - (q.len() - needed_in - 1)
        );
        let mut stops = 0;
        let mut last = None;
        while let Some(i) = q.pop() {
            if let Incoming::Event(e) = &i {
                stops += usize::from(e.name() == Some(crate::event::EventName::RecordStop));
            }
            last = Some(i);
        }
        assert_eq!(stops, needed_in, "every RECORD_STOP kept");
        assert!(
            matches!(last, Some(Incoming::Closed(None))),
            "the close comes last"
        );
    }

    /// A peer that stops reading: the socket's buffer fills, the rest waits for the flush task,
    /// and every command still arrives whole, in order, from several senders at once.
    #[tokio::test]
    async fn commands_stay_whole_and_ordered_when_the_socket_buffer_fills() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let mut conn = Connection::new(client, Limits::default(), 4096, all_needed);
        let other = conn.commander();
        let pad = "x".repeat(1000);
        let n = 16_000;
        for i in 0..n {
            let cmd = Command::Api(format!("echo {i:05} {pad}"));
            // Two handles take turns: one queue, one order.
            let sent = if i % 2 == 0 {
                conn.send(&cmd)
            } else {
                other.send(&cmd)
            };
            sent.expect("queued, never blocked");
        }
        let queued = conn.commander.outbox.lock().unwrap().unsent.len();
        assert!(queued > 0, "16 MB exceed the socket buffers");
        let shut = async {
            conn.shutdown().await;
            conn
        };
        let read = async {
            let mut all = Vec::new();
            server.read_to_end(&mut all).await.unwrap();
            all
        };
        let (_conn, all) = tokio::join!(shut, read);
        let text = String::from_utf8(all).unwrap();
        let lines: Vec<&str> = text.split("\n\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), n);
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(*l, format!("api echo {i:05} {pad}"));
        }
    }
}
