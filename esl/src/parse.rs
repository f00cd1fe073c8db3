//! Sans-IO frame decoder: bytes in, [`Frame`]s out. No tokio here.
//!
//! Invariants:
//! - bytes already searched for the end of a header block are never searched again;
//! - a header block larger than `Limits::max_head`, or a `Content-Length` above
//!   `Limits::max_body`, is an error before any of it is buffered beyond the limit;
//! - bodies are split off the receive buffer without copying;
//! - after an error the stream is out of sync and must be closed.

use bytes::{Buf, BytesMut};
use memchr::memmem;

use super::error::{ProtocolError, ProtocolErrorKind};
use super::frame::Frame;
use super::header::{self, Span};

/// Size limits that keep memory bounded whatever the peer sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest header block, in bytes (the connect reply's channel data is the big one).
    pub max_head: usize,
    /// Largest `Content-Length`.
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 1024 * 1024,
            max_body: 8 * 1024 * 1024,
        }
    }
}

struct Pending {
    head: bytes::Bytes,
    spans: Vec<Span>,
    body_len: usize,
    offset: u64,
}

/// Incremental frame decoder over a growing buffer.
pub struct FrameDecoder {
    limits: Limits,
    /// How much of the buffer's current header block has been searched for `\n\n`.
    searched: usize,
    pending: Option<Pending>,
    /// Stream offset of `buf[0]`.
    consumed: u64,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(Limits::default())
    }
}

impl FrameDecoder {
    pub fn new(limits: Limits) -> FrameDecoder {
        FrameDecoder {
            limits,
            searched: 0,
            pending: None,
            consumed: 0,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Stream offset of the first byte not yet consumed.
    pub fn offset(&self) -> u64 {
        self.consumed
    }

    /// Takes one complete frame off the front of `buf`, or returns `Ok(None)` when more bytes
    /// are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        if self.pending.is_none() && !self.decode_head(buf)? {
            return Ok(None);
        }
        let Some(p) = self.pending.as_ref() else {
            return Ok(None);
        };
        if buf.len() < p.body_len {
            buf.reserve(p.body_len - buf.len());
            return Ok(None);
        }
        let Some(p) = self.pending.take() else {
            return Ok(None);
        };
        let body = buf.split_to(p.body_len).freeze();
        self.consumed += p.body_len as u64;
        Ok(Some(Frame::new(p.head, p.spans, body, p.offset)))
    }

    /// Like [`decode`](Self::decode), for when the stream has ended: leftover bytes that are not
    /// a whole frame are an error.
    pub fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        if self.pending.is_some() {
            return Err(ProtocolError::new(
                ProtocolErrorKind::Truncated { missing: "body" },
                self.consumed + buf.len() as u64,
            ));
        }
        if buf.iter().any(|&b| b != b'\n' && b != b'\r') {
            return Err(ProtocolError::new(
                ProtocolErrorKind::Truncated {
                    missing: "blank line ending the headers",
                },
                self.consumed,
            ));
        }
        Ok(None)
    }

    /// Finds and indexes the next header block. Returns false when it is not complete yet.
    fn decode_head(&mut self, buf: &mut BytesMut) -> Result<bool, ProtocolError> {
        if self.searched == 0 {
            // Tolerate blank lines between frames.
            let skip = buf
                .iter()
                .take_while(|&&b| b == b'\n' || b == b'\r')
                .count();
            if skip > 0 {
                buf.advance(skip);
                self.consumed += skip as u64;
            }
        }
        // Start one byte back: the previous search may have stopped between the two '\n'.
        let from = self.searched.saturating_sub(1);
        let Some(found) = memmem::find(&buf[from..], b"\n\n") else {
            if buf.len() > self.limits.max_head {
                return Err(ProtocolError::new(
                    ProtocolErrorKind::HeaderTooLarge {
                        max: self.limits.max_head,
                    },
                    self.consumed,
                ));
            }
            self.searched = buf.len();
            return Ok(false);
        };
        let end = from + found + 1; // the header lines end here, the blank line follows
        if end > self.limits.max_head {
            return Err(ProtocolError::new(
                ProtocolErrorKind::HeaderTooLarge {
                    max: self.limits.max_head,
                },
                self.consumed,
            ));
        }
        let offset = self.consumed;
        let mut spans = Vec::with_capacity(8);
        header::index_lines(&buf[..end], 0, end, offset, &mut spans)?;
        let mut body_len = 0usize;
        if let Some(span) = spans
            .iter()
            .find(|s| s.name(&buf[..end]).eq_ignore_ascii_case(b"Content-Length"))
        {
            let raw = span.value(&buf[..end]);
            let at = offset + span.value_start as u64;
            let len = header::parse_length(raw).ok_or_else(|| {
                ProtocolError::new(
                    ProtocolErrorKind::BadContentLength(String::from_utf8_lossy(raw).into_owned()),
                    at,
                )
            })?;
            if len > self.limits.max_body as u64 {
                return Err(ProtocolError::new(
                    ProtocolErrorKind::BodyTooLarge {
                        length: len,
                        max: self.limits.max_body,
                    },
                    at,
                ));
            }
            body_len = len as usize;
        }
        let mut head = buf.split_to(end + 1);
        head.truncate(end);
        self.consumed += (end + 1) as u64;
        self.searched = 0;
        self.pending = Some(Pending {
            head: head.freeze(),
            spans,
            body_len,
            offset,
        });
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::ContentType;

    fn decode_all(input: &[u8]) -> Result<Vec<Frame>, ProtocolError> {
        let mut d = FrameDecoder::default();
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(f) = d.decode_eof(&mut buf)? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn reply_then_api_response() {
        let frames = decode_all(
            b"Content-Type: command/reply\nReply-Text: +OK\n\nContent-Type: api/response\nContent-Length: 12\n\n+OK Success\n",
        )
        .unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].content_type(), ContentType::CommandReply);
        assert_eq!(frames[0].header("reply-text").as_deref(), Some("+OK"));
        assert_eq!(frames[1].body().as_ref(), b"+OK Success\n");
        assert_eq!(frames[1].offset(), 45);
    }

    #[test]
    fn never_rescans_and_handles_split_terminator() {
        let mut d = FrameDecoder::default();
        let mut buf = BytesMut::from(&b"Content-Type: auth/request\n"[..]);
        assert!(d.decode(&mut buf).unwrap().is_none());
        assert_eq!(d.searched, buf.len());
        buf.extend_from_slice(b"\n");
        let f = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(f.content_type(), ContentType::AuthRequest);
        assert!(buf.is_empty());
    }

    #[test]
    fn limits_are_enforced_with_offsets() {
        let mut d = FrameDecoder::new(Limits {
            max_head: 64,
            max_body: 10,
        });
        let mut buf = BytesMut::from(&b"Content-Length: 11\n\n"[..]);
        let e = d.decode(&mut buf).unwrap_err();
        assert_eq!(
            e.kind,
            ProtocolErrorKind::BodyTooLarge {
                length: 11,
                max: 10
            }
        );
        assert_eq!(e.offset, 16);

        let mut d = FrameDecoder::new(Limits {
            max_head: 64,
            max_body: 10,
        });
        let mut buf = BytesMut::from(&[b'a'; 65][..]);
        let e = d.decode(&mut buf).unwrap_err();
        assert_eq!(e.kind, ProtocolErrorKind::HeaderTooLarge { max: 64 });
    }

    #[test]
    fn truncated_at_eof_is_an_error() {
        let e = decode_all(b"Content-Length: 5\n\nabc").unwrap_err();
        assert_eq!(e.kind, ProtocolErrorKind::Truncated { missing: "body" });
        assert_eq!(e.offset, 22);
        let e = decode_all(b"Content-Type: command/reply\n").unwrap_err();
        assert!(matches!(e.kind, ProtocolErrorKind::Truncated { .. }));
        assert!(decode_all(b"\n\n").unwrap().is_empty());
    }
}
