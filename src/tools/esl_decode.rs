//! `callrec esl decode`: one JSON line per frame of a raw ESL stream (or of the FS→app side of a
//! capture transcript), stopping with the byte offset at the first malformed frame.

use std::io::{Read, Write};

use bytes::BytesMut;
use serde_json::{json, Map, Value};

use crate::esl::{FrameDecoder, Limits, Message, ProtocolError};
use crate::tools::transcript;

/// Options of one run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub limits: Limits,
    /// Leave event headers out of the output.
    pub brief: bool,
}

/// Why a run stopped early.
#[derive(Debug, thiserror::Error)]
pub enum DecodeFailure {
    #[error("{0}")]
    Protocol(#[from] ProtocolError),
    #[error("transcript: {0}")]
    Transcript(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Decodes `input` and writes JSON lines to `out`; returns the number of frames.
pub fn run(mut input: impl Read, mut out: impl Write, opts: Options) -> Result<u64, DecodeFailure> {
    let mut first = vec![0u8; 4];
    let n = read_up_to(&mut input, &mut first)?;
    first.truncate(n);
    let mut decoder = FrameDecoder::new(opts.limits);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut frames = 0u64;
    if transcript::is_transcript(&first) {
        let mut all = first;
        input.read_to_end(&mut all)?;
        let stream = transcript::stream(&all, transcript::Direction::FsToApp)
            .map_err(DecodeFailure::Transcript)?;
        buf.extend_from_slice(&stream);
        while let Some(frame) = decoder.decode_eof(&mut buf)? {
            emit(&mut out, frame, opts)?;
            frames += 1;
        }
        return Ok(frames);
    }
    buf.extend_from_slice(&first);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        while let Some(frame) = decoder.decode(&mut buf)? {
            emit(&mut out, frame, opts)?;
            frames += 1;
        }
        let n = input.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    while let Some(frame) = decoder.decode_eof(&mut buf)? {
        emit(&mut out, frame, opts)?;
        frames += 1;
    }
    Ok(frames)
}

fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn emit(
    out: &mut impl Write,
    frame: crate::esl::Frame,
    opts: Options,
) -> Result<(), DecodeFailure> {
    let offset = frame.offset();
    let content_type = frame.content_type().to_string();
    let body_len = frame.body().len();
    let mut line = Map::new();
    line.insert("offset".into(), json!(offset));
    line.insert("content_type".into(), json!(content_type));
    let message = Message::from_frame(frame.clone())?;
    let headers: Vec<Value> = match &message {
        Message::Reply(r) if r.is_channel_data() => r
            .channel_data()
            .map(|e| e.iter().map(|(n, v)| json!([n, v])).collect())
            .unwrap_or_default(),
        _ => frame.headers().map(|(n, v)| json!([n, v])).collect(),
    };
    line.insert("headers".into(), Value::Array(headers));
    line.insert("body_len".into(), json!(body_len));
    match &message {
        Message::Event(e) => {
            line.insert("event".into(), json!(e.get("Event-Name")));
            if let Some(b) = e.body() {
                line.insert("event_body_len".into(), json!(b.len()));
            }
            if !opts.brief {
                let hs: Vec<Value> = e.iter().map(|(n, v)| json!([n, v])).collect();
                line.insert("event_headers".into(), Value::Array(hs));
            }
        }
        Message::Reply(r) => {
            line.insert("reply_text".into(), json!(r.text()));
            if r.is_channel_data() {
                line.insert("event".into(), json!("CHANNEL_DATA"));
            }
        }
        Message::ApiResponse(a) => {
            line.insert("body".into(), json!(a.text()));
        }
        Message::Disconnect(d) => {
            line.insert("body".into(), json!(String::from_utf8_lossy(d.body())));
        }
        _ => {}
    }
    serde_json::to_writer(&mut *out, &Value::Object(line)).map_err(std::io::Error::from)?;
    out.write_all(b"\n")?;
    Ok(())
}
