//! Several FreeSWITCH nodes, one database: two `callrec serve` processes (nodes `fs-1` and
//! `fs-2`, each beside its own simulated FreeSWITCH and with its own data directory) share one
//! PostgreSQL database. What one instance's API writes, the other's next call uses; tokens work
//! on both; listings show every node's recordings; each instance delivers only the recordings
//! whose files are on its node, and nothing is uploaded twice while both drain at once.
//!
//! Skipped (with a note) without `STORE_TEST_DATABASE_URL`; `scripts/test` always sets it.

mod support;

use std::collections::HashMap;
use std::path::Path;

use std::time::Duration;

use callrec::rules::AudioFormat;
use callrec::store::Store;
use callrec::uploader::spool;
use callrec::uploader::{CallMeta, FinishedRecording};
use callrec::values::{Destination, RecordingKind, UploadMethod};
use callrec_sim::CallSpec;
use serde_json::{json, Value};
use support::node::{recorded_call, until, Node};
use support::pg::TestDb;
use support::receiver::Receiver;

/// Through `n`'s API (`PUT` creates, `PATCH` changes): account `acc` records every call as WAV
/// to `url`.
async fn record_to(n: &Node, method: &str, admin: &str, url: &str) {
    let body = json!({"data": {"record_call": {"format": "wav", "url": url, "method": "put"}}});
    n.api(method, "/v2/accounts/acc", admin, Some(body)).await;
}

#[tokio::test]
async fn a_document_written_through_one_instance_applies_to_the_next_call_on_the_other() {
    let Some(db) = support::pg::new_db() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (
        Node::new(tmp.path(), "fs-1", &db),
        Node::new(tmp.path(), "fs-2", &db),
    );
    let receiver = Receiver::start(vec![]).await;
    let _p1 = one.serve().await;
    let _p2 = two.serve().await;
    // A token made on node 1 works on node 2's API.
    let admin = one.admin_token();
    record_to(&one, "PUT", &admin, &format!("{}/first/", receiver.base)).await;
    let first = recorded_call(&two).await;
    let got = until("the upload from fs-2", async || {
        let r = receiver.requests();
        (r.len() == 1).then(|| r[0].clone())
    })
    .await;
    assert!(got.target.starts_with("/first/"), "{}", got.target);
    // Changed through node 2, used by node 1's next call.
    record_to(&two, "PATCH", &admin, &format!("{}/second/", receiver.base)).await;
    let second = recorded_call(&one).await;
    let got = until("the upload from fs-1", async || {
        let r = receiver.requests();
        (r.len() == 2).then(|| r[1].clone())
    })
    .await;
    assert!(got.target.starts_with("/second/"), "{}", got.target);
    // Either API lists both nodes' recordings, each with its node, both delivered.
    let listed = until("both delivered", async || {
        let v = one
            .api("GET", "/v2/accounts/acc/recordings", &admin, None)
            .await;
        let rows = v["data"].as_array().cloned().unwrap_or_default();
        let done = rows.len() == 2 && rows.iter().all(|r| r["state"] == "delivered");
        done.then_some(rows)
    })
    .await;
    let nodes: HashMap<String, String> = listed
        .iter()
        .map(|r| {
            (
                r["call_id"].as_str().unwrap().to_string(),
                r["node"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        nodes,
        HashMap::from([(first, "fs-2".into()), (second, "fs-1".into())])
    );
    let only_two = two
        .api("GET", "/v2/accounts/acc/recordings?node=fs-2", &admin, None)
        .await;
    assert_eq!(only_two["data"].as_array().unwrap().len(), 1);
    // The CLI of either node lists them too.
    let out = two.cli(&["recordings", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("fs-1") && text.contains("fs-2"), "{text}");
    assert_eq!(receiver.requests().len(), 2, "nothing uploaded twice");
}

/// A spooled recording of `node` whose file (its content names the node) is in `dir`.
fn spooled(node: &str, i: usize, dir: &Path, url: &str) -> FinishedRecording {
    let id = format!("{node}-rec-{i:04}");
    let file = dir.join(format!("{id}.wav"));
    std::fs::write(&file, format!("audio of {id}")).unwrap();
    FinishedRecording {
        call: CallMeta {
            call_id: format!("{node}-call-{i:04}"),
            account_id: Some("acc".into()),
            user_id: None,
            device_id: None,
            caller_id_name: "Caller".into(),
            caller_id_number: "15550001111".into(),
            callee_number: "1000".into(),
            callee_name: String::new(),
            direction: "inbound".into(),
            interaction_id: None,
        },
        file_path: file.to_string_lossy().into_owned(),
        recording_id: id,
        start_us: 1_764_000_000_000_000 + i as u64,
        duration_ms: 1_000,
        format: AudioFormat::Wav,
        sample_rate: Some(8000),
        stereo: false,
        size: 0,
        destinations: vec![Destination {
            url: url.to_string(),
            method: UploadMethod::Put,
            by_account: false,
        }],
        keep_local: true,
        origin: "test".into(),
        completion_cause: "success-silence".into(),
        sequence: 0,
        kind: RecordingKind::default(),
        may_grow_until_us: None,
        pauses: Vec::new(),
        encryption: None,
        encrypt_to: None,
    }
}

/// Spools `n` recordings of `node` in its data directory.
async fn seed(db: &TestDb, node: &Node, owner: &str, n: usize, url: &str) -> Vec<String> {
    let store = Store::connect(&db.url)
        .await
        .unwrap()
        .for_node(owner)
        .await
        .unwrap();
    let dir = node.data.join("recordings/acc/seeded");
    std::fs::create_dir_all(&dir).unwrap();
    let mut ids = Vec::new();
    for i in 0..n {
        let rec = spooled(owner, i, &dir, url);
        spool::enqueue(&store, &rec).await.unwrap();
        ids.push(rec.recording_id);
    }
    ids
}

async fn states(db: &TestDb) -> HashMap<String, (String, String)> {
    let store = Store::connect(&db.url).await.unwrap();
    spool::list(
        &store,
        &spool::Filter {
            limit: Some(1000),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .into_iter()
    .map(|i| (i.meta.recording_id, (i.node, i.state.to_string())))
    .collect()
}

#[tokio::test]
async fn both_workers_drain_one_spool_each_its_own_node_nothing_twice() {
    let Some(db) = support::pg::new_db() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (
        Node::new(tmp.path(), "fs-1", &db),
        Node::new(tmp.path(), "fs-2", &db),
    );
    let receiver = Receiver::start(vec![]).await;
    let url = format!("{}/up/", receiver.base);
    let mut ids = seed(&db, &one, "fs-1", 60, &url).await;
    ids.extend(seed(&db, &two, "fs-2", 60, &url).await);
    let _p1 = one.serve().await;
    let _p2 = two.serve().await;
    until("every recording delivered", async || {
        let s = states(&db).await;
        (s.len() == 120 && s.values().all(|(_, st)| st == "delivered")).then_some(())
    })
    .await;
    // Each recording reached the receiver once, whole, with its own node's file.
    let mut count: HashMap<String, usize> = HashMap::new();
    for g in receiver
        .requests()
        .iter()
        .filter(|g| g.complete && g.method == "PUT")
    {
        let body = String::from_utf8_lossy(&g.body).to_string();
        let id = body.strip_prefix("audio of ").unwrap_or(&body).to_string();
        *count.entry(id).or_default() += 1;
    }
    let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "uploaded twice: {twice:?}");
    let mut delivered: Vec<String> = count.into_keys().collect();
    delivered.sort();
    ids.sort();
    assert_eq!(delivered, ids);
    // Each node delivered its own: fs-1's log names only fs-1's recordings.
    let log1 = std::fs::read_to_string(&one.log).unwrap();
    assert!(log1.contains("fs-1-rec-0000"), "{log1}");
    assert!(
        !log1.contains("fs-2-rec-"),
        "fs-1 touched fs-2's recordings"
    );
}

#[tokio::test]
async fn a_node_id_serves_once_and_a_gone_nodes_recordings_are_reassigned() {
    let Some(db) = support::pg::new_db() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let one = Node::new(tmp.path(), "fs-1", &db);
    let receiver = Receiver::start(vec![]).await;
    let url = format!("{}/up/", receiver.base);
    // fs-9 is gone; its files were copied to fs-1's disk at the same paths.
    let gone = seed(&db, &one, "fs-9", 3, &url).await;
    let own = seed(&db, &one, "fs-1", 1, &url).await;
    let _p1 = one.serve().await;
    // A second process claiming to be fs-1 on the same database refuses to start.
    let twin = Node::new(&tmp.path().join("twin"), "fs-1", &db);
    let out = twin.cli(&["serve"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("held by another running callrec"), "{err}");
    until("fs-1's own recording delivered", async || {
        (states(&db).await[&own[0]].1 == "delivered").then_some(())
    })
    .await;
    let s = states(&db).await;
    for id in &gone {
        assert_eq!(s[id], ("fs-9".to_string(), "pending".to_string()));
    }
    assert_eq!(
        receiver.requests().len(),
        1,
        "fs-1 left fs-9's recordings alone"
    );
    let out = one.cli(&["recordings", "reassign", "--from", "fs-9", "--to", "fs-1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("3 recordings of node fs-9 now belong to node fs-1"));
    until("the reassigned recordings delivered", async || {
        let s = states(&db).await;
        gone.iter()
            .all(|id| s[id] == ("fs-1".to_string(), "delivered".to_string()))
            .then_some(())
    })
    .await;
    assert_eq!(receiver.requests().len(), 4);
}

// Multi-threaded: the relay keeps forwarding while the test blocks on the CLI and the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_database_is_unreachable_calls_connect_and_recordings_wait_locally() {
    let Some(db) = support::pg::new_db() else {
        return;
    };
    let relay = support::pg::Cuttable::start(db.addr()).await;
    let tmp = tempfile::tempdir().unwrap();
    let one = Node::with_url(tmp.path(), "fs-1", &db.url_via(relay.port));
    let receiver = Receiver::start(vec![]).await;
    let _p1 = one.serve().await;
    let admin = one.admin_token();
    record_to(&one, "PUT", &admin, &format!("{}/up/", receiver.base)).await;
    let before = recorded_call(&one).await;
    until("the first upload", async || {
        (receiver.requests().len() == 1).then_some(())
    })
    .await;
    relay.cut();
    // The call connects and is recorded with the settings as last read; the recording waits in
    // the node's own file.
    let during = recorded_call(&one).await;
    let data = one.data.clone();
    let local = until("the recording kept locally", async || {
        let store = Store::open(&data).ok()?;
        let items = spool::list(
            &store,
            &spool::Filter {
                call_id: Some(during.clone()),
                ..Default::default()
            },
        )
        .await
        .ok()?;
        (items.len() == 1 && items[0].state == "pending").then(|| items[0].clone())
    })
    .await;
    assert_eq!(
        receiver.requests().len(),
        1,
        "nothing delivered while it is down"
    );
    // The API says so rather than failing obscurely.
    let status = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/v2/accounts/acc", one.api))
        .header("X-Auth-Token", &admin)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, reqwest::StatusCode::SERVICE_UNAVAILABLE);
    relay.restore();
    until("moved to the database and delivered", async || {
        let s = states(&db).await;
        (s.get(&local.meta.recording_id) == Some(&("fs-1".to_string(), "delivered".to_string())))
            .then_some(())
    })
    .await;
    let store = Store::open(&one.data).unwrap();
    assert!(
        spool::list(&store, &spool::Filter::default())
            .await
            .unwrap()
            .is_empty(),
        "nothing left in the local file"
    );
    let targets: Vec<String> = receiver
        .requests()
        .iter()
        .map(|g| g.target.clone())
        .collect();
    assert_eq!(targets.len(), 2, "{targets:?}");
    assert!(
        states(&db).await.len() == 2,
        "{before} and {during} in the database"
    );
    let log = std::fs::read_to_string(&one.log).unwrap();
    assert!(
        log.contains("recording journaled locally until it returns")
            && log.contains("recordings journaled locally moved to the database"),
        "{log}"
    );
}

#[tokio::test]
async fn a_node_moving_from_sqlite_takes_its_spool_to_the_database() {
    let Some(db) = support::pg::new_db() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let one = Node::new(tmp.path(), "fs-1", &db);
    let receiver = Receiver::start(vec![]).await;
    // Queued while the node still ran on its own SQLite file.
    let ids: Vec<String> = {
        let store = Store::open(&one.data)
            .unwrap()
            .for_node("fs-1")
            .await
            .unwrap();
        let dir = one.data.join("recordings/acc/sqlite");
        std::fs::create_dir_all(&dir).unwrap();
        let mut ids = Vec::new();
        for i in 0..3 {
            let rec = spooled("fs-1", i, &dir, &format!("{}/up/", receiver.base));
            spool::enqueue(&store, &rec).await.unwrap();
            ids.push(rec.recording_id);
        }
        ids
    };
    let _p1 = one.serve().await;
    until("moved to the database and delivered", async || {
        let s = states(&db).await;
        ids.iter()
            .all(|id| s.get(id) == Some(&("fs-1".to_string(), "delivered".to_string())))
            .then_some(())
    })
    .await;
    assert_eq!(receiver.requests().len(), 3);
    let local = Store::open(&one.data).unwrap();
    assert!(spool::list(&local, &spool::Filter::default())
        .await
        .unwrap()
        .is_empty());
}

/// A live recording is controlled through either node's API: the request reaches node 2's API
/// from node 1's (its `api_url` in the database) and its answer comes back; with node 2 gone,
/// node 1 answers 503 naming it.
#[tokio::test]
async fn a_live_recording_is_paused_through_the_other_nodes_api_and_a_gone_node_is_named() {
    let Some(db) = support::pg::new_db() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (
        Node::new(tmp.path(), "fs-1", &db),
        Node::new(tmp.path(), "fs-2", &db),
    );
    let _p1 = one.serve().await;
    let p2 = two.serve().await;
    let admin = one.admin_token();
    let body = json!({"data": {"record_call": {"format": "wav"}}});
    one.api("PUT", "/v2/accounts/acc", &admin, Some(body)).await;
    let call = callrec_sim::dial(
        format!("127.0.0.1:{}", two.listen).parse().unwrap(),
        CallSpec::new("15550001111", "1000").var("callrec_account_id", "acc"),
    )
    .await
    .unwrap();
    call.answer();
    let start = call.wait_for_command("api uuid_record").await;
    let id = start
        .line
        .split("callrec_recording_id=")
        .nth(1)
        .and_then(|s| s.split([',', '}']).next())
        .unwrap()
        .to_string();
    call.advance(Duration::from_secs(2));
    call.sync().await;
    // The journal row (on fs-2) is in the shared database once FreeSWITCH was asked.
    until("the journal row", async || {
        let v = one
            .api(
                "GET",
                &format!("/v2/accounts/acc/recordings/{id}"),
                &admin,
                None,
            )
            .await;
        (v["data"]["node"] == "fs-2").then_some(())
    })
    .await;
    let v = one
        .api(
            "PATCH",
            &format!("/v2/accounts/acc/recordings/{id}"),
            &admin,
            Some(json!({"data": {"status": "paused"}})),
        )
        .await;
    assert_eq!(v["data"]["status"], "paused", "{v}");
    let masks = call
        .report()
        .commands
        .iter()
        .filter(|c| c.line.starts_with("api uuid_record") && c.line.contains(" mask "))
        .count();
    assert_eq!(masks, 1, "node 2's session sent the mask");
    // Node 2 goes: its recording stays journaled on fs-2, and node 1 names it.
    drop(p2);
    let resp = reqwest::Client::new()
        .patch(format!(
            "http://127.0.0.1:{}/v2/accounts/acc/recordings/{id}",
            one.api
        ))
        .header("X-Auth-Token", &admin)
        .json(&json!({"data": {"status": "in-progress"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["data"]["node"], "fs-2", "{v}");
}

/// Webhooks on a shared database: both nodes raise events for their own calls and both send
/// from the one queue, yet each event reaches the receiver once.
#[tokio::test]
async fn each_webhook_event_is_sent_once_by_one_of_the_nodes() {
    let Some(db) = support::pg::new_db() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (
        Node::new(tmp.path(), "fs-1", &db),
        Node::new(tmp.path(), "fs-2", &db),
    );
    let upload = Receiver::start(vec![]).await;
    let hooks = Receiver::start(vec![]).await;
    let _p1 = one.serve().await;
    let _p2 = two.serve().await;
    let admin = one.admin_token();
    record_to(&one, "PUT", &admin, &format!("{}/rec/", upload.base)).await;
    let events = [
        "recording.started",
        "recording.completed",
        "recording.delivered",
    ];
    two.api(
        "PUT",
        "/v2/accounts/acc/webhooks/crm",
        &admin,
        Some(
            json!({"data": {"name": "crm", "uri": format!("{}/h", hooks.base),
                             "events": events}}),
        ),
    )
    .await;
    for _ in 0..3 {
        recorded_call(&one).await;
        recorded_call(&two).await;
    }
    let listed = until("every event delivered", async || {
        let out = two.cli(&["webhooks", "list", "--state", "delivered"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        (text.lines().count() == 1 + 18).then_some(text)
    })
    .await;
    let got = hooks.requests();
    assert_eq!(got.len(), 18, "each event sent once: {listed}");
    let ids: std::collections::HashSet<&str> =
        got.iter().filter_map(|g| g.header("webhook-id")).collect();
    assert_eq!(ids.len(), 18);
    let mut per: HashMap<(String, String), usize> = HashMap::new();
    for g in &got {
        let v: Value = serde_json::from_slice(&g.body).unwrap();
        *per.entry((
            v["data"]["recording_id"].as_str().unwrap().to_string(),
            v["type"].as_str().unwrap().to_string(),
        ))
        .or_default() += 1;
    }
    assert_eq!(per.len(), 18);
    let nodes: std::collections::HashSet<String> = got
        .iter()
        .map(|g| {
            let v: Value = serde_json::from_slice(&g.body).unwrap();
            v["data"]["node"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(nodes.len(), 2, "events of both nodes' calls");
}

/// The console on one node plays and draws a recording whose file is on the other: the link is
/// made by the recording's node and the audio relayed (ranges too); the waveform is drawn there.
#[tokio::test]
async fn a_recording_on_the_other_node_plays_and_draws_through_this_ones_api() {
    let Some(db) = support::pg::new_db() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (
        Node::new(tmp.path(), "fs-1", &db),
        Node::new(tmp.path(), "fs-2", &db),
    );
    let _p1 = one.serve().await;
    let _p2 = two.serve().await;
    let admin = one.admin_token();
    let body = json!({"data": {"record_call": {"format": "wav"}}});
    one.api("PUT", "/v2/accounts/acc", &admin, Some(body)).await;
    let call_id = recorded_call(&two).await;
    let item = until("the recording kept on fs-2", async || {
        let v = one
            .api(
                "GET",
                &format!("/v2/accounts/acc/recordings?call_id={call_id}"),
                &admin,
                None,
            )
            .await;
        let r = v["data"][0].clone();
        (r["state"] == "stored").then_some(r)
    })
    .await;
    assert_eq!(item["node"], "fs-2");
    let id = item["recording_id"].as_str().unwrap();
    let size = item["size"].as_u64().unwrap();
    let w = one
        .api(
            "GET",
            &format!("/v2/accounts/acc/recordings/{id}/waveform?points=50"),
            &admin,
            None,
        )
        .await;
    assert_eq!(w["data"]["points"], 50, "{w}");
    let link = one
        .api(
            "POST",
            &format!("/v2/accounts/acc/recordings/{id}/link"),
            &admin,
            None,
        )
        .await;
    let path = link["data"]["url"].as_str().unwrap();
    assert!(path.ends_with("&node=fs-2"), "{path}");
    let url = format!("http://127.0.0.1:{}{path}", one.api);
    let whole = reqwest::get(&url).await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["content-type"], "audio/wav");
    assert_eq!(whole.bytes().await.unwrap().len() as u64, size);
    let part = reqwest::Client::new()
        .get(&url)
        .header("Range", "bytes=0-3")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(&part.bytes().await.unwrap()[..], b"RIFF");
    // fs-1's own key does not sign fs-2's links: without the relay the link is refused.
    let local = url.replace("&node=fs-2", "");
    assert_eq!(reqwest::get(&local).await.unwrap().status(), 403);
}
