//! The HTTP API over a real socket: Crossbar conventions, auth, validation, revisions, and the
//! effect of a PATCH on the next call.

mod support;

use std::sync::Arc;
use std::time::Duration;

use callrec::rules::planner::DocumentPlanner;
use callrec::store::{Scope, Store};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::api::{start, Api};
use support::harness::Collect;

/// callrec deciding from the API's documents, recordings collected in memory.
async fn document_server(api: &Api) -> (callrec::app::Server, Arc<Collect>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = callrec::config::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        record_stop_grace_ms: 300,
        ..Default::default()
    };
    let delivery = Arc::new(Collect::default());
    let planner = Arc::new(DocumentPlanner {
        store: api.store.clone(),
        global: None,
        memory: Default::default(),
        decisions: None,
    });
    let server = callrec::app::Server::start(config, planner, delivery.clone())
        .await
        .unwrap();
    (server, delivery, dir)
}

#[tokio::test]
async fn auth_is_required_and_scoped() {
    let api = start().await;
    let (s, v) = api.call("GET", "/v2/accounts/acc-1", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["status"], "error");
    assert_eq!(v["error"], "401");
    let (s, _) = api
        .call("GET", "/v2/accounts/acc-1", Some("wrong"), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    api.admin(
        "PUT",
        "/v2/accounts/acc-1",
        Some(json!({"data": {"name": "One"}})),
    )
    .await;
    api.admin(
        "PUT",
        "/v2/accounts/acc-2",
        Some(json!({"data": {"name": "Two"}})),
    )
    .await;
    let t1 = api
        .store
        .create_token(&Scope::Account("acc-1".into()))
        .await
        .unwrap();
    let (s, v) = api.call("GET", "/v2/accounts/acc-1", Some(&t1), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"]["name"], "One");
    let (s, v) = api.call("GET", "/v2/accounts/acc-2", Some(&t1), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(v["error"], "403");
    let (s, _) = api
        .call(
            "PATCH",
            "/v2/accounts/acc-2/users/u",
            Some(&t1),
            Some(json!({"data": {}})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn crud_with_envelopes_revisions_and_merge() {
    let api = start().await;
    let (s, v) = api
        .admin(
            "PUT",
            "/v2/accounts/acc",
            Some(json!({"data": {"name": "Acme"}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "success");
    assert_eq!(v["revision"], "1");
    assert!(v["request_id"].as_str().is_some_and(|r| !r.is_empty()));
    let (s, v) = api
        .admin(
            "POST",
            "/v2/accounts/acc/users",
            Some(json!({"data": {"first_name": "Ann", "prefs": {"a": 1, "b": 2}}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let id = v["data"]["id"].as_str().unwrap().to_string();
    let (_, v) = api.admin("GET", "/v2/accounts/acc/users", None).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    // PATCH merges recursively; null deletes.
    let (s, v) = api
        .admin(
            "PATCH",
            &format!("/v2/accounts/acc/users/{id}"),
            Some(json!({"data": {"prefs": {"a": null, "c": 3}, "last_name": "Lee"}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["prefs"], json!({"b": 2, "c": 3}));
    assert_eq!(v["data"]["first_name"], "Ann");
    assert_eq!(v["revision"], "2");
    // If-Match with a stale revision: 409.
    let r = api
        .http
        .patch(format!("{}/v2/accounts/acc/users/{id}", api.base))
        .header("X-Auth-Token", &api.admin)
        .header("If-Match", "1")
        .json(&json!({"data": {"x": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "409");
    assert_eq!(v["data"]["revision"], "2");
    // A matching If-Match goes through.
    let r = api
        .http
        .put(format!("{}/v2/accounts/acc/users/{id}", api.base))
        .header("X-Auth-Token", &api.admin)
        .header("If-Match", "\"2\"")
        .json(&json!({"data": {"first_name": "Ann"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (s, _) = api
        .admin("DELETE", &format!("/v2/accounts/acc/users/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = api
        .admin("GET", &format!("/v2/accounts/acc/users/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["error"], "404");
    let (s, _) = api.admin("GET", "/v2/accounts/nope", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = api.admin("GET", "/v2/accounts/nope/devices", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "sub-resources need the account");
    let (s, _) = api.admin("GET", "/v2/accounts/acc/widgets", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_validation_error_is_reported_by_field() {
    let api = start().await;
    api.admin("PUT", "/v2/accounts/acc", Some(json!({"data": {}})))
        .await;
    api.admin(
        "PUT",
        "/v2/accounts/acc/users/u1",
        Some(json!({"data": {}})),
    )
    .await;
    let cases = [
        (json!({"format": "ogg"}), "record_call.format"),
        (json!({"record_min_sec": -1}), "record_call.record_min_sec"),
        (
            json!({"record_on_answer": "yes"}),
            "record_call.record_on_answer",
        ),
        (
            json!({"record_sample_rate": 9000}),
            "record_call.record_sample_rate",
        ),
        (json!({"time_limit": 4}), "record_call.time_limit"),
        (json!({"time_limit": 10801}), "record_call.time_limit"),
        (json!({"url": "ftp://x/"}), "record_call.url"),
        (json!({"url": "/relative"}), "record_call.url"),
        (json!({"colour": "red"}), "record_call.colour"),
        (json!({"method": "get"}), "record_call.method"),
    ];
    for (rc, field) in cases {
        let (s, v) = api
            .admin(
                "PATCH",
                "/v2/accounts/acc/users/u1",
                Some(json!({"data": {"record_call": rc}})),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{field}");
        assert_eq!(v["error"], "400");
        assert_eq!(v["message"], "invalid data");
        assert!(v["data"][field]["message"].is_string(), "{field}: {v}");
    }
    // Nothing invalid was stored.
    let (_, v) = api.admin("GET", "/v2/accounts/acc/users/u1", None).await;
    assert!(v["data"].get("record_call").is_none());
    // Malformed JSON and a missing data object.
    let r = api
        .http
        .put(format!("{}/v2/accounts/acc/users/u2", api.base))
        .header("X-Auth-Token", &api.admin)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let (s, v) = api
        .admin(
            "PUT",
            "/v2/accounts/acc/users/u2",
            Some(json!({"nodata": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["data"]["data"].is_object());
}

#[tokio::test]
async fn the_seed_curl_example_works_as_written() {
    let api = start().await;
    api.admin("PUT", "/v2/accounts/acc-1", Some(json!({"data": {}})))
        .await;
    api.admin(
        "PUT",
        "/v2/accounts/acc-1/users/user-1",
        Some(json!({"data": {"first_name": "Ann"}})),
    )
    .await;
    let token = api
        .store
        .create_token(&Scope::Account("acc-1".into()))
        .await
        .unwrap();
    let base = api.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args([
                "-s",
                "-X",
                "PATCH",
                "-H",
                &format!("X-Auth-Token: {token}"),
                "-H",
                "Content-Type: application/json",
                "-d",
                r#"{"data":{
        "record_call":{"format":"mp3","record_min_sec":5,"record_on_answer":true,"url":"https://recordings.example.com/calls/"}
    }}"#,
                &format!("{base}/v2/accounts/acc-1/users/user-1"),
            ])
            .output()
            .expect("curl runs")
    })
    .await
    .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "success", "{v}");
    assert_eq!(v["data"]["record_call"]["record_min_sec"], 5);
    assert_eq!(v["data"]["first_name"], "Ann");
}

#[tokio::test]
async fn a_patch_changes_the_decision_for_the_next_call() {
    let api = start().await;
    api.admin(
        "PUT",
        "/v2/accounts/acc-1",
        Some(json!({"data": {"name": "Acme"}})),
    )
    .await;
    api.admin(
        "PUT",
        "/v2/accounts/acc-1/users/user-1",
        Some(json!({"data": {"first_name": "Ann"}})),
    )
    .await;
    api.admin(
        "PUT",
        "/v2/accounts/acc-1/devices/dev-1",
        Some(json!({"data": {"owner_id": "user-1", "sip": {"username": "alice"}}})),
    )
    .await;
    let (server, delivery, _dir) = document_server(&api).await;
    // Every command callrec sends in reaction to CHANNEL_ANSWER precedes its `exit`, so the
    // report after `closed()` is complete whether or not it recorded.
    let place_call = |expect_record: bool| async move {
        // Alice's registered phone (SIP auth user "alice") calls an outside number.
        let call = callrec_sim::dial(
            server.addr,
            callrec_sim::CallSpec::new("15550001111", "18005550199").auth_username("alice"),
        )
        .await
        .unwrap();
        call.wait_for_command("sendmsg").await;
        call.answer();
        if expect_record {
            call.wait_for_command("api uuid_record").await;
        }
        call.advance(Duration::from_secs(2));
        call.hangup("NORMAL_CLEARING");
        call.closed().await
    };
    let r = place_call(false).await;
    assert!(!r
        .commands
        .iter()
        .any(|c| c.line.starts_with("api uuid_record")));
    let (s, _) = api
        .admin(
            "PATCH",
            "/v2/accounts/acc-1/users/user-1",
            Some(json!({"data": {"record_call": {"format": "wav", "record_on_answer": true}}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let r = place_call(true).await;
    assert!(
        r.commands
            .iter()
            .any(|c| c.line.starts_with("api uuid_record")),
        "{:?}",
        r.commands.iter().map(|c| &c.line).collect::<Vec<_>>()
    );
    let got = delivery.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].call.account_id.as_deref(), Some("acc-1"));
    assert!(
        got[0].origin.contains("user user-1 record_call"),
        "{}",
        got[0].origin
    );
    assert_eq!(got[0].duration_ms, 2_000);
    assert_eq!(got[0].call.user_id.as_deref(), Some("user-1"));
    assert_eq!(got[0].call.device_id.as_deref(), Some("dev-1"));
    server.shutdown().await;
}

#[tokio::test]
async fn the_bridge_target_brings_the_callee_settings() {
    let api = start().await;
    api.admin("PUT", "/v2/accounts/acc-1", Some(json!({"data": {}})))
        .await;
    api.admin(
        "PUT",
        "/v2/accounts/acc-1/devices/d-alice",
        Some(json!({"data": {"sip": {"username": "alice"}}})),
    )
    .await;
    api.admin(
        "PUT",
        "/v2/accounts/acc-1/devices/d-bob",
        Some(json!({"data": {"sip": {"username": "bob"}, "record_call": {"format": "wav"}}})),
    )
    .await;
    let (server, delivery, _dir) = document_server(&api).await;
    // Alice dials a hunt number; the dialplan bridges to Bob's phone.
    let call = callrec_sim::dial(
        server.addr,
        callrec_sim::CallSpec::new("15550001111", "2000").auth_username("alice"),
    )
    .await
    .unwrap();
    call.wait_for_command("sendmsg").await;
    assert!(!call
        .report()
        .commands
        .iter()
        .any(|c| c.line.starts_with("api uuid_record")));
    call.bridge("bob");
    call.wait_for_command("api uuid_record").await;
    call.advance(Duration::from_secs(3));
    call.hangup("NORMAL_CLEARING");
    call.closed().await;
    let got = delivery.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert!(
        got[0]
            .origin
            .contains("device d-bob record_call: inbound onnet"),
        "{}",
        got[0].origin
    );
    assert_eq!(got[0].duration_ms, 3_000);
    server.shutdown().await;
}

#[tokio::test]
async fn recordings_are_listed_and_served_per_account() {
    let api = start().await;
    api.admin("PUT", "/v2/accounts/acc-1", Some(json!({"data": {}})))
        .await;
    let file = api._dir.path().join("r-1.wav");
    std::fs::write(&file, b"RIFF....WAVEfmt ").unwrap();
    let rec = callrec::uploader::FinishedRecording {
        call: callrec::uploader::CallMeta {
            call_id: "call-1".into(),
            account_id: Some("acc-1".into()),
            user_id: None,
            device_id: None,
            caller_id_name: "Alice".into(),
            caller_id_number: "1555".into(),
            callee_number: "1000".into(),
            callee_name: String::new(),
            direction: "inbound".into(),
            interaction_id: None,
        },
        recording_id: "r-1".into(),
        start_us: 1_795_459_961_000_000,
        duration_ms: 1000,
        format: callrec::rules::AudioFormat::Wav,
        sample_rate: None,
        stereo: false,
        file_path: file.to_string_lossy().into_owned(),
        size: 16,
        destinations: vec![callrec::values::Destination {
            url: "https://bob:pw@rec.example.com/x/".into(),
            method: Default::default(),
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
    callrec::uploader::spool::enqueue(&api.store, &rec)
        .await
        .unwrap();
    let (s, v) = api
        .admin(
            "GET",
            "/v2/accounts/acc-1/recordings?state=pending&call_id=call-1",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert_eq!(v["data"][0]["recording_id"], "r-1");
    assert!(!v.to_string().contains("bob:pw"), "credentials never shown");
    let (_, v) = api
        .admin("GET", "/v2/accounts/acc-1/recordings?state=delivered", None)
        .await;
    assert!(v["data"].as_array().unwrap().is_empty());
    let (s, v) = api
        .admin("GET", "/v2/accounts/acc-1/recordings/r-1", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"]["state"], "pending");
    assert_eq!(
        v["data"]["deliveries"][0]["url"],
        "https://bob:REDACTED@rec.example.com/x/"
    );
    let r = api
        .http
        .get(format!("{}/v2/accounts/acc-1/recordings/r-1", api.base))
        .header("X-Auth-Token", &api.admin)
        .header("Accept", "audio/*")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "audio/wav");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"RIFF....WAVEfmt ");
    // Another account sees nothing of it.
    api.admin("PUT", "/v2/accounts/acc-2", Some(json!({"data": {}})))
        .await;
    let (s, _) = api
        .admin("GET", "/v2/accounts/acc-2/recordings/r-1", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let t2 = api
        .store
        .create_token(&Scope::Account("acc-2".into()))
        .await
        .unwrap();
    let (s, _) = api
        .call("GET", "/v2/accounts/acc-1/recordings", Some(&t2), None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn metrics_need_an_admin_token_and_count_orphans() {
    let api = start().await;
    // An orphaned recording file in a data directory, found when uploads start.
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("recordings/acc-1/2026/11/23");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("lost.wav"), b"x").unwrap();
    let config = callrec::config::Config {
        data_dir: data.path().to_path_buf(),
        ..Default::default()
    };
    let store = Store::open(data.path()).unwrap();
    let uploads = callrec::app::Uploads::start(&config, store).await.unwrap();
    let mut body = String::new();
    for _ in 0..500 {
        let r = api
            .http
            .get(format!("{}/metrics", api.base))
            .header("X-Auth-Token", &api.admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        body = r.text().await.unwrap();
        if body.contains("callrec_orphaned_files 1\n") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(body.contains("callrec_orphaned_files 1\n"), "{body}");
    assert!(body.contains("# TYPE callrec_uploads_delivered_total counter"));
    uploads.shutdown(Duration::from_secs(1)).await;
    let (s, _) = api.call("GET", "/metrics", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let t = api
        .store
        .create_token(&Scope::Account("acc-1".into()))
        .await
        .unwrap();
    let (s, _) = api.call("GET", "/metrics", Some(&t), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn request_ids_are_echoed_in_envelopes_and_headers() {
    let api = start().await;
    let r = api
        .http
        .get(format!("{}/v2/accounts/none", api.base))
        .header("X-Auth-Token", &api.admin)
        .header("X-Request-ID", "req-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.headers()["x-request-id"], "req-42");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["request_id"], "req-42");
    assert_eq!(v["status"], "error");
    let (s, v) = api.admin("GET", "/nowhere", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["error"], "404");
    assert_eq!(
        v["request_id"].as_str().map(str::len),
        Some(32),
        "a fresh id"
    );
}

#[tokio::test]
async fn every_error_is_an_envelope_limits_methods_json_and_queries() {
    let api = start().await;
    api.admin("PUT", "/v2/accounts/acc", Some(json!({"data": {}})))
        .await;
    let url = format!("{}/v2/accounts/acc/users/u1", api.base);
    // A body over the limit: 413, in the usual envelope, nothing stored.
    let big = format!(
        "{{\"data\":{{\"notes\":\"{}\"}}}}",
        "x".repeat(callrec::admin::envelope::MAX_BODY_BYTES)
    );
    let (s, v) = api
        .send(
            api.http
                .put(&url)
                .header("X-Auth-Token", &api.admin)
                .header("Content-Type", "application/json")
                .body(big),
        )
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        (v["error"].as_str(), v["status"].as_str()),
        (Some("413"), Some("error"))
    );
    assert!(
        v["message"].as_str().unwrap().contains("1048576 bytes"),
        "{v}"
    );
    assert!(api
        .store
        .get(callrec::store::Kind::User, "acc", "u1")
        .await
        .unwrap()
        .is_none());
    // Malformed JSON: 400 naming the problem.
    let (s, v) = api
        .send(
            api.http
                .put(&url)
                .header("X-Auth-Token", &api.admin)
                .body("{\"data\": {\"a\": tru}"),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["message"], "invalid JSON");
    assert!(
        v["data"]["body"]["message"]
            .as_str()
            .unwrap()
            .contains("line 1 column"),
        "{v}"
    );
    // A method the route does not have, an unknown route, a query that does not parse.
    let (s, v) = api
        .send(api.http.post(&url).header("X-Auth-Token", &api.admin))
        .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        (v["error"].as_str(), v["status"].as_str()),
        (Some("405"), Some("error"))
    );
    let (s, v) = api.admin("DELETE", "/v3/whatever", None).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("404"))
    );
    let (s, v) = api
        .admin("GET", "/v2/accounts/acc/recordings?since=yesterday", None)
        .await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::BAD_REQUEST, Some("error"))
    );
    let (s, v) = api
        .admin("GET", "/v2/accounts/acc/recordings?state=lost", None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["data"]["state"]["message"].is_string(), "{v}");
}
