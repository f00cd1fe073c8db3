//! A "FreeSWITCH" that sends malformed ESL: callrec drops that connection with an error and keeps
//! serving other calls.

mod support;

use std::time::Duration;

use callrec::rules::{AudioFormat, RecordCall};
use support::harness::Harness;
use support::{frames, fs_stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The real connect reply (channel data) from a capture.
fn channel_data() -> Vec<u8> {
    let s = fs_stream("outbound-answer-record-hangup.plain.txt");
    let f = &frames(&s)[0];
    s[..f.wire_len()].to_vec()
}

/// Reads until `n` commands (blank-line terminated) have arrived, or the peer closes.
async fn read_commands(sock: &mut TcpStream, n: usize) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if String::from_utf8_lossy(&got).matches("\n\n").count() >= n {
            return (String::from_utf8_lossy(&got).into_owned(), false);
        }
        match tokio::time::timeout(Duration::from_secs(10), sock.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(k)) => got.extend_from_slice(&buf[..k]),
            Err(_) => panic!("callrec neither sent nor closed"),
        }
    }
}

async fn closed_after(payload: &[u8], h: &Harness) {
    let mut sock = TcpStream::connect(h.addr).await.unwrap();
    let (cmd, _) = read_commands(&mut sock, 1).await;
    assert_eq!(cmd, "connect\n\n");
    sock.write_all(&channel_data()).await.unwrap();
    // The three subscriptions, pipelined.
    let (cmds, _) = read_commands(&mut sock, 3).await;
    assert!(
        cmds.starts_with("myevents json\n\nlinger\n\nevent json"),
        "{cmds:?}"
    );
    sock.write_all(payload).await.unwrap();
    // callrec gives up on this connection: it closes it (the dialplan's fallback takes over).
    let (_, closed) = read_commands(&mut sock, 99).await;
    assert!(closed);
}

#[tokio::test]
async fn malformed_frames_close_only_that_connection() {
    // A short command timeout: an incomplete frame (the garbage below) leaves callrec waiting
    // for replies that never come.
    let h = Harness::start_with(
        vec![RecordCall {
            format: AudioFormat::Wav,
            ..RecordCall::default()
        }],
        |c| c.command_timeout_ms = 300,
    )
    .await;
    let huge = b"Content-Type: command/reply\nReply-Text: +OK\n\nContent-Length: 999999999999\nContent-Type: text/event-plain\n\n".to_vec();
    let negative = b"Content-Length: -5\nContent-Type: text/event-plain\n\n".to_vec();
    let garbage: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let no_colon = b"this is not a header\n\n".to_vec();
    for payload in [huge, negative, garbage, no_colon] {
        closed_after(&payload, &h).await;
    }
    // A bad JSON event body is skipped, not fatal: the connection carries on.
    let mut sock = TcpStream::connect(h.addr).await.unwrap();
    read_commands(&mut sock, 1).await;
    sock.write_all(&channel_data()).await.unwrap();
    read_commands(&mut sock, 3).await;
    let bad_json = "{\"Event-Name\": \"CHANNEL_ANSWER\", oops";
    let mut replies = String::new();
    for _ in 0..3 {
        replies.push_str("Content-Type: command/reply\nReply-Text: +OK\n\n");
    }
    replies.push_str(&format!(
        "Content-Length: {}\nContent-Type: text/event-json\n\n{bad_json}",
        bad_json.len()
    ));
    sock.write_all(replies.as_bytes()).await.unwrap();
    // Next: callrec starts the recording, then hands the call back.
    let (cmds, closed) = read_commands(&mut sock, 1).await;
    assert!(!closed);
    assert!(
        cmds.starts_with("api uuid_record 9560fcb1-a15d-411a-a88c-6dbd57725d92 start "),
        "{cmds}"
    );
    drop(sock);
    // And the process still serves an ordinary call.
    let call = callrec_sim::dial(h.addr, callrec_sim::CallSpec::new("1555", "1000"))
        .await
        .unwrap();
    call.wait_for_command("sendmsg").await;
    call.answer();
    call.advance(Duration::from_secs(1));
    call.hangup("NORMAL_CLEARING");
    assert!(call.closed().await.app_exited);
    assert_eq!(h.delivered().len(), 1);
}

/// One plain event frame.
fn plain_event(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut body = String::new();
    for (n, v) in headers {
        body.push_str(&format!("{n}: {v}\n"));
    }
    body.push('\n');
    let mut f = format!(
        "Content-Length: {}\nContent-Type: text/event-plain\n\n",
        body.len()
    )
    .into_bytes();
    f.extend_from_slice(body.as_bytes());
    f
}

#[tokio::test]
async fn a_flood_of_100000_events_on_one_call_loses_no_recording() {
    let h = Harness::start(vec![RecordCall {
        format: AudioFormat::Wav,
        ..RecordCall::default()
    }])
    .await;
    let uuid = "9560fcb1-a15d-411a-a88c-6dbd57725d92";
    let mut sock = TcpStream::connect(h.addr).await.unwrap();
    read_commands(&mut sock, 1).await;
    sock.write_all(&channel_data()).await.unwrap();
    read_commands(&mut sock, 3).await;
    let ok = "Content-Type: command/reply\nReply-Text: +OK\n\n";
    sock.write_all(ok.repeat(3).as_bytes()).await.unwrap();
    let (cmd, _) = read_commands(&mut sock, 1).await;
    // api uuid_record <uuid> start <path> <limit> {callrec_recording_id=<id>,…}
    let parts: Vec<&str> = cmd.split_whitespace().collect();
    assert_eq!(parts[..4], ["api", "uuid_record", uuid, "start"], "{cmd}");
    let path = parts[4].to_string();
    let id = parts[6]
        .trim_start_matches("{callrec_recording_id=")
        .split(',')
        .next()
        .unwrap()
        .to_string();
    std::fs::write(&path, vec![0u8; 48_044]).unwrap(); // what FreeSWITCH would have written
    let api_ok = "Content-Type: api/response\nContent-Length: 12\n\n+OK Success\n";
    sock.write_all(api_ok.as_bytes()).await.unwrap();
    read_commands(&mut sock, 1).await; // the transfer
    sock.write_all(ok.as_bytes()).await.unwrap();
    // 100,000 events callrec does not act on, in one burst, then the ones it does.
    let one = plain_event(&[("Event-Name", "CHANNEL_STATE"), ("Unique-ID", uuid)]);
    let mut burst = Vec::with_capacity(one.len() * 100_000);
    for _ in 0..100_000 {
        burst.extend_from_slice(&one);
    }
    burst.extend(plain_event(&[
        ("Event-Name", "RECORD_STOP"),
        ("Unique-ID", uuid),
        ("Record-File-Path", &path),
        ("Recording-Variable-callrec_recording_id", &id),
        ("variable_record_ms", "5000"),
    ]));
    burst.extend(plain_event(&[
        ("Event-Name", "CHANNEL_HANGUP_COMPLETE"),
        ("Unique-ID", uuid),
        ("Hangup-Cause", "NORMAL_CLEARING"),
    ]));
    sock.write_all(&burst).await.unwrap();
    let (cmds, _) = read_commands(&mut sock, 1).await;
    assert_eq!(cmds, "exit\n\n", "every recording accounted for, then exit");
    let got = h.delivered();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].recording_id.as_str(), got[0].duration_ms),
        (id.as_str(), 5000)
    );
}
