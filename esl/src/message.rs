//! Typed meaning of a frame: reply, API response, event, disconnect notice, log line.
//!
//! Invariant: every frame maps to a [`Message`]; a content type this version does not know is
//! [`Message::Unknown`], never an error. Only an event body that cannot be decoded is an error.

use std::borrow::Cow;

use bytes::Bytes;

use super::error::ProtocolError;
use super::frame::{ContentType, Frame};
use super::header;
use crate::event::Event;

/// One message from FreeSWITCH.
#[derive(Debug, Clone)]
pub enum Message {
    /// `auth/request`: the inbound greeting.
    AuthRequest,
    /// `command/reply`, including the outbound `connect` reply that carries channel data.
    Reply(CommandReply),
    /// `api/response`: the output of an `api` command.
    ApiResponse(ApiResponse),
    /// `text/event-plain`, `text/event-json` or `text/event-xml`.
    Event(Event),
    /// `text/disconnect-notice`.
    Disconnect(DisconnectNotice),
    /// `log/data`.
    Log(LogData),
    /// `text/rude-rejection`: FreeSWITCH refused the connection (ACL).
    RudeRejection(Bytes),
    /// A frame of a type this version does not know, or without a type.
    Unknown(Frame),
}

impl Message {
    pub fn from_frame(frame: Frame) -> Result<Message, ProtocolError> {
        Ok(match frame.content_type() {
            ContentType::AuthRequest => Message::AuthRequest,
            ContentType::CommandReply => Message::Reply(CommandReply { frame }),
            ContentType::ApiResponse => Message::ApiResponse(ApiResponse {
                body: frame.body().clone(),
            }),
            ContentType::EventPlain => {
                let at = frame.offset();
                Message::Event(Event::from_plain(frame.body().clone(), at)?)
            }
            ContentType::EventJson => {
                let at = frame.offset();
                Message::Event(Event::from_json(frame.body().clone(), at)?)
            }
            ContentType::EventXml => {
                let at = frame.offset();
                Message::Event(Event::from_xml(frame.body(), at)?)
            }
            ContentType::DisconnectNotice => Message::Disconnect(DisconnectNotice { frame }),
            ContentType::LogData => Message::Log(LogData { frame }),
            ContentType::RudeRejection => Message::RudeRejection(frame.body().clone()),
            ContentType::Missing | ContentType::Other(_) => Message::Unknown(frame),
        })
    }

    /// The event name when the message is an event or a channel-data reply.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::AuthRequest => "auth/request",
            Message::Reply(_) => "command/reply",
            Message::ApiResponse(_) => "api/response",
            Message::Event(_) => "event",
            Message::Disconnect(_) => "text/disconnect-notice",
            Message::Log(_) => "log/data",
            Message::RudeRejection(_) => "text/rude-rejection",
            Message::Unknown(_) => "unknown",
        }
    }
}

/// A `command/reply`.
#[derive(Debug, Clone)]
pub struct CommandReply {
    frame: Frame,
}

impl CommandReply {
    /// `Reply-Text`, URL-decoded when the reply is a channel-data frame (whose values are all
    /// URL-encoded: `%2BOK%0A`), verbatim otherwise.
    pub fn text(&self) -> Cow<'_, str> {
        let raw = self.frame.header_bytes("Reply-Text").unwrap_or_default();
        if self.is_channel_data() {
            header::percent_decode(raw)
        } else {
            header::text(raw)
        }
    }

    /// `+OK …` (or the connect reply's `+OK\n`).
    pub fn is_ok(&self) -> bool {
        self.text().starts_with("+OK")
    }

    /// `-ERR …`.
    pub fn is_err(&self) -> bool {
        self.text().starts_with("-ERR")
    }

    /// The `Job-UUID` header of a `bgapi` reply.
    pub fn job_uuid(&self) -> Option<Cow<'_, str>> {
        self.frame.header("Job-UUID")
    }

    /// True for the outbound `connect` reply: a serialized CHANNEL_DATA event.
    pub fn is_channel_data(&self) -> bool {
        self.frame.header_bytes("Event-Name").is_some()
    }

    /// The channel data of an outbound `connect` reply as an [`Event`].
    pub fn channel_data(&self) -> Option<Event> {
        self.is_channel_data()
            .then(|| Event::from_channel_data(self.frame.clone()))
    }

    pub fn frame(&self) -> &Frame {
        &self.frame
    }
}

/// An `api/response`.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    body: Bytes,
}

impl ApiResponse {
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    pub fn text(&self) -> Cow<'_, str> {
        header::text(&self.body)
    }

    /// API results are free text; FreeSWITCH's own convention is a leading `+OK`.
    pub fn is_ok(&self) -> bool {
        self.body.starts_with(b"+OK")
    }

    /// `-ERR …` or `-USAGE: …`.
    pub fn is_err(&self) -> bool {
        self.body.starts_with(b"-ERR") || self.body.starts_with(b"-USAGE")
    }
}

/// What a disconnect notice announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// The channel hung up; the socket stays open because `linger` was set.
    Linger,
    /// FreeSWITCH is closing the socket.
    Disconnect,
    /// No or another `Content-Disposition` (inbound notices have none).
    Other(String),
}

/// A `text/disconnect-notice`.
#[derive(Debug, Clone)]
pub struct DisconnectNotice {
    frame: Frame,
}

impl DisconnectNotice {
    pub fn disposition(&self) -> Disposition {
        match self.frame.header_bytes("Content-Disposition") {
            Some(b"linger") => Disposition::Linger,
            Some(b"disconnect") => Disposition::Disconnect,
            Some(other) => Disposition::Other(String::from_utf8_lossy(other).into_owned()),
            None => Disposition::Other(String::new()),
        }
    }

    pub fn controlled_session_uuid(&self) -> Option<Cow<'_, str>> {
        self.frame.header("Controlled-Session-UUID")
    }

    /// `Linger-Time`: -1 for a bare `linger`, else seconds.
    pub fn linger_time(&self) -> Option<i64> {
        self.frame.header("Linger-Time")?.trim().parse().ok()
    }

    /// Sent verbatim by FreeSWITCH (not URL-encoded, unlike event headers).
    pub fn channel_name(&self) -> Option<Cow<'_, str>> {
        self.frame.header("Channel-Name")
    }

    pub fn body(&self) -> &Bytes {
        self.frame.body()
    }

    pub fn frame(&self) -> &Frame {
        &self.frame
    }
}

/// A `log/data` frame: the log line is the body.
#[derive(Debug, Clone)]
pub struct LogData {
    frame: Frame,
}

impl LogData {
    pub fn level(&self) -> Option<u8> {
        self.frame.header("Log-Level")?.trim().parse().ok()
    }

    pub fn channel_uuid(&self) -> Option<Cow<'_, str>> {
        self.frame.header("User-Data")
    }

    pub fn text(&self) -> Cow<'_, str> {
        header::text(self.frame.body())
    }

    pub fn frame(&self) -> &Frame {
        &self.frame
    }
}
