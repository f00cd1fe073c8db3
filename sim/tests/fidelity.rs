//! The simulator against the real captures: replay each capture's app→FreeSWITCH commands
//! (with the capture's own timing as virtual time) and compare what the simulator sends back
//! with what FreeSWITCH 1.10 sent: every reply text, every API body, the disconnect notices,
//! and the order of the channel events the simulator implements.

use std::path::PathBuf;
use std::time::Duration;

use bytes::BytesMut;
use callrec_esl::event::Event;
use callrec_esl::transcript::{self, Direction};
use callrec_esl::{FrameDecoder, Message};
use callrec_sim::{dial, CallSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const IMPLEMENTED: &[&str] = &[
    "CHANNEL_PARK",
    "CHANNEL_EXECUTE",
    "CHANNEL_EXECUTE_COMPLETE",
    "CHANNEL_ANSWER",
    "CHANNEL_CALLSTATE",
    "CHANNEL_STATE",
    "CHANNEL_HANGUP",
    "CHANNEL_UNPARK",
    "CHANNEL_HANGUP_COMPLETE",
    "CHANNEL_PROGRESS_MEDIA",
    "RECORD_START",
    "RECORD_STOP",
    "MEDIA_BUG_START",
    "MEDIA_BUG_STOP",
    "BACKGROUND_JOB",
];

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/esl")
        .join(name);
    std::fs::read(p).expect("fixture")
}

/// What is compared: one line per frame.
fn summarize(stream: &[u8], uuid: &str) -> (Vec<String>, Vec<Event>) {
    let mut d = FrameDecoder::default();
    let mut buf = BytesMut::from(stream);
    let mut out = Vec::new();
    let mut events = Vec::new();
    while let Some(f) = d.decode_eof(&mut buf).expect("decodes") {
        match Message::from_frame(f).expect("message") {
            Message::Reply(r) if r.is_channel_data() => out.push("CHANNEL_DATA".into()),
            Message::Reply(r) => {
                let t = r.text().replace(uuid, "<uuid>");
                // A Job-UUID FreeSWITCH made up is random; a caller-chosen one must come back.
                let t = match t.strip_prefix("+OK Job-UUID: ") {
                    Some(j) if j != "11111111-2222-3333-4444-555555555555" => {
                        "+OK Job-UUID: <generated>".to_string()
                    }
                    _ => t,
                };
                out.push(format!("reply {t}"))
            }
            Message::ApiResponse(a) => {
                let t = a.text().replace(uuid, "<uuid>");
                let t = if t.starts_with("UP ") {
                    "UP …".to_string()
                } else {
                    t
                };
                out.push(format!("api {t:?}"))
            }
            Message::Event(e) => {
                let n = e.get("Event-Name").unwrap_or_default().into_owned();
                if IMPLEMENTED.contains(&n.as_str()) {
                    out.push(format!("event {n}"));
                    events.push(e);
                }
            }
            Message::Disconnect(n) => out.push(format!("notice {:?}", n.disposition())),
            other => out.push(other.kind().to_string()),
        }
    }
    (out, events)
}

/// Replays a capture against the simulator; returns (capture summary, simulator summary).
async fn replay(name: &str) -> ((Vec<String>, Vec<Event>), (Vec<String>, Vec<Event>)) {
    let raw = fixture(name);
    let chunks = transcript::parse(&raw).unwrap();
    let fs = transcript::stream(&raw, Direction::FsToApp).unwrap();
    let (cap_sum, cap_events) = {
        let mut d = FrameDecoder::default();
        let mut b = BytesMut::from(&fs[..]);
        let first = d.decode(&mut b).unwrap().unwrap();
        let Message::Reply(r) = Message::from_frame(first).unwrap() else {
            panic!()
        };
        let data = r.channel_data().unwrap();
        let uuid = data.unique_id().unwrap().into_owned();
        (summarize(&fs, &uuid), (data, uuid))
    };
    let (data, uuid) = cap_events;
    // Where CHANNEL_PARK fell: after how many replies following myevents.
    let park_after = {
        let s = &cap_sum.0;
        let my = s.iter().position(|l| l == "reply +OK Events Enabled");
        let park = s.iter().position(|l| l == "event CHANNEL_PARK");
        match (my, park) {
            (Some(m), Some(p)) if p > m => s[m + 1..p]
                .iter()
                .filter(|l| l.starts_with("reply"))
                .count(),
            _ => 0, // fired before myevents: never seen
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let rec_dir = format!("{}/", tmp.path().display());
    let mut spec = CallSpec::new(
        &data.caller_id_number().unwrap(),
        &data.destination_number().unwrap(),
    )
    .uuid(&uuid)
    .caller_name(&data.caller_id_name().unwrap())
    .park_after(park_after);
    for v in ["account_id", "owner_id"] {
        if let Some(val) = data.variable(v) {
            spec = spec.var(v, &val);
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let call = dial(addr, spec).await.unwrap();
    let (mut sock, _) = listener.accept().await.unwrap();
    let (mut rd, mut wr) = sock.split();
    let mut received = Vec::new();
    let mut prev_t = 0.0;
    let mut read_buf = vec![0u8; 64 * 1024];
    let commands: Vec<_> = chunks
        .iter()
        .filter(|c| c.direction == Direction::AppToFs)
        .collect();
    let mut replies_expected = 0usize;
    for c in commands {
        let dt = c.at - prev_t;
        prev_t = c.at;
        if dt > 0.0 && replies_expected > 0 {
            call.advance(Duration::from_secs_f64(dt));
            call.sync().await;
        }
        let text = String::from_utf8(c.bytes.clone())
            .unwrap()
            .replace("/tmp/rec/", &rec_dir);
        wr.write_all(text.as_bytes()).await.unwrap();
        replies_expected += 1;
        // Read until this command's reply is in (replies are counted in order).
        loop {
            let (sum, _) = summarize_partial(&received, &uuid);
            let replies = sum
                .iter()
                .filter(|l| l.starts_with("reply") || l.starts_with("api") || *l == "CHANNEL_DATA")
                .count();
            if replies >= replies_expected {
                break;
            }
            let n = tokio::time::timeout(Duration::from_secs(5), rd.read(&mut read_buf))
                .await
                .expect("the simulator replies")
                .unwrap();
            if n == 0 {
                break;
            }
            received.extend_from_slice(&read_buf[..n]);
        }
    }
    // Whatever follows the last reply (the disconnect notice), until the socket closes.
    loop {
        match tokio::time::timeout(Duration::from_secs(2), rd.read(&mut read_buf)).await {
            Ok(Ok(n)) if n > 0 => received.extend_from_slice(&read_buf[..n]),
            _ => break,
        }
    }
    (cap_sum, summarize(&received, &uuid))
}

/// Decodes as much of `stream` as is complete.
fn summarize_partial(stream: &[u8], uuid: &str) -> (Vec<String>, Vec<Event>) {
    let mut d = FrameDecoder::default();
    let mut buf = BytesMut::from(stream);
    let mut complete = 0usize;
    while let Ok(Some(f)) = d.decode(&mut buf) {
        complete = (f.offset() as usize) + f.wire_len();
    }
    summarize(&stream[..complete], uuid)
}

fn header_names(e: &Event) -> Vec<String> {
    e.iter()
        .map(|(n, _)| n.into_owned())
        .filter(|n| !n.starts_with("variable_"))
        .collect()
}

async fn same_as_capture(name: &str) {
    let ((cap, cap_events), (sim, sim_events)) = replay(name).await;
    assert_eq!(
        sim, cap,
        "{name}: simulator (left) and capture (right) differ"
    );
    // Event shapes: the same non-variable headers, in the same order.
    let mut compared = 0;
    for (c, s) in cap_events.iter().zip(&sim_events) {
        let n = c.get("Event-Name").unwrap();
        if [
            "RECORD_START",
            "RECORD_STOP",
            "CHANNEL_ANSWER",
            "CHANNEL_HANGUP_COMPLETE",
        ]
        .contains(&n.as_ref())
        {
            assert_eq!(header_names(s), header_names(c), "{name}: {n} headers");
            compared += 1;
        }
    }
    assert!(compared >= 3, "{name}: only {compared} events compared");
}

#[tokio::test]
async fn canonical_plain_flow() {
    same_as_capture("outbound-answer-record-hangup.plain.txt").await;
}

#[tokio::test]
async fn canonical_json_flow() {
    same_as_capture("outbound-json.txt").await;
}

#[tokio::test]
async fn per_recording_variables() {
    same_as_capture("outbound-uuid-record-vars.json.txt").await;
}

#[tokio::test]
async fn two_recordings() {
    same_as_capture("outbound-two-recordings-vars.json.txt").await;
}

#[tokio::test]
async fn limit_reached() {
    same_as_capture("outbound-record-limit3s.focused.txt").await;
}

#[tokio::test]
async fn mp3() {
    same_as_capture("outbound-record-mp3.focused.txt").await;
}

#[tokio::test]
async fn app_hangs_up_without_linger() {
    same_as_capture("outbound-nolinger-fs-hangup.focused.txt").await;
}

#[tokio::test]
async fn background_jobs() {
    same_as_capture("outbound-bgapi-record.plain.txt").await;
}
