//! Delivery: the spool and the uploader against an in-process receiver with injected faults,
//! and against a real nginx with WebDAV PUT.

mod support;

use std::sync::Arc;
use std::time::Duration;

use callrec::net::retry::Policy;
use callrec::rules::{AudioFormat, Destination, UploadMethod};
use callrec::store::Store;
use callrec::uploader::http::{Http, HttpConfig};
use callrec::uploader::spool::{self, Item};
use callrec::uploader::worker::{self, WorkerConfig};
use callrec::uploader::FinishedRecording;
use support::receiver::{Act, Receiver};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

struct Rig {
    store: Store,
    dir: tempfile::TempDir,
    wake: Arc<tokio::sync::Notify>,
    stop: CancellationToken,
}

fn fast_http() -> HttpConfig {
    HttpConfig {
        min_timeout: Duration::from_millis(500),
        min_rate: 1 << 30,
        policy: Policy {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
            give_up_after: Duration::from_secs(3600),
        },
        ..HttpConfig::default()
    }
}

async fn rig_with(http: HttpConfig, keep_local_after_upload: bool) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let wake = Arc::new(tokio::sync::Notify::new());
    let stop = CancellationToken::new();
    tokio::spawn(worker::run(
        store.clone(),
        Arc::new(Http::new(http).unwrap()),
        WorkerConfig {
            concurrency: 4,
            keep_local_after_upload,
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

async fn rig() -> Rig {
    rig_with(fast_http(), false).await
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A recording file of `size` pseudo-random bytes, queued for `urls`.
fn recording(rig: &Rig, id: &str, urls: Vec<String>, size: usize) -> FinishedRecording {
    let path = rig.dir.path().join(format!("{id}.wav"));
    let mut x: u32 = 12345;
    let bytes: Vec<u8> = (0..size)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    std::fs::write(&path, &bytes).unwrap();
    FinishedRecording {
        call: callrec::uploader::CallMeta {
            call_id: format!("call-{id}"),
            account_id: Some("acc-1".into()),
            user_id: Some("user-1".into()),
            device_id: None,
            caller_id_name: "Alice \"&\" Co".into(),
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
        destinations: urls
            .into_iter()
            .map(|url| Destination {
                url,
                method: UploadMethod::Put,
                by_account: false,
            })
            .collect(),
        keep_local: false,
        origin: "test".into(),
        completion_cause: "success-silence".into(),
        sequence: 0,
        kind: Default::default(),
        may_grow_until_us: None,
        pauses: Vec::new(),
        encryption: None,
        encrypt_to: None,
    }
}

async fn enqueue(rig: &Rig, rec: &FinishedRecording) {
    spool::enqueue(&rig.store, rec).await.unwrap();
    rig.wake.notify_one();
}

/// Waits until the recording reaches a final state.
async fn settled(rig: &Rig, id: &str) -> Item {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let item = spool::get(&rig.store, id).await.unwrap().unwrap();
            if matches!(item.state.as_str(), "delivered" | "failed" | "stored") {
                return item;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the recording settles")
}

#[tokio::test]
async fn server_error_then_success_delivers_intact_bytes_at_the_kazoo_path() {
    let rx = Receiver::start(vec![Act::Respond(500, vec![], "oops".into())]).await;
    let rig = rig().await;
    let rec = recording(&rig, "r1", vec![format!("{}/rec/", rx.base)], 200_000);
    let original = std::fs::read(&rec.file_path).unwrap();
    enqueue(&rig, &rec).await;
    let item = settled(&rig, "r1").await;
    assert_eq!(item.state, "delivered");
    assert_eq!(item.deliveries[0].attempts, 2);
    let got = rx.requests();
    assert_eq!(got.len(), 2);
    let last = &got[1];
    assert_eq!(last.method, "PUT");
    assert!(last.target.starts_with("/rec/call_recording_call-r1.wav?from=%2B15551234567&to=1000&caller_id_name=Alice%20%22%26%22%20Co&"), "{}", last.target);
    assert!(last.target.ends_with("&recording_id=r1"));
    assert_eq!(last.header("content-type"), Some("audio/wav"));
    assert_eq!(last.header("content-length"), Some("200000"));
    assert_eq!(last.body, original, "bytes arrive intact");
    assert!(
        support::gone(std::path::Path::new(&rec.file_path)).await,
        "delivered file removed"
    );
}

#[tokio::test]
async fn too_many_requests_waits_for_retry_after() {
    let rx = Receiver::start(vec![Act::Respond(
        429,
        vec![("Retry-After".into(), "1".into())],
        String::new(),
    )])
    .await;
    let rig = rig().await;
    let rec = recording(&rig, "r2", vec![format!("{}/r", rx.base)], 1000);
    enqueue(&rig, &rec).await;
    // After the 429 the next attempt is scheduled no earlier than Retry-After.
    let scheduled = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let item = spool::get(&rig.store, "r2").await.unwrap().unwrap();
            let d = &item.deliveries[0];
            if d.attempts == 1 {
                return d.next_attempt_us;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    let first = rx.requests()[0]
        .at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    assert!(
        scheduled >= first + 1_000_000,
        "scheduled {scheduled} vs 429 at {first}"
    );
    let item = settled(&rig, "r2").await;
    assert_eq!(item.state, "delivered");
    assert_eq!(rx.requests().len(), 2);
}

#[tokio::test]
async fn connection_reset_mid_body_is_retried() {
    let rx = Receiver::start(vec![Act::ResetMidBody]).await;
    let rig = rig().await;
    let rec = recording(&rig, "r3", vec![format!("{}/r", rx.base)], 2_000_000);
    let original = std::fs::read(&rec.file_path).unwrap();
    enqueue(&rig, &rec).await;
    let item = settled(&rig, "r3").await;
    assert_eq!(item.state, "delivered");
    let got = rx.requests();
    assert!(!got[0].complete);
    assert_eq!(got.last().unwrap().body, original);
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out_and_is_retried() {
    let rx = Receiver::start(vec![Act::Silence]).await;
    let rig = rig().await;
    let rec = recording(&rig, "r4", vec![format!("{}/r", rx.base)], 1000);
    enqueue(&rig, &rec).await;
    let item = settled(&rig, "r4").await;
    assert_eq!(item.state, "delivered");
    assert_eq!(rx.requests().len(), 2);
}

#[tokio::test]
async fn not_found_fails_at_once_and_keeps_the_file() {
    let rx = Receiver::start(vec![Act::Respond(404, vec![], "no such bucket\n".into())]).await;
    let rig = rig().await;
    let rec = recording(&rig, "r5", vec![format!("{}/r", rx.base)], 1000);
    enqueue(&rig, &rec).await;
    let item = settled(&rig, "r5").await;
    assert_eq!(item.state, "failed");
    let d = &item.deliveries[0];
    assert_eq!(d.attempts, 1);
    assert_eq!(d.last_status, Some(404));
    assert_eq!(d.last_error.as_deref(), Some("HTTP 404: no such bucket"));
    assert!(std::path::Path::new(&rec.file_path).exists());
    // An operator retries it once the receiver is fixed.
    assert_eq!(rig.store.retry_failed(Some("r5")).await.unwrap(), 1);
    rig.wake.notify_one();
    assert_eq!(settled(&rig, "r5").await.state, "delivered");
}

#[tokio::test]
async fn receiver_down_for_a_while_then_up() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let rig = rig().await;
    let rec = recording(&rig, "r6", vec![format!("http://127.0.0.1:{port}/r")], 1000);
    enqueue(&rig, &rec).await;
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let item = spool::get(&rig.store, "r6").await.unwrap().unwrap();
            if item.deliveries[0].attempts >= 3 {
                assert_eq!(item.state, "pending");
                assert!(item.deliveries[0]
                    .last_error
                    .as_deref()
                    .unwrap()
                    .contains("connection"));
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    let rx = Receiver::start_on(&format!("127.0.0.1:{port}"), vec![]).await;
    let item = settled(&rig, "r6").await;
    assert_eq!(item.state, "delivered");
    assert_eq!(rx.requests().len(), 1);
}

#[tokio::test]
async fn post_basic_auth_and_redirects() {
    let rx = Receiver::start(vec![Act::Respond(
        307,
        vec![("Location".into(), "/moved/here".into())],
        String::new(),
    )])
    .await;
    let rig = rig_with(fast_http(), true).await;
    let base = rx.base.replace("http://", "http://bob:s3cret@");
    let mut rec = recording(&rig, "r7", vec![format!("{base}/up?x=")], 5000);
    rec.destinations[0].method = UploadMethod::Post;
    let original = std::fs::read(&rec.file_path).unwrap();
    enqueue(&rig, &rec).await;
    let item = settled(&rig, "r7").await;
    assert_eq!(item.state, "delivered");
    let got = rx.requests();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].method, "POST");
    assert!(got[0]
        .target
        .starts_with("/up?x=call_recording_call-r7.wav&from="));
    assert_eq!(got[1].method, "POST");
    assert_eq!(got[1].target, "/moved/here");
    assert_eq!(got[1].body, original);
    // "bob:s3cret" in Basic auth, never in what is shown.
    assert_eq!(
        got[0].header("authorization"),
        Some("Basic Ym9iOnMzY3JldA==")
    );
    let shown = serde_json::to_string(&item).unwrap();
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("bob:REDACTED@"));
    assert!(
        std::path::Path::new(&rec.file_path).exists(),
        "keep_local_after_upload"
    );
}

#[tokio::test]
async fn giving_up_after_the_configured_age() {
    let rx = Receiver::start(vec![Act::Respond(503, vec![], String::new())]).await;
    let mut http = fast_http();
    http.policy.give_up_after = Duration::ZERO;
    let rig = rig_with(http, false).await;
    let rec = recording(&rig, "r8", vec![format!("{}/r", rx.base)], 100);
    enqueue(&rig, &rec).await;
    let item = settled(&rig, "r8").await;
    assert_eq!(item.state, "failed");
    assert!(item.deliveries[0]
        .last_error
        .as_deref()
        .unwrap()
        .starts_with("gave up after 1 attempts"));
}

#[tokio::test]
async fn two_urls_one_recording_and_local_only_is_stored() {
    let a = Receiver::start(vec![]).await;
    let b = Receiver::start(vec![Act::Respond(500, vec![], String::new())]).await;
    let rig = rig().await;
    let rec = recording(
        &rig,
        "r9",
        vec![format!("{}/a", a.base), format!("{}/b", b.base)],
        100,
    );
    enqueue(&rig, &rec).await;
    let item = settled(&rig, "r9").await;
    assert_eq!(item.state, "delivered");
    assert_eq!(item.deliveries.len(), 2);
    let local = recording(&rig, "r10", vec![], 100);
    assert_eq!(spool::enqueue(&rig.store, &local).await.unwrap(), "stored");
    assert!(std::path::Path::new(&local.file_path).exists());
}

#[tokio::test]
async fn one_recording_to_one_url_by_put_and_by_post() {
    let rx = Receiver::start(vec![]).await;
    let rig = rig().await;
    let mut rec = recording(&rig, "r12", vec![format!("{}/both/", rx.base)], 300);
    let post = Destination {
        method: UploadMethod::Post,
        ..rec.destinations[0].clone()
    };
    rec.destinations.push(post);
    enqueue(&rig, &rec).await;
    let item = settled(&rig, "r12").await;
    assert_eq!(item.state, "delivered");
    assert_eq!(item.deliveries.len(), 2);
    let mut methods: Vec<String> = rx.requests().into_iter().map(|r| r.method).collect();
    methods.sort();
    assert_eq!(methods, ["POST", "PUT"]);
}

#[tokio::test]
async fn interrupted_uploads_go_back_to_pending() {
    let rig = rig_with(fast_http(), false).await;
    rig.stop.cancel(); // no worker: claim by hand, as a crash would leave it
    let rec = recording(&rig, "r11", vec!["http://127.0.0.1:9/r".into()], 10);
    spool::enqueue(&rig.store, &rec).await.unwrap();
    let claimed = spool::claim_due(&rig.store, spool::now_us(), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        spool::get(&rig.store, "r11").await.unwrap().unwrap().state,
        "uploading"
    );
    assert_eq!(rig.store.recover_deliveries().await.unwrap(), 1);
    assert_eq!(
        spool::get(&rig.store, "r11").await.unwrap().unwrap().state,
        "pending"
    );
}

#[tokio::test]
async fn files_unknown_to_the_spool_are_reported() {
    let rig = rig().await;
    let known = recording(&rig, "known", vec![], 10);
    spool::enqueue(&rig.store, &known).await.unwrap();
    let orphan = rig.dir.path().join("sub/orphan.mp3");
    std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    std::fs::write(&orphan, b"x").unwrap();
    std::fs::write(rig.dir.path().join("notes.txt"), b"x").unwrap();
    let found = callrec::uploader::orphans(&rig.store, rig.dir.path())
        .await
        .unwrap();
    assert_eq!(found, vec![orphan]);
}

/// The destination policy when an upload connects: a URL an account token wrote is held to the
/// account row (no address of this host, whether written as one or reached through a name),
/// redirects included; the same URL written by an admin is delivered.
#[tokio::test]
async fn an_accounts_url_never_reaches_this_host_when_it_connects() {
    let r = rig().await;
    let receiver = Receiver::start(vec![]).await;
    let port = receiver.base.rsplit(':').next().unwrap().to_string();
    let by_account = |rec: &mut FinishedRecording| {
        for d in &mut rec.destinations {
            d.by_account = true;
        }
    };
    // Written as an address: refused at once, never retried.
    let mut literal = recording(&r, "lit", vec![format!("{}/up/", receiver.base)], 100);
    by_account(&mut literal);
    enqueue(&r, &literal).await;
    let item = settled(&r, "lit").await;
    assert_eq!(item.state, "failed");
    let err = item.deliveries[0].last_error.clone().unwrap_or_default();
    assert!(
        err.contains("destination_policy") && err.contains("127.0.0.1"),
        "{err}"
    );
    // Through a name that resolves to this host (as a rebinding name would, after the save).
    let mut named = recording(
        &r,
        "named",
        vec![format!("http://localhost:{port}/up/")],
        100,
    );
    by_account(&mut named);
    enqueue(&r, &named).await;
    let err = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let item = spool::get(&r.store, "named").await.unwrap().unwrap();
            if let Some(e) = item.deliveries[0].last_error.clone() {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert!(err.contains("destination_policy"), "{err}");
    // The same URL an admin wrote goes through.
    let admin = recording(
        &r,
        "admin",
        vec![format!("http://localhost:{port}/up/")],
        100,
    );
    enqueue(&r, &admin).await;
    assert_eq!(settled(&r, "admin").await.state, "delivered");
    assert_eq!(
        receiver.requests().len(),
        1,
        "only the admin's URL connected"
    );
}
