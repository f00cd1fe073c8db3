//! One ESL frame: a header block plus an optional body of `Content-Length` bytes.
//!
//! Invariant: `head` holds the header lines exactly as received (without the blank line that
//! ended them) and `spans` index every line of it; `body` is a zero-copy slice of the receive
//! buffer. Nothing is decoded until asked for.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;

use super::header::{self, Span};

/// The `Content-Type` of a frame, which tells what the frame is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ContentType {
    AuthRequest,
    CommandReply,
    ApiResponse,
    EventPlain,
    EventJson,
    EventXml,
    DisconnectNotice,
    LogData,
    RudeRejection,
    /// A frame without a `Content-Type` header.
    Missing,
    /// A type this version does not know; kept verbatim.
    Other(String),
}

impl ContentType {
    pub fn parse(raw: &[u8]) -> ContentType {
        match raw {
            b"auth/request" => ContentType::AuthRequest,
            b"command/reply" => ContentType::CommandReply,
            b"api/response" => ContentType::ApiResponse,
            b"text/event-plain" => ContentType::EventPlain,
            b"text/event-json" => ContentType::EventJson,
            b"text/event-xml" => ContentType::EventXml,
            b"text/disconnect-notice" => ContentType::DisconnectNotice,
            b"log/data" => ContentType::LogData,
            b"text/rude-rejection" => ContentType::RudeRejection,
            other => ContentType::Other(String::from_utf8_lossy(other).into_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            ContentType::AuthRequest => "auth/request",
            ContentType::CommandReply => "command/reply",
            ContentType::ApiResponse => "api/response",
            ContentType::EventPlain => "text/event-plain",
            ContentType::EventJson => "text/event-json",
            ContentType::EventXml => "text/event-xml",
            ContentType::DisconnectNotice => "text/disconnect-notice",
            ContentType::LogData => "log/data",
            ContentType::RudeRejection => "text/rude-rejection",
            ContentType::Missing => "",
            ContentType::Other(s) => s,
        }
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A complete frame as it came off the wire.
#[derive(Clone)]
pub struct Frame {
    head: Bytes,
    spans: Vec<Span>,
    body: Bytes,
    offset: u64,
}

impl Frame {
    pub(crate) fn new(head: Bytes, spans: Vec<Span>, body: Bytes, offset: u64) -> Frame {
        Frame {
            head,
            spans,
            body,
            offset,
        }
    }

    /// Stream offset of the frame's first byte.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The header value as sent, without URL decoding (first match, case-insensitive).
    pub fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        header::find(&self.head, &self.spans, name).map(header::text)
    }

    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        header::find(&self.head, &self.spans, name)
    }

    /// All header lines in order, names and values as sent.
    pub fn headers(&self) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> + '_ {
        self.spans.iter().map(|s| {
            (
                header::text(s.name(&self.head)),
                header::text(s.value(&self.head)),
            )
        })
    }

    pub fn header_count(&self) -> usize {
        self.spans.len()
    }

    pub fn content_type(&self) -> ContentType {
        match self.header_bytes("Content-Type") {
            Some(v) => ContentType::parse(v),
            None => ContentType::Missing,
        }
    }

    /// The body (empty when the frame had no `Content-Length`).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Total bytes of the frame on the wire, blank line included.
    pub fn wire_len(&self) -> usize {
        self.head.len() + 1 + self.body.len()
    }

    pub(crate) fn into_parts(self) -> (Bytes, Vec<Span>, Bytes) {
        (self.head, self.spans, self.body)
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("offset", &self.offset)
            .field("content_type", &self.content_type())
            .field("headers", &self.spans.len())
            .field("body_len", &self.body.len())
            .finish()
    }
}
