//! One event-socket connection: commands out, replies matched to them, events fanned in.
//!
//! Invariants:
//! - FreeSWITCH answers commands strictly in order, one reply each (`command/reply` or
//!   `api/response`), so replies are matched first-in first-out; a command whose caller gave up
//!   waiting keeps its place, and its late reply is dropped rather than given to the next one;
//! - a reader task owns the socket's read side and always drains it, whatever the session is
//!   doing, so FreeSWITCH's send queue never backs up because of callrec;
//! - an event that cannot be decoded is logged and skipped (framing is intact); a framing error
//!   ends the connection, and every command still waiting for a reply fails at once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
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

pub struct Connection {
    writer: OwnedWriteHalf,
    waiters: Waiters,
    incoming: mpsc::UnboundedReceiver<Incoming>,
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
        let (tx, incoming) = mpsc::unbounded_channel();
        let w = waiters.clone();
        let reader = tokio::spawn(async move {
            let mut frames = FramedRead::with_capacity(rd, EslCodec::new(limits), read_buffer);
            loop {
                let frame = match frames.next().await {
                    Some(Ok(f)) => f,
                    Some(Err(e)) => {
                        let _ = tx.send(Incoming::Closed(Some(e)));
                        break;
                    }
                    None => {
                        let _ = tx.send(Incoming::Closed(None));
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
                        let _ = tx.send(Incoming::Event(e));
                        continue;
                    }
                    Message::Disconnect(d) => {
                        let _ = tx.send(Incoming::Disconnect(d));
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

    /// The next event, notice or close.
    pub async fn next(&mut self) -> Option<Incoming> {
        self.incoming.recv().await
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

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
