//! The simulator's inbound event socket against the real captures (`inbound-*.txt`): the exact
//! bytes of the auth exchanges, the reply texts and API bodies of the command tour, the order of
//! replies and events when recording a call over inbound, and mod_event_socket's filter rules.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::BytesMut;
use callrec_esl::transcript::{self, Direction};
use callrec_esl::{FrameDecoder, Message};
use callrec_sim::{CallSpec, Switch};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/esl")
        .join(name);
    std::fs::read(p).expect("fixture")
}

/// A raw inbound client: what it reads is kept byte for byte.
struct Client {
    s: TcpStream,
    got: Vec<u8>,
    buf: BytesMut,
    dec: FrameDecoder,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client {
            s: TcpStream::connect(addr).await.unwrap(),
            got: vec![],
            buf: BytesMut::new(),
            dec: FrameDecoder::default(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
    }

    /// The next message (None at end of stream).
    async fn next(&mut self) -> Option<Message> {
        loop {
            if let Some(f) = self.dec.decode(&mut self.buf).unwrap() {
                return Some(Message::from_frame(f).unwrap());
            }
            let mut chunk = [0u8; 65536];
            let n = tokio::time::timeout(Duration::from_secs(10), self.s.read(&mut chunk))
                .await
                .expect("the simulator answers")
                .unwrap();
            if n == 0 {
                return None;
            }
            self.got.extend_from_slice(&chunk[..n]);
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn until_closed(&mut self) {
        while self.next().await.is_some() {}
    }

    /// One line per message, as [`summary`] prints a capture's.
    async fn line(&mut self, uuid: &str) -> Option<String> {
        let m = self.next().await?;
        Some(describe(m, uuid))
    }
}

fn describe(m: Message, uuid: &str) -> String {
    let uuid = if uuid.is_empty() { "\u{0}" } else { uuid };
    match m {
        Message::Reply(r) => {
            let t = r.text();
            match t.strip_prefix("+OK Job-UUID: ") {
                Some(_) => "reply +OK Job-UUID: <job>".into(),
                None => format!("reply {}", t.replace(uuid, "<uuid>")),
            }
        }
        Message::ApiResponse(a) => {
            let t = a.text();
            if t.starts_with("UP ") {
                "api UP …".into()
            } else {
                format!("api {:?}", t.replace(uuid, "<uuid>"))
            }
        }
        Message::Event(e) => {
            let n = e.get("Event-Name").unwrap_or_default().into_owned();
            if n == "BACKGROUND_JOB" {
                let body = e.body().map(|b| String::from_utf8_lossy(b).into_owned());
                let body = body.unwrap_or_default();
                let body = if body.starts_with("UP ") {
                    "UP …".into()
                } else {
                    body
                };
                format!("event BACKGROUND_JOB {body:?}")
            } else {
                format!("event {n}")
            }
        }
        Message::Disconnect(_) => "notice".into(),
        other => other.kind().to_string(),
    }
}

/// The capture's FreeSWITCH side, one line per message.
fn summary(name: &str, uuid: &str) -> Vec<String> {
    let stream = transcript::stream(&fixture(name), Direction::FsToApp).unwrap();
    let mut d = FrameDecoder::default();
    let mut buf = BytesMut::from(&stream[..]);
    let mut out = vec![];
    while let Some(f) = d.decode_eof(&mut buf).unwrap() {
        out.push(describe(Message::from_frame(f).unwrap(), uuid));
    }
    out
}

/// The capture's app→FreeSWITCH commands, in order.
fn commands(name: &str) -> Vec<Vec<u8>> {
    transcript::parse(&fixture(name))
        .unwrap()
        .into_iter()
        .filter(|c| c.direction == Direction::AppToFs)
        .map(|c| c.bytes)
        .collect()
}

async fn switch() -> (Switch, SocketAddr) {
    let sw = Switch::new("ClueCon");
    let addr = sw.listen_inbound().await.unwrap();
    (sw, addr)
}

/// Replays every command of a capture that has no call in it; returns the bytes received.
async fn replay_bytes(name: &str) -> Vec<u8> {
    let (_sw, addr) = switch().await;
    let mut c = Client::connect(addr).await;
    for cmd in commands(name) {
        c.send(&cmd).await;
    }
    c.until_closed().await;
    c.got
}

#[tokio::test]
async fn wrong_password_bytes_match_the_capture() {
    let want = transcript::stream(&fixture("inbound-auth-fail.txt"), Direction::FsToApp).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&replay_bytes("inbound-auth-fail.txt").await),
        String::from_utf8_lossy(&want)
    );
}

#[tokio::test]
async fn commands_before_auth_bytes_match_the_capture() {
    let want = transcript::stream(&fixture("inbound-noauth.txt"), Direction::FsToApp).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&replay_bytes("inbound-noauth.txt").await),
        String::from_utf8_lossy(&want)
    );
}

#[tokio::test]
async fn command_tour_after_auth_matches_the_capture() {
    let (_sw, addr) = switch().await;
    let mut c = Client::connect(addr).await;
    let mut got = vec![c.line("").await.unwrap()];
    for cmd in commands("inbound-auth-ok.txt") {
        c.send(&cmd).await;
        let text = String::from_utf8_lossy(&cmd).into_owned();
        // One reply per command; `bgapi` once subscribed also brings its BACKGROUND_JOB, and
        // `exit` the notice.
        got.push(c.line("").await.unwrap());
        if text.starts_with("bgapi") && got.iter().any(|l| l.contains("enabled plain")) {
            got.push(c.line("").await.unwrap());
        }
        if text.starts_with("exit") {
            got.push(c.line("").await.unwrap());
        }
    }
    assert_eq!(got, summary("inbound-auth-ok.txt", ""));
}

/// A controller that takes the call's socket and only says `connect`: the channel lives on the
/// switch, as the capture's call to `2000` (no socket) did.
async fn idle_controller() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(b"connect\n\n").await;
                let mut sink = [0u8; 65536];
                while let Ok(n) = s.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn recording_over_inbound_matches_the_capture_order() {
    let (sw, addr) = switch().await;
    let call = sw
        .dial(
            idle_controller().await,
            CallSpec::new("15551234567", "2000"),
        )
        .await
        .unwrap();
    call.wait_until(|r| !r.commands.is_empty()).await;
    call.answer();
    let uuid = call.uuid.clone();
    let mut c = Client::connect(addr).await;
    let mut got = vec![c.line(&uuid).await.unwrap()];
    let path = std::env::temp_dir().join(format!("{uuid}-in.wav"));
    let path = path.display().to_string();
    let steps: Vec<(String, usize)> = vec![
        ("auth ClueCon\n\n".into(), 1),
        (
            "event json RECORD_START RECORD_STOP CHANNEL_HANGUP_COMPLETE BACKGROUND_JOB\n\n".into(),
            1,
        ),
        (
            format!("bgapi uuid_record {uuid} start {path} 10 {{callrec_recording_id=in-1}}\n\n"),
            3,
        ),
        (format!("bgapi uuid_record {uuid} stop {path}\n\n"), 3),
    ];
    for (i, (cmd, n)) in steps.into_iter().enumerate() {
        c.send(cmd.as_bytes()).await;
        for _ in 0..n {
            got.push(c.line(&uuid).await.unwrap());
        }
        if i == 2 {
            call.advance(Duration::from_secs(3));
        }
    }
    call.hangup("NORMAL_CLEARING");
    got.push(c.line(&uuid).await.unwrap());
    c.send(b"exit\n\n").await;
    got.push(c.line(&uuid).await.unwrap());
    got.push(c.line(&uuid).await.unwrap());
    // The capture's `api show channels as json` (how its client found the uuid) is not modelled.
    let want: Vec<String> = summary("inbound-record-events.json.txt", "")
        .into_iter()
        .filter(|l| !l.starts_with("api \"{\\\"row_count"))
        .collect();
    assert_eq!(got, want);
    assert!(std::path::Path::new(&path).exists());
    let _ = std::fs::remove_file(&path);
}

/// Events of two calls; `filter Unique-ID` lets one call's through, `filter delete` removes it.
#[tokio::test]
async fn filters_follow_mod_event_socket_rules() {
    let (sw, addr) = switch().await;
    let ctl = idle_controller().await;
    let a = sw
        .dial(ctl, CallSpec::new("1001", "2000").var("follow_me", "yes"))
        .await
        .unwrap();
    let b = sw.dial(ctl, CallSpec::new("1002", "2000")).await.unwrap();
    a.wait_until(|r| !r.commands.is_empty()).await;
    b.wait_until(|r| !r.commands.is_empty()).await;
    let mut c = Client::connect(addr).await;
    c.next().await;
    for cmd in [
        "auth ClueCon".to_string(),
        "event plain CHANNEL_ANSWER CHANNEL_HANGUP_COMPLETE".into(),
        // A filter on a channel variable: only calls carrying it pass.
        "filter variable_follow_me yes".into(),
    ] {
        c.send(format!("{cmd}\n\n").as_bytes()).await;
        c.next().await;
    }
    b.answer();
    a.answer();
    let Some(Message::Event(e)) = c.next().await else {
        panic!("an event")
    };
    assert_eq!(
        e.get("Unique-ID").unwrap(),
        a.uuid.as_str(),
        "b's answer filtered out"
    );
    // A negative filter wins over a positive one.
    c.send(format!("filter Unique-ID -{}\n\n", a.uuid).as_bytes())
        .await;
    assert!(
        matches!(c.next().await, Some(Message::Reply(r)) if r.text().starts_with("+OK filter added. [Unique-ID]=[-"))
    );
    c.send(b"filter delete variable_follow_me\n\n").await;
    assert!(
        matches!(c.next().await, Some(Message::Reply(r)) if r.text() == "+OK filter deleted. [variable_follow_me][(null)]")
    );
    c.send(format!("filter Unique-ID {}\n\n", b.uuid).as_bytes())
        .await;
    c.next().await;
    a.hangup("NORMAL_CLEARING");
    b.hangup("NORMAL_CLEARING");
    let Some(Message::Event(e)) = c.next().await else {
        panic!("an event")
    };
    assert_eq!(e.get("Event-Name").unwrap(), "CHANNEL_HANGUP_COMPLETE");
    assert_eq!(e.get("Unique-ID").unwrap(), b.uuid.as_str());
    c.send(b"filter\n\n").await;
    assert!(matches!(c.next().await, Some(Message::Reply(r)) if r.text() == "-ERR invalid syntax"));
    let stats = sw.inbound_stats();
    assert_eq!(stats.events_sent, 2, "only what passed was serialised");
}

async fn ask(c: &mut Client, cmd: String) -> String {
    c.send(format!("api {cmd}\n\n").as_bytes()).await;
    match c.next().await {
        Some(Message::ApiResponse(a)) => a.text().into_owned(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn api_reaches_any_channel_and_a_restart_loses_them_all() {
    let (sw, addr) = switch().await;
    let dir = tempfile::tempdir().unwrap();
    let call = sw
        .dial(idle_controller().await, CallSpec::new("1001", "2000"))
        .await
        .unwrap();
    call.wait_until(|r| !r.commands.is_empty()).await;
    call.answer();
    let mut c = Client::connect(addr).await;
    c.next().await;
    c.send(b"auth ClueCon\n\n").await;
    c.next().await;
    let uuid = call.uuid.clone();
    let path = dir.path().join("r.wav");
    assert_eq!(ask(&mut c, format!("uuid_exists {uuid}")).await, "true");
    assert_eq!(ask(&mut c, "uuid_exists nope".into()).await, "false");
    assert_eq!(
        ask(
            &mut c,
            format!("uuid_record {uuid} start {} 60", path.display())
        )
        .await,
        "+OK Success\n"
    );
    assert_eq!(
        ask(&mut c, "uuid_record nope start /tmp/x.wav 60".into()).await,
        "-ERR Cannot locate session!\n"
    );
    let core = ask(&mut c, "global_getvar core_uuid".into()).await;
    assert_eq!(core, sw.core_uuid());
    call.advance(Duration::from_secs(9));
    call.sync().await;
    sw.stop().await;
    assert!(
        c.next().await.is_none(),
        "the connection died with the process"
    );
    let report = call.report();
    assert!(report.crashed && report.closed);
    // The file holds what the write buffer flushed (two 65,536-byte bursts of the 9 s).
    let len = std::fs::metadata(&path)
        .expect("the file was written as far as it got")
        .len();
    assert_eq!(len, 44 + 2 * 65_536);
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "nothing listens while down"
    );
    sw.start().await.unwrap();
    let mut c = Client::connect(addr).await;
    c.next().await;
    c.send(b"auth ClueCon\n\n").await;
    c.next().await;
    assert_eq!(ask(&mut c, format!("uuid_exists {uuid}")).await, "false");
    assert_ne!(ask(&mut c, "global_getvar core_uuid".into()).await, core);
}

/// `uuid_dump <uuid> json` (mod_commands): the channel's data as one JSON object, an
/// unfired CHANNEL_DATA event; a UUID that names no channel gets `-ERR No such channel!`.
#[tokio::test]
async fn uuid_dump_answers_the_channels_state() {
    let (sw, addr) = switch().await;
    let ctl = idle_controller().await;
    let a = sw.dial(ctl, CallSpec::new("1001", "2000")).await.unwrap();
    a.wait_until(|r| !r.commands.is_empty()).await;
    let mut c = Client::connect(addr).await;
    c.next().await;
    c.send(b"auth ClueCon\n\n").await;
    c.next().await;
    async fn dump(c: &mut Client, cmd: String) -> String {
        c.send(format!("{cmd}\n\n").as_bytes()).await;
        match c.next().await {
            Some(Message::ApiResponse(r)) => r.text().into_owned(),
            other => panic!("an api response, got {other:?}"),
        }
    }
    let before = dump(&mut c, format!("api uuid_dump {} json", a.uuid)).await;
    let json = |t: String| {
        callrec_esl::event::Event::from_json(bytes::Bytes::from(t), 0).expect("one JSON object")
    };
    let v = json(before);
    assert_eq!(v.get("Event-Name").unwrap(), "CHANNEL_DATA");
    assert_eq!(v.get("Unique-ID").unwrap(), a.uuid.as_str());
    assert_eq!(v.get("Answer-State").unwrap(), "ringing");
    assert!(v.get("Event-Date-Timestamp").is_none(), "never fired");
    a.answer();
    a.bridge("1005");
    a.sync().await;
    let after = dump(&mut c, format!("api uuid_dump {} json", a.uuid)).await;
    let v = json(after);
    assert_eq!(v.get("Answer-State").unwrap(), "answered");
    assert_eq!(v.get("Other-Leg-Destination-Number").unwrap(), "1005");
    let plain = dump(&mut c, format!("api uuid_dump {}", a.uuid)).await;
    assert!(plain.starts_with("Event-Name: CHANNEL_DATA\n"), "{plain}");
    assert_eq!(
        dump(
            &mut c,
            "api uuid_dump 7d9c0b6e-0000-4000-8000-000000000000 json".into()
        )
        .await,
        "-ERR No such channel!\n"
    );
}
