//! The tokio-util codec: a thin adapter that lets `FramedRead` drive the sans-IO
//! [`FrameDecoder`]. It only finds frame boundaries; meaning is given by [`Message`](super::Message).

use bytes::BytesMut;
use tokio_util::codec::Decoder;

use super::error::ProtocolError;
use super::frame::Frame;
use super::parse::{FrameDecoder, Limits};

/// Decodes an ESL byte stream into frames.
#[derive(Default)]
pub struct EslCodec {
    inner: FrameDecoder,
}

impl EslCodec {
    pub fn new(limits: Limits) -> EslCodec {
        EslCodec {
            inner: FrameDecoder::new(limits),
        }
    }

    /// Stream offset of the first byte not yet decoded.
    pub fn offset(&self) -> u64 {
        self.inner.offset()
    }
}

impl Decoder for EslCodec {
    type Item = Frame;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        self.inner.decode(src)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        self.inner.decode_eof(src)
    }
}
