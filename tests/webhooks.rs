//! Webhooks (README "Webhooks"): `callrec serve` beside a simulated FreeSWITCH tells an
//! account's webhook each thing that happens to its recordings, signed per Standard Webhooks;
//! the signature is checked here with `ring`'s HMAC, not callrec's signer. Retries keep the
//! `webhook-id` across a restart; a receiver that never answers holds only its own events; the
//! destination policy holds at connect time against the resolved address.

mod support;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use callrec::hooks::sender::{self, SenderConfig};
use callrec::net::guard::PinnedLookup;
use callrec::store::documents::Expect;
use callrec::store::webhooks::{HookFilter, HookState, NewHookEvent};
use callrec::store::{Kind, Store};
use callrec_sim::{CallHandle, CallSpec};
use serde_json::{json, Value};
use support::node::{until, Node};
use support::process::Killed;
use support::receiver::{Act, Got, Receiver};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const ALL: [&str; 6] = [
    "recording.started",
    "recording.completed",
    "recording.delivered",
    "recording.failed",
    "recording.discarded",
    "recording.controlled",
];

/// Standard Webhooks verification, written here with `ring` (independent of callrec's signer):
/// HMAC-SHA256 of `<id>.<timestamp>.<body>` keyed with the base64 after `whsec_`, compared with
/// each `v1,` signature of the header.
fn verify(secret: &str, got: &Got) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    let Some(key) = secret
        .strip_prefix("whsec_")
        .and_then(|k| b64.decode(k).ok())
    else {
        return false;
    };
    let (Some(id), Some(ts), Some(sigs)) = (
        got.header("webhook-id"),
        got.header("webhook-timestamp"),
        got.header("webhook-signature"),
    ) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let mut signed = format!("{id}.{ts}.").into_bytes();
    signed.extend_from_slice(&got.body);
    sigs.split(' ').any(|s| {
        s.strip_prefix("v1,")
            .and_then(|b| b64.decode(b).ok())
            .is_some_and(|tag| ring::hmac::verify(&key, &signed, &tag).is_ok())
    })
}

fn body(got: &Got) -> Value {
    serde_json::from_slice(&got.body).unwrap_or(Value::Null)
}

fn types(got: &[Got]) -> Vec<String> {
    got.iter()
        .map(|g| body(g)["type"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Account `acc` records every call as WAV to `upload` (kept from 2 s on).
async fn record_to(n: &Node, admin: &str, upload: &str) {
    let data = json!({"record_call": {"format": "wav", "url": upload, "method": "put",
                                      "record_min_sec": 2}});
    n.api(
        "PUT",
        "/v2/accounts/acc",
        admin,
        Some(json!({ "data": data })),
    )
    .await;
}

/// Creates a webhook of `acc` for `events`; returns its generated secret.
async fn hook(n: &Node, token: &str, id: &str, uri: &str, events: &[&str]) -> String {
    let v = n
        .api(
            "PUT",
            &format!("/v2/accounts/acc/webhooks/{id}"),
            token,
            Some(json!({"data": {"name": id, "uri": uri, "events": events}})),
        )
        .await;
    v["data"]["secret"]
        .as_str()
        .expect("a generated secret is returned once")
        .to_string()
}

/// A call of `acc` on `n`, answered, its `uuid_record` seen: (call, recording id).
async fn answered(n: &Node) -> (CallHandle, String) {
    let call = callrec_sim::dial(
        format!("127.0.0.1:{}", n.listen).parse().unwrap(),
        CallSpec::new("15550001111", "1000").var("callrec_account_id", "acc"),
    )
    .await
    .unwrap();
    call.wait_for_command("sendmsg").await;
    call.answer();
    let start = call.wait_for_command("api uuid_record").await;
    let id = start
        .line
        .split("callrec_recording_id=")
        .nth(1)
        .and_then(|s| s.split([',', '}']).next())
        .expect("the recording id rides on uuid_record")
        .to_string();
    (call, id)
}

async fn ended(call: CallHandle, seconds: u64) {
    call.advance(Duration::from_secs(seconds));
    call.hangup("NORMAL_CLEARING");
    call.closed().await;
}

async fn requests_until(r: &Receiver, what: &str, n: usize) -> Vec<Got> {
    until(what, async || {
        let got = r.requests();
        (got.len() >= n).then_some(got)
    })
    .await
}

#[tokio::test]
async fn each_event_type_reaches_the_webhook_signed_and_naming_the_call() {
    let tmp = tempfile::tempdir().unwrap();
    // The upload server takes the first recording and refuses the second for good.
    let upload = Receiver::start(vec![
        Act::Respond(201, vec![], String::new()),
        Act::Respond(404, vec![], String::new()),
    ])
    .await;
    let hooks = Receiver::start(vec![]).await;
    let n = Node::sqlite(tmp.path(), "fs-1", "");
    let _serve: Killed = n.serve().await;
    let admin = n.admin_token();
    record_to(&n, &admin, &format!("{}/rec/", upload.base)).await;
    let secret = hook(&n, &admin, "crm", &format!("{}/hook", hooks.base), &ALL).await;
    let shown = n
        .api("GET", "/v2/accounts/acc/webhooks/crm", &admin, None)
        .await;
    assert!(shown["data"].get("secret").is_none(), "write-only: {shown}");
    assert!(!shown.to_string().contains(&secret));

    // A: paused and resumed through the API, 3 s, kept and delivered.
    let (a, a_rec) = answered(&n).await;
    for status in ["paused", "in-progress"] {
        n.api(
            "PATCH",
            &format!("/v2/accounts/acc/recordings/{a_rec}"),
            &admin,
            Some(json!({"data": {"status": status}})),
        )
        .await;
    }
    let a_call = a.uuid.clone();
    ended(a, 3).await;
    requests_until(&upload, "A's upload", 1).await;
    // B: 1 s, shorter than record_min_sec: discarded.
    let (b, b_rec) = answered(&n).await;
    let b_call = b.uuid.clone();
    ended(b, 1).await;
    // C: kept, and its upload refused with 404: failed.
    let (c, c_rec) = answered(&n).await;
    let c_call = c.uuid.clone();
    ended(c, 3).await;

    let got = requests_until(&hooks, "every event", 10).await;
    let mut by_recording: HashMap<String, Vec<String>> = HashMap::new();
    let mut ids = HashSet::new();
    for g in &got {
        assert_eq!(g.method, "POST");
        assert_eq!(g.header("content-type"), Some("application/json"));
        assert!(verify(&secret, g), "signature checks out: {:?}", g.headers);
        assert!(ids.insert(g.header("webhook-id").unwrap().to_string()));
        let v = body(g);
        assert!(
            time::OffsetDateTime::parse(
                v["timestamp"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339
            )
            .is_ok(),
            "{v}"
        );
        let d = &v["data"];
        assert_eq!(d["account_id"], "acc");
        assert_eq!(d["node"], "fs-1");
        let (rec, call) = (d["recording_id"].as_str().unwrap(), &d["call_id"]);
        let want_call = [(&a_rec, &a_call), (&b_rec, &b_call), (&c_rec, &c_call)]
            .into_iter()
            .find(|(r, _)| r.as_str() == rec)
            .map(|(_, c)| c.as_str())
            .expect("a recording of these calls");
        assert_eq!(call, want_call, "the event names its call: {v}");
        assert_eq!(d["caller"]["number"], "15550001111");
        assert!(!v.to_string().contains("file_path"), "no local path: {v}");
        by_recording
            .entry(rec.to_string())
            .or_default()
            .push(v["type"].as_str().unwrap().to_string());
    }
    assert_eq!(
        by_recording[&a_rec],
        [
            "recording.started",
            "recording.controlled",
            "recording.controlled",
            "recording.completed",
            "recording.delivered"
        ]
    );
    assert_eq!(
        by_recording[&b_rec],
        ["recording.started", "recording.discarded"]
    );
    assert_eq!(
        by_recording[&c_rec],
        [
            "recording.started",
            "recording.completed",
            "recording.failed"
        ]
    );
    let a_delivered = got
        .iter()
        .map(body)
        .find(|v| v["type"] == "recording.delivered")
        .unwrap();
    assert_eq!(a_delivered["data"]["destinations"][0]["state"], "delivered");
    assert_eq!(a_delivered["data"]["duration_ms"], 3000);
    let controls: Vec<Value> = got
        .iter()
        .map(body)
        .filter(|v| v["type"] == "recording.controlled")
        .map(|v| v["data"]["reason"].clone())
        .collect();
    assert_eq!(controls, [json!("pause:silence"), json!("resume")]);
    let failed = got
        .iter()
        .map(body)
        .find(|v| v["type"] == "recording.failed")
        .unwrap();
    assert!(
        failed["data"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("404")),
        "{failed}"
    );
    // The operators' view: every event delivered, first time.
    let out = n.cli(&["webhooks", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.contains(" delivered ")).count(),
        10
    );
    let log = std::fs::read_to_string(&n.log).unwrap();
    assert!(!log.contains(&secret), "the secret never reaches the log");
    assert_eq!(
        log.matches("webhook attempt").count(),
        10,
        "a line per attempt"
    );
}

#[tokio::test]
async fn retries_after_503_keep_the_webhook_id_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let upload = Receiver::start(vec![]).await;
    let hooks = Receiver::start(vec![Act::Respond(503, vec![], String::new()); 10_000]).await;
    let n = Node::sqlite(tmp.path(), "fs-1", "");
    let serve = n.serve().await;
    let admin = n.admin_token();
    record_to(&n, &admin, &format!("{}/rec/", upload.base)).await;
    let secret = hook(
        &n,
        &admin,
        "crm",
        &format!("{}/hook", hooks.base),
        &["recording.started"],
    )
    .await;
    let (call, _) = answered(&n).await;
    // Retried (the spool's schedule, 100 ms doubling here) while the receiver answers 503.
    let before = requests_until(&hooks, "three attempts", 3).await;
    let id = before[0].header("webhook-id").unwrap().to_string();
    assert!(before.iter().all(|g| g.header("webhook-id") == Some(&id)));
    // Killed mid-retry; the receiver recovers; the restarted callrec sends the same message.
    drop(serve);
    ended(call, 1).await;
    let tried = hooks.requests().len();
    hooks.set_script(vec![]);
    let _serve = n.serve().await;
    let after = until("the delivery after the restart", async || {
        let got = hooks.requests();
        let ok = n.cli(&["webhooks", "list", "--state", "delivered"]);
        let listed = String::from_utf8_lossy(&ok.stdout).contains(&id);
        (listed && got.len() > tried).then_some(got)
    })
    .await;
    assert!(
        after.iter().all(|g| g.header("webhook-id") == Some(&id)),
        "one event, one webhook-id on every attempt"
    );
    assert!(after.iter().all(|g| verify(&secret, g)));
    let bodies: HashSet<&[u8]> = after.iter().map(|g| g.body.as_slice()).collect();
    assert_eq!(bodies.len(), 1, "the same body on every attempt");
}

#[tokio::test]
async fn a_receiver_that_never_answers_holds_only_its_own_events() {
    let tmp = tempfile::tempdir().unwrap();
    let upload = Receiver::start(vec![]).await;
    let silent = Receiver::start(vec![Act::Silence; 100]).await;
    let good = Receiver::start(vec![]).await;
    // Two slots, and an attempt may take two minutes: a dead receiver that held more than its
    // own slot would stall every other webhook for that long.
    let n = Node::sqlite(
        tmp.path(),
        "fs-1",
        "webhook_concurrency = 2\nwebhook_timeout_ms = 120000\n",
    );
    let _serve = n.serve().await;
    let admin = n.admin_token();
    record_to(&n, &admin, &format!("{}/rec/", upload.base)).await;
    let events = [
        "recording.started",
        "recording.completed",
        "recording.delivered",
    ];
    hook(&n, &admin, "dead", &format!("{}/h", silent.base), &events).await;
    hook(&n, &admin, "crm", &format!("{}/h", good.base), &events).await;
    for _ in 0..2 {
        let (call, _) = answered(&n).await;
        ended(call, 3).await;
    }
    requests_until(&upload, "both uploads", 2).await;
    let got = requests_until(&good, "the live receiver's six events", 6).await;
    assert_eq!(
        types(&got)
            .iter()
            .filter(|t| *t == "recording.delivered")
            .count(),
        2
    );
    assert_eq!(
        silent.requests().len(),
        1,
        "one attempt at a time to the dead receiver; its other events wait"
    );
}

/// The policy at connect time, against the address a name resolves to then (a name resolving
/// to a forbidden address after it was saved: DNS rebinding). Names are pinned here; nothing
/// else in this sandbox can make a name resolve to 169.254.169.254.
#[tokio::test]
async fn the_destination_policy_holds_at_connect_time_against_the_resolved_address() {
    callrec::telemetry::init(false);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let receiver = Receiver::start(vec![]).await;
    let port = receiver.base.rsplit(':').next().unwrap().to_string();
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    for (id, host, writer) in [
        ("metadata", "metadata.test", "admin"),
        ("rebound", "rebound.test", "account"),
        ("admin-local", "rebound.test", "admin"),
    ] {
        store
            .put(
                Kind::Webhook,
                "acc",
                id,
                json!({"name": id, "uri": format!("http://{host}:{port}/h"),
                       "events": ["recording.started"], "secret": secret, "pvt_writer": writer}),
                Expect::Absent,
            )
            .await
            .unwrap();
        store
            .add_hook_events(&[NewHookEvent {
                id: format!("msg_{id}"),
                account_id: "acc".into(),
                webhook_id: id.into(),
                event_type: "recording.started".into(),
                recording_id: Some("r1".into()),
                body: r#"{"type":"recording.started"}"#.into(),
            }])
            .await
            .unwrap();
    }
    let pinned = PinnedLookup(HashMap::from([
        (
            "metadata.test".to_string(),
            vec![IpAddr::from([169, 254, 169, 254])],
        ),
        (
            "rebound.test".to_string(),
            vec![IpAddr::from([127, 0, 0, 1])],
        ),
    ]));
    let cfg = SenderConfig {
        lookup: Arc::new(pinned),
        timeout: Duration::from_secs(5),
        ..SenderConfig::default()
    };
    let (stop, tracker) = (CancellationToken::new(), TaskTracker::new());
    tokio::spawn(sender::run(
        store.clone(),
        cfg,
        Arc::new(tokio::sync::Notify::new()),
        stop.clone(),
        tracker.clone(),
    ));
    let rows = until("every event attempted", async || {
        let rows = store.hook_events(&HookFilter::default()).await.unwrap();
        rows.iter().all(|r| r.attempts > 0).then_some(rows)
    })
    .await;
    stop.cancel();
    let state = |id: &str| rows.iter().find(|r| r.webhook_id == id).unwrap().clone();
    assert_eq!(
        state("admin-local").state,
        HookState::Delivered,
        "an admin may send to this host"
    );
    for (id, addr) in [("metadata", "169.254.169.254"), ("rebound", "127.0.0.1")] {
        let r = state(id);
        assert_eq!(
            r.state,
            HookState::Pending,
            "{id}: retried later, never sent"
        );
        let e = r.last_error.unwrap_or_default();
        assert!(
            e.contains(addr) && e.contains("destination_policy"),
            "{id}: {e}"
        );
    }
    assert_eq!(
        receiver.requests().len(),
        1,
        "only the admin's webhook connected"
    );
    assert!(verify(secret, &receiver.requests()[0]));
}
