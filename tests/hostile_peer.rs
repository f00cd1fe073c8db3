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
    let id = recording_id_of(&parts);
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
    burst.extend(call_end(uuid, &path, &id, 5000));
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

/// The capture's channel data with hostile values: a path-climbing account id with a NUL, a
/// caller name with line breaks (a forged log line, an injected header) and invalid UTF-8, a
/// caller number of 1,000,000 bytes.
fn hostile_channel_data() -> Vec<u8> {
    let text = String::from_utf8(channel_data()).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("Caller-Caller-ID-Name: ") {
            out.push_str("Caller-Caller-ID-Name: Eve%0D%0AX-Injected%3A%201%0A2026-11-25T00%3A00%3A00Z%20INFO%20forged%20line%FF%FE\n");
        } else if line.starts_with("Caller-Caller-ID-Number: ") {
            out.push_str(&format!(
                "Caller-Caller-ID-Number: {}\n",
                "7".repeat(1_000_000)
            ));
        } else if line.is_empty() {
            continue;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("variable_callrec_account_id: ..%2F..%2F..%2Fetc%00x%0Ay\n\n");
    out.into_bytes()
}

/// Hostile channel data through the real binary to a real HTTP receiver: the recording stays
/// inside the recordings tree, every ESL command stays one command, the upload request has no
/// injected header or path segment, and every log line is one of callrec's own.
#[tokio::test]
async fn hostile_channel_data_escapes_no_path_command_request_or_log_line() {
    let rx = support::receiver::Receiver::start(vec![]).await;
    let tmp = tempfile::tempdir().unwrap();
    let (_callrec, mut sock, data, log) =
        real_callrec(&tmp, &format!("url = \"{}/rec/\"\n", rx.base)).await;
    let uuid = "9560fcb1-a15d-411a-a88c-6dbd57725d92";
    read_commands(&mut sock, 1).await;
    sock.write_all(&hostile_channel_data()).await.unwrap();
    read_commands(&mut sock, 3).await;
    let ok = "Content-Type: command/reply\nReply-Text: +OK\n\n";
    sock.write_all(ok.repeat(3).as_bytes()).await.unwrap();
    let (cmd, closed) = read_commands(&mut sock, 1).await;
    assert!(!closed, "the call is served");
    // One command: one line, then the blank line.
    assert_eq!(cmd.matches('\n').count(), 2, "{cmd:?}");
    let parts: Vec<&str> = cmd.split_whitespace().collect();
    assert_eq!(parts[..4], ["api", "uuid_record", uuid, "start"], "{cmd}");
    let path = std::path::PathBuf::from(parts[4]);
    assert!(path.starts_with(data.join("recordings")), "{path:?}");
    assert!(
        !parts[4].contains("..") && !parts[4].contains('\0'),
        "{path:?}"
    );
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, vec![1u8; 48_044]).unwrap();
    let id = recording_id_of(&parts);
    let api_ok = "Content-Type: api/response\nContent-Length: 12\n\n+OK Success\n";
    sock.write_all(api_ok.as_bytes()).await.unwrap();
    let (transfer, _) = read_commands(&mut sock, 1).await;
    assert!(transfer.starts_with("sendmsg"), "{transfer:?}");
    assert!(
        !transfer.contains("Injected") && !transfer.contains("forged"),
        "{transfer:?}"
    );
    sock.write_all(ok.as_bytes()).await.unwrap();
    let end = call_end(uuid, &path.display().to_string(), &id, 3000);
    sock.write_all(&end).await.unwrap();
    let (exit, _) = read_commands(&mut sock, 1).await;
    assert_eq!(exit, "exit\n\n");
    let got = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(g) = rx.requests().into_iter().find(|g| g.complete) {
                return g;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        let t = std::fs::read_to_string(&log).unwrap_or_default();
        panic!("not delivered: {}", &t[t.len().saturating_sub(3000)..])
    });
    assert!(got.target.starts_with("/rec/"), "{}", got.target);
    assert!(
        !got.target.contains(['\r', '\n', ' ', '\0']) && !got.target[5..].contains('/'),
        "one path segment, everything else percent-encoded: {}",
        &got.target[..got.target.len().min(300)]
    );
    assert!(got.header("X-Injected").is_none());
    for (k, v) in &got.headers {
        assert!(!k.contains(['\r', '\n']) && !v.contains(['\r', '\n']));
    }
    assert_eq!(got.body, vec![1u8; 48_044]);
    let text = std::fs::read(&log).unwrap();
    if let Some(i) = text.iter().position(|b| *b == 0) {
        let a = i.saturating_sub(300);
        panic!(
            "NUL in the log: {}",
            String::from_utf8_lossy(&text[a..(i + 50).min(text.len())])
        );
    }
    let text = String::from_utf8_lossy(&text);
    for line in text.lines() {
        assert!(
            line.starts_with("20") && !line.starts_with("2026-11-25T00:00:00Z"),
            "every line is callrec's own: {}",
            &line[..line.len().min(200)]
        );
    }
    assert!(text.contains("recording kept") || text.contains("queued for upload"));
}

/// The real binary with `[record_call]` WAV plus `record_call` lines; returns it, a connection
/// to its outbound listener, its data directory and its log file.
async fn real_callrec(
    tmp: &tempfile::TempDir,
    record_call: &str,
) -> (
    support::process::Killed,
    TcpStream,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    use std::process::{Command, Stdio};
    use support::process::{free_port, Killed};
    let data = tmp.path().join("data");
    let listen = free_port();
    let config = tmp.path().join("callrec.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{listen}\"\napi_listen = \"127.0.0.1:{}\"\ndata_dir = \"{}\"\n\
             [record_call]\nformat = \"wav\"\n{record_call}",
            free_port(),
            data.display(),
        ),
    )
    .unwrap();
    let log = tmp.path().join("callrec.log");
    let child = Killed(
        Command::new(env!("CARGO_BIN_EXE_callrec"))
            .args(["serve", "--config"])
            .arg(&config)
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap(),
    );
    let sock = loop {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", listen)).await {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    (child, sock, data, log)
}

/// Peak resident memory of a process (`VmHWM`), KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// 100,000 real captured channel events (2 KB each, 0.2 GB in all) in one burst on one
/// call's connection of the real binary: the recording is kept, and the process's peak memory
/// stays bounded (the issue measured 297 MB before the event queue was bounded).
#[tokio::test]
async fn a_burst_of_100000_captured_events_keeps_memory_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let (callrec, mut sock, _data, _log) = real_callrec(&tmp, "").await;
    let name = "outbound-answer-record-hangup.plain.txt";
    let stream = fs_stream(name);
    let mut at = 0;
    let mut state_event = None;
    for f in frames(&stream) {
        let len = f.wire_len();
        if f.body().starts_with(b"Event-Name: CHANNEL_STATE") && state_event.is_none() {
            state_event = Some(stream[at..at + len].to_vec());
        }
        at += len;
    }
    let one = state_event.expect("a captured CHANNEL_STATE event");
    let uuid = "9560fcb1-a15d-411a-a88c-6dbd57725d92";
    read_commands(&mut sock, 1).await;
    sock.write_all(&channel_data()).await.unwrap();
    read_commands(&mut sock, 3).await;
    let ok = "Content-Type: command/reply\nReply-Text: +OK\n\n";
    sock.write_all(ok.repeat(3).as_bytes()).await.unwrap();
    let (cmd, _) = read_commands(&mut sock, 1).await;
    let parts: Vec<&str> = cmd.split_whitespace().collect();
    let path = parts[4].to_string();
    let id = recording_id_of(&parts);
    std::fs::create_dir_all(std::path::Path::new(&path).parent().unwrap()).unwrap();
    std::fs::write(&path, vec![0u8; 48_044]).unwrap();
    let api_ok = "Content-Type: api/response\nContent-Length: 12\n\n+OK Success\n";
    sock.write_all(api_ok.as_bytes()).await.unwrap();
    read_commands(&mut sock, 1).await;
    sock.write_all(ok.as_bytes()).await.unwrap();
    let mut batch = Vec::with_capacity(one.len() * 1000);
    for _ in 0..1000 {
        batch.extend_from_slice(&one);
    }
    for _ in 0..100 {
        sock.write_all(&batch).await.unwrap();
    }
    let end = call_end(uuid, &path, &id, 3000);
    sock.write_all(&end).await.unwrap();
    let (exit, _) = read_commands(&mut sock, 1).await;
    assert_eq!(exit, "exit\n\n", "every recording accounted for, then exit");
    let peak = peak_rss_kib(callrec.0.id());
    eprintln!(
        "FAULTS | 100,000 captured events ({} B each) in one burst | 1 | 1 | 1 | 0 | 0 | peak RSS {} MiB",
        one.len(),
        peak / 1024
    );
    assert!(peak > 0 && peak < 100 * 1024, "peak RSS {peak} KiB");
}

/// The recording id callrec put in `uuid_record`'s variables (`{callrec_recording_id=…,…}`).
fn recording_id_of(parts: &[&str]) -> String {
    parts[6]
        .trim_start_matches("{callrec_recording_id=")
        .split(',')
        .next()
        .unwrap()
        .to_string()
}

/// FreeSWITCH ending the call: the recording's RECORD_STOP, then CHANNEL_HANGUP_COMPLETE.
fn call_end(uuid: &str, path: &str, id: &str, record_ms: u64) -> Vec<u8> {
    let mut end = plain_event(&[
        ("Event-Name", "RECORD_STOP"),
        ("Unique-ID", uuid),
        ("Record-File-Path", path),
        ("Recording-Variable-callrec_recording_id", id),
        ("variable_record_ms", &record_ms.to_string()),
    ]);
    end.extend(plain_event(&[
        ("Event-Name", "CHANNEL_HANGUP_COMPLETE"),
        ("Unique-ID", uuid),
        ("Hangup-Cause", "NORMAL_CLEARING"),
    ]));
    end
}
