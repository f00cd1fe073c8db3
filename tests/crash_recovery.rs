//! Crash safety: `callrec serve` killed with SIGKILL in the middle of a recorded call and started
//! again. FreeSWITCH (the simulator) goes on recording the call to its end; the journal row the
//! session wrote before `uuid_record` lets the new process find the recording, watch its file
//! until it stops growing, and keep it with the metadata the session would have given it.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::process::{free_port, Killed};

use callrec::store::{RecordingState, Store};
use callrec::uploader::spool;
use callrec_sim::CallSpec;

/// A data directory and a config recording every call as WAV (`record_call` lines appended);
/// returns (data dir, config file, outbound port).
fn setup(tmp: &tempfile::TempDir, record_call: &str) -> (PathBuf, PathBuf, u16) {
    setup_with(tmp, "freeswitch_esl = \"\"\n", record_call)
}

/// [`setup`] with top-level keys (`top`) too.
fn setup_with(tmp: &tempfile::TempDir, top: &str, record_call: &str) -> (PathBuf, PathBuf, u16) {
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let listen = free_port();
    let config = tmp.path().join("callrec.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{listen}\"\napi_listen = \"127.0.0.1:{}\"\ndata_dir = \"{}\"\n\
             disk_poll_ms = 50\n{top}[record_call]\nformat = \"wav\"\n{record_call}",
            free_port(),
            data.display()
        ),
    )
    .unwrap();
    (data, config, listen)
}

async fn serve(config: &std::path::Path, listen: u16) -> Killed {
    serve_logging(config, listen, None).await
}

/// [`serve`], its log appended to `log` when given.
async fn serve_logging(
    config: &std::path::Path,
    listen: u16,
    log: Option<&std::path::Path>,
) -> Killed {
    let stderr = match log {
        Some(p) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap(),
        ),
        None => Stdio::null(),
    };
    let child = Command::new(env!("CARGO_BIN_EXE_callrec"))
        .args(["serve", "--config"])
        .arg(config)
        .stderr(stderr)
        .spawn()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        while tokio::net::TcpStream::connect(("127.0.0.1", listen))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("callrec listens");
    Killed(child)
}

/// The state of every recording of `call_id`, read from the store the process writes.
async fn recordings_of(data: &std::path::Path, call_id: &str) -> Vec<spool::Item> {
    let store = Store::open(data).unwrap();
    spool::list(
        &store,
        &spool::Filter {
            call_id: Some(call_id.into()),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn sigkill_mid_call_then_restart_keeps_the_recording() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, config, listen) = setup(&tmp, "record_min_sec = 2\n");
    let mut first = serve(&config, listen).await;
    let call = callrec_sim::dial(
        format!("127.0.0.1:{listen}").parse().unwrap(),
        CallSpec::new("15550001111", "1000").var("callrec_account_id", "acc-1"),
    )
    .await
    .unwrap();
    call.wait_for_command("sendmsg").await;
    call.answer();
    call.advance(Duration::from_secs(3));
    // The journal row exists before FreeSWITCH records: a crash now leaves it.
    let journaled = recordings_of(&data, &call.uuid).await;
    assert_eq!(journaled.len(), 1);
    assert_eq!(journaled[0].state, RecordingState::Recording);
    first.0.kill().unwrap(); // SIGKILL, 3 s into the call
    first.0.wait().unwrap();
    // FreeSWITCH records on to the end of the call without its controller.
    call.advance(Duration::from_secs(5));
    call.hangup("NORMAL_CLEARING");
    let report = call.closed().await;
    assert_eq!(report.recordings.len(), 1, "FreeSWITCH wrote the file");
    let _second = serve(&config, listen).await;
    let kept = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let r = recordings_of(&data, &call.uuid).await;
            if r.len() == 1 && r[0].state != RecordingState::Recording {
                return r.into_iter().next().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the recording is finished after the restart");
    assert_eq!(kept.state, RecordingState::Stored, "kept locally (no url)");
    assert_eq!(
        kept.meta.duration_ms, 8000,
        "the whole call, as FreeSWITCH recorded it"
    );
    assert_eq!(kept.meta.call.account_id.as_deref(), Some("acc-1"));
    assert_eq!(kept.meta.origin, "config record_call: all calls");
    assert!(kept
        .meta
        .completion_cause
        .starts_with("re-adopted after restart"));
    assert!(std::path::Path::new(&kept.meta.file_path).exists());
}

#[tokio::test]
async fn a_journaled_recording_too_short_or_missing_is_discarded_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, config, listen) = setup(&tmp, "record_min_sec = 10\ntime_limit = 5\n");
    let mut first = serve(&config, listen).await;
    let call = callrec_sim::dial(
        format!("127.0.0.1:{listen}").parse().unwrap(),
        CallSpec::new("15550001111", "1000"),
    )
    .await
    .unwrap();
    call.wait_for_command("sendmsg").await;
    call.answer();
    assert_eq!(
        recordings_of(&data, &call.uuid).await[0].state,
        RecordingState::Recording
    );
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    call.advance(Duration::from_secs(3));
    call.hangup("NORMAL_CLEARING");
    call.closed().await;
    assert_eq!(
        walk(&data.join("recordings")).len(),
        1,
        "FreeSWITCH wrote it"
    );
    let _second = serve(&config, listen).await;
    tokio::time::timeout(Duration::from_secs(30), async {
        while !recordings_of(&data, &call.uuid).await.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the 3 s recording (record_min_sec 10) is discarded and leaves no row");
    let wavs = walk(&data.join("recordings"));
    assert!(wavs.is_empty(), "the short file is deleted: {wavs:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "wav") {
            out.push(p);
        }
    }
    out
}

/// Waits until the call's recording left the `recording` state; returns it.
async fn finished(data: &std::path::Path, call_id: &str) -> spool::Item {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let r = recordings_of(data, call_id).await;
            if r.len() == 1 && r[0].state != RecordingState::Recording {
                return r.into_iter().next().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the recording is finished after the restart")
}

/// The log once it has a line containing `line` (callrec writes it just after the store's row
/// changes), or as it is after 30 s.
async fn log_once(log: &std::path::Path, line: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(line) || tokio::time::Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A switch with its event socket, and callrec configured to follow calls over it.
async fn switch_and_config(
    tmp: &tempfile::TempDir,
    password: &str,
    extra: &str,
) -> (callrec_sim::Switch, PathBuf, PathBuf, u16) {
    let sw = callrec_sim::Switch::new("ClueCon");
    let esl = sw.listen_inbound().await.unwrap();
    let (data, config, listen) = setup_with(
        tmp,
        &format!(
            "freeswitch_esl = \"{esl}\"\nfreeswitch_password = \"{password}\"\nesl_reconnect_max_ms = 200\n{extra}"
        ),
        "record_min_sec = 2\n",
    );
    (sw, data, config, listen)
}

/// Places a recorded call on the switch, answers it, records 3 s, and SIGKILLs callrec.
async fn call_then_kill(
    sw: &callrec_sim::Switch,
    data: &std::path::Path,
    config: &std::path::Path,
    listen: u16,
    log: Option<&std::path::Path>,
) -> callrec_sim::CallHandle {
    let mut first = serve_logging(config, listen, log).await;
    let call = sw
        .dial(
            format!("127.0.0.1:{listen}").parse().unwrap(),
            CallSpec::new("15550001111", "1000").var("callrec_account_id", "acc-1"),
        )
        .await
        .unwrap();
    call.wait_for_command("sendmsg").await;
    call.answer();
    call.wait_for_command("api uuid_record").await;
    call.advance(Duration::from_secs(3));
    assert_eq!(
        recordings_of(data, &call.uuid).await[0].state,
        RecordingState::Recording
    );
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    call
}

/// The case with the event socket: the new process follows the still-running call by
/// UUID and finishes the recording on FreeSWITCH's own RECORD_STOP, with its record_ms.
#[tokio::test]
async fn sigkill_mid_call_then_restart_follows_the_call_to_its_record_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let (sw, data, config, listen) = switch_and_config(&tmp, "ClueCon", "").await;
    let call = call_then_kill(&sw, &data, &config, listen, None).await;
    let _second = serve(&config, listen).await;
    // The new process asks FreeSWITCH about the journaled call and follows it.
    sw.wait_for_inbound_commands(&format!("filter Unique-ID {}", call.uuid), 1)
        .await;
    sw.wait_for_inbound_commands(&format!("api uuid_exists {}", call.uuid), 1)
        .await;
    call.advance(Duration::from_secs(5));
    call.hangup("NORMAL_CLEARING");
    let kept = finished(&data, &call.uuid).await;
    assert_eq!(kept.state, RecordingState::Stored, "kept locally (no url)");
    assert_eq!(
        kept.meta.duration_ms, 8000,
        "FreeSWITCH's record_ms of the whole call"
    );
    assert_eq!(
        kept.meta.completion_cause, "re-adopted after restart: success-silence",
        "from the RECORD_STOP"
    );
    assert_eq!(kept.meta.call.account_id.as_deref(), Some("acc-1"));
    assert_eq!(kept.meta.origin, "config record_call: all calls");
    let stats = sw.inbound_stats();
    assert!(
        stats
            .commands
            .iter()
            .any(|c| c
                == "event json CHANNEL_ANSWER CHANNEL_BRIDGE CHANNEL_HANGUP_COMPLETE RECORD_START RECORD_STOP"),
        "{:?}",
        stats.commands
    );
    // Both processes' links together: this call's CHANNEL_ANSWER, RECORD_START, RECORD_STOP,
    // CHANNEL_HANGUP_COMPLETE, nothing else.
    assert!(
        stats.events_sent <= 4,
        "only the followed call's events were serialised: {}",
        stats.events_sent
    );
}

/// The call ended while callrec was down: `uuid_exists` says false, the file is final and kept
/// at once, measured from disk.
#[tokio::test]
async fn a_call_that_ended_while_callrec_was_down_is_finished_from_its_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (sw, data, config, listen) = switch_and_config(&tmp, "ClueCon", "").await;
    let call = call_then_kill(&sw, &data, &config, listen, None).await;
    call.advance(Duration::from_secs(4));
    call.hangup("NORMAL_CLEARING");
    call.closed().await;
    let _second = serve(&config, listen).await;
    let kept = finished(&data, &call.uuid).await;
    assert_eq!(kept.state, RecordingState::Stored);
    assert_eq!(kept.meta.duration_ms, 7000);
    assert!(
        kept.meta
            .completion_cause
            .contains("the call had ended while callrec was down"),
        "{}",
        kept.meta.completion_cause
    );
}

/// FreeSWITCH restarts while the new callrec follows the call: the link sees a new Core-UUID,
/// the call is gone, the file (written up to the crash) is kept.
#[tokio::test]
async fn freeswitch_restarting_while_followed_finishes_the_recording_from_its_file() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("callrec.log");
    let (sw, data, config, listen) = switch_and_config(&tmp, "ClueCon", "").await;
    let call = call_then_kill(&sw, &data, &config, listen, None).await;
    let _second = serve_logging(&config, listen, Some(&log)).await;
    sw.wait_for_inbound_commands(&format!("api uuid_exists {}", call.uuid), 1)
        .await;
    call.advance(Duration::from_secs(2));
    call.sync().await;
    sw.restart().await.unwrap();
    let kept = finished(&data, &call.uuid).await;
    assert_eq!(kept.state, RecordingState::Stored);
    // 5 s recorded; one 64 KiB burst (4.096 s at 8 kHz) had reached the disk, the rest died
    // in FreeSWITCH's write buffer.
    assert_eq!(
        kept.meta.duration_ms, 4096,
        "what FreeSWITCH wrote before it died"
    );
    assert!(
        kept.meta.completion_cause.contains("FreeSWITCH restarted"),
        "{}",
        kept.meta.completion_cause
    );
    let text = log_once(&log, "recording re-adopted after restart").await;
    assert!(
        text.contains("FreeSWITCH restarted (new Core-UUID)"),
        "{text}"
    );
    assert!(
        text.contains("recording re-adopted after restart"),
        "{text}"
    );
}

/// A wrong password: the link never comes up, the log says why (without the password), and
/// after `esl_down_grace_ms` the recording is finished by watching its file.
#[tokio::test]
async fn a_refused_password_falls_back_to_watching_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("callrec.log");
    let (sw, data, config, listen) =
        switch_and_config(&tmp, "Wr0ngPassw0rd", "esl_down_grace_ms = 300\n").await;
    let call = call_then_kill(&sw, &data, &config, listen, Some(&log)).await;
    let _second = serve_logging(&config, listen, Some(&log)).await;
    call.advance(Duration::from_secs(3));
    call.hangup("NORMAL_CLEARING");
    let kept = finished(&data, &call.uuid).await;
    assert_eq!(kept.state, RecordingState::Stored);
    assert_eq!(kept.meta.duration_ms, 6000);
    let text = log_once(&log, "recording re-adopted after restart").await;
    assert!(text.contains("FreeSWITCH refused the password"), "{text}");
    assert!(text.contains("the event socket link stayed down"), "{text}");
    assert!(
        !text.contains("Wr0ngPassw0rd"),
        "the password never reaches the log"
    );
    assert!(sw.inbound_stats().auth_failures >= 1);
}

/// Mid-call control across a restart (README "Pausing a recording"): a recording paused through
/// the API, then callrec SIGKILLed. The pause stays in force (FreeSWITCH keeps masking) and
/// listed (the journal row has it); the new process follows the call and the recording is
/// resumed through its API, over the event-socket link; the kept recording lists the pause with
/// its end.
#[tokio::test]
async fn a_pause_in_force_at_a_restart_stays_listed_and_the_readopted_recording_is_resumed() {
    let tmp = tempfile::tempdir().unwrap();
    let (sw, data, config, listen) = switch_and_config(&tmp, "ClueCon", "").await;
    // The API's port, as the config names it.
    let api_port: u16 = std::fs::read_to_string(&config)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("api_listen = \"127.0.0.1:"))
        .and_then(|p| p.trim_end_matches('"').parse().ok())
        .expect("api_listen in the config");
    let out = Command::new(env!("CARGO_BIN_EXE_callrec"))
        .args(["token", "create", "--account", "acc-1", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let patch = async |id: &str, status: &str| -> (reqwest::StatusCode, serde_json::Value) {
        let url = format!("http://127.0.0.1:{api_port}/v2/accounts/acc-1/recordings/{id}");
        for _ in 0..200 {
            if let Ok(r) = reqwest::Client::new()
                .patch(&url)
                .header("X-Auth-Token", &token)
                .json(&serde_json::json!({"data": {"status": status}}))
                .send()
                .await
            {
                let s = r.status();
                return (s, r.json().await.unwrap_or_default());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the API did not answer");
    };
    let mut first = serve_logging(&config, listen, None).await;
    let call = sw
        .dial(
            format!("127.0.0.1:{listen}").parse().unwrap(),
            CallSpec::new("15550001111", "1000").var("callrec_account_id", "acc-1"),
        )
        .await
        .unwrap();
    call.answer();
    call.wait_for_command("api uuid_record").await;
    call.advance(Duration::from_secs(2));
    call.sync().await;
    let id = recordings_of(&data, &call.uuid).await[0]
        .meta
        .recording_id
        .clone();
    let (s, v) = patch(&id, "paused").await;
    assert_eq!(s, reqwest::StatusCode::OK, "{v}");
    call.advance(Duration::from_secs(2));
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    // Listed while nothing follows it: the journal row has the pause, in force.
    let row = recordings_of(&data, &call.uuid).await;
    assert_eq!(row[0].meta.pauses.len(), 1);
    assert!(row[0].meta.pauses[0].end_ms.is_none());
    let _second = serve(&config, listen).await;
    sw.wait_for_inbound_commands(&format!("filter Unique-ID {}", call.uuid), 1)
        .await;
    let (s, v) = patch(&id, "in-progress").await;
    assert_eq!(s, reqwest::StatusCode::OK, "{v}");
    assert_eq!(v["data"]["status"], "in-progress");
    assert!(
        call.report().commands.iter().any(|c| c.line
            == format!(
                "api uuid_record {} unmask {}",
                call.uuid, row[0].meta.file_path
            )),
        "the unmask went over the link"
    );
    call.advance(Duration::from_secs(3));
    call.hangup("NORMAL_CLEARING");
    let kept = finished(&data, &call.uuid).await;
    assert_eq!(kept.meta.duration_ms, 7000, "silence kept the length");
    assert_eq!(kept.meta.pauses.len(), 1);
    assert!(kept.meta.pauses[0].end_ms.is_some(), "the pause ended");
}
