//! Call sessions against the FreeSWITCH simulator over real sockets: every `record_call` field,
//! stereo, hangups, unanswered calls, lost connections, two recordings on one call.

mod support;

use std::time::Duration;

use callrec::rules::{AudioFormat, RecordCall};
use callrec_sim::{CallHandle, CallSpec};
use support::harness::{wav, Harness};

fn spec() -> CallSpec {
    CallSpec::new("15551234567", "1000")
        .caller_name("Alice")
        .var("callrec_account_id", "acc-1")
}

/// The common script: wait until callrec has asked for the recording and handed the call
/// back, answer, talk for `talk`, caller hangs up; returns once callrec has said `exit`.
async fn answered_call(h: &Harness, talk: Duration) -> CallHandle {
    let call = h.dial(spec()).await.expect("dial");
    call.wait_for_command("sendmsg").await;
    call.answer();
    if !h.planner.plans.is_empty() {
        call.wait_for_commands("api uuid_record", h.planner.plans.len())
            .await;
    }
    call.advance(talk);
    call.hangup("NORMAL_CLEARING");
    let r = h.closed(&call).await;
    // Followed over the link, callrec lets the socket go right after the hand-back (its `exit`
    // may cross the hangup, which also ends a socket without linger).
    assert!(
        r.app_exited || h.link_mode(),
        "callrec ends the lingering socket with exit: {:?}",
        r.commands
            .iter()
            .map(|c| c.line.clone())
            .collect::<Vec<_>>()
    );
    call
}

#[tokio::test]
async fn wav_recording_kept_locally_with_metadata() {
    let h = Harness::start(vec![wav(|_| {})]).await;
    let call = answered_call(&h, Duration::from_millis(4_000)).await;
    let r = call.report();
    assert_eq!(
        r.transferred_to.as_deref(),
        Some("1000 XML callrec-continue")
    );
    assert_eq!(r.recordings.len(), 1);
    assert_eq!(r.recordings[0].cause, "success-silence");
    let got = h.delivered();
    assert_eq!(got.len(), 1);
    let rec = &got[0];
    assert_eq!(rec.call.call_id, call.uuid);
    assert_eq!(rec.call.account_id.as_deref(), Some("acc-1"));
    assert_eq!(rec.call.caller_id_name, "Alice");
    assert_eq!(rec.duration_ms, 4_000);
    assert!(rec.destinations.is_empty() && rec.keep_local);
    // <data>/recordings/acc-1/YYYY/MM/DD/<id>.wav
    let path = std::path::Path::new(&rec.file_path);
    assert!(path.starts_with(h.data_dir().join("recordings/acc-1")));
    assert_eq!(
        path.file_name().unwrap().to_str().unwrap(),
        format!("{}.wav", rec.recording_id)
    );
    let reader = hound::WavReader::open(path).unwrap();
    assert_eq!(reader.spec().sample_rate, 8000);
    assert_eq!(reader.spec().channels, 1);
    assert_eq!(reader.duration(), 32_000);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path.with_extension("json")).unwrap()).unwrap();
    assert_eq!(meta["recording_id"], rec.recording_id.as_str());
    assert_eq!(meta["duration_ms"], 4000);
    // The per-recording variables went with uuid_record, not onto the channel.
    let cmd = call.wait_for_command("api uuid_record").await;
    assert!(cmd.line.ends_with(&format!(
        " 3600 {{callrec_recording_id={},RECORD_STEREO=false,enable_file_write_buffering=65536}}",
        rec.recording_id
    )));
}

#[tokio::test]
async fn mp3_format() {
    let h = Harness::start(vec![RecordCall::default()]).await;
    answered_call(&h, Duration::from_millis(5_010)).await;
    let got = h.delivered();
    assert_eq!(got[0].format, AudioFormat::Mp3);
    assert!(got[0].file_path.ends_with(".mp3"));
    let bytes = std::fs::read(&got[0].file_path).unwrap();
    assert_eq!(&bytes[..2], &[0xFF, 0xE3], "an MPEG audio frame sync");
}

#[tokio::test]
async fn record_min_sec_discards_short_and_keeps_long() {
    let h = Harness::start(vec![wav(|r| r.record_min_sec = 5)]).await;
    answered_call(&h, Duration::from_millis(3_000)).await;
    assert!(h.delivered().is_empty(), "3 s < record_min_sec 5");
    assert!(h.files().is_empty(), "the short file is deleted");
    answered_call(&h, Duration::from_millis(6_000)).await;
    assert_eq!(h.delivered().len(), 1);
    assert_eq!(h.delivered()[0].duration_ms, 6_000);
}

#[tokio::test]
async fn record_on_answer_never_pre_answers() {
    let h = Harness::start(vec![wav(|r| r.record_on_answer = true)]).await;
    let call = h.dial(spec()).await.unwrap();
    call.wait_for_command("sendmsg").await;
    // Nothing recorded (and so no early media) before the answer.
    let before = call.report();
    assert!(!before
        .commands
        .iter()
        .any(|c| c.line.starts_with("api uuid_record")));
    call.answer();
    call.wait_for_command("api uuid_record").await;
    call.advance(Duration::from_secs(2));
    call.hangup("NORMAL_CLEARING");
    let r = h.closed(&call).await;
    assert!(!r.events_sent.iter().any(|e| e == "CHANNEL_PROGRESS_MEDIA"));
    assert_eq!(h.delivered().len(), 1);
    assert_eq!(h.delivered()[0].duration_ms, 2_000);
}

#[tokio::test]
async fn immediate_recording_pre_answers_like_freeswitch() {
    let h = Harness::start(vec![wav(|_| {})]).await;
    let call = h.dial(spec()).await.unwrap();
    call.wait_for_command("api uuid_record").await;
    call.wait_for_command("sendmsg").await;
    call.advance(Duration::from_secs(1));
    call.answer();
    call.advance(Duration::from_secs(2));
    call.hangup("NORMAL_CLEARING");
    let r = h.closed(&call).await;
    // The socket carries the call's events only when the call is followed over it.
    if !h.link_mode() {
        let pm = r
            .events_sent
            .iter()
            .position(|e| e == "CHANNEL_PROGRESS_MEDIA");
        let ans = r.events_sent.iter().position(|e| e == "CHANNEL_ANSWER");
        assert!(
            pm.is_some() && pm < ans,
            "early media before answer: {:?}",
            r.events_sent
        );
    }
    assert_eq!(
        h.delivered()[0].duration_ms,
        3_000,
        "early media is recorded too"
    );
}

#[tokio::test]
async fn sample_rates_in_the_file_header() {
    for rate in [8000u32, 16000] {
        let h = Harness::start(vec![wav(|r| r.record_sample_rate = Some(rate))]).await;
        let call = answered_call(&h, Duration::from_secs(2)).await;
        let got = h.delivered();
        let reader = hound::WavReader::open(&got[0].file_path).unwrap();
        assert_eq!(reader.spec().sample_rate, rate);
        assert_eq!(reader.duration(), 2 * rate);
        let cmd = call.wait_for_command("api uuid_record").await;
        assert!(cmd.line.contains(&format!("record_sample_rate={rate}")));
    }
}

#[tokio::test]
async fn stereo_has_two_channels() {
    let h = Harness::start(vec![wav(|r| r.record_stereo = true)]).await;
    answered_call(&h, Duration::from_secs(1)).await;
    let reader = hound::WavReader::open(&h.delivered()[0].file_path).unwrap();
    assert_eq!(reader.spec().channels, 2);
}

#[tokio::test]
async fn time_limit_stops_the_recording() {
    let h = Harness::start(vec![wav(|r| r.time_limit = 5)]).await;
    let call = answered_call(&h, Duration::from_secs(20)).await;
    let r = call.report();
    assert_eq!(r.recordings[0].cause, "success-maxtime");
    assert_eq!(r.recordings[0].limit_s, 5);
    let got = h.delivered();
    assert_eq!(got[0].completion_cause, "success-maxtime");
    // FreeSWITCH checks the limit in whole epoch seconds: between 4 and 5 s of audio.
    assert!(
        (4_000..=5_000).contains(&got[0].duration_ms),
        "{}",
        got[0].duration_ms
    );
}

#[tokio::test]
async fn url_set_versus_local() {
    let url = "https://rec.example.com/calls/";
    let h = Harness::start(vec![wav(|r| r.url = Some(url.into()))]).await;
    answered_call(&h, Duration::from_secs(1)).await;
    let d = &h.delivered()[0].destinations;
    assert_eq!((d.len(), d[0].url.as_str()), (1, url));
    assert!(!h.delivered()[0].keep_local);
    let h = Harness::start(vec![wav(|_| {})]).await;
    answered_call(&h, Duration::from_secs(1)).await;
    assert!(h.delivered()[0].destinations.is_empty());
    assert!(h.delivered()[0].keep_local);
}

#[tokio::test]
async fn caller_hangs_up_during_recording() {
    let h = Harness::start(vec![wav(|_| {})]).await;
    let call = answered_call(&h, Duration::from_millis(3_510)).await;
    let r = call.report();
    if !h.link_mode() {
        let names = &r.events_sent;
        let hangup = names.iter().position(|e| e == "CHANNEL_HANGUP").unwrap();
        let stop = names.iter().position(|e| e == "RECORD_STOP").unwrap();
        let complete = names
            .iter()
            .position(|e| e == "CHANNEL_HANGUP_COMPLETE")
            .unwrap();
        assert!(hangup < stop && stop < complete);
    }
    assert_eq!(h.delivered()[0].completion_cause, "success-silence");
    assert_eq!(h.delivered()[0].duration_ms, 3_510);
}

#[tokio::test]
async fn never_answered_call_with_record_on_answer() {
    let h = Harness::start(vec![wav(|r| r.record_on_answer = true)]).await;
    let call = h.dial(spec()).await.unwrap();
    call.wait_for_command("sendmsg").await;
    call.advance(Duration::from_secs(4));
    call.hangup("ORIGINATOR_CANCEL");
    let r = h.closed(&call).await;
    assert!(r.app_exited || h.link_mode());
    assert!(!r
        .commands
        .iter()
        .any(|c| c.line.starts_with("api uuid_record")));
    assert!(h.delivered().is_empty());
    assert!(h.files().is_empty());
}

#[tokio::test]
async fn never_answered_call_recorded_immediately_keeps_early_media() {
    let h = Harness::start(vec![wav(|_| {})]).await;
    let call = h.dial(spec()).await.unwrap();
    call.wait_for_command("sendmsg").await;
    call.advance(Duration::from_secs(4));
    call.hangup("ORIGINATOR_CANCEL");
    h.closed(&call).await;
    assert_eq!(h.delivered()[0].duration_ms, 4_000);
}

#[tokio::test]
async fn cancel_at_once_gives_an_empty_file_that_is_discarded() {
    let h = Harness::start(vec![wav(|_| {})]).await;
    let call = h.dial(spec()).await.unwrap();
    call.wait_for_command("sendmsg").await;
    call.hangup("ORIGINATOR_CANCEL");
    let r = h.closed(&call).await;
    assert!(r.recordings[0].discarded);
    assert_eq!(r.recordings[0].cause, "empty-file");
    assert!(h.delivered().is_empty());
}

#[tokio::test]
async fn freeswitch_drops_the_socket_mid_call() {
    let h = Harness::start(vec![wav(|_| {})]).await;
    let call = h.dial(spec()).await.unwrap();
    call.wait_for_command("sendmsg").await;
    call.answer();
    call.advance(Duration::from_secs(2));
    call.kill_socket();
    // FreeSWITCH keeps recording the call without its controller.
    call.advance(Duration::from_secs(3));
    call.hangup("NORMAL_CLEARING");
    call.wait_until(|r| r.hung_up).await;
    // callrec watches the file until it stops growing, then keeps it.
    let got = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let d = h.delivered();
            if !d.is_empty() {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("recording finished from disk");
    assert_eq!(got[0].duration_ms, 5_000);
    if h.link_mode() {
        // The socket was already let go: the link brought FreeSWITCH's RECORD_STOP.
        assert_eq!(got[0].completion_cause, "success-silence");
    } else {
        assert!(got[0].completion_cause.contains("connection lost"));
    }
}

#[tokio::test]
async fn freeswitch_kills_the_connection_mid_command() {
    let h = Harness::start(vec![wav(|r| r.record_on_answer = true)]).await;
    if h.link_mode() {
        // Over the link no socket command follows the hand-back: the socket's death mid-command
        // cannot happen there (tests/fault_suite.rs drops the link itself instead).
        return;
    }
    let call = h.dial(spec()).await.unwrap();
    call.wait_for_command("sendmsg").await;
    call.kill_on_next_command();
    call.answer(); // callrec's uuid_record is the next command: the socket dies instead
    let r = h.closed(&call).await;
    assert!(!r.app_exited);
    call.hangup("NORMAL_CLEARING");
    // The server is still serving: a new call goes through normally.
    let h2 = answered_call(&h, Duration::from_secs(1)).await;
    assert!(h2.report().app_exited);
    assert_eq!(h.delivered().len(), 1);
}

#[tokio::test]
async fn two_recordings_on_one_call_do_not_share_settings() {
    let h = Harness::start(vec![
        wav(|r| r.record_sample_rate = Some(8000)),
        wav(|r| {
            r.record_sample_rate = Some(16000);
            r.record_stereo = true
        }),
    ])
    .await;
    answered_call(&h, Duration::from_secs(3)).await;
    let mut got = h.delivered();
    got.sort_by_key(|r| r.sample_rate);
    assert_eq!(got.len(), 2);
    assert_ne!(got[0].file_path, got[1].file_path);
    let a = hound::WavReader::open(&got[0].file_path).unwrap().spec();
    let b = hound::WavReader::open(&got[1].file_path).unwrap().spec();
    assert_eq!((a.sample_rate, a.channels), (8000, 1));
    assert_eq!((b.sample_rate, b.channels), (16000, 2));
}

#[tokio::test]
async fn record_on_bridge_waits_for_the_bridge() {
    let h = Harness::start(vec![wav(|r| r.record_on_bridge = true)]).await;
    let call = h.dial(spec()).await.unwrap();
    call.wait_for_command("sendmsg").await;
    call.advance(Duration::from_secs(1));
    call.bridge("1001");
    call.wait_for_command("api uuid_record").await;
    call.advance(Duration::from_secs(3));
    call.unbridge();
    call.hangup("NORMAL_CLEARING");
    h.closed(&call).await;
    assert_eq!(h.delivered()[0].duration_ms, 3_000);
}

#[tokio::test]
async fn no_rule_means_no_recording_but_the_call_goes_on() {
    let h = Harness::start(vec![]).await;
    let call = answered_call(&h, Duration::from_secs(1)).await;
    let r = call.report();
    assert_eq!(
        r.transferred_to.as_deref(),
        Some("1000 XML callrec-continue")
    );
    assert!(!r
        .commands
        .iter()
        .any(|c| c.line.starts_with("api uuid_record")));
    assert!(h.delivered().is_empty());
}

#[tokio::test]
async fn hostile_account_id_stays_inside_the_recordings_tree() {
    let h = Harness::start(vec![wav(|_| {})]).await;
    let call = h
        .dial(CallSpec::new("15551234567", "1000").var("callrec_account_id", "../../../etc"))
        .await
        .unwrap();
    call.wait_for_command("sendmsg").await;
    call.answer();
    call.advance(Duration::from_secs(1));
    call.hangup("NORMAL_CLEARING");
    h.closed(&call).await;
    let got = h.delivered();
    let p = std::path::Path::new(&got[0].file_path);
    assert!(p.starts_with(h.data_dir().join("recordings")));
    assert!(!got[0].file_path.contains(".."));
}

#[tokio::test]
async fn unsafe_destination_is_not_put_in_a_transfer() {
    let h = Harness::start(vec![wav(|_| {})]).await;
    let call = h
        .dial(CallSpec::new("15551234567", "1000 XML default"))
        .await
        .unwrap();
    let r = h.closed(&call).await;
    assert!(r.transferred_to.is_none());
    assert!(!r.commands.iter().any(|c| c.line.starts_with("sendmsg")));
    assert_eq!(
        r.commands.last().map(|c| c.line.as_str()),
        Some("resume"),
        "closed with resume, so FreeSWITCH goes on after `socket` instead of leaving the call parked"
    );
}

#[tokio::test]
async fn refuses_at_once_above_the_call_limit() {
    let h = Harness::start_with(vec![wav(|_| {})], |c| c.max_calls = 1).await;
    if h.link_mode() {
        // The limit counts sessions, which over the link outlive their sockets; this script
        // frees the slot by closing the socket, so it is a socket-mode script.
        return;
    }
    let first = h.dial(spec()).await.unwrap();
    first.wait_for_command("sendmsg").await;
    let second = h.dial(spec()).await.unwrap();
    // (Not `h.closed`: the first call is still live.)
    let r = second.closed().await;
    let lines: Vec<_> = r.commands.iter().map(|c| c.line.as_str()).collect();
    assert_eq!(
        lines,
        ["connect", "resume", "exit"],
        "the second call is handed straight back: FreeSWITCH needs connect to stop waiting and \
         resume not to leave it parked when the socket closes"
    );
    first.answer();
    first.wait_for_command("api uuid_record").await;
    first.hangup("NORMAL_CLEARING");
    h.closed(&first).await;
    // The slot frees once callrec has seen the first socket close; until then a new call may
    // still be refused (and FreeSWITCH would route it unrecorded). It is taken again.
    let third = loop {
        let call = h.dial(spec()).await.unwrap();
        let r = call
            .wait_until(|r| r.closed || r.transferred_to.is_some())
            .await;
        if r.transferred_to.is_some() {
            break call;
        }
        assert!(r.commands.is_empty(), "refused without a command");
        tokio::task::yield_now().await;
    };
    third.answer();
    third.wait_for_command("api uuid_record").await;
    third.hangup("NORMAL_CLEARING");
    assert!(h.closed(&third).await.app_exited);
}

#[tokio::test]
async fn socket_without_full_still_hands_the_call_back() {
    let h = Harness::start(vec![wav(|_| {})]).await;
    let call = h.dial(spec().not_full()).await.unwrap();
    let r = call.wait_until(|r| r.transferred_to.is_some()).await;
    assert_eq!(
        r.transferred_to.as_deref(),
        Some("1000 XML callrec-continue")
    );
    let refused = r
        .commands
        .iter()
        .filter(|c| c.line.starts_with("linger") || c.line.starts_with("event"))
        .count();
    assert_eq!(
        refused, 2,
        "linger and event are sent (and refused without `full`)"
    );
    call.hangup("NORMAL_CLEARING");
    call.wait_until(|r| r.hung_up).await;
}

#[tokio::test]
async fn graceful_shutdown_lets_live_calls_finish() {
    let mut h = Harness::start_with(vec![wav(|_| {})], |c| c.shutdown_grace_ms = 5_000).await;
    let call = h.dial(spec()).await.unwrap();
    call.wait_for_command("sendmsg").await;
    call.answer();
    call.advance(Duration::from_secs(2));
    let server = h.server.take().unwrap();
    let stopping = tokio::spawn(server.shutdown());
    // New calls are no longer accepted once the listener is closed.
    call.hangup("NORMAL_CLEARING");
    h.closed(&call).await;
    stopping.await.unwrap();
    assert_eq!(h.delivered().len(), 1);
    assert!(h.dial(spec()).await.is_err(), "listener closed");
}

#[tokio::test]
async fn lost_record_stop_is_finished_from_the_file_after_the_grace_period() {
    let h = Harness::start(vec![wav(|_| {})]).await;
    let call = h.dial(spec().lose_event("RECORD_STOP")).await.unwrap();
    call.wait_for_command("sendmsg").await;
    call.answer();
    call.advance(Duration::from_secs(3));
    call.hangup("NORMAL_CLEARING");
    let r = h.closed(&call).await;
    assert!(
        r.app_exited || h.link_mode(),
        "callrec still ends the call once it measured the file"
    );
    let got = h.delivered();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].duration_ms, 3_000, "measured from the WAV on disk");
    assert_eq!(got[0].completion_cause, "hangup without RECORD_STOP");
}

#[tokio::test]
async fn slow_rules_never_hold_the_call() {
    let h = Harness::start_with(vec![wav(|_| {})], |c| c.plan_timeout_ms = 50).await;
    h.planner.set_delay(Duration::from_secs(30));
    let call = h.dial(spec()).await.unwrap();
    // Handed back after the plan timeout, unrecorded.
    call.wait_for_command("sendmsg").await;
    call.answer();
    call.advance(Duration::from_secs(1));
    call.hangup("NORMAL_CLEARING");
    let r = h.closed(&call).await;
    assert!(!r
        .commands
        .iter()
        .any(|c| c.line.starts_with("api uuid_record")));
    assert!(h.delivered().is_empty());
}

#[tokio::test]
async fn a_command_without_reply_fails_the_recording_not_the_call() {
    let h = Harness::start_with(vec![wav(|r| r.record_on_answer = true)], |c| {
        c.command_timeout_ms = 100
    })
    .await;
    let call = h.dial(spec()).await.unwrap();
    call.wait_for_command("sendmsg").await;
    call.hold_replies();
    call.answer();
    call.wait_for_command("api uuid_record").await;
    call.hangup("NORMAL_CLEARING");
    if h.link_mode() {
        // Over the link the session ends on the hangup, the timed-out command failed alone.
        h.idle().await;
    } else {
        // callrec can only get to `exit` once uuid_record has timed out: the session waits.
        call.wait_for_command("exit").await;
    }
    call.release_replies();
    let r = h.closed(&call).await;
    assert!(r.app_exited || h.link_mode());
    assert!(h.delivered().is_empty());
    // The process keeps serving.
    let next = answered_call(&h, Duration::from_secs(1)).await;
    assert!(next.report().app_exited || h.link_mode());
    assert_eq!(h.delivered().len(), 1);
}

#[tokio::test]
async fn every_scripted_scenario_ends_with_every_recording_accounted_for() {
    use callrec_sim::scenario::{play, Scenario};
    if support::follow::inbound() {
        // `scenario::play` places standalone calls (no switch, so nothing reaches a link).
        return;
    }
    for sc in Scenario::ALL {
        let h = Harness::start(vec![wav(|r| {
            r.record_on_answer = true;
            r.time_limit = 30
        })])
        .await;
        let expect = !matches!(
            sc,
            Scenario::NeverAnswered | Scenario::FreeswitchKillsMidCommand
        );
        let r = play(h.addr, spec(), sc, Duration::from_secs(4), expect)
            .await
            .unwrap();
        let delivered = h.delivered();
        match sc {
            Scenario::NormalCall | Scenario::ControllerDisconnects => {
                assert!(r.app_exited, "{sc:?}");
                assert_eq!(delivered[0].duration_ms, 4_000, "{sc:?}");
            }
            Scenario::CallerHangsUpDuringRecording => {
                assert_eq!(delivered[0].duration_ms, 2_000);
                assert_eq!(delivered[0].completion_cause, "success-silence");
            }
            Scenario::TimeLimitReached => {
                assert_eq!(delivered[0].completion_cause, "success-maxtime");
                assert!(delivered[0].duration_ms <= 30_000);
            }
            Scenario::NeverAnswered | Scenario::FreeswitchKillsMidCommand => {
                assert!(delivered.is_empty(), "{sc:?}");
                assert!(h.files().is_empty(), "{sc:?}");
            }
        }
    }
}

#[tokio::test]
async fn a_call_that_cannot_be_handed_back_is_released_to_the_dialplan() {
    let h = Harness::start_with(vec![wav(|r| r.record_on_answer = true)], |c| {
        c.command_timeout_ms = 100
    })
    .await;
    let call = h.dial(spec()).await.unwrap();
    // Over the link the socket's first command marks the call for it; otherwise subscriptions.
    let first = if h.link_mode() {
        "api uuid_setvar"
    } else {
        "event json"
    };
    call.wait_for_command(first).await;
    call.hold_replies();
    // The transfer gets no answer: callrec closes the socket instead of leaving the call parked.
    let r = call.wait_until(|r| r.closed).await;
    assert!(r.commands.iter().any(|c| c.line.starts_with("sendmsg")));
    assert!(!r.app_exited);
    assert!(r.transferred_to.is_none());
    call.hangup("NORMAL_CLEARING");
    call.wait_until(|r| r.hung_up).await;
    assert!(h.delivered().is_empty());
}

#[tokio::test]
async fn peers_outside_allow_peers_are_handed_back_unrecorded() {
    let h = Harness::start_with(vec![wav(|_| {})], |c| {
        c.allow_peers = vec![callrec::outbound::allow::PeerNet::parse("10.0.0.0/8").unwrap()]
    })
    .await;
    let call = h.dial(spec()).await.unwrap();
    let r = h.closed(&call).await;
    let lines: Vec<_> = r.commands.iter().map(|c| c.line.as_str()).collect();
    assert_eq!(
        lines,
        ["connect", "resume", "exit"],
        "nothing but the hand-back: a FreeSWITCH left out by mistake still routes its calls"
    );
    // The default (loopback) takes the same call.
    let h = Harness::start(vec![wav(|_| {})]).await;
    let call = h.dial(spec()).await.unwrap();
    call.wait_for_command("sendmsg").await;
    call.hangup("NORMAL_CLEARING");
    h.closed(&call).await;
}

#[tokio::test]
async fn a_peer_that_sends_nothing_is_closed_after_the_command_timeout() {
    use tokio::io::AsyncReadExt;
    let h = Harness::start_with(vec![wav(|_| {})], |c| c.command_timeout_ms = 200).await;
    let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let mut got = Vec::new();
    // callrec asks for the channel data, gets nothing ESL-like, and closes: read to EOF.
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("callrec closed the silent connection")
        .unwrap();
    assert_eq!(got, b"connect\n\nresume\n\n");
}
