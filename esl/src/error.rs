//! Protocol errors of the wire layer.
//!
//! Every error that comes from bytes on the wire carries the absolute byte offset in the stream
//! where the problem was found, so an operator can open a capture at that point.

use std::fmt;

/// What was wrong with the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolErrorKind {
    /// A header line without a `:` separator.
    MalformedHeader,
    /// A header line whose name is empty.
    EmptyHeaderName,
    /// `Content-Length` that is not a plain decimal number.
    BadContentLength(String),
    /// `Content-Length` above the configured maximum.
    BodyTooLarge { length: u64, max: usize },
    /// A header block that grew past the configured maximum without its blank line.
    HeaderTooLarge { max: usize },
    /// The stream ended inside a frame.
    Truncated { missing: &'static str },
    /// An event body that could not be decoded (bad JSON or XML).
    BadEventBody(String),
    /// A socket error below the protocol.
    Io(String),
}

/// A framing or decoding error with the byte offset where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    pub kind: ProtocolErrorKind,
    /// Absolute offset in the byte stream (0 = first byte received).
    pub offset: u64,
}

impl ProtocolError {
    pub(crate) fn new(kind: ProtocolErrorKind, offset: u64) -> Self {
        ProtocolError { kind, offset }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ProtocolErrorKind::*;
        match &self.kind {
            MalformedHeader => write!(f, "malformed header line (no ':')"),
            EmptyHeaderName => write!(f, "header line with an empty name"),
            BadContentLength(v) => write!(f, "invalid Content-Length {v:?}"),
            BodyTooLarge { length, max } => {
                write!(
                    f,
                    "Content-Length {length} exceeds the limit of {max} bytes"
                )
            }
            HeaderTooLarge { max } => {
                write!(f, "header block exceeds the limit of {max} bytes")
            }
            Truncated { missing } => write!(f, "stream ended inside a frame ({missing})"),
            BadEventBody(why) => write!(f, "undecodable event body: {why}"),
            Io(e) => write!(f, "i/o error: {e}"),
        }?;
        write!(f, " at byte offset {}", self.offset)
    }
}

impl std::error::Error for ProtocolError {}

impl From<std::io::Error> for ProtocolError {
    fn from(e: std::io::Error) -> Self {
        // The codec does not know the offset of a socket error; the connection reports it.
        ProtocolError::new(ProtocolErrorKind::Io(e.to_string()), 0)
    }
}

/// A command that cannot be put on the wire without breaking the framing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("{field} contains a line break, which would break ESL framing")]
    LineBreak { field: &'static str },
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
    #[error("{field} contains a space, which FreeSWITCH would split on")]
    Space { field: &'static str },
}
