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
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let listen = free_port();
    let config = tmp.path().join("callrec.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{listen}\"\napi_listen = \"127.0.0.1:{}\"\ndata_dir = \"{}\"\n\
             disk_poll_ms = 50\n[record_call]\nformat = \"wav\"\n{record_call}",
            free_port(),
            data.display()
        ),
    )
    .unwrap();
    (data, config, listen)
}

async fn serve(config: &std::path::Path, listen: u16) -> Killed {
    let child = Command::new(env!("CARGO_BIN_EXE_callrec"))
        .args(["serve", "--config"])
        .arg(config)
        .stderr(Stdio::null())
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
fn recordings_of(data: &std::path::Path, call_id: &str) -> Vec<spool::Item> {
    let store = Store::open(data).unwrap();
    spool::list(
        &store,
        &spool::Filter {
            call_id: Some(call_id.into()),
            ..Default::default()
        },
    )
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
    let journaled = recordings_of(&data, &call.uuid);
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
            let r = recordings_of(&data, &call.uuid);
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
        recordings_of(&data, &call.uuid)[0].state,
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
        while !recordings_of(&data, &call.uuid).is_empty() {
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
