//! `callrec esl decode` on real captures and on broken input.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::*;

fn callrec() -> Command {
    Command::new(env!("CARGO_BIN_EXE_callrec"))
}

#[test]
fn decodes_every_capture() {
    for name in capture_names() {
        let out = callrec()
            .args(["esl", "decode", "--brief"])
            .arg(fixture_dir().join(&name))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), frames(&fs_stream(&name)).len(), "{name}");
        let names: Vec<String> = lines
            .iter()
            .filter_map(|l| l["event"].as_str().map(str::to_string))
            .collect();
        assert_eq!(names, event_names(&name), "{name}");
    }
}

#[test]
fn raw_stream_on_stdin_with_decoded_headers() {
    let raw = std::fs::read(fixture_dir().join("outbound-answer-record-hangup.plain.fs2app.raw"))
        .unwrap();
    let mut child = callrec()
        .args(["esl", "decode", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&raw).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["content_type"], "command/reply");
    assert_eq!(first["event"], "CHANNEL_DATA");
    assert_eq!(first["reply_text"], "+OK\n");
    let headers = first["headers"].as_array().unwrap();
    assert!(headers.contains(&serde_json::json!([
        "Channel-Name",
        "sofia/test/15551234567@127.0.0.1:5070"
    ])));
    let stop = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["event"] == "RECORD_STOP")
        .unwrap();
    let eh = stop["event_headers"].as_array().unwrap();
    assert!(eh.contains(&serde_json::json!(["variable_record_ms", "5010"])));
    assert_eq!(stop["body_len"], 6211);
}

#[test]
fn malformed_input_fails_with_the_offset() {
    let input = b"Content-Type: command/reply\nReply-Text: +OK\n\nContent-Length: -5\n\n";
    let mut child = callrec()
        .args(["esl", "decode", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("invalid Content-Length \"-5\" at byte offset 61"),
        "{err}"
    );
}

/// A reader that stops reading (`callrec esl decode … | head`) ends the run quietly, exit 0.
#[test]
fn a_closed_output_ends_quietly() {
    let fixture = fixture_dir().join("outbound-answer-record-hangup.plain.txt");
    let mut child = callrec()
        .args(["esl", "decode"])
        .arg(&fixture)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Closed before anything is written.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = callrec()
        .args(["esl", "decode", "/nonexistent/capture.raw"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open /nonexistent/capture.raw"));
}

#[tokio::test]
async fn token_create_prints_a_working_token_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = callrec()
        .args(["token", "create", "--account", "acc-1", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(token.len(), 64);
    let store = callrec::store::Store::open(dir.path()).unwrap();
    assert_eq!(
        store.verify_token(&token).await.unwrap(),
        Some(callrec::store::Scope::Account("acc-1".into()))
    );
    let db = std::fs::read(dir.path().join("callrec.db")).unwrap_or_default();
    assert!(
        !db.windows(token.len()).any(|w| w == token.as_bytes()),
        "only the hash is stored"
    );
    let out = callrec().args(["token", "create"]).output().unwrap();
    assert!(!out.status.success(), "a scope is required");
}
