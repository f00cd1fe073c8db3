//! Object storage: `s3://bucket/prefix/` destinations delivered by the uploader to a real
//! S3-compatible server (s3s-fs, see `support::s3`), whole or in parts, through a relay that
//! refuses the first connections, with the same retry and durability rules as HTTP.

mod support;

use std::sync::Arc;
use std::time::Duration;

use callrec::net::retry::Policy;
use callrec::rules::{AudioFormat, Destination, UploadMethod};
use callrec::store::{DeliveryState, RecordingState, Store};
use callrec::uploader::http::{Http, HttpConfig};
use callrec::uploader::s3::S3Config;
use callrec::uploader::spool::{self, Item};
use callrec::uploader::worker::{self, WorkerConfig};
use callrec::uploader::{CallMeta, FinishedRecording};
use support::s3::{FaultRelay, ACCESS_KEY, SECRET_KEY};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

struct Rig {
    store: Store,
    dir: tempfile::TempDir,
    wake: Arc<tokio::sync::Notify>,
    stop: CancellationToken,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn rig(endpoint: &str, secret: &str) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let http = HttpConfig {
        min_timeout: Duration::from_secs(20),
        min_rate: 1 << 30,
        policy: Policy {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
            give_up_after: Duration::from_secs(3600),
        },
        s3: S3Config {
            endpoint: Some(endpoint.into()),
            region: Some("us-east-1".into()),
            access_key_id: Some(ACCESS_KEY.into()),
            secret_access_key: Some(secret.into()),
            multipart_threshold: 1024 * 1024,
            part_size: 5 * 1024 * 1024,
        },
        destination_policy: Default::default(),
    };
    let wake = Arc::new(tokio::sync::Notify::new());
    let stop = CancellationToken::new();
    tokio::spawn(worker::run(
        store.clone(),
        Arc::new(Http::new(http).unwrap()),
        WorkerConfig {
            concurrency: 4,
            keep_local_after_upload: true,
            notices: None,
        },
        wake.clone(),
        stop.clone(),
        TaskTracker::new(),
    ));
    Rig {
        store,
        dir,
        wake,
        stop,
    }
}

/// Spools a recording of `size` pseudo-random bytes for `url`; returns its bytes.
async fn spool_one(rig: &Rig, id: &str, url: &str, size: usize) -> Vec<u8> {
    let path = rig.dir.path().join(format!("{id}.wav"));
    let mut x: u32 = 7;
    let bytes: Vec<u8> = (0..size)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    std::fs::write(&path, &bytes).unwrap();
    let rec = FinishedRecording {
        call: CallMeta {
            call_id: format!("call-{id}"),
            account_id: Some("acc-1".into()),
            user_id: None,
            device_id: None,
            caller_id_name: "Alice".into(),
            caller_id_number: "+15551234567".into(),
            callee_number: "1000".into(),
            callee_name: String::new(),
            direction: "inbound".into(),
            interaction_id: None,
        },
        recording_id: id.into(),
        start_us: 1_795_459_961_000_000,
        duration_ms: 5010,
        format: AudioFormat::Wav,
        sample_rate: None,
        stereo: false,
        file_path: path.to_string_lossy().into_owned(),
        size: size as u64,
        destinations: vec![Destination {
            url: url.into(),
            method: UploadMethod::Put,
            by_account: false,
        }],
        keep_local: true,
        origin: "test".into(),
        completion_cause: "success".into(),
        sequence: 0,
        kind: Default::default(),
        may_grow_until_us: None,
        pauses: Vec::new(),
        encryption: None,
        encrypt_to: None,
    };
    spool::enqueue(&rig.store, &rec).await.unwrap();
    rig.wake.notify_one();
    bytes
}

async fn settled(rig: &Rig, id: &str) -> Item {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Some(i) = spool::get(&rig.store, id).await.unwrap() {
                if !matches!(i.state, RecordingState::Pending | RecordingState::Uploading) {
                    return i;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the delivery settles")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_files_go_whole_large_ones_in_parts_through_refused_connections() {
    let Some(server) = support::s3::start(&["recordings"]).await else {
        return;
    };
    let relay = FaultRelay::start(server.addr, 3).await;
    let rig = rig(&relay.endpoint, SECRET_KEY);
    let url = "s3://recordings/calls/2026/";
    let small = spool_one(&rig, "small", url, 40 * 1024).await;
    let large = spool_one(&rig, "large", url, 12 * 1024 * 1024 + 17).await;
    for (id, bytes) in [("small", &small), ("large", &large)] {
        let item = settled(&rig, id).await;
        assert_eq!(item.state, RecordingState::Delivered, "{id}: {item:?}");
        // The same name as the HTTP URL format gives it, under the prefix.
        let object = server.root.path().join(format!(
            "recordings/calls/2026/call_recording_call-{id}.wav"
        ));
        let stored = std::fs::read(&object).unwrap_or_else(|e| panic!("{object:?}: {e}"));
        assert!(stored == *bytes, "{id}: the object is the file");
        // No credentials in what is stored about the delivery.
        assert_eq!(item.deliveries[0].url, url);
    }
    assert_eq!(*relay.refused.lock().unwrap(), 3);
    let mut retried: u32 = 0;
    for id in ["small", "large"] {
        retried += spool::get(&rig.store, id)
            .await
            .unwrap()
            .unwrap()
            .deliveries[0]
            .attempts;
    }
    assert!(retried >= 3, "refused attempts were retried: {retried}");
    let seen = relay.requests.lock().unwrap().clone();
    let on = |prefix: &str| seen.iter().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(
        on("PUT /recordings/calls/2026/call_recording_call-small.wav HTTP/1.1"),
        1,
        "{seen:#?}"
    );
    assert_eq!(
        on("POST /recordings/calls/2026/call_recording_call-large.wav?uploads"),
        1,
        "{seen:#?}"
    );
    let parts = seen
        .iter()
        .filter(|l| {
            l.starts_with("PUT /recordings/calls/2026/call_recording_call-large.wav?partNumber=")
        })
        .count();
    assert_eq!(parts, 3, "12 MiB in 5 MiB parts: {seen:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_fail_the_delivery_at_once() {
    let Some(server) = support::s3::start(&["recordings"]).await else {
        return;
    };
    let rig = rig(&server.endpoint, "not-the-secret");
    spool_one(&rig, "r", "s3://recordings/x/", 1000).await;
    let item = settled(&rig, "r").await;
    assert_eq!(item.state, RecordingState::Failed, "{item:?}");
    let d = &item.deliveries[0];
    assert_eq!((d.state, d.attempts), (DeliveryState::Failed, 1), "{d:?}");
    let error = d.last_error.clone().unwrap_or_default();
    assert!(!error.contains("not-the-secret"), "{error}");
}

#[test]
fn object_storage_urls_never_carry_credentials() {
    use callrec::rules::model::Url;
    assert!(Url::parse("s3://recordings/calls/").is_ok());
    let e = Url::parse("s3://AKIA:secret@recordings/calls/").unwrap_err();
    assert!(e.contains("credentials"), "{e}");
    assert!(Url::parse("s3://Bad_Bucket/").is_err());
}
