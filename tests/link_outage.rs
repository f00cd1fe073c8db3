//! The event-socket link going away while calls are followed over it (`follow = "inbound"`):
//! an outage, not an ending. Recordings already started stay open and end with FreeSWITCH's
//! RECORD_STOP once the link is back (a 100 ms `reload mod_event_socket`, a 2 s outage);
//! recordings still waiting for answer or bridge start when the link returns and FreeSWITCH's
//! `uuid_dump` says their trigger came; a call that ended meanwhile is finished from its final
//! file or accounted for; only a link down past `esl_down_grace_ms` hands recordings to their
//! files, judged by the quiet window. Always in link mode.

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

/// A released call, answered, its recording running for 2 s.
async fn recording_for_2_s(h: &Harness) -> CallHandle {
    let call = released_call(h).await;
    call.answer();
    call.wait_for_command("api uuid_record").await;
    call.advance(Duration::from_secs(2));
    call.sync().await;
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
        seen.iter().any(|c| c.call.callee_number == "1001"),
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

/// `reload mod_event_socket` 2 s into an 8 s call (operators do it after an ACL change): the
/// link is back about 100 ms later and the call is followed again; the recording ends with
/// FreeSWITCH's RECORD_STOP, whole.
#[tokio::test]
async fn a_link_blip_of_100_ms_keeps_the_recording_whole() {
    let h = Harness::start_linked(vec![wav(|r| r.record_on_answer = true)], |_| {}).await;
    let call = recording_for_2_s(&h).await;
    let dumps = dumps(&h, &call);
    switch(&h).reload_event_socket().await;
    within(
        switch(&h)
            .wait_for_inbound_commands(&format!("api uuid_dump {} json", call.uuid), dumps + 1),
    )
    .await;
    call.advance(Duration::from_secs(6));
    call.hangup("NORMAL_CLEARING");
    h.idle().await;
    let got = h.delivered();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].duration_ms, 8_000, "the whole call");
    assert_eq!(
        got[0].completion_cause, "success-silence",
        "FreeSWITCH's RECORD_STOP ended it"
    );
    assert_eq!(got[0].may_grow_until_us, None);
}

/// `uuid_dump`s of this call the switch has answered so far.
fn dumps(h: &Harness, call: &CallHandle) -> usize {
    let want = format!("api uuid_dump {} json", call.uuid);
    switch(h)
        .inbound_stats()
        .commands
        .iter()
        .filter(|c| **c == want)
        .count()
}

/// The event socket away for 2 s mid-call (within `esl_down_grace_ms`): the same.
#[tokio::test]
async fn a_two_second_outage_keeps_the_recording_whole() {
    let h = Harness::start_linked(vec![wav(|r| r.record_on_answer = true)], |_| {}).await;
    let call = recording_for_2_s(&h).await;
    switch(&h).unload_event_socket().await;
    // FreeSWITCH records on meanwhile (its file grows in bursts).
    for _ in 0..4 {
        call.advance(Duration::from_millis(500));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    switch(&h).load_event_socket().await.unwrap();
    within(call.wait_for_command("api uuid_dump")).await;
    call.advance(Duration::from_secs(4));
    call.hangup("NORMAL_CLEARING");
    h.idle().await;
    let got = h.delivered();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].duration_ms, 8_000);
    assert_eq!(got[0].completion_cause, "success-silence");
}

/// The call ends while the link is down; it is back within the grace: the channel is gone,
/// so FreeSWITCH closed the file, which is final.
#[tokio::test]
async fn a_call_ending_during_the_outage_is_finished_from_its_final_file() {
    let h = Harness::start_linked(vec![wav(|r| r.record_on_answer = true)], |_| {}).await;
    let call = recording_for_2_s(&h).await;
    switch(&h).unload_event_socket().await;
    call.advance(Duration::from_secs(2));
    call.hangup("NORMAL_CLEARING");
    call.sync().await;
    switch(&h).load_event_socket().await.unwrap();
    h.idle().await;
    let got = h.delivered();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].duration_ms, 4_000);
    assert!(
        got[0]
            .completion_cause
            .contains("ended while the event-socket link was down"),
        "{}",
        got[0].completion_cause
    );
    assert_eq!(got[0].may_grow_until_us, None, "the file is final");
}

/// The link stays down past `esl_down_grace_ms` while the call records on: only then is the
/// file all there is, and it is judged final only once it has not grown for its quiet window
/// (here a 1,600-byte write buffer: a burst every 100 ms of audio, a 1.2 s window). The call
/// goes on for 6 s of real time after the grace, its file growing in bursts 400 ms apart (as a
/// real switch's grow 4.096 s apart against a 9.2 s window): not cut.
#[tokio::test]
async fn a_link_down_past_its_grace_hands_the_recording_to_its_file_without_cutting_it() {
    let h = Harness::start_linked(vec![wav(|r| r.record_on_answer = true)], |c| {
        c.esl_down_grace_ms = 300;
        c.record_write_buffer_bytes = 1_600;
    })
    .await;
    let call = released_call(&h).await;
    call.answer();
    let start = call.wait_for_command("api uuid_record").await;
    assert!(
        start.line.contains("enable_file_write_buffering=1600"),
        "{}",
        start.line
    );
    call.advance(Duration::from_secs(2));
    call.sync().await;
    switch(&h).unload_event_socket().await;
    // 3 s of audio over 6 s: two bursts every 400 ms.
    for _ in 0..15 {
        call.advance(Duration::from_millis(200));
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(h.delivered().is_empty(), "not judged while it grows");
    call.hangup("NORMAL_CLEARING");
    h.idle().await;
    let got = h.delivered();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].duration_ms, 5_000, "the whole call");
    assert!(got[0].may_grow_until_us.is_some(), "judged from the file");
    switch(&h).load_event_socket().await.unwrap();
}
