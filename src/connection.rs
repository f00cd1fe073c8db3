//! One event-socket connection: commands out, replies matched to them, events fanned in.
//!
//! Invariants:
//! - FreeSWITCH answers commands strictly in order, one reply each (`command/reply` or
//!   `api/response`), so replies are matched first-in first-out; a command whose caller gave up
//!   waiting keeps its place, and its late reply is dropped rather than given to the next one;
//! - a reader task owns the socket's read side and always drains it, whatever the session is
//!   doing, so FreeSWITCH's send queue never backs up because of callrec;
//! - an event that cannot be decoded is logged and skipped (framing is intact); a framing error
//!   ends the connection, and every command still waiting for a reply fails at once;
//! - events wait for the session in a bounded [`EventQueue`]: when a lagging session lets it
//!   fill, events it does not act on are dropped (and counted); the ones it needs (RECORD_*,
//!   CHANNEL_ANSWER/BRIDGE/EXECUTE_COMPLETE/HANGUP_COMPLETE, notices, the close) never are.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::io::AsyncWriteExt;
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

type Waiters = Arc<Mutex<VecDeque<oneshot::Sender<Reply>>>>;

/// Events waiting for the session, at most `cap` of the droppable kind.
#[derive(Debug)]
pub struct EventQueue {
    items: VecDeque<Incoming>,
    cap: usize,
    /// Events dropped because the queue was full.
    pub dropped: u64,
}

/// Events a session acts on: never dropped.
fn needed(i: &Incoming) -> bool {
    use crate::event::EventName as N;
    match i {
        Incoming::Event(e) => matches!(
            e.name(),
            Some(
                N::RecordStart
                    | N::RecordStop
                    | N::ChannelAnswer
                    | N::ChannelBridge
                    | N::ChannelExecuteComplete
                    | N::ChannelHangupComplete
            )
        ),
        Incoming::Disconnect(_) | Incoming::Closed(_) => true,
    }
}

impl EventQueue {
    pub fn new(cap: usize) -> EventQueue {
        EventQueue {
            items: VecDeque::new(),
            cap,
            dropped: 0,
        }
    }

    /// Queues `i`; false when it was dropped (the queue is full and the session does not need it).
    pub fn push(&mut self, i: Incoming) -> bool {
        if self.items.len() >= self.cap && !needed(&i) {
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
    writer: OwnedWriteHalf,
    waiters: Waiters,
    incoming: Arc<(Mutex<EventQueue>, Notify)>,
    /// The reader's `Closed` has been handed out: nothing more will come.
    closed_taken: bool,
    reader: tokio::task::JoinHandle<()>,
    /// Stream offset reached by the reader, for logs.
    pub peer: String,
}

impl Connection {
    pub fn new(stream: TcpStream, limits: Limits, read_buffer: usize) -> Connection {
        let peer = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "?".into());
        let (rd, writer) = stream.into_split();
        let waiters: Waiters = Arc::new(Mutex::new(VecDeque::new()));
        let incoming = Arc::new((Mutex::new(EventQueue::new(EVENT_QUEUE_CAP)), Notify::new()));
        let queue = incoming.clone();
        let tx = Sender(queue);
        let w = waiters.clone();
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
                        tx.send(Incoming::Event(e));
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
                let waiter = w.lock().ok().and_then(|mut q| q.pop_front());
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
            if let Ok(mut q) = w.lock() {
                q.clear();
            }
        });
        Connection {
            writer,
            waiters,
            incoming,
            closed_taken: false,
            reader,
            peer,
        }
    }

    /// Sends a command without waiting: the receiver gets its reply.
    pub async fn send(&mut self, cmd: &Command) -> Result<oneshot::Receiver<Reply>, ConnError> {
        let bytes = cmd.to_bytes()?;
        let (tx, rx) = oneshot::channel();
        // Queue before writing, so the reply can never arrive ahead of its waiter.
        if let Ok(mut q) = self.waiters.lock() {
            q.push_back(tx);
        }
        self.writer.write_all(&bytes).await?;
        Ok(rx)
    }

    /// Sends a command and waits for its reply.
    pub async fn request(&mut self, cmd: &Command, timeout: Duration) -> Result<Reply, ConnError> {
        let rx = self.send(cmd).await?;
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
        if let Ok(rx) = self.send(&Command::Exit).await {
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

    /// Half-closes our side.
    pub async fn shutdown(&mut self) {
        let _ = self.writer.shutdown().await;
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

    #[test]
    fn a_flood_is_bounded_and_needed_events_are_never_dropped() {
        let mut q = EventQueue::new(EVENT_QUEUE_CAP);
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
}
