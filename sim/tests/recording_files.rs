//! How the simulator writes recording files and treats event sockets, pinned against the facts
//! measured on a real FreeSWITCH 1.10.12 (`tests/fixtures/facts/freeswitch-recordings.md`, a
//! copy of the measured facts): files grow in write-buffer bursts (65,536 bytes per channel by
//! default), `enable_file_write_buffering` changes the buffer (a size for `uuid_record`, only on
//! or off for the `record` application, as `switch_ivr_play_say.c` reads it), the rest is
//! written at stop, a process that dies loses what its buffer held, and `reload
//! mod_event_socket` closes every event-socket connection while the calls record on.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::BytesMut;
use callrec_esl::{FrameDecoder, Message};
use callrec_sim::{CallHandle, CallSpec, Switch};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn facts() -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/facts/freeswitch-recordings.md");
    std::fs::read_to_string(p).expect("facts file")
}

/// The facts table's rows: (rate, channels, audio bytes per second, growth interval in ms).
fn growth_table() -> Vec<(u32, u16, u64, u64)> {
    let num = |s: &str| -> u64 { s.trim().replace(',', "").parse().expect("a number") };
    facts()
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("| WAV "))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            // "WAV 8 kHz mono"
            let words: Vec<&str> = cells[1].split(' ').collect();
            let rate = words[1].parse::<u32>().unwrap() * 1000;
            let channels = if words[3] == "stereo" { 2 } else { 1 };
            let per_s = num(cells[2]);
            let every_ms =
                (cells[3].trim_end_matches(" s").parse::<f64>().unwrap() * 1000.0).round() as u64;
            (rate, channels, per_s, every_ms)
        })
        .collect()
}

/// A raw inbound client.
struct Client {
    s: TcpStream,
    buf: BytesMut,
    dec: FrameDecoder,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let mut c = Client {
            s: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
            dec: FrameDecoder::default(),
        };
        c.next().await;
        c.s.write_all(b"auth ClueCon\n\n").await.unwrap();
        c.next().await;
        c
    }

    async fn next(&mut self) -> Option<Message> {
        loop {
            if let Some(f) = self.dec.decode(&mut self.buf).unwrap() {
                return Some(Message::from_frame(f).unwrap());
            }
            let mut chunk = [0u8; 65536];
            let n = tokio::time::timeout(Duration::from_secs(10), self.s.read(&mut chunk))
                .await
                .expect("the simulator answers")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn api(&mut self, cmd: &str) -> String {
        self.s
            .write_all(format!("api {cmd}\n\n").as_bytes())
            .await
            .unwrap();
        match self.next().await {
            Some(Message::ApiResponse(r)) => r.text().into_owned(),
            other => panic!("an api response, got {other:?}"),
        }
    }
}

/// A controller that takes the call's socket, says `connect`, and keeps it open until the
/// switch closes it.
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

async fn answered_call(sw: &Switch) -> CallHandle {
    let call = sw
        .dial(idle_controller().await, CallSpec::new("1001", "2000"))
        .await
        .unwrap();
    call.wait_until(|r| !r.commands.is_empty()).await;
    call.answer();
    call.sync().await;
    call
}

/// A switch with an answered call whose recording (8 kHz mono WAV, 60 s limit) an inbound
/// client started.
struct Recording {
    sw: Switch,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
    call: CallHandle,
    c: Client,
    path: PathBuf,
}

async fn recording(name: &str) -> Recording {
    let (sw, addr) = switch().await;
    let dir = tempfile::tempdir().unwrap();
    let call = answered_call(&sw).await;
    let mut c = Client::connect(addr).await;
    let path = dir.path().join(format!("{name}.wav"));
    c.api(&format!(
        "uuid_record {} start {} 60",
        call.uuid,
        path.display()
    ))
    .await;
    Recording {
        sw,
        addr,
        _dir: dir,
        call,
        c,
        path,
    }
}

async fn switch() -> (Switch, SocketAddr) {
    let sw = Switch::new("ClueCon");
    let addr = sw.listen_inbound().await.unwrap();
    (sw, addr)
}

fn size(p: &std::path::Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Advances the call in `step` ms looks up to `until` ms; returns (ms, size) at every growth.
async fn growth(
    call: &CallHandle,
    path: &std::path::Path,
    step: u64,
    until: u64,
) -> Vec<(u64, u64)> {
    let mut seen = vec![];
    let mut last = size(path);
    let mut t = 0;
    while t < until {
        call.advance(Duration::from_millis(step));
        call.sync().await;
        t += step;
        let s = size(path);
        if s != last {
            seen.push((t, s));
            last = s;
        }
    }
    seen
}

#[tokio::test]
async fn a_file_grows_every_buffer_as_the_facts_table_says() {
    let table = growth_table();
    assert_eq!(table.len(), 4, "the facts table's four rows");
    let (sw, addr) = switch().await;
    let dir = tempfile::tempdir().unwrap();
    for (rate, channels, per_s, every_ms) in table {
        let call = answered_call(&sw).await;
        let mut c = Client::connect(addr).await;
        let path = dir.path().join(format!("{rate}-{channels}.wav"));
        let stereo = channels == 2;
        let reply = c
            .api(&format!(
                "uuid_record {} start {} 60 {{record_sample_rate={rate},RECORD_STEREO={stereo}}}",
                call.uuid,
                path.display()
            ))
            .await;
        assert_eq!(reply, "+OK Success\n");
        assert_eq!(size(&path), 44, "the header is there from the start");
        // 8 ms looks over 2.5 intervals: two bursts of 65,536 bytes per channel.
        let seen = growth(&call, &path, 8, every_ms * 5 / 2).await;
        let burst = 65_536 * channels as u64;
        assert_eq!(burst * 1000 / per_s, every_ms, "{rate}/{channels}");
        assert_eq!(seen.len(), 2, "{rate} Hz × {channels}: {seen:?}");
        for (i, (t, s)) in seen.iter().enumerate() {
            let n = i as u64 + 1;
            assert!(
                t.abs_diff(n * every_ms) < 8,
                "burst {n} at {t} ms, not {} ms",
                n * every_ms
            );
            assert_eq!(*s, 44 + n * burst);
        }
        // At stop the rest is written and the header says what the file holds.
        c.api(&format!(
            "uuid_record {} stop {}",
            call.uuid,
            path.display()
        ))
        .await;
        call.sync().await;
        let ms = every_ms * 5 / 2;
        assert_eq!(size(&path), 44 + per_s * ms / 1000);
        let wav = hound::WavReader::open(&path).unwrap();
        assert_eq!(wav.duration() as u64, rate as u64 * ms / 1000);
        call.hangup("NORMAL_CLEARING");
    }
}

#[tokio::test]
async fn the_measured_sizes_of_an_8khz_recording() {
    // "44 bytes for the first 4 s; then 65,580 bytes for the next 4 s; then 131,116 bytes;
    // at stop, the rest" (one look every 200 ms).
    let f = facts();
    for quoted in [
        "44 bytes for the first 4 s",
        "65,580 bytes",
        "131,116 bytes",
    ] {
        assert!(f.contains(quoted), "the facts file says {quoted:?}");
    }
    let Recording {
        sw: _sw,
        addr: _addr,
        _dir,
        call,
        mut c,
        path,
    } = recording("tone").await;
    let mut looks = vec![];
    for _ in 0..50 {
        call.advance(Duration::from_millis(200));
        call.sync().await;
        looks.push(size(&path));
    }
    // Looks 1..=20 cover 0.2–4.0 s, 21..=40 4.2–8.0 s, 41.. 8.2 s on.
    assert!(looks[..20].iter().all(|s| *s == 44), "{looks:?}");
    assert!(looks[20..40].iter().all(|s| *s == 65_580), "{looks:?}");
    assert!(looks[40..].iter().all(|s| *s == 131_116), "{looks:?}");
    c.api(&format!(
        "uuid_record {} stop {}",
        call.uuid,
        path.display()
    ))
    .await;
    call.sync().await;
    assert_eq!(size(&path), 44 + 16_000 * 10);
}

#[tokio::test]
async fn enable_file_write_buffering_sets_the_buffer() {
    let (sw, addr) = switch().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::connect(addr).await;
    // Off: every frame reaches the file.
    let call = answered_call(&sw).await;
    let off = dir.path().join("off.wav");
    c.api(&format!(
        "uuid_record {} start {} 60 {{enable_file_write_buffering=false}}",
        call.uuid,
        off.display()
    ))
    .await;
    let seen = growth(&call, &off, 100, 1000).await;
    assert_eq!(seen.len(), 10, "{seen:?}");
    assert_eq!(seen[9], (1000, 44 + 16_000));
    // A size: 16,000 bytes is one second of 8 kHz mono.
    let sized = dir.path().join("sized.wav");
    c.api(&format!(
        "uuid_record {} start {} 60 {{enable_file_write_buffering=16000}}",
        call.uuid,
        sized.display()
    ))
    .await;
    let seen = growth(&call, &sized, 100, 3000).await;
    assert_eq!(
        seen,
        vec![(1000, 16_044), (2000, 32_044), (3000, 48_044)],
        "a burst a second"
    );
    // The channel variable serves when the recording has none.
    let call2 = answered_call(&sw).await;
    assert_eq!(
        c.api(&format!(
            "uuid_setvar {} enable_file_write_buffering 8000",
            call2.uuid
        ))
        .await,
        "+OK\n"
    );
    let chan = dir.path().join("chan.wav");
    c.api(&format!(
        "uuid_record {} start {} 60",
        call2.uuid,
        chan.display()
    ))
    .await;
    let seen = growth(&call2, &chan, 100, 1000).await;
    assert_eq!(seen, vec![(500, 8_044), (1000, 16_044)]);
}

#[tokio::test]
async fn the_record_application_takes_only_on_or_off() {
    let (sw, addr) = switch().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::connect(addr).await;
    for (var, burst_ms) in [(None, 4096), (Some("16000"), 4096), (Some("false"), 0)] {
        let call = answered_call(&sw).await;
        if let Some(v) = var {
            c.api(&format!(
                "uuid_setvar {} enable_file_write_buffering {v}",
                call.uuid
            ))
            .await;
        }
        let path = dir.path().join(format!("app-{burst_ms}-{var:?}.wav"));
        let msg = format!(
            "sendmsg {}\ncall-command: execute\nexecute-app-name: record\nexecute-app-arg: {} 60\n\n",
            call.uuid,
            path.display()
        );
        c.s.write_all(msg.as_bytes()).await.unwrap();
        c.next().await;
        call.sync().await;
        let seen = growth(&call, &path, 256, 4352).await;
        if burst_ms == 0 {
            assert_eq!(seen.len(), 17, "{var:?}: every look grows: {seen:?}");
        } else {
            assert_eq!(seen, vec![(4096, 65_580)], "{var:?}: the default buffer");
        }
        call.hangup("NORMAL_CLEARING");
    }
}

#[tokio::test]
async fn a_dying_process_loses_what_its_buffer_held() {
    let Recording {
        sw,
        addr: _addr,
        _dir,
        call,
        c: _c,
        path,
    } = recording("crash").await;
    call.advance(Duration::from_secs(9));
    call.sync().await;
    sw.stop().await;
    // Two bursts reached the disk; the second left in the buffer died with the process, and
    // the header was never finished.
    assert_eq!(size(&path), 44 + 2 * 65_536);
    let wav = hound::WavReader::open(&path).unwrap();
    assert_eq!(wav.duration(), 0, "the header's sizes are written at close");
    let report = call.report();
    assert_eq!(report.recordings.len(), 1);
    assert_eq!(report.recordings[0].ms, 8192, "what reached the disk");
}

#[tokio::test]
async fn reload_mod_event_socket_closes_every_connection_and_calls_go_on() {
    assert!(facts().contains("closes every\n  event-socket connection, inbound and outbound"));
    let Recording {
        sw,
        addr,
        _dir,
        call,
        mut c,
        path,
    } = recording("reload").await;
    let core = c.api("global_getvar core_uuid").await;
    call.advance(Duration::from_secs(2));
    call.sync().await;
    sw.reload_event_socket().await;
    // The inbound connection: the disconnect notice, then the end.
    match c.next().await {
        Some(Message::Disconnect(_)) => {}
        other => panic!("a disconnect notice, got {other:?}"),
    }
    assert!(c.next().await.is_none());
    // The call's own socket closed too; the call and its recording go on.
    let r = call.wait_until(|r| r.closed).await;
    assert!(!r.hung_up);
    assert!(sw.has_channel(&call.uuid));
    // The listener is back, same process.
    let mut c = Client::connect(addr).await;
    assert_eq!(c.api("global_getvar core_uuid").await, core);
    assert_eq!(c.api(&format!("uuid_exists {}", call.uuid)).await, "true");
    call.advance(Duration::from_secs(6));
    call.hangup("NORMAL_CLEARING");
    let r = call.wait_until(|r| !r.recordings.is_empty()).await;
    assert_eq!(
        r.recordings[0].ms, 8000,
        "the whole call, recorded through the reload"
    );
    assert_eq!(size(&path), 44 + 8 * 16_000);
}

/// RMS of the samples from `a` to `b` ms of a mono 8 kHz WAV.
fn rms(samples: &[i16], a: u64, b: u64) -> f64 {
    let part = &samples[(a * 8) as usize..((b * 8) as usize).min(samples.len())];
    let sum: f64 = part.iter().map(|&s| (s as f64) * (s as f64)).sum();
    (sum / part.len().max(1) as f64).sqrt()
}

fn wav_samples(p: &std::path::Path) -> Vec<i16> {
    hound::WavReader::open(p)
        .expect("a WAV file")
        .samples::<i16>()
        .map(|s| s.unwrap())
        .collect()
}

/// The facts file's measurement, "Mid-call recording control": two recordings of one call
/// started together; 2 s in, `pause` on one and `mask` on the other; 3 s later `resume` and
/// `unmask`; 2 s later `stop`. The paused file holds 4 s (the 3 s are absent), the masked one 7 s
/// with silence over the masked 3 s; a path not being recorded is `-ERR`.
#[tokio::test]
async fn pause_leaves_the_time_out_and_mask_writes_silence_as_measured() {
    let facts = facts();
    assert!(facts.contains("The paused file held 4.02 s: the 3 s were absent."));
    assert!(facts.contains("The masked file held 7.04 s."));
    let mut r = recording("paused").await;
    let masked = r.path.with_file_name("masked.wav");
    let uuid = r.call.uuid.clone();
    r.c.api(&format!("uuid_record {uuid} start {} 60", masked.display()))
        .await;
    r.call.advance(Duration::from_secs(2));
    r.call.sync().await;
    let p = r.path.display().to_string();
    let m = masked.display().to_string();
    assert_eq!(
        r.c.api(&format!("uuid_record {uuid} pause {p}")).await,
        "+OK Success\n"
    );
    assert_eq!(
        r.c.api(&format!("uuid_record {uuid} mask {m}")).await,
        "+OK Success\n"
    );
    assert_eq!(
        r.c.api(&format!("uuid_record {uuid} pause /nowhere.wav"))
            .await,
        "-ERR Cannot pause recording session!\n"
    );
    r.call.advance(Duration::from_secs(3));
    r.call.sync().await;
    assert_eq!(
        r.c.api(&format!("uuid_record {uuid} resume {p}")).await,
        "+OK Success\n"
    );
    assert_eq!(
        r.c.api(&format!("uuid_record {uuid} unmask {m}")).await,
        "+OK Success\n"
    );
    r.call.advance(Duration::from_secs(2));
    r.call.sync().await;
    r.c.api(&format!("uuid_record {uuid} stop {p}")).await;
    r.c.api(&format!("uuid_record {uuid} stop {m}")).await;
    r.call.sync().await;
    let paused = wav_samples(&r.path);
    assert_eq!(
        paused.len(),
        4 * 8000,
        "7 s of call, 3 s paused: 4 s of audio"
    );
    assert!(
        rms(&paused, 0, 4000) > 1000.0,
        "no silence put in its place"
    );
    let masked = wav_samples(&masked);
    assert_eq!(masked.len(), 7 * 8000, "the masked file keeps its length");
    assert_eq!(rms(&masked, 2000, 5000), 0.0, "silence where it was masked");
    assert!(rms(&masked, 0, 2000) > 1000.0 && rms(&masked, 5000, 7000) > 1000.0);
    drop(r.sw);
}
