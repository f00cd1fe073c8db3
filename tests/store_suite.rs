//! The store's behaviour, the same on both backends: every test here runs once against a new
//! SQLite file and once against a new PostgreSQL database (see `support::pg` for how the
//! database is found). A test gets a way to open handles on its store, so it can also check
//! what one handle writes and another reads, as two callrec instances would.

mod support;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Barrier;

use callrec::store::documents::Expect;
use callrec::store::recordings::{Claim, Filter, NewRecording, Outcome};
use callrec::store::webhooks::{
    ClaimLimits, HookFilter, HookOutcome, HookRow, HookState, NewHookEvent,
};
use callrec::store::{
    now_us, DeliveryState, Kind, RecordingState, Revision, Scope, Store, StoreError,
};
use callrec::values::{Destination, UploadMethod};
use serde_json::{json, Value};

/// Opens handles on one test's store: the same SQLite file, or the same PostgreSQL database.
enum Opener {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Opener {
    async fn open(&self) -> Store {
        match self {
            Opener::Sqlite(path) => Store::open(path).unwrap(),
            Opener::Postgres(url) => Store::connect(url).await.unwrap(),
        }
    }
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$name(&super::Opener::Sqlite(dir.path().to_path_buf())).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(db) = super::support::pg::new_db() else { return };
                    super::$name(&super::Opener::Postgres(db.url.clone())).await;
                    drop(db);
                }
            )*
        }
    };
}

both!(
    revisions_and_conflicts,
    the_same_id_in_two_accounts_is_two_documents,
    devices_by_sip_username_in_one_or_every_account,
    any_recording_settings_sees_settings_and_callflow_modules,
    the_per_call_lookups_follow_every_write,
    every_document_in_key_order,
    racing_creates_of_one_document_make_one,
    a_write_through_one_handle_is_read_through_another,
    tokens_verify_by_scope,
    a_recording_follows_its_deliveries,
    the_journal_is_per_node,
    claims_recovery_and_orphans_are_per_node_listing_is_not,
    reassigning_a_gone_node,
    racing_claims_never_share_a_delivery,
    a_replaced_recording_starts_without_its_old_deliveries,
    rows_mentioning_a_field_are_found_per_node_and_by_age,
    webhook_claims_are_fair_skip_busy_hooks_and_settle,
    racing_webhook_claims_never_share_an_event,
    erasure_refuses_busy_foreign_and_other_nodes_recordings,
    retention_takes_only_kept_recordings_past_their_cutoff,
    decision_records_are_found_by_party_call_and_outcome_and_pruned,
);

fn user(name: &str) -> Value {
    json!({ "first_name": name })
}

async fn revisions_and_conflicts(open: &Opener) {
    let s = open.open().await;
    let d = s
        .put(Kind::User, "a", "u1", user("Ann"), Expect::Any)
        .await
        .unwrap();
    assert_eq!((d.rev, &d.body["id"]), (Revision(1), &json!("u1")));
    let d = s
        .put(
            Kind::User,
            "a",
            "u1",
            user("Bo"),
            Expect::Revision(Revision(1)),
        )
        .await
        .unwrap();
    assert_eq!(d.rev, Revision(2));
    let e = s
        .put(
            Kind::User,
            "a",
            "u1",
            json!({}),
            Expect::Revision(Revision(1)),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict { current } if current == "2"));
    let e = s
        .put(Kind::User, "a", "u1", json!({}), Expect::Absent)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Exists));
    assert_eq!(
        s.get(Kind::User, "a", "u1").await.unwrap().unwrap().body["first_name"],
        "Bo"
    );
    assert_eq!(s.list(Kind::User, "a").await.unwrap().len(), 1);
    let e = s
        .delete(Kind::User, "a", "u1", Some(Revision(1)))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict { current } if current == "2"));
    assert!(s
        .delete(Kind::User, "a", "u1", Some(Revision(2)))
        .await
        .unwrap());
    assert!(!s.delete(Kind::User, "a", "u1", None).await.unwrap());
    assert!(s.get(Kind::User, "a", "u1").await.unwrap().is_none());
}

async fn the_same_id_in_two_accounts_is_two_documents(open: &Opener) {
    let s = open.open().await;
    s.put(Kind::User, "b", "u1", user("Bob"), Expect::Any)
        .await
        .unwrap();
    let a = s
        .put(Kind::User, "a", "u1", user("Mallory"), Expect::Any)
        .await
        .unwrap();
    assert_eq!(a.rev, Revision(1));
    let b = s.get(Kind::User, "b", "u1").await.unwrap().unwrap();
    assert_eq!((b.rev, &b.body["first_name"]), (Revision(1), &json!("Bob")));
    assert!(matches!(
        s.put(Kind::User, "c", "u1", json!({}), Expect::Revision(Revision(1)))
            .await,
        Err(StoreError::Conflict { current }) if current.is_empty()
    ));
    assert!(!s.delete(Kind::User, "c", "u1", None).await.unwrap());
    assert!(s.delete(Kind::User, "a", "u1", None).await.unwrap());
    assert!(s.get(Kind::User, "b", "u1").await.unwrap().is_some());
    assert!(s.list(Kind::User, "a").await.unwrap().is_empty());
}

async fn devices_by_sip_username_in_one_or_every_account(open: &Opener) {
    let s = open.open().await;
    for (acc, id, name) in [
        ("a", "d1", "alice"),
        ("b", "d2", "alice"),
        ("b", "d3", "bob"),
    ] {
        s.put(
            Kind::Device,
            acc,
            id,
            json!({"sip": {"username": name}}),
            Expect::Any,
        )
        .await
        .unwrap();
    }
    // A user whose body looks like a device's is not a device.
    s.put(
        Kind::User,
        "a",
        "u",
        json!({"sip": {"username": "alice"}}),
        Expect::Any,
    )
    .await
    .unwrap();
    let all = s.devices_by_sip_username(None, "alice").await.unwrap();
    let keys: Vec<(&str, &str)> = all
        .iter()
        .map(|d| (d.account_id.as_str(), d.id.as_str()))
        .collect();
    assert_eq!(keys, [("a", "d1"), ("b", "d2")]);
    let b = s.devices_by_sip_username(Some("b"), "alice").await.unwrap();
    assert_eq!((b[0].id.as_str(), b.len()), ("d2", 1));
    assert!(s
        .devices_by_sip_username(None, "carol")
        .await
        .unwrap()
        .is_empty());
}

async fn any_recording_settings_sees_settings_and_callflow_modules(open: &Opener) {
    let s = open.open().await;
    assert!(!s.any_recording_settings().await.unwrap());
    s.put(Kind::User, "a", "u1", user("Ann"), Expect::Any)
        .await
        .unwrap();
    assert!(
        !s.any_recording_settings().await.unwrap(),
        "no settings in it"
    );
    s.put(
        Kind::Device,
        "a",
        "d1",
        json!({"call_recording": {"any": {"any": {"enabled": false}}}}),
        Expect::Any,
    )
    .await
    .unwrap();
    assert!(
        s.any_recording_settings().await.unwrap(),
        "disabled still counts"
    );
    assert!(s.delete(Kind::Device, "a", "d1", None).await.unwrap());
    assert!(!s.any_recording_settings().await.unwrap());
    s.put(
        Kind::Callflow,
        "a",
        "cf",
        json!({"numbers": ["1"], "flow": {"module": "record_call", "data": {}}}),
        Expect::Any,
    )
    .await
    .unwrap();
    assert!(
        s.any_recording_settings().await.unwrap(),
        "a record_call module"
    );
}

async fn the_per_call_lookups_follow_every_write(open: &Opener) {
    let s = open.open().await;
    let cf = |numbers: Value| json!({"numbers": numbers, "flow": {"module": "device", "data": {}}});
    s.put(
        Kind::Callflow,
        "a",
        "cf1",
        cf(json!(["100", "200"])),
        Expect::Any,
    )
    .await
    .unwrap();
    s.put(
        Kind::Callflow,
        "b",
        "cf1",
        cf(json!(["200", 300, "200"])),
        Expect::Any,
    )
    .await
    .unwrap();
    assert_eq!(s.accounts_with_number("100").await.unwrap(), ["a"]);
    assert_eq!(s.accounts_with_number("200").await.unwrap(), ["a", "b"]);
    assert!(
        s.accounts_with_number("300").await.unwrap().is_empty(),
        "numbers are strings"
    );
    s.put(Kind::Callflow, "a", "cf1", cf(json!(["101"])), Expect::Any)
        .await
        .unwrap();
    assert!(s.accounts_with_number("100").await.unwrap().is_empty());
    assert_eq!(s.accounts_with_number("101").await.unwrap(), ["a"]);
    assert!(s.delete(Kind::Callflow, "b", "cf1", None).await.unwrap());
    assert!(s.accounts_with_number("200").await.unwrap().is_empty());
    s.put(
        Kind::User,
        "a",
        "u1",
        json!({"record_call": {}}),
        Expect::Any,
    )
    .await
    .unwrap();
    assert!(s.any_recording_settings().await.unwrap());
    s.put(Kind::User, "a", "u1", user("Ann"), Expect::Any)
        .await
        .unwrap();
    assert!(
        !s.any_recording_settings().await.unwrap(),
        "the settings were removed"
    );
}

async fn every_document_in_key_order(open: &Opener) {
    let s = open.open().await;
    for (acc, kind, id) in [
        ("b", Kind::User, "u"),
        ("a", Kind::User, "Z"),
        ("a", Kind::User, "a"),
        ("a", Kind::Account, "a"),
        ("a", Kind::Device, "d"),
    ] {
        s.put(kind, acc, id, json!({}), Expect::Any).await.unwrap();
    }
    let keys: Vec<(String, &str, String)> = s
        .all_documents()
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.account_id, d.kind.as_str(), d.id))
        .collect();
    let want = [
        ("a", "account", "a"),
        ("a", "device", "d"),
        ("a", "user", "Z"),
        ("a", "user", "a"),
        ("b", "user", "u"),
    ];
    let want: Vec<(String, &str, String)> = want
        .iter()
        .map(|(a, k, i)| (a.to_string(), *k, i.to_string()))
        .collect();
    assert_eq!(keys, want, "bytewise order, uppercase first");
    let ids: Vec<String> = s
        .list(Kind::User, "a")
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, ["Z", "a"]);
}

async fn racing_creates_of_one_document_make_one(open: &Opener) {
    let handles = [open.open().await, open.open().await];
    let barrier = Arc::new(Barrier::new(8));
    let joins: Vec<_> = (0..8)
        .map(|i| {
            let s = handles[i % 2].clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                s.put(Kind::User, "a", "new", json!({"n": i}), Expect::Absent)
                    .await
                    .map(|d| d.rev)
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
    let mut results: Vec<Result<Revision, String>> = Vec::new();
    for j in joins {
        results.push(j.await.unwrap());
    }
    let made: Vec<&Revision> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(made, [&Revision(1)], "{results:?}");
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| e.contains("exists")));
}

async fn a_write_through_one_handle_is_read_through_another(open: &Opener) {
    let (one, two) = (
        open.open().await.for_node("n1").await.unwrap(),
        open.open().await.for_node("n2").await.unwrap(),
    );
    one.put(
        Kind::Account,
        "acc",
        "acc",
        json!({"record_call": {"format": "mp3"}}),
        Expect::Any,
    )
    .await
    .unwrap();
    let seen = two.get(Kind::Account, "acc", "acc").await.unwrap().unwrap();
    assert_eq!(seen.body["record_call"]["format"], "mp3");
    let t = one
        .create_token(&Scope::Account("acc".into()))
        .await
        .unwrap();
    assert_eq!(
        two.verify_token(&t).await.unwrap(),
        Some(Scope::Account("acc".into()))
    );
    two.put(
        Kind::Account,
        "acc",
        "acc",
        json!({}),
        Expect::Revision(Revision(1)),
    )
    .await
    .unwrap();
    assert_eq!(
        one.get(Kind::Account, "acc", "acc")
            .await
            .unwrap()
            .unwrap()
            .rev,
        Revision(2)
    );
}

async fn tokens_verify_by_scope(open: &Opener) {
    let s = open.open().await;
    let t = s.create_token(&Scope::Account("a".into())).await.unwrap();
    assert_eq!(t.len(), 64);
    assert_eq!(
        s.verify_token(&t).await.unwrap(),
        Some(Scope::Account("a".into()))
    );
    assert_eq!(s.verify_token("nope").await.unwrap(), None);
    assert_eq!(s.verify_token(&t[..63]).await.unwrap(), None);
    let admin = s.create_token(&Scope::Admin).await.unwrap();
    assert_eq!(s.verify_token(&admin).await.unwrap(), Some(Scope::Admin));
}

fn dest(url: &str, method: UploadMethod) -> Destination {
    Destination {
        url: url.into(),
        method,
        by_account: false,
    }
}

async fn add(s: &Store, id: &str, path: &str, dests: &[Destination]) -> RecordingState {
    s.add_recording(&NewRecording {
        id,
        account_id: Some("acc"),
        call_id: &format!("call-{id}"),
        file_path: path,
        destinations: dests,
        meta: &json!({"recording_id": id, "file_path": path}),
    })
    .await
    .unwrap()
}

async fn claim(s: &Store, limit: usize) -> Vec<Claim<Value>> {
    s.claim_due(now_us(), limit).await.unwrap()
}

async fn a_recording_follows_its_deliveries(open: &Opener) {
    let s = open.open().await;
    let dests = [
        dest("http://a/", UploadMethod::Put),
        dest("http://a/", UploadMethod::Post),
    ];
    assert_eq!(
        add(&s, "r1", "/r/x.wav", &dests).await,
        RecordingState::Pending
    );
    assert_eq!(add(&s, "r0", "/r/y.wav", &[]).await, RecordingState::Stored);
    assert!(s.next_due().await.unwrap().is_some());
    let claims = claim(&s, 10).await;
    assert_eq!(claims.len(), 2, "one delivery per url and method");
    assert_eq!(claims[0].meta["recording_id"], "r1");
    assert!(claim(&s, 10).await.is_empty(), "claimed ones are not due");
    assert_eq!(s.next_due().await.unwrap(), None);
    assert_eq!(
        s.recording::<Value>("r1").await.unwrap().unwrap().state,
        RecordingState::Uploading
    );
    assert_eq!(s.recover_deliveries().await.unwrap(), 2);
    let claims = claim(&s, 10).await;
    assert_eq!(claims.len(), 2);
    let ok = Outcome::Delivered { status: 201 };
    assert_eq!(
        s.settle("r1", &dests[0], &ok).await.unwrap(),
        RecordingState::Uploading
    );
    let later = Outcome::Retry {
        next_us: now_us() + 3_600_000_000,
        error: "503".into(),
        status: Some(503),
    };
    assert_eq!(
        s.settle("r1", &dests[1], &later).await.unwrap(),
        RecordingState::Pending
    );
    assert!(claim(&s, 10).await.is_empty(), "not due for an hour");
    assert_eq!(claim(&s, 10).await.len(), 0);
    let again: Vec<Claim<Value>> = s.claim_due(now_us() + 3_700_000_000, 10).await.unwrap();
    assert_eq!((again.len(), again[0].attempts), (1, 1));
    let fail = Outcome::Failed {
        error: "404".into(),
        status: Some(404),
    };
    assert_eq!(
        s.settle("r1", &dests[1], &fail).await.unwrap(),
        RecordingState::Failed
    );
    assert_eq!(s.retry_failed(Some("r1")).await.unwrap(), 1);
    let row = s.recording::<Value>("r1").await.unwrap().unwrap();
    assert_eq!(row.state, RecordingState::Pending);
    let states: Vec<(UploadMethod, DeliveryState, u32, Option<u16>)> = row
        .deliveries
        .iter()
        .map(|d| (d.method, d.state, d.attempts, d.last_status))
        .collect();
    assert_eq!(
        states,
        [
            (UploadMethod::Post, DeliveryState::Pending, 2, Some(404)),
            (UploadMethod::Put, DeliveryState::Delivered, 1, Some(201))
        ]
    );
    assert!(row.deliveries[1].delivered_us.is_some());
    assert!(s.has_recording_path("/r/x.wav").await.unwrap());
    let in_r = s.recording_paths_in("/r").await.unwrap();
    assert!(in_r.contains("/r/x.wav") && in_r.contains("/r/y.wav"));
    assert!(!s.recording_paths_in("").await.unwrap().contains("/r/x.wav"));
    assert!(s.recording_paths_in("/r/x").await.unwrap().is_empty());
    assert!(!s.has_recording_path("/r/z.wav").await.unwrap());
    let listed: Vec<_> = s
        .recordings::<Value>(&Filter {
            state: Some(RecordingState::Pending),
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let all = s.recordings::<Value>(&Filter::default()).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[0].created_us >= all[1].created_us, "newest first");
    let by_call = s
        .recordings::<Value>(&Filter {
            call_id: Some("call-r0".into()),
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(by_call[0].state, RecordingState::Stored);
}

async fn the_journal_is_per_node(open: &Opener) {
    let (one, two) = (
        open.open().await.for_node("n1").await.unwrap(),
        open.open().await.for_node("n2").await.unwrap(),
    );
    for (s, id) in [(&one, "j1"), (&two, "j2")] {
        s.journal_recording(&NewRecording {
            id,
            account_id: None,
            call_id: "c",
            file_path: &format!("/r/{id}.wav"),
            destinations: &[],
            meta: &json!({"id": id}),
        })
        .await
        .unwrap();
    }
    let mine: Vec<(String, Value)> = one.journaled().await.unwrap();
    assert_eq!(mine, [("j1".to_string(), json!({"id": "j1"}))]);
    assert_eq!(
        one.recording::<Value>("j2").await.unwrap().unwrap().state,
        RecordingState::Recording
    );
    // Kept: the journal row becomes the spooled recording.
    assert_eq!(
        add(
            &one,
            "j1",
            "/r/j1.wav",
            &[dest("http://a/", UploadMethod::Put)]
        )
        .await,
        RecordingState::Pending
    );
    assert!(one.journaled::<Value>().await.unwrap().is_empty());
    assert!(!one.forget_recording("j1").await.unwrap(), "kept ones stay");
    assert!(two.forget_recording("j2").await.unwrap());
    assert!(two.recording::<Value>("j2").await.unwrap().is_none());
}

async fn claims_recovery_and_orphans_are_per_node_listing_is_not(open: &Opener) {
    let (one, two) = (
        open.open().await.for_node("n1").await.unwrap(),
        open.open().await.for_node("n2").await.unwrap(),
    );
    let d = [dest("http://a/", UploadMethod::Put)];
    add(&one, "a1", "/d/a1.wav", &d).await;
    add(&two, "b1", "/d/b1.wav", &d).await;
    add(&two, "b2", "/d/b2.wav", &d).await;
    let c1 = claim(&one, 10).await;
    assert_eq!(c1.len(), 1);
    assert_eq!(c1[0].meta["recording_id"], "a1");
    assert!(two.next_due().await.unwrap().is_some());
    assert_eq!(one.next_due().await.unwrap(), None);
    let c2 = claim(&two, 1).await;
    assert_eq!(c2[0].meta["recording_id"], "b1");
    // A restart of n2 takes back only its own claims.
    assert_eq!(two.recover_deliveries().await.unwrap(), 1);
    assert_eq!(
        one.recording::<Value>("a1").await.unwrap().unwrap().state,
        RecordingState::Uploading
    );
    assert!(one.has_recording_path("/d/a1.wav").await.unwrap());
    assert!(!one.has_recording_path("/d/b1.wav").await.unwrap());
    let paths = two.recording_paths_in("/d").await.unwrap();
    assert_eq!(paths.len(), 2);
    assert!(paths.contains("/d/b1.wav") && paths.contains("/d/b2.wav"));
    let listed = one.recordings::<Value>(&Filter::default()).await.unwrap();
    let mut nodes: HashMap<String, usize> = HashMap::new();
    for r in &listed {
        *nodes.entry(r.node.clone()).or_default() += 1;
    }
    assert_eq!(nodes, HashMap::from([("n1".into(), 1), ("n2".into(), 2)]));
    let only_two = one
        .recordings::<Value>(&Filter {
            node: Some("n2".into()),
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(only_two.len(), 2);
}

async fn reassigning_a_gone_node(open: &Opener) {
    let (gone, heir) = (
        open.open().await.for_node("gone").await.unwrap(),
        open.open().await.for_node("heir").await.unwrap(),
    );
    let d = [dest("http://a/", UploadMethod::Put)];
    add(&gone, "g1", "/d/g1.wav", &d).await;
    add(&gone, "g2", "/d/g2.wav", &d).await;
    add(&heir, "h1", "/d/h1.wav", &d).await;
    assert_eq!(
        claim(&gone, 1).await.len(),
        1,
        "g1 was being uploaded when it died"
    );
    assert_eq!(heir.reassign("gone", "heir", Some("g2")).await.unwrap(), 1);
    assert_eq!(heir.reassign("gone", "heir", None).await.unwrap(), 1);
    assert_eq!(heir.reassign("gone", "heir", None).await.unwrap(), 0);
    let g1 = heir.recording::<Value>("g1").await.unwrap().unwrap();
    assert_eq!(
        (g1.node.as_str(), g1.state),
        ("heir", RecordingState::Pending)
    );
    let ids: Vec<String> = claim(&heir, 10)
        .await
        .into_iter()
        .map(|c| c.meta["recording_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(claim(&gone, 10).await.is_empty());
    assert!(heir.has_recording_path("/d/g1.wav").await.unwrap());
}

async fn racing_claims_never_share_a_delivery(open: &Opener) {
    let handles = [
        open.open().await.for_node("n").await.unwrap(),
        open.open().await.for_node("n").await.unwrap(),
    ];
    let d = [
        dest("http://a/", UploadMethod::Put),
        dest("http://b/", UploadMethod::Put),
    ];
    for i in 0..150 {
        add(
            &handles[0],
            &format!("r{i:03}"),
            &format!("/d/r{i:03}.wav"),
            &d,
        )
        .await;
    }
    let workers = 6;
    let barrier = Arc::new(Barrier::new(workers));
    let joins: Vec<_> = (0..workers)
        .map(|w| {
            let s = handles[w % 2].clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let mut mine = Vec::new();
                loop {
                    let batch = claim(&s, 7).await;
                    if batch.is_empty() {
                        break;
                    }
                    for c in batch {
                        let id = c.meta["recording_id"].as_str().unwrap().to_string();
                        mine.push((id, c.url));
                    }
                }
                mine
            })
        })
        .collect();
    let mut got: Vec<Vec<(String, String)>> = Vec::new();
    for j in joins {
        got.push(j.await.unwrap());
    }
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for (id, url) in got.iter().flatten() {
        *seen.entry((id.clone(), url.clone())).or_default() += 1;
    }
    assert_eq!(seen.len(), 300, "every delivery claimed");
    assert!(
        seen.values().all(|&n| n == 1),
        "a delivery claimed twice: {:?}",
        seen.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    assert!(
        got.iter().filter(|w| !w.is_empty()).count() >= 2,
        "the workers did race"
    );
}

async fn a_replaced_recording_starts_without_its_old_deliveries(open: &Opener) {
    let s = open.open().await;
    add(&s, "r", "/d/r.wav", &[dest("http://a/", UploadMethod::Put)]).await;
    assert_eq!(
        add(
            &s,
            "r",
            "/d/r.wav",
            &[dest("http://b/", UploadMethod::Post)]
        )
        .await,
        RecordingState::Pending
    );
    let row = s.recording::<Value>("r").await.unwrap().unwrap();
    let urls: Vec<&str> = row.deliveries.iter().map(|d| d.url.as_str()).collect();
    assert_eq!(urls, ["http://b/"]);
}

/// What a restart uses to take up the watches of files FreeSWITCH may still write: this
/// node's rows created since a time whose metadata names a field.
async fn rows_mentioning_a_field_are_found_per_node_and_by_age(open: &Opener) {
    let (one, two) = (
        open.open().await.for_node("n1").await.unwrap(),
        open.open().await.for_node("n2").await.unwrap(),
    );
    async fn put(s: &Store, id: &str, meta: Value) {
        s.add_recording(&NewRecording {
            id,
            account_id: Some("acc"),
            call_id: "c",
            file_path: &format!("/r/{id}.wav"),
            destinations: &[dest("http://a/", UploadMethod::Put)],
            meta: &meta,
        })
        .await
        .unwrap();
    }
    let before = now_us();
    put(
        &one,
        "watched",
        json!({"id": "watched", "may_grow_until_us": 9}),
    )
    .await;
    put(&one, "plain", json!({"id": "plain"})).await;
    put(
        &one,
        "named-in-a-value",
        json!({"id": "x", "note": "may_grow_until_us"}),
    )
    .await;
    put(
        &two,
        "other-node",
        json!({"id": "o", "may_grow_until_us": 9}),
    )
    .await;
    let found: Vec<(String, Value)> = one
        .mentioning_since(before, "may_grow_until_us")
        .await
        .unwrap();
    let ids: Vec<&str> = found.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["watched"], "the field, not a value; this node only");
    assert_eq!(found[0].1["may_grow_until_us"], 9);
    let later: Vec<(String, Value)> = one
        .mentioning_since(now_us() + 1_000_000, "may_grow_until_us")
        .await
        .unwrap();
    assert!(later.is_empty(), "rows older than the window are not read");
}

fn hook_event(id: &str, hook: &str) -> NewHookEvent {
    NewHookEvent {
        id: id.into(),
        account_id: "acc".into(),
        webhook_id: hook.into(),
        event_type: "recording.started".into(),
        recording_id: Some("r".into()),
        body: format!("{{\"id\":\"{id}\"}}"),
    }
}

fn limits(busy: &[&str], hooks: usize, per_hook: usize) -> ClaimLimits {
    ClaimLimits {
        busy: busy
            .iter()
            .map(|h| ("acc".to_string(), h.to_string()))
            .collect(),
        hooks,
        per_hook,
        lease_until_us: now_us() + 60_000_000,
    }
}

/// The webhook queue: a claim takes at most `per_hook` events of each webhook, none of a busy
/// one; retries, failures, recovery and manual retry move events as the sender expects.
async fn webhook_claims_are_fair_skip_busy_hooks_and_settle(open: &Opener) {
    let s = open.open().await.for_node("n1").await.unwrap();
    let mut events: Vec<NewHookEvent> = (0..5).map(|i| hook_event(&format!("a{i}"), "a")).collect();
    events.push(hook_event("b0", "b"));
    events.push(hook_event("c0", "c"));
    s.add_hook_events(&events).await.unwrap();
    s.add_hook_events(&events[..1]).await.unwrap(); // a repeated insert is ignored
    let got = s
        .claim_hook_events(now_us(), &limits(&["c"], 10, 2))
        .await
        .unwrap();
    let mut ids: Vec<&str> = got.iter().map(|c| c.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["a0", "a1", "b0"], "two of a, b's one, none of busy c");
    assert!(got.iter().all(|c| c.attempts == 0));
    let a0 = got.iter().find(|c| c.id == "a0").unwrap();
    assert_eq!(a0.body, r#"{"id":"a0"}"#);
    // Claimed events are not claimed again.
    let again = s
        .claim_hook_events(now_us(), &limits(&[], 10, 10))
        .await
        .unwrap();
    let mut ids: Vec<&str> = again.iter().map(|c| c.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["a2", "a3", "a4", "c0"]);
    s.settle_hook_event("a0", &HookOutcome::Delivered { status: 200 })
        .await
        .unwrap();
    s.settle_hook_event(
        "a1",
        &HookOutcome::Retry {
            next_us: now_us() + 3_600_000_000,
            error: "HTTP 503".into(),
            status: Some(503),
        },
    )
    .await
    .unwrap();
    s.settle_hook_event(
        "b0",
        &HookOutcome::Failed {
            error: "HTTP 410".into(),
            status: Some(410),
        },
    )
    .await
    .unwrap();
    // a's receiver is failing: its other events wait with a1, unattempted.
    let later = now_us() + 7_200_000_000;
    s.defer_hook("acc", "a", later).await.unwrap();
    let rows: HashMap<String, HookRow> = s
        .hook_events(&HookFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    assert_eq!(rows.len(), 7);
    assert_eq!(rows["a0"].state, HookState::Delivered);
    assert_eq!(
        (rows["a1"].state, rows["a1"].attempts),
        (HookState::Pending, 1)
    );
    assert_eq!(rows["a1"].last_status, Some(503));
    assert_eq!(
        (rows["b0"].state, rows["b0"].attempts),
        (HookState::Failed, 1)
    );
    for id in ["a1", "a2", "a3", "a4"] {
        assert_eq!(rows[id].state, HookState::Pending, "{id}");
        assert_eq!(rows[id].next_attempt_us, later, "{id} waits with a1");
    }
    assert_eq!(rows["a2"].attempts, 0, "deferred unattempted");
    assert_eq!(
        rows["c0"].state,
        HookState::Sending,
        "another webhook's claim stays"
    );
    assert!(s
        .claim_hook_events(now_us(), &limits(&[], 10, 10))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(rows["a0"].node, "n1");
    // A restart of n1 puts its claims back; another node's restart does not.
    assert_eq!(
        open.open()
            .await
            .for_node("n2")
            .await
            .unwrap()
            .recover_hook_events()
            .await
            .unwrap(),
        0
    );
    assert_eq!(s.recover_hook_events().await.unwrap(), 1, "c0");
    assert_eq!(
        s.retry_hook_events(None).await.unwrap(),
        1,
        "b0 back in the queue"
    );
    let failed = s
        .hook_events(&HookFilter {
            state: Some(HookState::Failed),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(failed.is_empty());
    assert!(s.next_hook_due().await.unwrap().is_some());
}

/// Two handles claiming at once (two nodes on one database) never take the same event.
async fn racing_webhook_claims_never_share_an_event(open: &Opener) {
    let handles = [
        open.open().await.for_node("n1").await.unwrap(),
        open.open().await.for_node("n2").await.unwrap(),
    ];
    let events: Vec<NewHookEvent> = (0..200)
        .map(|i| hook_event(&format!("e{i:03}"), &format!("h{}", i % 10)))
        .collect();
    handles[0].add_hook_events(&events).await.unwrap();
    let workers = 6;
    let barrier = Arc::new(Barrier::new(workers));
    let joins: Vec<_> = (0..workers)
        .map(|w| {
            let s = handles[w % 2].clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let mut mine = Vec::new();
                loop {
                    let batch = s
                        .claim_hook_events(now_us(), &limits(&[], 3, 4))
                        .await
                        .unwrap();
                    if batch.is_empty() {
                        break;
                    }
                    mine.extend(batch.into_iter().map(|c| c.id));
                }
                mine
            })
        })
        .collect();
    let mut got: Vec<Vec<String>> = Vec::new();
    for j in joins {
        got.push(j.await.unwrap());
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for id in got.iter().flatten() {
        *seen.entry(id.as_str()).or_default() += 1;
    }
    assert_eq!(seen.len(), 200, "every event claimed");
    assert!(seen.values().all(|&n| n == 1), "an event claimed twice");
}

async fn add_to(s: &Store, id: &str, account: &str, dests: &[Destination]) -> RecordingState {
    s.add_recording(&NewRecording {
        id,
        account_id: Some(account),
        call_id: &format!("call-{id}"),
        file_path: &format!("/d/{id}.wav"),
        destinations: dests,
        meta: &json!({"recording_id": id}),
    })
    .await
    .unwrap()
}

/// Erasure on request: never a recording still recording or uploading, never through another
/// account, never another node's; a removed recording takes its deliveries with it.
async fn erasure_refuses_busy_foreign_and_other_nodes_recordings(open: &Opener) {
    use callrec::store::retention::Erasure;
    let s = open.open().await.for_node("n1").await.unwrap();
    let other_node = open.open().await.for_node("n2").await.unwrap();
    let d = [
        dest("http://a/", UploadMethod::Put),
        dest("http://b/", UploadMethod::Put),
    ];
    add_to(&s, "kept", "acc", &d).await;
    add_to(&s, "up", "acc", &d[..1]).await;
    add_to(&other_node, "there", "acc", &[]).await;
    s.journal_recording(&NewRecording {
        id: "live",
        account_id: Some("acc"),
        call_id: "call-live",
        file_path: "/d/live.wav",
        destinations: &[],
        meta: &json!({"recording_id": "live"}),
    })
    .await
    .unwrap();
    let up = claim(&s, 10).await;
    assert!(up.iter().any(|c| c.meta["recording_id"] == "up"));
    assert_eq!(
        s.erase_recording("nope", Some("acc")).await.unwrap(),
        Erasure::Unknown
    );
    assert_eq!(
        s.erase_recording("kept", Some("other")).await.unwrap(),
        Erasure::Unknown
    );
    assert_eq!(
        s.erase_recording("live", Some("acc")).await.unwrap(),
        Erasure::Busy(RecordingState::Recording)
    );
    assert_eq!(
        s.erase_recording("up", Some("acc")).await.unwrap(),
        Erasure::Busy(RecordingState::Uploading)
    );
    assert_eq!(
        s.erase_recording("there", Some("acc")).await.unwrap(),
        Erasure::Elsewhere("n2".into())
    );
    // "kept" had both deliveries claimed above: settle them back to pending first.
    for c in up.iter().filter(|c| c.meta["recording_id"] == "kept") {
        s.settle(
            "kept",
            &dest(&c.url, c.method),
            &Outcome::Retry {
                next_us: now_us() + 3_600_000_000,
                error: "x".into(),
                status: None,
            },
        )
        .await
        .unwrap();
    }
    let Erasure::Removed(r) = s.erase_recording("kept", Some("acc")).await.unwrap() else {
        panic!("removed")
    };
    assert_eq!(
        (r.file_path.as_str(), r.call_id.as_str()),
        ("/d/kept.wav", "call-kept")
    );
    assert!(s.recording::<Value>("kept").await.unwrap().is_none());
    assert!(
        claim(&s, 10).await.is_empty(),
        "its pending deliveries are cancelled"
    );
    assert_eq!(
        s.recordings_of_call(Some("acc"), "call-there")
            .await
            .unwrap(),
        ["there"]
    );
    assert!(s
        .recordings_of_call(Some("x"), "call-there")
        .await
        .unwrap()
        .is_empty());
    let Erasure::Removed(_) = other_node.erase_recording("there", None).await.unwrap() else {
        panic!("its own node erases it")
    };
}

/// Retention: only `stored` and `delivered` recordings of this node created before their
/// cutoff; an account's own limit replaces the default for it.
async fn retention_takes_only_kept_recordings_past_their_cutoff(open: &Opener) {
    use callrec::store::retention::Cutoffs;
    let s = open.open().await.for_node("n1").await.unwrap();
    let other_node = open.open().await.for_node("n2").await.unwrap();
    add_to(&s, "old-stored", "a", &[]).await;
    std::thread::sleep(std::time::Duration::from_millis(2));
    add_to(&s, "old-stored-2", "a", &[]).await;
    add_to(
        &s,
        "old-pending",
        "a",
        &[dest("http://a/", UploadMethod::Put)],
    )
    .await;
    add_to(
        &s,
        "old-failed",
        "a",
        &[dest("http://f/", UploadMethod::Put)],
    )
    .await;
    add_to(&s, "old-own", "b", &[]).await;
    add_to(&other_node, "old-there", "a", &[]).await;
    for c in claim(&s, 10).await {
        let id = c.meta["recording_id"].as_str().unwrap().to_string();
        let failed = Outcome::Failed {
            error: "HTTP 404".into(),
            status: Some(404),
        };
        let retry = Outcome::Retry {
            next_us: now_us() + 3_600_000_000,
            error: "x".into(),
            status: None,
        };
        let o = if id == "old-failed" { failed } else { retry };
        s.settle(&id, &dest(&c.url, c.method), &o).await.unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(2));
    let boundary = now_us();
    std::thread::sleep(std::time::Duration::from_millis(2));
    add_to(&s, "new-stored", "a", &[]).await;
    // Default cutoff at the boundary; account b keeps everything (its cutoff is long ago).
    let cut = Cutoffs {
        default_before_us: Some(boundary),
        accounts: vec![("b".into(), 1)],
    };
    let mut taken: Vec<String> = s
        .take_expired(&cut, 1)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(taken.len(), 1, "bounded by the batch");
    taken.extend(
        s.take_expired(&cut, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id),
    );
    assert_eq!(taken, ["old-stored", "old-stored-2"], "oldest first");
    for id in ["old-pending", "old-failed", "old-own", "new-stored"] {
        assert!(
            s.recording::<Value>(id).await.unwrap().is_some(),
            "{id} stays"
        );
    }
    assert!(other_node
        .recording::<Value>("old-there")
        .await
        .unwrap()
        .is_some());
    // b's own limit, now past: its recording goes; without a default, a's stay.
    let cut = Cutoffs {
        default_before_us: None,
        accounts: vec![("b".into(), boundary)],
    };
    let taken: Vec<String> = s
        .take_expired(&cut, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(taken, ["old-own"]);
    assert!(s.recording::<Value>("new-stored").await.unwrap().is_some());
}

async fn decision_records_are_found_by_party_call_and_outcome_and_pruned(open: &Opener) {
    use callrec::store::decisions::{DecisionFilter, NewDecision, Outcome as Happened};
    let s = open.open().await.for_node("n1").await.unwrap();
    let other = open.open().await.for_node("n2").await.unwrap();
    let d = |id: &str,
             call: &str,
             acc: Option<&str>,
             at: u64,
             caller: &str,
             callee: &str,
             planned: u32| {
        NewDecision {
            id: id.into(),
            call_id: call.into(),
            account_id: acc.map(str::to_string),
            created_us: at,
            caller: caller.into(),
            callee: callee.into(),
            planned,
            body: json!({"call_id": call, "planned": planned}).to_string(),
        }
    };
    s.add_decisions(&[
        d("d1", "c1", Some("a"), 1_000, "+100", "200", 0),
        d("d2", "c2", Some("a"), 2_000, "300", "+100", 2),
        d("d3", "c3", Some("b"), 3_000, "+100", "200", 1),
    ])
    .await
    .unwrap();
    other
        .add_decisions(&[d("d4", "c4", None, 4_000, "9", "8", 0)])
        .await
        .unwrap();
    // The same record twice is kept once.
    s.add_decisions(&[d("d1", "c1", Some("a"), 1_000, "+100", "200", 0)])
        .await
        .unwrap();
    async fn ids_of(s: &Store, f: DecisionFilter) -> Vec<String> {
        s.decisions(&DecisionFilter { limit: 100, ..f })
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect()
    }
    assert_eq!(
        ids_of(&s, DecisionFilter::default()).await,
        ["d4", "d3", "d2", "d1"]
    );
    let in_a = DecisionFilter {
        account_id: Some("a".into()),
        ..Default::default()
    };
    assert_eq!(ids_of(&s, in_a.clone()).await, ["d2", "d1"]);
    // As caller or as callee, within the account only.
    assert_eq!(
        ids_of(
            &s,
            DecisionFilter {
                party: Some("+100".into()),
                ..in_a.clone()
            }
        )
        .await,
        ["d2", "d1"]
    );
    assert_eq!(
        ids_of(
            &s,
            DecisionFilter {
                party: Some("+100".into()),
                ..Default::default()
            }
        )
        .await,
        ["d3", "d2", "d1"]
    );
    assert_eq!(
        ids_of(
            &s,
            DecisionFilter {
                recorded: Some(false),
                ..in_a.clone()
            }
        )
        .await,
        ["d1"]
    );
    assert_eq!(
        ids_of(
            &s,
            DecisionFilter {
                since_us: Some(1_500),
                until_us: Some(3_500),
                ..Default::default()
            }
        )
        .await,
        ["d3", "d2"]
    );
    // Pages follow (created_us, id), never repeating or skipping a row.
    let first = s
        .decisions(&DecisionFilter {
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    let last = first.last().unwrap();
    assert_eq!(
        ids_of(
            &s,
            DecisionFilter {
                after: Some((last.created_us, last.id.clone())),
                ..Default::default()
            }
        )
        .await,
        ["d2", "d1"]
    );
    assert_eq!(first[1].node, "n1");
    assert_eq!(first[0].node, "n2");
    assert_eq!(first[1].body["planned"], 1);
    // Outcomes, written before or after the record, come with the call's newest record.
    s.add_outcomes(&[
        Happened {
            call_id: "c2".into(),
            at_us: 2_500,
            event: "recording.started".into(),
            recording_id: Some("r1".into()),
            reason: None,
        },
        Happened {
            call_id: "c2".into(),
            at_us: 2_600,
            event: "recording.discarded".into(),
            recording_id: Some("r1".into()),
            reason: Some("shorter than record_min_sec".into()),
        },
    ])
    .await
    .unwrap();
    let (row, outcomes) = s.decision_of_call(Some("a"), "c2").await.unwrap().unwrap();
    assert_eq!(row.id, "d2");
    let events: Vec<&str> = outcomes.iter().map(|o| o.event.as_str()).collect();
    assert_eq!(events, ["recording.started", "recording.discarded"]);
    assert!(
        s.decision_of_call(Some("b"), "c2").await.unwrap().is_none(),
        "another account's call"
    );
    assert!(s.decision_of_call(None, "c2").await.unwrap().is_some());
    // Pruning: by age, then by the row bound, a batch at a time.
    assert_eq!(s.prune_decisions(1_500, 1_000, 10).await.unwrap(), 1);
    assert_eq!(
        ids_of(&s, DecisionFilter::default()).await,
        ["d4", "d3", "d2"]
    );
    assert_eq!(s.prune_decisions(0, 2, 10).await.unwrap(), 1);
    assert_eq!(ids_of(&s, DecisionFilter::default()).await, ["d4", "d3"]);
    assert!(s.decision_of_call(None, "c2").await.unwrap().is_none());
    assert_eq!(s.prune_decisions(0, 2, 10).await.unwrap(), 0);
    // Erasure on request: a call's records, in its account only.
    assert_eq!(
        s.erase_decisions(Some("a"), "c3").await.unwrap(),
        0,
        "c3 is b's"
    );
    assert_eq!(s.erase_decisions(Some("b"), "c3").await.unwrap(), 1);
    assert_eq!(ids_of(&s, DecisionFilter::default()).await, ["d4"]);
    assert_eq!(other.erase_decisions(None, "c4").await.unwrap(), 1);
}
