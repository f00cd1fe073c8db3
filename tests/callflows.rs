//! Callflows end to end: documents created through the API, calls placed by the simulator,
//! callrec running the flow (`sendmsg execute` with an `Event-UUID`, waiting for the matching
//! CHANNEL_EXECUTE_COMPLETE), recordings kept and delivered.

mod support;

use std::sync::Arc;
use std::time::Duration;

use callrec::rules::planner::DocumentPlanner;
use callrec::store::Kind;
use callrec::uploader::Delivery;
use callrec_sim::{CallHandle, CallReport, CallSpec};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::api::{start, Api};
use support::harness::Collect;
use support::receiver::Receiver;

/// callrec deciding from the API's documents, with `delivery` taking the recordings.
async fn server(api: &Api, dir: &std::path::Path, delivery: Arc<dyn Delivery>) -> Server {
    callrec::telemetry::init(false);
    let mut config = callrec::config::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        record_stop_grace_ms: 300,
        disk_poll_ms: 20,
        ..Default::default()
    };
    let planner = Arc::new(DocumentPlanner {
        store: api.store.clone(),
        global: None,
        memory: Default::default(),
        decisions: None,
    });
    let switch = support::follow::configure(&mut config).await;
    let server = callrec::app::Server::start(config, planner, delivery)
        .await
        .unwrap();
    support::follow::link_up(&server).await;
    Server {
        addr: server.addr,
        inner: server,
        switch,
    }
}

/// callrec and the switch calls are placed on (inbound mode).
struct Server {
    addr: std::net::SocketAddr,
    inner: callrec::app::Server,
    switch: Option<callrec_sim::Switch>,
}

impl Server {
    async fn shutdown(self) {
        self.inner.shutdown().await;
    }

    async fn dial(&self, spec: CallSpec) -> std::io::Result<CallHandle> {
        support::follow::dial(&self.switch, self.addr, spec).await
    }

    fn place(&self, dialplan: Arc<callrec_sim::Dialplan>, spec: CallSpec) -> CallHandle {
        match &self.switch {
            Some(sw) => sw.place(dialplan, spec),
            None => callrec_sim::place(dialplan, spec),
        }
    }
}

async fn account_with_callflow(api: &Api, id: &str, callflow: Value) {
    let (s, _) = api
        .admin("PUT", "/v2/accounts/acc-1", Some(json!({"data": {}})))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = api
        .admin(
            "PUT",
            &format!("/v2/accounts/acc-1/callflows/{id}"),
            Some(json!({ "data": callflow })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

fn apps(r: &CallReport) -> Vec<(String, String)> {
    r.commands
        .iter()
        .filter(|c| c.line == "sendmsg")
        .map(|c| {
            (
                c.header("execute-app-name").unwrap_or("").to_string(),
                c.header("execute-app-arg").unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Waits until callrec has asked for the `n`th run of `app`.
async fn app_sent(call: &CallHandle, app: &str, n: usize) -> CallReport {
    tokio::time::timeout(
        Duration::from_secs(10),
        call.wait_until(|r| apps(r).iter().filter(|(a, _)| a == app).count() >= n),
    )
    .await
    .unwrap_or_else(|_| panic!("callrec never ran {app} #{n}: {:?}", apps(&call.report())))
}

fn lines(r: &CallReport) -> Vec<String> {
    r.commands.iter().map(|c| c.line.clone()).collect()
}

fn dial_spec(destination: &str) -> CallSpec {
    CallSpec::new("15550001111", destination).var("callrec_account_id", "acc-1")
}

#[tokio::test]
async fn record_call_start_then_dialplan_records_to_the_end_after_hand_back() {
    let api = start().await;
    account_with_callflow(
        &api,
        "cf-sales",
        json!({"numbers": ["2000"], "flow": {
            "module": "record_call", "data": {"action": "start", "format": "wav", "time_limit": 600},
            "children": {"_": {"module": "dialplan", "data": {}}}}}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let collect = Arc::new(Collect::default());
    let server = server(&api, dir.path(), collect.clone()).await;
    let call = server.dial(dial_spec("2000")).await.unwrap();
    let start = call.wait_for_command("api uuid_record").await;
    assert!(
        start.line.contains(".wav 600 {callrec_recording_id="),
        "format and time_limit reach uuid_record: {}",
        start.line
    );
    let r = app_sent(&call, "transfer", 1).await;
    assert_eq!(apps(&r).last().unwrap().1, "2000 XML callrec-continue");
    call.answer();
    call.advance(Duration::from_secs(3));
    call.hangup("NORMAL_CLEARING");
    call.closed().await;
    server.shutdown().await;
    let got = collect.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert!(got[0].duration_ms >= 3000, "{}", got[0].duration_ms);
    assert_eq!(got[0].origin, "callflow cf-sales record_call start");
    assert_eq!(got[0].call.account_id.as_deref(), Some("acc-1"));
}

/// Through the drop-in extension (`dialplans/callrec.xml` first in context `default`): the
/// flow runs while the call sits in the socket, and its `dialplan` module hands the call back
/// into its own context, where the guard skips the callrec extension and the site's own
/// routing for the number takes it. The recording goes on to the end.
#[tokio::test]
async fn through_the_drop_in_extension_the_dialplan_module_goes_back_into_the_calls_own_context() {
    let api = start().await;
    account_with_callflow(
        &api,
        "cf-sales",
        json!({"numbers": ["2000"], "flow": {
            "module": "record_call", "data": {"action": "start", "format": "wav"},
            "children": {"_": {"module": "dialplan", "data": {}}}}}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let collect = Arc::new(Collect::default());
    let server = server(&api, dir.path(), collect.clone()).await;
    let dropin = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dialplans/callrec.xml"),
    )
    .unwrap()
    .replace("127.0.0.1:8084", &server.addr.to_string())
    .replace("${domain_name}", "acc-1");
    let routing = r#"<include><extension name="sales"><condition field="destination_number" expression="^2000$">
        <action application="bridge" data="user/1001@acc-1"/></condition></extension></include>"#;
    let dialplan = Arc::new(
        callrec_sim::Dialplan::new()
            .include("default", &dropin)
            .unwrap()
            .include("default", routing)
            .unwrap(),
    );
    let mut spec = CallSpec::new("15550001111", "2000");
    spec.context = "default".into();
    let call = server.place(dialplan, spec);
    let r = app_sent(&call, "transfer", 1).await;
    assert_eq!(apps(&r).last().unwrap().1, "2000 XML default");
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        call.wait_until(|r| r.dialplan.iter().any(|a| a.starts_with("bridge"))),
    )
    .await
    .expect("the site's routing took the call");
    assert_eq!(r.sockets, 1, "the guard kept callrec from a second pass");
    assert!(r.resume_hazard.is_none() && !r.stuck_in_park, "{r:?}");
    assert!(lines(&r).contains(&format!(
        "api uuid_setvar {} socket_resume false",
        call.uuid
    )));
    call.advance(Duration::from_secs(3));
    call.hangup("NORMAL_CLEARING");
    call.wait_until(|r| r.hung_up).await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while collect.got.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("delivered");
    server.shutdown().await;
    let got = collect.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].duration_ms, 3000);
}

#[tokio::test]
async fn start_play_stop_play_hangup_records_exactly_between_start_and_stop() {
    let api = start().await;
    account_with_callflow(
        &api,
        "cf-ivr",
        json!({"numbers": ["3000"], "flow": {"module": "answer", "children": {"_": {
            "module": "record_call", "data": {"action": "start", "format": "wav"}, "children": {"_": {
            "module": "play", "data": {"media": "tone_stream://%(2000,0,440)"}, "children": {"_": {
            "module": "record_call", "data": {"action": "stop"}, "children": {"_": {
            "module": "play", "data": {"media": "tone_stream://%(1000,0,440)"}, "children": {"_": {
            "module": "hangup", "data": {"cause": "NORMAL_CLEARING"}}}}}}}}}}}}}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let collect = Arc::new(Collect::default());
    let server = server(&api, dir.path(), collect.clone()).await;
    let call = server.dial(dial_spec("3000")).await.unwrap();
    app_sent(&call, "playback", 1).await;
    let r = call.report();
    assert!(lines(&r).iter().any(|l| l.contains(" start ")));
    call.advance(Duration::from_secs(2));
    call.wait_for_command("api uuid_record").await;
    tokio::time::timeout(
        Duration::from_secs(10),
        call.wait_until(|r| r.commands.iter().any(|c| c.line.contains(" stop "))),
    )
    .await
    .expect("record_call stop sent uuid_record stop");
    app_sent(&call, "playback", 2).await;
    call.advance(Duration::from_secs(1));
    let r = app_sent(&call, "hangup", 1).await;
    assert_eq!(
        apps(&r).iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
        ["answer", "playback", "playback", "hangup"]
    );
    call.closed().await;
    server.shutdown().await;
    let got = collect.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0].duration_ms, 2000,
        "the recording spans exactly the first playback"
    );
    assert!(got[0].origin.contains("callflow cf-ivr"));
}

async fn record_caller_to_receiver(method: &str) {
    let rx = Receiver::start(vec![]).await;
    let api = start().await;
    account_with_callflow(
        &api,
        "cf-vm",
        json!({"numbers": ["4000"], "flow": {"module": "record_caller", "data": {
            "format": "wav", "method": method, "time_limit": 20, "url": format!("{}/vm/", rx.base)}}}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = callrec::config::Config {
        data_dir: dir.path().to_path_buf(),
        upload_retry_base_ms: 50,
        ..Default::default()
    };
    cfg.api_listen = "127.0.0.1:0".parse().unwrap();
    let uploads = callrec::app::Uploads::start(&cfg, api.store.clone())
        .await
        .unwrap();
    let server = server(&api, dir.path(), uploads.delivery.clone()).await;
    let call = server.dial(dial_spec("4000")).await.unwrap();
    let uuid = call.uuid.clone();
    // Not answered yet: callrec answers, sets the terminator, beeps, then records.
    app_sent(&call, "playback", 1).await;
    call.advance(Duration::from_millis(500));
    let r = app_sent(&call, "record", 1).await;
    let names: Vec<String> = apps(&r).into_iter().map(|(a, _)| a).collect();
    assert_eq!(names, ["answer", "set", "playback", "record"]);
    let (_, record_arg) = apps(&r).pop().unwrap();
    assert!(
        record_arg.ends_with(".wav 20 200 5"),
        "path, time_limit, silence threshold and hits: {record_arg}"
    );
    call.advance(Duration::from_secs(3));
    call.hangup("NORMAL_CLEARING"); // the caller hangs up mid-recording
    call.closed().await;
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(g) = rx.requests().into_iter().find(|g| g.complete) {
                return g;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("delivered");
    assert_eq!(got.method, method.to_uppercase());
    assert_eq!(got.target, format!("/vm/{uuid}.wav"));
    assert!(got.body.len() > 44, "the caller's audio");
    server.shutdown().await;
    uploads.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn record_caller_delivers_by_put() {
    record_caller_to_receiver("put").await;
}

#[tokio::test]
async fn record_caller_delivers_by_post() {
    record_caller_to_receiver("post").await;
}

#[tokio::test]
async fn record_caller_ends_on_its_time_limit_then_hangs_up_without_a_child_and_stores_locally() {
    let api = start().await;
    account_with_callflow(
        &api,
        "cf-greeting",
        json!({"numbers": ["5000"], "flow": {"module": "record_caller", "data": {"time_limit": 5}}}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let collect = Arc::new(Collect::default());
    let server = server(&api, dir.path(), collect.clone()).await;
    let call = server.dial(dial_spec("5000").var("x", "y")).await.unwrap();
    call.answer();
    app_sent(&call, "playback", 1).await;
    call.advance(Duration::from_millis(500));
    app_sent(&call, "record", 1).await;
    call.advance(Duration::from_secs(7));
    let r = app_sent(&call, "hangup", 1).await;
    assert!(
        !apps(&r).iter().any(|(a, _)| a == "answer"),
        "already answered"
    );
    call.closed().await;
    server.shutdown().await;
    let got = collect.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    // FreeSWITCH checks the limit against whole epoch seconds (as the simulator does), so the
    // recording ends between 4 and 5 s after it began, not at the end of the call (7 s).
    assert!(
        (4000..=5000).contains(&got[0].duration_ms),
        "the time limit ended it: {}",
        got[0].duration_ms
    );
    assert!(got[0].destinations.is_empty() && got[0].keep_local);
    assert_eq!(
        got[0].format,
        callrec::rules::AudioFormat::Mp3,
        "mp3 unless set"
    );
    assert!(std::path::Path::new(&got[0].file_path).exists());
}

#[tokio::test]
async fn stop_without_start_is_a_no_op_and_the_call_is_handed_back() {
    let api = start().await;
    account_with_callflow(
        &api,
        "cf-x",
        json!({"numbers": ["6000"], "flow": {"module": "record_call", "data": {"action": "stop"},
            "children": {"_": {"module": "dialplan", "data": {"context": "other", "extension": "6001"}}}}}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = server(&api, dir.path(), Arc::new(Collect::default())).await;
    let call = server.dial(dial_spec("6000")).await.unwrap();
    let r = app_sent(&call, "transfer", 1).await;
    assert_eq!(apps(&r).last().unwrap().1, "6001 XML other");
    assert!(!lines(&r).iter().any(|l| l.starts_with("api uuid_record")));
    call.hangup("NORMAL_CLEARING");
    call.closed().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_flow_that_cannot_run_hands_the_call_back() {
    let api = start().await;
    account_with_callflow(&api, "cf-ok", json!({"numbers": ["7000"]})).await;
    // An older version stored a flow with a module this one does not know.
    api.store
        .put(
            Kind::Callflow,
            "acc-1",
            "cf-ok",
            json!({"numbers": ["7000"], "flow": {"module": "voicemail", "data": {}}}),
            callrec::store::documents::Expect::Any,
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = server(&api, dir.path(), Arc::new(Collect::default())).await;
    let call = server.dial(dial_spec("7000")).await.unwrap();
    let r = app_sent(&call, "transfer", 1).await;
    assert_eq!(apps(&r).last().unwrap().1, "7000 XML callrec-continue");
    call.hangup("NORMAL_CLEARING");
    call.closed().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_did_identifies_the_account_and_patterns_match_in_order() {
    let api = start().await;
    account_with_callflow(
        &api,
        "a-did",
        json!({"numbers": ["18005550100"], "flow": {"module": "record_call",
            "data": {"action": "start", "format": "wav", "record_sample_rate": 16000},
            "children": {"_": {"module": "dialplan"}}}}),
    )
    .await;
    for (id, pattern, rate) in [("b-first", "^9\\d+$", 8000), ("c-second", "^9.*$", 48000)] {
        let (s, v) = api
            .admin(
                "PUT",
                &format!("/v2/accounts/acc-1/callflows/{id}"),
                Some(
                    json!({"data": {"patterns": [pattern], "flow": {"module": "record_call",
                    "data": {"action": "start", "record_sample_rate": rate},
                    "children": {"_": {"module": "dialplan"}}}}}),
                ),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let dir = tempfile::tempdir().unwrap();
    let server = server(&api, dir.path(), Arc::new(Collect::default())).await;
    // An outside caller, no account variable: the DID names the account.
    let call = server
        .dial(CallSpec::new("15550009999", "18005550100"))
        .await
        .unwrap();
    let rec = call.wait_for_command("api uuid_record").await;
    assert!(rec.line.contains("/recordings/acc-1/"), "{}", rec.line);
    assert!(
        rec.line.contains("record_sample_rate=16000"),
        "{}",
        rec.line
    );
    call.hangup("NORMAL_CLEARING");
    call.closed().await;
    // Two patterns match 9123: callflows in id order, the first wins.
    let call = server.dial(dial_spec("9123")).await.unwrap();
    let rec = call.wait_for_command("api uuid_record").await;
    assert!(rec.line.contains("record_sample_rate=8000"), "{}", rec.line);
    call.hangup("NORMAL_CLEARING");
    call.closed().await;
    server.shutdown().await;
}

#[tokio::test]
async fn callflows_are_validated_with_field_paths_and_numbers_are_unique() {
    let api = start().await;
    account_with_callflow(
        &api,
        "cf-1",
        json!({"numbers": ["100"], "patterns": ["^2\\d\\d$"]}),
    )
    .await;
    for (data, path) in [
        (
            json!({"flow": {"module": "answer", "children": {"_": {"module": "record_call", "data": {}}}}}),
            "flow.children._.data.action",
        ),
        (json!({"flow": {"module": "voicemail"}}), "flow.module"),
        (
            json!({"flow": {"module": "record_call", "data": {"action": "start", "format": "ogg"}}}),
            "flow.data.format",
        ),
        (
            json!({"flow": {"module": "record_caller", "data": {"method": "get"}}}),
            "flow.data.method",
        ),
        (
            json!({"flow": {"module": "answer", "children": []}}),
            "flow.children",
        ),
        (json!({"patterns": ["(unclosed"]}), "patterns[0]"),
        (json!({"numbers": [5]}), "numbers[0]"),
    ] {
        let (s, v) = api
            .admin(
                "PUT",
                "/v2/accounts/acc-1/callflows/cf-2",
                Some(json!({ "data": data })),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{data}: {v}");
        assert!(v["data"][path]["message"].is_string(), "{path}: {v}");
    }
    for (data, path) in [
        (json!({"numbers": ["300", "100"]}), "numbers[1]"),
        (json!({"patterns": ["^2\\d\\d$"]}), "patterns[0]"),
    ] {
        let (s, v) = api
            .admin(
                "PUT",
                "/v2/accounts/acc-1/callflows/cf-2",
                Some(json!({ "data": data })),
            )
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        assert!(
            v["data"][path]["message"]
                .as_str()
                .unwrap()
                .contains("cf-1"),
            "{v}"
        );
    }
    // The same callflow may keep its own numbers; another account may use them too.
    let (s, _) = api
        .admin(
            "PATCH",
            "/v2/accounts/acc-1/callflows/cf-1",
            Some(json!({"data": {"name": "main"}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    api.admin("PUT", "/v2/accounts/acc-2", Some(json!({"data": {}})))
        .await;
    let (s, _) = api
        .admin(
            "PUT",
            "/v2/accounts/acc-2/callflows/cf-1",
            Some(json!({"data": {"numbers": ["100"]}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn start_device_stop_play_hangup_records_exactly_the_bridge() {
    let api = start().await;
    account_with_callflow(
        &api,
        "cf-desk",
        json!({"numbers": ["8000"], "flow": {
            "module": "record_call", "data": {"action": "start", "format": "wav"}, "children": {"_": {
            "module": "device", "data": {"id": "dev-bob"}, "children": {"_": {
            "module": "record_call", "data": {"action": "stop"}, "children": {"_": {
            "module": "play", "data": {"media": "tone_stream://%(1000,0,440)"}, "children": {"_": {
            "module": "hangup"}}}}}}}}}}),
    )
    .await;
    // Bob's desk phone records its own calls too (mp3): applied when the bridge reaches it.
    let (s, v) = api
        .admin(
            "PUT",
            "/v2/accounts/acc-1/devices/dev-bob",
            Some(
                json!({"data": {"sip": {"username": "1001", "realm": "pbx.example.com"},
                "record_call": {"format": "mp3"}}}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let dir = tempfile::tempdir().unwrap();
    let collect = Arc::new(Collect::default());
    let server = server(&api, dir.path(), collect.clone()).await;
    let call = server.dial(dial_spec("8000")).await.unwrap();
    let r = app_sent(&call, "bridge", 1).await;
    assert_eq!(apps(&r).last().unwrap().1, "user/1001@pbx.example.com");
    // The bridge revealed the callee: its own (different) recording starts too.
    call.wait_for_commands("api uuid_record", 2).await;
    call.advance(Duration::from_secs(4));
    call.unbridge();
    tokio::time::timeout(
        Duration::from_secs(10),
        call.wait_until(|r| r.commands.iter().any(|c| c.line.contains(" stop "))),
    )
    .await
    .expect("record_call stop after the bridge");
    app_sent(&call, "playback", 1).await;
    call.advance(Duration::from_secs(1));
    app_sent(&call, "hangup", 1).await;
    call.closed().await;
    server.shutdown().await;
    let mut got = collect.got.lock().unwrap().clone();
    got.sort_by_key(|g| g.sequence);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].origin, "callflow cf-desk record_call start");
    assert_eq!(got[0].duration_ms, 4000, "exactly the bridge");
    assert!(
        got[1].origin.contains("device dev-bob"),
        "{}",
        got[1].origin
    );
    assert_eq!(
        got[1].duration_ms, 5000,
        "the callee's own recording runs to the hangup"
    );
}

#[tokio::test]
async fn user_rings_every_device_and_an_uncallable_device_hands_back() {
    let api = start().await;
    account_with_callflow(
        &api,
        "cf-ann",
        json!({"numbers": ["8100"], "flow": {"module": "user", "data": {"id": "ann"}}}),
    )
    .await;
    let (s, _) = api
        .admin(
            "PUT",
            "/v2/accounts/acc-1/callflows/cf-none",
            Some(json!({"data": {"numbers": ["8200"], "flow": {"module": "device", "data": {"id": "ghost"}}}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    api.admin(
        "PATCH",
        "/v2/accounts/acc-1",
        Some(json!({"data": {"realm": "acme.example"}})),
    )
    .await;
    for (id, sip) in [
        ("d1", json!({"username": "ann-desk"})),
        (
            "d2",
            json!({"username": "ann-gw", "invite_format": "route", "route": "sip:ann@10.0.0.5:5060"}),
        ),
    ] {
        let (s, v) = api
            .admin(
                "PUT",
                &format!("/v2/accounts/acc-1/devices/{id}"),
                Some(json!({"data": {"owner_id": "ann", "sip": sip}})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let dir = tempfile::tempdir().unwrap();
    let server = server(&api, dir.path(), Arc::new(Collect::default())).await;
    let call = server.dial(dial_spec("8100")).await.unwrap();
    let r = app_sent(&call, "bridge", 1).await;
    assert_eq!(
        apps(&r).last().unwrap().1,
        "user/ann-desk@acme.example,sofia/external/sip:ann@10.0.0.5:5060"
    );
    call.hangup("NORMAL_CLEARING");
    call.closed().await;
    let call = server.dial(dial_spec("8200")).await.unwrap();
    let r = app_sent(&call, "transfer", 1).await;
    assert_eq!(apps(&r).last().unwrap().1, "8200 XML callrec-continue");
    call.hangup("NORMAL_CLEARING");
    call.closed().await;
    server.shutdown().await;
}

#[tokio::test]
async fn record_call_on_answer_min_sec_and_url_from_the_callflow() {
    let api = start().await;
    account_with_callflow(
        &api,
        "cf-fields",
        json!({"numbers": ["8300"], "flow": {"module": "record_call", "data": {
            "action": "start", "record_on_answer": true, "record_min_sec": 3,
            "url": "https://rec.example.com/calls/", "method": "post"},
            "children": {"_": {"module": "dialplan"}}}}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let collect = Arc::new(Collect::default());
    let server = server(&api, dir.path(), collect.clone()).await;
    for (talk_s, kept) in [(2, false), (4, true)] {
        let call = server.dial(dial_spec("8300")).await.unwrap();
        app_sent(&call, "transfer", 1).await;
        assert!(
            !lines(&call.report())
                .iter()
                .any(|l| l.starts_with("api uuid_record")),
            "record_on_answer waits for the answer"
        );
        call.answer();
        call.wait_for_command("api uuid_record").await;
        call.advance(Duration::from_secs(talk_s));
        call.hangup("NORMAL_CLEARING");
        let r = call.closed().await;
        assert_eq!(r.recordings.len(), 1);
        let got = collect.got.lock().unwrap().clone();
        assert_eq!(
            got.len(),
            usize::from(kept),
            "record_min_sec 3 with {talk_s} s"
        );
    }
    server.shutdown().await;
    let got = collect.got.lock().unwrap().clone();
    assert_eq!(got[0].destinations.len(), 1);
    assert_eq!(got[0].destinations[0].url, "https://rec.example.com/calls/");
    assert_eq!(
        got[0].destinations[0].method,
        callrec::rules::UploadMethod::Post
    );
}

#[tokio::test]
async fn record_call_start_never_records_the_leg_twice_with_the_same_settings() {
    let api = start().await;
    account_with_callflow(
        &api,
        "cf-dup",
        json!({"numbers": ["8400"], "flow": {"module": "record_call",
            "data": {"action": "start", "format": "wav", "url": "https://b.example/"},
            "children": {"_": {"module": "dialplan"}}}}),
    )
    .await;
    // The account already records every call as WAV (to another URL).
    api.admin(
        "PATCH",
        "/v2/accounts/acc-1",
        Some(json!({"data": {"record_call": {"format": "wav", "url": "https://a.example/"}}})),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let collect = Arc::new(Collect::default());
    let server = server(&api, dir.path(), collect.clone()).await;
    let call = server.dial(dial_spec("8400")).await.unwrap();
    let r = app_sent(&call, "transfer", 1).await;
    let starts = lines(&r)
        .iter()
        .filter(|l| l.starts_with("api uuid_record"))
        .count();
    assert_eq!(starts, 1, "one uuid_record on the leg: {:?}", lines(&r));
    call.answer();
    call.advance(Duration::from_secs(2));
    call.hangup("NORMAL_CLEARING");
    call.closed().await;
    server.shutdown().await;
    let got = collect.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let urls: Vec<&str> = got[0].destinations.iter().map(|d| d.url.as_str()).collect();
    assert_eq!(
        urls,
        ["https://a.example/", "https://b.example/"],
        "delivered to both"
    );
    assert!(got[0].origin.contains("account acc-1") && got[0].origin.contains("callflow cf-dup"));
}
