//! Recordings are personal data (README "Retention and erasure"): erased on request through
//! the API, by id and by call, never while recording; erased by retention once past their
//! account's limit, files and metadata files with them, never live, pending or failed ones.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use callrec::rules::{AudioFormat, Destination, UploadMethod};
use callrec::store::recordings::NewRecording;
use callrec::store::{Kind, Scope, Store};
use callrec::uploader::retention::{self, RetentionConfig};
use callrec::uploader::{spool, CallMeta, FinishedRecording, LocalStore};
use reqwest::StatusCode;
use serde_json::json;
use support::api::start;

const DAY_US: u64 = 86_400_000_000;

/// A recording's metadata.
fn meta(path: &Path, id: &str, account: &str, call: &str, url: Option<&str>) -> FinishedRecording {
    FinishedRecording {
        call: CallMeta {
            call_id: call.into(),
            account_id: Some(account.into()),
            user_id: None,
            device_id: None,
            caller_id_name: "Alice".into(),
            caller_id_number: "15551234567".into(),
            callee_number: "1000".into(),
            callee_name: String::new(),
            direction: "inbound".into(),
            interaction_id: None,
        },
        recording_id: id.into(),
        start_us: 1_795_459_961_000_000,
        duration_ms: 1000,
        format: AudioFormat::Wav,
        sample_rate: None,
        stereo: false,
        file_path: path.to_string_lossy().into_owned(),
        size: 1000,
        destinations: url
            .map(|u| Destination {
                url: u.into(),
                method: UploadMethod::Put,
                by_account: false,
            })
            .into_iter()
            .collect(),
        keep_local: false,
        origin: "test".into(),
        completion_cause: "success".into(),
        sequence: 0,
        kind: Default::default(),
        may_grow_until_us: None,
        pauses: vec![],
        encryption: None,
        encrypt_to: None,
    }
}

/// A kept recording of `account` with its file (and `.json`) under `dir/recordings/<account>`.
async fn kept(
    store: &Store,
    dir: &Path,
    id: &str,
    account: &str,
    call: &str,
    url: Option<&str>,
) -> PathBuf {
    let folder = dir.join("recordings").join(account);
    std::fs::create_dir_all(&folder).unwrap();
    let path = folder.join(format!("{id}.wav"));
    std::fs::write(&path, vec![7u8; 1000]).unwrap();
    let rec = meta(&path, id, account, call, url);
    std::fs::write(
        LocalStore::sidecar_path(&rec.file_path),
        serde_json::to_vec(&rec).unwrap(),
    )
    .unwrap();
    spool::enqueue(store, &rec).await.unwrap();
    path
}

/// A recording FreeSWITCH is still writing (journaled).
async fn journaled(store: &Store, id: &str, account: &str, call: &str) {
    let path = PathBuf::from(format!("/nowhere/{id}.wav"));
    store
        .journal_recording(&NewRecording {
            id,
            account_id: Some(account),
            call_id: call,
            file_path: &path.to_string_lossy(),
            destinations: &[],
            meta: &meta(&path, id, account, call, None),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn erasure_by_id_takes_the_file_its_json_and_the_row_and_refuses_a_live_recording() {
    let api = start().await;
    let dir = tempfile::tempdir().unwrap();
    let token = api
        .store
        .create_token(&Scope::Account("acc".into()))
        .await
        .unwrap();
    let path = kept(&api.store, dir.path(), "r1", "acc", "call-1", None).await;
    let sidecar = LocalStore::sidecar_path(&path.to_string_lossy());
    journaled(&api.store, "live", "acc", "call-2").await;
    let (s, v) = api
        .call(
            "DELETE",
            "/v2/accounts/acc/recordings/live",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["data"]["recording_id"], "live");
    assert_eq!(v["data"]["state"], "recording");
    assert!(v["message"].as_str().unwrap().contains("still recording"));
    let (s, v) = api
        .call(
            "DELETE",
            "/v2/accounts/acc/recordings/r1",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["erased"]["files"], 2);
    assert!(v["data"]["erased"]["bytes"].as_u64().unwrap() > 1000, "{v}");
    assert!(!path.exists() && !Path::new(&sidecar).exists());
    assert!(spool::get(&api.store, "r1").await.unwrap().is_none());
    let (s, _) = api
        .call(
            "DELETE",
            "/v2/accounts/acc/recordings/r1",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "gone");
    assert!(
        spool::get(&api.store, "live").await.unwrap().is_some(),
        "the live one stays"
    );
}

#[tokio::test]
async fn erasure_by_call_takes_every_recording_of_it_or_none_while_one_records() {
    let api = start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = kept(&api.store, dir.path(), "a", "acc", "call-x", None).await;
    // Pending: its delivery is cancelled with it.
    let b = kept(
        &api.store,
        dir.path(),
        "b",
        "acc",
        "call-x",
        Some("https://203.0.113.9/up/"),
    )
    .await;
    let c = kept(&api.store, dir.path(), "c", "acc", "call-y", None).await;
    journaled(&api.store, "y-live", "acc", "call-y").await;
    let (s, v) = api
        .call(
            "DELETE",
            "/v2/accounts/acc/recordings?call_id=call-y",
            Some(&api.admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["data"]["busy"][0]["recording_id"], "y-live");
    assert!(c.exists(), "nothing of the call erased while one records");
    let (s, v) = api
        .call(
            "DELETE",
            "/v2/accounts/acc/recordings",
            Some(&api.admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = api
        .call(
            "DELETE",
            "/v2/accounts/acc/recordings?call_id=call-x",
            Some(&api.admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let ids: Vec<&str> = v["data"]["erased"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    assert!(!a.exists() && !b.exists());
    assert!(api
        .store
        .claim_due::<serde_json::Value>(u64::MAX, 10)
        .await
        .unwrap()
        .is_empty());
    let (s, _) = api
        .call(
            "DELETE",
            "/v2/accounts/acc/recordings?call_id=call-x",
            Some(&api.admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

fn config(dir: &Path, days: Option<u32>) -> RetentionConfig {
    RetentionConfig {
        default_days: days,
        batch: 2,
        pause: Duration::ZERO,
        every: Duration::from_secs(3600),
        decision_days: 30,
        decision_max_rows: 1_000_000,
        recordings_dir: dir.join("recordings"),
    }
}

#[tokio::test]
async fn retention_erases_kept_recordings_past_their_accounts_limit_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // Account "long" keeps recordings 30 days; the default is 1 day.
    store
        .put(
            Kind::Account,
            "long",
            "long",
            json!({"recording_retention_days": 30}),
            callrec::store::documents::Expect::Any,
        )
        .await
        .unwrap();
    let mut gone = vec![];
    for i in 0..3 {
        gone.push(kept(&store, dir.path(), &format!("s{i}"), "acc", "c", None).await);
    }
    let long = kept(&store, dir.path(), "l1", "long", "c", None).await;
    let pending = kept(
        &store,
        dir.path(),
        "p1",
        "acc",
        "c",
        Some("https://203.0.113.9/up/"),
    )
    .await;
    journaled(&store, "live", "acc", "c2").await;
    let now = callrec::store::now_us();
    // Nothing is a day old yet: a pass now erases nothing.
    let r = retention::pass(&store, &config(dir.path(), Some(1)), now)
        .await
        .unwrap();
    assert_eq!(r.erased, 0);
    // Two days on: the default's stored recordings go, in batches of two; the 30-day account's,
    // the pending and the live one stay.
    let r = retention::pass(&store, &config(dir.path(), Some(1)), now + 2 * DAY_US)
        .await
        .unwrap();
    assert_eq!((r.erased, r.batches), (3, 2));
    assert!(gone.iter().all(|p| !p.exists()));
    assert!(gone
        .iter()
        .all(|p| !Path::new(&LocalStore::sidecar_path(&p.to_string_lossy())).exists()));
    assert!(long.exists() && pending.exists());
    for id in ["l1", "p1", "live"] {
        assert!(
            spool::get(&store, id).await.unwrap().is_some(),
            "{id} stays"
        );
    }
    // Retention off by default: the account's own limit still applies to it.
    let r = retention::pass(&store, &config(dir.path(), None), now + 31 * DAY_US)
        .await
        .unwrap();
    assert_eq!(r.erased, 1);
    assert!(!long.exists());
    assert!(pending.exists(), "pending is never taken");
    let bytes = retention::local_bytes(&dir.path().join("recordings"));
    assert_eq!(bytes.get("long"), Some(&0));
    assert!(bytes["acc"] > 1000, "{bytes:?}");
}

#[tokio::test]
async fn the_account_field_is_validated() {
    let api = start().await;
    for bad in [json!(0), json!(36_501), json!("30")] {
        let (s, v) = api
            .admin(
                "PUT",
                "/v2/accounts/acc",
                Some(json!({"data": {"recording_retention_days": bad}})),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert!(v["data"]["recording_retention_days"].is_object(), "{v}");
    }
    let (s, _) = api
        .admin(
            "PUT",
            "/v2/accounts/acc",
            Some(json!({"data": {"recording_retention_days": 90}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn the_pass_prunes_decision_records_by_age_and_by_the_row_bound() {
    use callrec::store::decisions::NewDecision;
    const DAY: u64 = 86_400_000_000;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let now = callrec::store::now_us();
    let d = |i: u64, age_days: u64| NewDecision {
        id: format!("d{i}"),
        call_id: format!("c{i}"),
        account_id: Some("acc".into()),
        created_us: now - age_days * DAY - i,
        caller: "1".into(),
        callee: "2".into(),
        planned: 0,
        body: "{}".into(),
    };
    // Two past 30 days, 1,200 within them.
    let mut rows = vec![d(0, 31), d(1, 45)];
    rows.extend((2..1202).map(|i| d(i, 1)));
    store.add_decisions(&rows).await.unwrap();
    let mut cfg = config(dir.path(), None);
    let r = retention::pass(&store, &cfg, now).await.unwrap();
    assert_eq!(r.decisions, 2, "only the two past decision_retention_days");
    assert!(store.decision_of_call(None, "c0").await.unwrap().is_none());
    assert!(store.decision_of_call(None, "c2").await.unwrap().is_some());
    // The row bound: the oldest beyond it go, the newest stay.
    cfg.decision_max_rows = 1000;
    let r = retention::pass(&store, &cfg, now).await.unwrap();
    assert_eq!(r.decisions, 200);
    assert!(
        store.decision_of_call(None, "c2").await.unwrap().is_some(),
        "the newest stay"
    );
    assert!(
        store
            .decision_of_call(None, "c1201")
            .await
            .unwrap()
            .is_none(),
        "the oldest go"
    );
}
