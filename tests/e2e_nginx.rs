//! End to end against a real nginx with WebDAV PUT (Debian's package; `scripts/test` installs
//! it), and crash safety of the real binary (SIGKILL during an upload).

mod support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use support::process::{free_port, Killed};

use callrec::rules::{AudioFormat, Destination, UploadMethod};
use callrec::store::Store;
use callrec::uploader::http::{Http, HttpConfig};
use callrec::uploader::spool;
use callrec::uploader::worker::{self, WorkerConfig};
use callrec::uploader::FinishedRecording;
use support::receiver::{Act, Receiver};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

fn nginx(root: &std::path::Path) -> (Killed, u16) {
    support::nginx::start(root)
}

#[tokio::test]
async fn bytes_arrive_intact_at_nginx_webdav() {
    let tmp = tempfile::tempdir().unwrap();
    let (_nginx, port) = nginx(tmp.path());
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let store = Store::open(&data).unwrap();
    let file = data.join("r-1.mp3");
    let bytes: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(&file, &bytes).unwrap();
    let rec = FinishedRecording {
        call: callrec::uploader::CallMeta {
            call_id: "9560fcb1-a15d-411a-a88c-6dbd57725d92".into(),
            account_id: Some("acc-1".into()),
            user_id: None,
            device_id: None,
            caller_id_name: "Alice".into(),
            caller_id_number: "15551234567".into(),
            callee_number: "1000".into(),
            callee_name: String::new(),
            direction: "inbound".into(),
            interaction_id: None,
        },
        recording_id: "r-1".into(),
        start_us: 0,
        duration_ms: 1,
        format: AudioFormat::Mp3,
        sample_rate: None,
        stereo: false,
        file_path: file.to_string_lossy().into_owned(),
        size: bytes.len() as u64,
        destinations: vec![Destination {
            url: format!("http://127.0.0.1:{port}/calls/acc-1/"),
            method: UploadMethod::Put,
            by_account: false,
        }],
        keep_local: false,
        origin: "test".into(),
        completion_cause: "success-silence".into(),
        sequence: 0,
        kind: Default::default(),
        may_grow_until_us: None,
        pauses: Vec::new(),
        encryption: None,
        encrypt_to: None,
    };
    spool::enqueue(&store, &rec).await.unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(worker::run(
        store.clone(),
        Arc::new(Http::new(HttpConfig::default()).unwrap()),
        WorkerConfig {
            concurrency: 2,
            keep_local_after_upload: false,
            notices: None,
        },
        Arc::new(tokio::sync::Notify::new()),
        stop.clone(),
        TaskTracker::new(),
    ));
    let item = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let i = spool::get(&store, "r-1").await.unwrap().unwrap();
            if i.state == "delivered" || i.state == "failed" {
                return i;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    stop.cancel();
    assert_eq!(item.state, "delivered", "{:?}", item.deliveries);
    assert_eq!(item.deliveries[0].last_status, Some(201));
    let stored = tmp
        .path()
        .join("www/calls/acc-1/call_recording_9560fcb1-a15d-411a-a88c-6dbd57725d92.mp3");
    assert_eq!(std::fs::read(stored).unwrap(), bytes);
    assert!(
        support::gone(&file).await,
        "the local copy goes once delivered"
    );
}

fn callrec() -> Command {
    Command::new(env!("CARGO_BIN_EXE_callrec"))
}

#[tokio::test]
async fn sigkill_during_an_upload_still_delivers() {
    // First attempt: the receiver takes the body and never answers; callrec is killed then.
    let rx = Receiver::start(vec![Act::Silence]).await;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let rec_dir = data.join("recordings/acc-1/2026/11/23");
    std::fs::create_dir_all(&rec_dir).unwrap();
    let file = rec_dir.join("rec-9.wav");
    std::fs::write(&file, vec![7u8; 100_000]).unwrap();
    let out = callrec()
        .args(["recordings", "adopt"])
        .arg(&file)
        .args(["--url", &format!("{}/r/", rx.base), "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = tmp.path().join("callrec.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{}\"\napi_listen = \"127.0.0.1:{}\"\ndata_dir = \"{}\"\nupload_retry_base_ms = 50\n",
            free_port(),
            free_port(),
            data.display()
        ),
    )
    .unwrap();
    let serve = || {
        callrec()
            .args(["serve", "--config"])
            .arg(&config)
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut first = serve();
    tokio::time::timeout(Duration::from_secs(30), async {
        while rx.requests().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the upload started");
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let store = Store::open(&data).unwrap();
    assert_eq!(
        spool::get(&store, "rec-9").await.unwrap().unwrap().state,
        "uploading"
    );
    drop(store);
    let _second = Killed(serve());
    let state = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let out = callrec()
                .args(["recordings", "show", "rec-9", "--data-dir"])
                .arg(&data)
                .output()
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            if v["state"] == "delivered" {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("delivered after the restart");
    assert_eq!(
        state["deliveries"][0]["attempts"], 1,
        "the killed attempt was never settled"
    );
    let got = rx.requests();
    assert!(got.len() >= 2);
    assert!(got.last().unwrap().complete);
    assert_eq!(got.last().unwrap().body, vec![7u8; 100_000]);
}
