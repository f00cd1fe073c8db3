//! One typed settings model: the same `record_call` inputs (edge values, wrong types, huge
//! numbers, unknown fields) go to the API and, stored behind the API's back, to the call-time
//! planner. The verdicts must agree: what the API accepts is exactly what applies to a call,
//! and what it refuses never applies (and is reported, not silently skipped).

mod support;

use callrec::rules::planner::{report_invalid_documents, DocumentPlanner};
use callrec::rules::{CallInfo, CallMeta, Planner, RecordCall};
use callrec::store::documents::Expect;
use callrec::store::{Kind, Scope};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::api::start;

/// `(record_call, the settings a call gets when it is accepted)`; `None`: refused.
fn table() -> Vec<(Value, Option<RecordCall>)> {
    let d = RecordCall::default;
    vec![
        (json!({}), Some(d())),
        (
            json!({"record_sample_rate": 8000}),
            Some(RecordCall {
                record_sample_rate: Some(8000),
                ..d()
            }),
        ),
        (
            json!({"record_sample_rate": 48000}),
            Some(RecordCall {
                record_sample_rate: Some(48000),
                ..d()
            }),
        ),
        // 4294975296 = 2^32 + 8000: once truncated to 8000 and accepted.
        (json!({"record_sample_rate": 4294975296u64}), None),
        (json!({"record_sample_rate": 9000}), None),
        (json!({"record_sample_rate": "8000"}), None),
        (json!({"record_sample_rate": 8000.5}), None),
        (json!({"record_sample_rate": -8000}), None),
        (json!({"record_sample_rate": 1e300}), None),
        (
            json!({"time_limit": 5}),
            Some(RecordCall {
                time_limit: 5,
                ..d()
            }),
        ),
        (
            json!({"time_limit": 10800}),
            Some(RecordCall {
                time_limit: 10800,
                ..d()
            }),
        ),
        (json!({"time_limit": null}), Some(d())),
        (json!({"time_limit": 4}), None),
        (json!({"time_limit": 10801}), None),
        (json!({"time_limit": 4294970896u64}), None),
        (json!({"time_limit": u64::MAX}), None),
        (
            json!({"record_min_sec": 0}),
            Some(RecordCall {
                record_min_sec: 0,
                ..d()
            }),
        ),
        (
            json!({"record_min_sec": 10800}),
            Some(RecordCall {
                record_min_sec: 10800,
                ..d()
            }),
        ),
        (json!({"record_min_sec": 10801}), None),
        (json!({"record_min_sec": 4294967296u64}), None),
        (json!({"record_min_sec": -1}), None),
        (json!({"record_min_sec": 1e3}), None),
        (
            json!({"format": "wav"}),
            Some(RecordCall {
                format: callrec::rules::AudioFormat::Wav,
                ..d()
            }),
        ),
        (json!({"format": "WAV"}), None),
        (json!({"format": 1}), None),
        (
            json!({"method": "post", "url": "https://x.example/r/"}),
            Some(RecordCall {
                method: callrec::rules::UploadMethod::Post,
                url: Some("https://x.example/r/".into()),
                ..d()
            }),
        ),
        (json!({"method": "get"}), None),
        (json!({"url": "ftp://x.example/"}), None),
        (json!({"url": ""}), None),
        (json!({"url": 7}), None),
        (json!({"enabled": "true"}), None),
        (json!({"enabled": false}), None),
        (json!({"record_on_answer": 1}), None),
        (
            json!({"record_stereo": true, "record_on_bridge": true}),
            Some(RecordCall {
                record_stereo: true,
                record_on_bridge: true,
                ..d()
            }),
        ),
        (json!({"colour": "red"}), None),
        (json!([]), None),
        (json!("all"), None),
    ]
}

/// `enabled: false` is accepted but records nothing: it is the one accepted input with no
/// recording.
fn accepted_without_recording(rc: &Value) -> bool {
    rc.get("enabled") == Some(&json!(false))
}

#[tokio::test]
async fn api_and_planner_agree_on_every_input() {
    let api = start().await;
    api.admin("PUT", "/v2/accounts/acc", Some(json!({"data": {}})))
        .await;
    let planner = DocumentPlanner {
        store: api.store.clone(),
        global: None,
        memory: Default::default(),
        decisions: None,
    };
    for (i, (rc, want)) in table().into_iter().enumerate() {
        // Through the API.
        let (status, v) = api
            .admin(
                "PUT",
                &format!("/v2/accounts/acc/users/api-{i}"),
                Some(json!({"data": {"record_call": rc}})),
            )
            .await;
        let api_accepts = status == StatusCode::OK;
        assert_eq!(
            api_accepts,
            want.is_some() || accepted_without_recording(&rc),
            "API on {rc}: {status} {v}"
        );
        if !api_accepts {
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(
                v["data"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .all(|k| k == "record_call" || k.starts_with("record_call.")),
                "names the field: {v}"
            );
        }
        // Stored as is (an older version's document), then a call from that user's device.
        let user = format!("raw-{i}");
        let device = format!("dev-{i}");
        api.store
            .put(
                Kind::User,
                "acc",
                &user,
                json!({"record_call": rc}),
                Expect::Any,
            )
            .await
            .unwrap();
        api.store
            .put(
                Kind::Device,
                "acc",
                &device,
                json!({"owner_id": user}),
                Expect::Any,
            )
            .await
            .unwrap();
        let call = CallInfo {
            call: CallMeta {
                call_id: format!("call-{i}"),
                account_id: Some("acc".into()),
                device_id: Some(device),
                ..CallMeta::default()
            },
            ..CallInfo::default()
        };
        let plan = planner.plan(&call).await.unwrap();
        let got: Vec<RecordCall> = plan.recordings.into_iter().map(|p| p.settings).collect();
        assert_eq!(
            got,
            want.iter().cloned().collect::<Vec<_>>(),
            "planner on {rc}"
        );
        // A refused document stored anyway is reported by GET, never silently skipped.
        let (_, v) = api
            .admin("GET", &format!("/v2/accounts/acc/users/{user}"), None)
            .await;
        assert_eq!(
            v.get("warning").is_some(),
            !api_accepts,
            "warning on GET of {rc}: {v}"
        );
    }
    let refused = table()
        .iter()
        .filter(|(rc, want)| want.is_none() && !accepted_without_recording(rc))
        .count();
    let reported = report_invalid_documents(&api.store).await.unwrap();
    assert_eq!(reported, refused, "the start-up check finds every one");
    assert!(refused >= 20);
}

#[tokio::test]
async fn a_patch_that_would_break_a_document_is_refused_whole() {
    let api = start().await;
    api.admin("PUT", "/v2/accounts/acc", Some(json!({"data": {}})))
        .await;
    let (s, _) = api
        .admin(
            "PUT",
            "/v2/accounts/acc/devices/d1",
            Some(json!({"data": {"sip": {"username": "alice"}, "record_call": {"format": "wav"}}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = api
        .admin(
            "PATCH",
            "/v2/accounts/acc/devices/d1",
            Some(json!({"data": {"call_recording": {"inbound": {"offnet": {"record_sample_rate": 4294975296u64}}}}})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["data"]["call_recording.inbound.offnet.record_sample_rate"]["message"]
            .as_str()
            .unwrap()
            .contains("8000"),
        "{v}"
    );
    let d = api
        .store
        .get(Kind::Device, "acc", "d1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.rev.0, 1, "nothing stored");
    assert!(d.body.get("call_recording").is_none());
    // An account token sees the same verdict as the admin.
    let t = api
        .store
        .create_token(&Scope::Account("acc".into()))
        .await
        .unwrap();
    let (s, _) = api
        .call(
            "PATCH",
            "/v2/accounts/acc/devices/d1",
            Some(&t),
            Some(json!({"data": {"record_call": {"record_min_sec": 99999}}})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}
