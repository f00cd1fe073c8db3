//! Shared helpers for integration tests: loading the real captures in `tests/fixtures/esl/`.
#![allow(dead_code)]

use std::path::PathBuf;

use bytes::BytesMut;
use callrec::esl::{Frame, FrameDecoder, Message};
use callrec::event::Event;
use callrec::tools::transcript::{self, Direction};

pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/esl")
}

/// Every capture transcript (`*.txt` except the README).
pub fn capture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixture_dir())
        .expect("fixture dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".txt"))
        .collect();
    names.sort();
    assert!(names.len() >= 30, "captures missing: {names:?}");
    names
}

/// The FS→app byte stream of a capture.
pub fn fs_stream(name: &str) -> Vec<u8> {
    let raw = std::fs::read(fixture_dir().join(name)).expect("read fixture");
    transcript::stream(&raw, Direction::FsToApp).expect("valid transcript")
}

/// The app→FS byte stream of a capture.
pub fn app_stream(name: &str) -> Vec<u8> {
    let raw = std::fs::read(fixture_dir().join(name)).expect("read fixture");
    transcript::stream(&raw, Direction::AppToFs).expect("valid transcript")
}

/// Decodes a whole stream given as one buffer.
pub fn frames(stream: &[u8]) -> Vec<Frame> {
    let mut d = FrameDecoder::default();
    let mut buf = BytesMut::from(stream);
    let mut out = Vec::new();
    while let Some(f) = d.decode_eof(&mut buf).expect("capture decodes") {
        out.push(f);
    }
    out
}

pub fn messages(name: &str) -> Vec<Message> {
    frames(&fs_stream(name))
        .into_iter()
        .map(|f| Message::from_frame(f).expect("message decodes"))
        .collect()
}

/// Events in order, the connect reply's channel data included as CHANNEL_DATA.
pub fn events(name: &str) -> Vec<Event> {
    messages(name)
        .into_iter()
        .filter_map(|m| match m {
            Message::Event(e) => Some(e),
            Message::Reply(r) => r.channel_data(),
            _ => None,
        })
        .collect()
}

pub fn event_names(name: &str) -> Vec<String> {
    events(name)
        .iter()
        .map(|e| e.get("Event-Name").unwrap_or_default().into_owned())
        .collect()
}

pub fn first<'a>(events: &'a [Event], name: &str) -> &'a Event {
    events
        .iter()
        .find(|e| e.get("Event-Name").as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no {name} event"))
}

/// Comparable identity of a frame: offset, header block and body bytes.
pub fn fingerprint(f: &Frame) -> (u64, Vec<(String, String)>, Vec<u8>) {
    (
        f.offset(),
        f.headers()
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect(),
        f.body().to_vec(),
    )
}
pub mod api;
pub mod browser;
pub mod follow;
pub mod harness;
pub mod nginx;
pub mod node;
pub mod pg;
pub mod process;
pub mod receiver;
pub mod s3;

/// Waits (up to 10 s) for a file to be removed; the uploader removes it right after it records
/// the delivery, so a test that saw `delivered` may look a moment too early.
pub async fn gone(path: &std::path::Path) -> bool {
    for _ in 0..1000 {
        if !path.exists() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    false
}
