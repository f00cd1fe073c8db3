//! Mid-call control through the API (README "Pausing a recording"): `PATCH
//! /v2/accounts/{account_id}/recordings/{id}` reaches the call's session, which sends
//! FreeSWITCH (the simulator, modelling pause and mask as the facts file measured them)
//! `uuid_record … mask|pause|unmask|resume|stop`. Every scenario that involves a call runs in
//! both follow modes (over the link, over the call's socket).

mod support;

use std::time::Duration;

use callrec::store::recordings::NewRecording;
use callrec::store::Scope;
use callrec_sim::{CallHandle, CallSpec};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::api::{self, Api};
use support::harness::{wav, Harness};

fn spec() -> CallSpec {
    CallSpec::new("15551234567", "1000").var("callrec_account_id", "acc-1")
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("within 10 s")
}

/// callrec in the given mode, an API reaching its live calls, an account token for acc-1.
async fn setup(link: bool, record_on_answer: bool) -> (Harness, Api, String) {
    let h = Harness::start_mode(
        vec![wav(|r| r.record_on_answer = record_on_answer)],
        |_| {},
        link,
    )
    .await;
    let api = api::start_with(h.server.as_ref().map(|s| s.live())).await;
    let token = api
        .store
        .create_token(&Scope::Account("acc-1".into()))
        .await
        .unwrap();
    (h, api, token)
}

/// A call whose recording runs: answered, `uuid_record` sent, 2 s of audio.
async fn recording(h: &Harness) -> (CallHandle, String) {
    let call = h.dial(spec()).await.unwrap();
    call.answer();
    let start = within(call.wait_for_command("api uuid_record")).await;
    call.advance(Duration::from_secs(2));
    call.sync().await;
    (call, recording_id(&start.line))
}

/// The recording id callrec puts on `uuid_record` (`{callrec_recording_id=…}`).
fn recording_id(uuid_record: &str) -> String {
    uuid_record
        .split("callrec_recording_id=")
        .nth(1)
        .and_then(|s| s.split([',', '}']).next())
        .expect("the recording id rides on uuid_record")
        .to_string()
}

async fn patch(api: &Api, token: &str, id: &str, data: Value) -> (StatusCode, Value) {
    api.call(
        "PATCH",
        &format!("/v2/accounts/acc-1/recordings/{id}"),
        Some(token),
        Some(json!({ "data": data })),
    )
    .await
}

fn commands(call: &CallHandle, word: &str) -> usize {
    call.report()
        .commands
        .iter()
        .filter(|c| c.line.starts_with("api uuid_record") && c.line.contains(&format!(" {word} ")))
        .count()
}

#[tokio::test]
async fn paused_with_silence_then_in_progress_keeps_the_length_and_lists_the_pause() {
    for link in [false, true] {
        let (h, api, token) = setup(link, false).await;
        let (call, id) = recording(&h).await;
        let (s, v) = patch(&api, &token, &id, json!({"status": "paused"})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["data"]["status"], "paused");
        assert_eq!(v["data"]["pause_behavior"], "silence", "Twilio's default");
        // Idempotent: a second pause changes nothing and sends nothing.
        let (s, v) = patch(
            &api,
            &token,
            &id,
            json!({"status": "paused", "pause_behavior": "skip"}),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["data"]["pauses"].as_array().unwrap().len(), 1);
        assert_eq!(commands(&call, "mask"), 1);
        assert_eq!(commands(&call, "pause"), 0);
        call.advance(Duration::from_secs(3));
        call.sync().await;
        let (s, v) = patch(&api, &token, &id, json!({"status": "in-progress"})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["data"]["status"], "in-progress");
        assert_eq!(commands(&call, "unmask"), 1);
        let pause = &v["data"]["pauses"][0];
        assert_eq!(pause["behavior"], "silence");
        assert_eq!(pause["by"], callrec::store::tokens::token_id(&token));
        assert!(pause["end_ms"].as_u64().unwrap() >= pause["start_ms"].as_u64().unwrap());
        call.advance(Duration::from_secs(4));
        call.hangup("NORMAL_CLEARING");
        h.idle().await;
        let got = h.delivered();
        assert_eq!(got.len(), 1, "link={link}");
        assert_eq!(
            got[0].duration_ms, 9_000,
            "the file keeps the call's length"
        );
        assert_eq!(got[0].pauses.len(), 1, "the metadata lists the pause");
        let samples: Vec<i16> = hound::WavReader::open(&got[0].file_path)
            .unwrap()
            .samples::<i16>()
            .map(|s| s.unwrap())
            .collect();
        let silent = |a: usize, b: usize| samples[a * 8..b * 8].iter().all(|&s| s == 0);
        assert!(silent(2_000, 5_000), "silence where it was paused");
        assert!(!silent(0, 2_000) && !silent(5_000, 9_000));
    }
}

#[tokio::test]
async fn paused_with_skip_leaves_the_paused_time_out_of_the_file() {
    for link in [false, true] {
        let (h, api, token) = setup(link, false).await;
        let (call, id) = recording(&h).await;
        let (s, v) = patch(
            &api,
            &token,
            &id,
            json!({"status": "paused", "pause_behavior": "skip"}),
        )
        .await;
        assert_eq!(
            (s, v["data"]["pause_behavior"].as_str()),
            (StatusCode::OK, Some("skip"))
        );
        call.advance(Duration::from_secs(2));
        call.sync().await;
        let (s, _) = patch(&api, &token, &id, json!({"status": "in-progress"})).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            (commands(&call, "pause"), commands(&call, "resume")),
            (1, 1)
        );
        call.advance(Duration::from_secs(5));
        call.hangup("NORMAL_CLEARING");
        h.idle().await;
        let got = h.delivered();
        assert_eq!(
            got[0].duration_ms, 7_000,
            "9 s of call, 2 s skipped; link={link}"
        );
    }
}

#[tokio::test]
async fn stopped_ends_the_recording_now_and_it_is_kept() {
    for link in [false, true] {
        let (h, api, token) = setup(link, false).await;
        let (call, id) = recording(&h).await;
        let (s, v) = patch(&api, &token, &id, json!({"status": "stopped"})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        // FreeSWITCH's RECORD_STOP follows its reply at once: the recording may already be
        // completed when the answer is written.
        let status = v["data"]["status"].as_str().unwrap_or("");
        assert!(matches!(status, "stopped" | "completed"), "{v}");
        assert_eq!(commands(&call, "stop"), 1);
        call.advance(Duration::from_secs(3));
        call.hangup("NORMAL_CLEARING");
        h.idle().await;
        let got = h.delivered();
        assert_eq!(got.len(), 1, "kept and delivered as usual; link={link}");
        assert_eq!(got[0].duration_ms, 2_000, "it ended when it was stopped");
    }
}

#[tokio::test]
async fn answers_for_what_cannot_be_controlled() {
    let (h, api, token) = setup(false, true).await;
    // Waiting for its trigger (the answer): 409 with its status.
    let call = h.dial(spec()).await.unwrap();
    let r = within(call.wait_until(|r| r.transferred_to.is_some())).await;
    assert!(r
        .commands
        .iter()
        .all(|c| !c.line.starts_with("api uuid_record")));
    let (s, v) = api
        .call("GET", "/v2/accounts/acc-1/channels", Some(&token), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let rec = &v["data"][0]["recordings"][0];
    assert_eq!(
        (rec["status"].as_str(), rec["trigger"].as_str()),
        (Some("waiting"), Some("on answer"))
    );
    let id = rec["id"].as_str().unwrap().to_string();
    let (s, v) = patch(&api, &token, &id, json!({"status": "paused"})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["data"]["status"], "waiting");
    // Validation names the field.
    let (s, v) = patch(&api, &token, &id, json!({"status": "sleeping"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["data"]["status"]["message"].is_string(), "{v}");
    // Unknown to this account: 404, for an id that exists elsewhere too.
    let (s, _) = patch(
        &api,
        &token,
        "no-such-recording",
        json!({"status": "paused"}),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let other = api
        .store
        .create_token(&Scope::Account("acc-2".into()))
        .await
        .unwrap();
    let (s, _) = api
        .call(
            "PATCH",
            &format!("/v2/accounts/acc-2/recordings/{id}"),
            Some(&other),
            Some(json!({"data": {"status": "paused"}})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "another account's live recording is not found"
    );
    let (s, _) = api
        .call(
            "PATCH",
            &format!("/v2/accounts/acc-1/recordings/{id}"),
            Some(&other),
            Some(json!({"data": {"status": "paused"}})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "an account token reaches only its account"
    );
    call.hangup("NORMAL_CLEARING");
    h.idle().await;
}

#[tokio::test]
async fn freeswitch_refusing_is_502_naming_its_error() {
    // FreeSWITCH ended the recording at its time limit, and the RECORD_STOP was lost: callrec
    // still thinks it runs, FreeSWITCH says it does not.
    let h = Harness::start_mode(vec![wav(|r| r.time_limit = 1)], |_| {}, false).await;
    let api = api::start_with(h.server.as_ref().map(|s| s.live())).await;
    let token = api
        .store
        .create_token(&Scope::Account("acc-1".into()))
        .await
        .unwrap();
    let call = h.dial(spec().lose_event("RECORD_STOP")).await.unwrap();
    call.answer();
    let start = within(call.wait_for_command("api uuid_record")).await;
    call.advance(Duration::from_secs(3));
    call.sync().await;
    let id = recording_id(&start.line);
    let (s, v) = patch(&api, &token, &id, json!({"status": "paused"})).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
    assert_eq!(
        v["data"]["freeswitch"],
        "-ERR Cannot mask recording session!"
    );
    call.hangup("NORMAL_CLEARING");
    h.idle().await;
}

#[tokio::test]
async fn a_recording_not_live_here_is_409_when_finished_and_503_naming_its_node() {
    let (_h, api, token) = setup(false, false).await;
    let meta = |id: &str| callrec::uploader::FinishedRecording {
        call: callrec::uploader::CallMeta {
            call_id: "c1".into(),
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
        recording_id: id.into(),
        start_us: 1_795_459_961_000_000,
        duration_ms: 1000,
        format: callrec::rules::AudioFormat::Wav,
        sample_rate: None,
        stereo: false,
        file_path: format!("/nowhere/{id}.wav"),
        size: 16,
        destinations: vec![],
        keep_local: true,
        origin: "test".into(),
        completion_cause: "success-silence".into(),
        sequence: 0,
        kind: Default::default(),
        may_grow_until_us: None,
        pauses: Vec::new(),
        encryption: None,
        encrypt_to: None,
    };
    callrec::uploader::spool::enqueue(&api.store, &meta("r-done"))
        .await
        .unwrap();
    let live = meta("r-live");
    let other = api.store.clone().for_node("node-b").await.unwrap();
    other
        .journal_recording(&NewRecording {
            id: "r-live",
            account_id: Some("acc-1"),
            call_id: "c1",
            file_path: &live.file_path,
            destinations: &[],
            meta: &live,
        })
        .await
        .unwrap();
    let (s, v) = patch(&api, &token, "r-done", json!({"status": "paused"})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["data"]["status"], "completed");
    let (s, v) = patch(&api, &token, "r-live", json!({"status": "paused"})).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["data"]["node"], "node-b");
}

/// `record_min_sec` counts the audio in the file: 9 s of call, 7 s of it skipped, leaves 2 s,
/// shorter than the 5 s asked for, so the recording is discarded; with silence it would be kept.
#[tokio::test]
async fn record_min_sec_counts_the_audio_in_the_file() {
    for (behavior, kept) in [("skip", false), ("silence", true)] {
        let h = Harness::start_mode(vec![wav(|r| r.record_min_sec = 5)], |_| {}, false).await;
        let api = api::start_with(h.server.as_ref().map(|s| s.live())).await;
        let token = api
            .store
            .create_token(&Scope::Account("acc-1".into()))
            .await
            .unwrap();
        let (call, id) = recording(&h).await;
        let (s, _) = patch(
            &api,
            &token,
            &id,
            json!({"status": "paused", "pause_behavior": behavior}),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        call.advance(Duration::from_secs(7));
        call.hangup("NORMAL_CLEARING");
        h.idle().await;
        assert_eq!(!h.delivered().is_empty(), kept, "{behavior}");
    }
}
