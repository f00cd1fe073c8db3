//! The event-socket link going away while calls are followed over it (`follow = "inbound"`):
//! recordings already started are finished from their files, recordings still waiting for
//! answer or bridge start when the link returns and FreeSWITCH's `uuid_dump` says their
//! trigger came, and a call that ended meanwhile is accounted for. Always in link mode.

mod support;

use std::time::Duration;

use callrec_sim::{CallHandle, CallSpec};
use support::harness::{wav, Harness};

fn spec() -> CallSpec {
    CallSpec::new("15551234567", "1000").var("callrec_account_id", "acc-1")
}

/// A call handed back and let go: from here on callrec hears of it over the link only.
async fn released_call(h: &Harness) -> CallHandle {
    let call = h.dial(spec()).await.expect("dial");
    call.wait_for_command("sendmsg").await;
    tokio::time::timeout(Duration::from_secs(10), call.wait_until(|r| r.closed))
        .await
        .expect("the socket is released after the hand-back");
    call
}

/// A step that must happen (a failure, not a hang, when it does not).
async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("within 10 s")
}

fn switch(h: &Harness) -> &callrec_sim::Switch {
    h.switch.as_ref().expect("link mode")
}

#[tokio::test]
async fn a_recording_waiting_for_answer_starts_when_the_link_returns() {
    let h = Harness::start_linked(vec![wav(|r| r.record_on_answer = true)], |_| {}).await;
    let call = released_call(&h).await;
    switch(&h).unload_event_socket().await;
    // Answered while callrec cannot hear it.
    call.answer();
    call.advance(Duration::from_secs(1));
    call.sync().await;
    assert!(!call
        .report()
        .commands
        .iter()
        .any(|c| c.line.starts_with("api uuid_record")));
    switch(&h).load_event_socket().await.unwrap();
    // Back: callrec asks for the channel, sees it answered, starts the recording.
    let dump = within(call.wait_for_command("api uuid_dump")).await;
    assert_eq!(dump.line, format!("api uuid_dump {} json", call.uuid));
    within(call.wait_for_command("api uuid_record")).await;
    call.advance(Duration::from_secs(3));
    call.hangup("NORMAL_CLEARING");
    h.idle().await;
    let got = h.delivered();
    assert_eq!(
        got.len(),
        1,
        "the waiting recording was started late, not lost"
    );
    assert_eq!(got[0].duration_ms, 3_000);
}

#[tokio::test]
async fn a_recording_waiting_for_bridge_starts_when_the_link_returns() {
    let h = Harness::start_linked(vec![wav(|r| r.record_on_bridge = true)], |_| {}).await;
    let call = released_call(&h).await;
    switch(&h).unload_event_socket().await;
    call.bridge("1001");
    call.advance(Duration::from_secs(1));
    call.sync().await;
    switch(&h).load_event_socket().await.unwrap();
    within(call.wait_for_command("api uuid_dump")).await;
    // Started late from the dump's Other-Leg headers; the callee is planned as on CHANNEL_BRIDGE.
    let n = h.planner.plans.len();
    within(call.wait_for_commands("api uuid_record", n)).await;
    call.advance(Duration::from_secs(2));
    call.hangup("NORMAL_CLEARING");
    h.idle().await;
    let seen = h.planner.seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|c| c.destination == "1001"),
        "the callee was planned: {seen:?}"
    );
    let got = h.delivered();
    assert!(!got.is_empty(), "the bridged call was recorded");
    assert!(got.iter().all(|r| r.duration_ms == 2_000));
}

#[tokio::test]
async fn a_call_that_ends_while_the_link_is_down_is_accounted_for() {
    let h = Harness::start_linked(vec![wav(|r| r.record_on_answer = true)], |_| {}).await;
    let call = released_call(&h).await;
    switch(&h).unload_event_socket().await;
    call.hangup("NORMAL_CLEARING");
    call.sync().await;
    switch(&h).load_event_socket().await.unwrap();
    // The dump finds no channel: the waiting recording is not started, the session ends.
    h.idle().await;
    assert!(h.delivered().is_empty());
    assert!(h.files().is_empty());
    assert!(switch(&h)
        .inbound_stats()
        .commands
        .iter()
        .any(|c| c == &format!("api uuid_dump {} json", call.uuid)));
}

#[tokio::test]
async fn a_link_that_stays_down_ends_the_wait_after_its_grace() {
    let h = Harness::start_linked(vec![wav(|r| r.record_on_answer = true)], |c| {
        c.esl_down_grace_ms = 300;
    })
    .await;
    let call = released_call(&h).await;
    switch(&h).unload_event_socket().await;
    call.answer();
    // Never back: after the grace the session gives up on the waiting recording and ends.
    h.idle().await;
    assert!(h.delivered().is_empty());
    call.hangup("NORMAL_CLEARING");
}

#[tokio::test]
async fn a_started_recording_is_finished_from_its_file_across_the_outage() {
    let h = Harness::start_linked(vec![wav(|r| r.record_on_answer = true)], |_| {}).await;
    let call = released_call(&h).await;
    call.answer();
    call.wait_for_command("api uuid_record").await;
    call.advance(Duration::from_secs(2));
    call.sync().await;
    switch(&h).unload_event_socket().await;
    call.advance(Duration::from_secs(2));
    call.hangup("NORMAL_CLEARING");
    h.idle().await;
    let got = h.delivered();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].duration_ms, 4_000);
    switch(&h).load_event_socket().await.unwrap();
}
