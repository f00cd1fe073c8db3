//! Rows 1–14: recordings kept, discarded, triggered and correlated; hand-back and release;
//! a trigger missed while the link was down; shutdown.

use super::*;

#[test]
fn row1_immediate_recording_kept_with_freeswitchs_record_ms() {
    let (o, _) = run(
        "outbound-uuid-record-vars.json.txt",
        &[wav()],
        World::default(),
    );
    assert_eq!(o.commands[..3], SUBSCRIBE);
    assert!(
        o.commands[3].starts_with("api uuid_record ")
            && o.commands[3].contains(" start /rec/recordings/unknown/")
            && o.commands[3]
                .ends_with("/rec-1.wav 3600 {callrec_recording_id=rec-1,RECORD_STEREO=false,enable_file_write_buffering=65536}"),
        "{}",
        o.commands[3]
    );
    assert!(
        o.commands[4].starts_with("sendmsg execute-app-arg: ")
            && o.commands[4].ends_with(" XML callrec-continue")
    );
    assert_eq!(o.commands.len(), 5);
    assert_eq!(o.journaled, ["rec-1"], "journaled before uuid_record");
    assert!(o.forgotten.is_empty());
    assert_eq!(o.events_before_first_start, 0, "started before any event");
    assert_eq!(o.kept.len(), 1);
    assert_eq!(o.kept[0].0, "rec-1");
    assert!(o.kept[0].1 > 0, "record_ms from RECORD_STOP");
    assert!(o.exited && o.done);
    // Webhooks hear RECORD_START from the session; "completed" comes from delivery.
    assert_eq!(
        o.notices,
        [("recording.started", "rec-1".to_string(), None)]
    );
}

#[test]
fn row2_empty_file_is_discarded_not_delivered() {
    let (o, s) = run(
        "outbound-noanswer-record-emptyfile.plain.txt",
        &[wav()],
        World {
            files_exist: false,
            ..World::default()
        },
    );
    assert!(o.kept.is_empty());
    assert_eq!(o.deleted, 0, "FreeSWITCH already deleted it");
    assert!(s.recordings()[0].state == callrec::recorder::State::Finished);
    assert!(o.done);
}

#[test]
fn row3_on_answer_waits_for_channel_answer() {
    let rc = RecordCall {
        record_on_answer: true,
        ..wav()
    };
    let (o, _) = run(
        "outbound-caller-hangup-during-record.plain.txt",
        &[rc],
        World::default(),
    );
    // Subscriptions, the hand-back, then uuid_record once CHANNEL_ANSWER came.
    assert!(o.commands[3].starts_with("sendmsg "), "{:?}", o.commands);
    assert!(o.commands[4].starts_with("api uuid_record "));
    assert!(o.events_before_first_start >= 1);
    assert_eq!(o.kept.len(), 1);
}

#[test]
fn row4_min_sec_discards_and_deletes_a_short_recording() {
    let rc = RecordCall {
        record_min_sec: 3600,
        ..wav()
    };
    let (o, _) = run(
        "outbound-uuid-record-vars.json.txt",
        &[rc],
        World::default(),
    );
    assert!(o.kept.is_empty());
    assert_eq!(o.deleted, 1);
    assert_eq!(
        o.forgotten,
        ["rec-1"],
        "a discarded recording leaves no journal row"
    );
    assert!(o.done);
    let events: Vec<&str> = o.notices.iter().map(|n| n.0).collect();
    assert_eq!(events, ["recording.started", "recording.discarded"]);
    assert!(
        o.notices[1]
            .2
            .as_deref()
            .is_some_and(|r| r.contains("record_min_sec")),
        "{:?}",
        o.notices[1]
    );
}

#[test]
fn row5_two_recordings_each_correlated_by_its_own_id() {
    let rc2 = RecordCall {
        record_stereo: true,
        ..wav()
    };
    let (o, _) = run(
        "outbound-two-recordings-vars.json.txt",
        &[wav(), rc2],
        World::default(),
    );
    let starts: Vec<&String> = o
        .commands
        .iter()
        .filter(|c| c.starts_with("api uuid_record"))
        .collect();
    assert_eq!(starts.len(), 2);
    assert!(starts[1].contains("RECORD_STEREO=true"));
    let ids: Vec<&str> = o.kept.iter().map(|k| k.0.as_str()).collect();
    assert_eq!(ids, ["rec-1", "rec-2"]);
}

#[test]
fn row6_no_record_stop_after_hangup_finishes_from_the_file() {
    let (o, _) = run(
        "outbound-uuid-record-vars.json.txt",
        &[wav()],
        World {
            drop: vec![EventName::RecordStop],
            ..World::default()
        },
    );
    assert_eq!(o.kept.len(), 1);
    assert_eq!(
        (o.kept[0].1, o.kept[0].2.as_str()),
        (3000, "hangup without RECORD_STOP"),
        "measured on disk after the grace timer"
    );
    assert!(o.exited && o.done);
}

#[test]
fn row7_connection_lost_mid_call_watches_the_file_until_it_settles() {
    let (o, s) = run(
        "outbound-uuid-record-vars.json.txt",
        &[wav()],
        World {
            lose_connection_after: Some(EventName::RecordStart),
            ..World::default()
        },
    );
    assert_eq!(o.kept.len(), 1, "{o:?}");
    assert_eq!(o.kept[0].2, "connection lost; file stopped growing");
    assert!(!o.exited, "no exit on a closed socket");
    assert!(o.done);
    assert!(s.recordings()[0].state == callrec::recorder::State::Finished);
}

#[test]
fn row8_bridge_target_adds_its_own_recording_once() {
    let stereo = RecordCall {
        record_stereo: true,
        ..wav()
    };
    let (o, _) = run(
        "outbound-bridge-callee.json.txt",
        &[wav()],
        World {
            bridge_rules: vec![wav(), stereo],
            ..World::default()
        },
    );
    let starts: Vec<&String> = o
        .commands
        .iter()
        .filter(|c| c.starts_with("api uuid_record"))
        .collect();
    assert_eq!(
        starts.len(),
        2,
        "the same settings are not started twice: {starts:?}"
    );
    assert!(starts[1].contains("RECORD_STEREO=true"));
}

#[test]
fn row9_nothing_planned_hands_back_and_ends_with_the_call() {
    let (o, s) = run("outbound-uuid-record-vars.json.txt", &[], World::default());
    assert_eq!(o.commands.len(), 4, "{:?}", o.commands);
    assert!(o.commands[3].starts_with("sendmsg "));
    assert!(s.recordings().is_empty());
    assert!(o.exited && o.done);
}

/// Followed over the event-socket link: no subscriptions on the socket; the follow variable is
/// set, the recording started, the call handed back, and the socket released at once. The
/// call's events (delivered by the link) finish the recording exactly as over the socket, and
/// no `exit` is sent at the end (the socket is long gone).
#[test]
fn row10_followed_over_the_link_the_socket_is_released_after_the_hand_back() {
    let (o, _) = run(
        "outbound-uuid-record-vars.json.txt",
        &[wav()],
        World {
            follow_tag: Some("node-a".into()),
            ..World::default()
        },
    );
    assert!(
        o.commands[0].starts_with("api uuid_setvar "),
        "{:?}",
        o.commands
    );
    assert!(
        o.commands[0].ends_with(" callrec_follow node-a"),
        "{:?}",
        o.commands
    );
    assert!(
        o.commands[1].starts_with("api uuid_record "),
        "{:?}",
        o.commands
    );
    assert!(
        o.commands[2].starts_with("sendmsg execute-app-arg: "),
        "{:?}",
        o.commands
    );
    assert_eq!(o.commands.len(), 3, "nothing else: {:?}", o.commands);
    assert!(o.released && !o.exited && o.done);
    assert_eq!(o.kept.len(), 1);
    assert_eq!(o.kept[0].0, "rec-1");
}

/// Nothing to record and no rule that could record a bridged callee: the call is handed back
/// and let go at once, over either follow mode, without waiting for its end.
#[test]
fn row11_nothing_to_record_lets_the_call_go_at_once() {
    for tag in [None, Some("node-a".to_string())] {
        let (o, _) = run(
            "outbound-uuid-record-vars.json.txt",
            &[],
            World {
                follow_tag: tag.clone(),
                callee_never_records: true,
                ..World::default()
            },
        );
        let last = o.commands.last().unwrap();
        assert!(
            last.starts_with("sendmsg execute-app-arg: "),
            "{:?}",
            o.commands
        );
        assert!(
            !o.commands.iter().any(|c| c.contains("uuid_setvar")),
            "not marked for the link: {:?}",
            o.commands
        );
        assert!(o.done && o.kept.is_empty());
        assert_eq!((o.exited, o.released), (tag.is_none(), tag.is_some()));
    }
}

/// Followed over the link, the link is lost before CHANNEL_ANSWER, which is missed. The
/// recording waiting for the answer is not given up: the core asks for the channel once the
/// link is back, sees it answered in the dump, and starts the recording then.
#[test]
fn row12_a_recording_waiting_for_a_trigger_missed_while_the_link_was_down_starts_late() {
    let rc = RecordCall {
        record_on_answer: true,
        ..wav()
    };
    let (o, _) = run(
        "outbound-caller-hangup-during-record.plain.txt",
        std::slice::from_ref(&rc),
        World {
            follow_tag: Some("node-a".into()),
            link_lost_before: Some((EventName::ChannelAnswer, false)),
            ..World::default()
        },
    );
    assert_eq!(o.resynced, 1);
    assert!(
        o.commands.last().unwrap().starts_with("api uuid_record "),
        "{:?}",
        o.commands
    );
    assert_eq!(o.kept.len(), 1, "{o:?}");
    assert!(o.done);
    // The call ended during the outage: the dump finds no channel, the recording is accounted
    // for as not started, and the session ends.
    let (o, s) = run(
        "outbound-caller-hangup-during-record.plain.txt",
        &[rc],
        World {
            follow_tag: Some("node-a".into()),
            link_lost_before: Some((EventName::ChannelAnswer, true)),
            ..World::default()
        },
    );
    assert_eq!(o.resynced, 1);
    assert!(!o.commands.iter().any(|c| c.starts_with("api uuid_record")));
    assert!(o.kept.is_empty() && o.done);
    assert!(s.recordings()[0].state == callrec::recorder::State::Finished);
}

/// The link is lost while the call is still being decided (its socket still open): the call is
/// followed over its socket from then on (subscribed there), not closed; a call already
/// followed over its socket ignores the link's loss.
#[test]
fn row13_a_link_lost_before_the_hand_back_moves_the_call_to_its_socket() {
    let events = support::events("outbound-caller-hangup-during-record.plain.txt");
    let info = CallInfo::from_channel_data(&events[0], &PartyVariables::default());
    let mut st = settings();
    st.follow_tag = Some("node-a".into());
    let mut s = Session::with_ids(info, st, || "rec-1".to_string());
    s.start();
    let rc = RecordCall {
        record_on_answer: true,
        ..wav()
    };
    let acts = s.handle(Input::Planned {
        bridge_target: None,
        result: Ok(plan(&[rc])),
    });
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::Send(_, Command::Api(l)) if l.contains("uuid_setvar"))),
        "marked for the link first: {acts:?}"
    );
    let acts = s.handle(Input::LinkLost);
    let subscribed = acts
        .iter()
        .any(|a| matches!(a, Action::Send(_, Command::MyEvents { .. })));
    assert!(subscribed, "subscribed on the socket: {acts:?}");
    assert!(
        !acts
            .iter()
            .any(|a| matches!(a, Action::Close | Action::Done | Action::Release)),
        "{acts:?}"
    );
    // Over the socket now: another loss of the link is nothing to this call.
    assert!(s.handle(Input::LinkLost).is_empty());
}

/// Shutdown's deadline with a recording still waiting for the answer: it is accounted for
/// (`not started`, finished) and the session ends, rather than ending with it unsaid.
#[test]
fn row14_shutdown_accounts_for_a_recording_still_waiting_for_its_trigger() {
    let events = support::events("outbound-caller-hangup-during-record.plain.txt");
    let info = CallInfo::from_channel_data(&events[0], &PartyVariables::default());
    let mut s = Session::with_ids(info, settings(), || "rec-1".to_string());
    let mut pending: VecDeque<Action> = s.start().into();
    let rc = RecordCall {
        record_on_answer: true,
        ..wav()
    };
    pending.extend(s.handle(Input::Planned {
        bridge_target: None,
        result: Ok(plan(&[rc])),
    }));
    // Every command acknowledged: subscribed, handed back, following.
    while let Some(a) = pending.pop_front() {
        if let Action::Send(id, _) = a {
            pending.extend(s.handle(Input::Reply(id, Ok((true, "+OK".into())))));
        }
    }
    assert!(matches!(
        s.recordings()[0].state,
        callrec::recorder::State::Waiting(_)
    ));
    let acts = s.handle(Input::Abort);
    assert!(s.recordings()[0].state == callrec::recorder::State::Finished);
    assert!(acts.contains(&Action::Done), "{acts:?}");
}
