//! Inputs shared by the peer benchmarks: event streams cut from the real captures.

use std::path::PathBuf;

use callrec_esl::{ContentType, FrameDecoder};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/esl")
}

/// Every event frame of one content type in the captures, and how many.
pub fn event_frames(kind: ContentType) -> (Vec<u8>, usize) {
    callrec_esl::corpus::frames_of_kind(&fixtures(), &kind).expect("captures")
}

/// The plain event bodies (what `parse_channel_dump` takes), without their frame headers.
pub fn plain_bodies() -> Vec<String> {
    let (stream, _) = event_frames(ContentType::EventPlain);
    let mut buf = bytes::BytesMut::from(&stream[..]);
    let mut dec = FrameDecoder::default();
    let mut out = Vec::new();
    while let Some(f) = dec.decode_eof(&mut buf).expect("decodes") {
        out.push(String::from_utf8_lossy(f.body()).into_owned());
    }
    out
}

/// `copies` copies of a stream back to back.
pub fn repeat(stream: &[u8], copies: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(stream.len() * copies);
    for _ in 0..copies {
        v.extend_from_slice(stream);
    }
    v
}
