//! Rows 15–20: the link to FreeSWITCH lost (and found again) while a recording runs, the
//! drop-in extension's call, and shutdown with recordings and calls still running.

use super::*;

/// A call followed over the link, handed back and released, its one recording (started at
/// once) confirmed by RECORD_START; the actions of the last input.
fn linked_and_recording() -> (Session, Vec<Action>) {
    let events = support::events("outbound-caller-hangup-during-record.plain.txt");
    let info = CallInfo::from_channel_data(&events[0], &PartyVariables::default());
    let mut st = settings();
    st.follow_tag = Some("node-a".into());
    let mut s = Session::with_ids(info, st, || "rec-1".to_string());
    let mut pending: VecDeque<Action> = s.start().into();
    pending.extend(s.handle(Input::Planned {
        bridge_target: None,
        result: Ok(plan(&[wav()])),
    }));
    while let Some(a) = pending.pop_front() {
        if let Action::Send(id, _) = a {
            pending.extend(s.handle(Input::Reply(id, Ok((true, "+OK".into())))));
        }
    }
    let start = record_event(&s, "RECORD_START", &[]);
    let acts = s.handle(Input::Event(start));
    assert!(matches!(
        s.recordings()[0].state,
        callrec::recorder::State::Recording { .. }
    ));
    (s, acts)
}

/// A RECORD_START/STOP of the session's recording, with extra headers.
fn record_event(s: &Session, name: &str, extra: &[(&str, &str)]) -> Event {
    let r = &s.recordings()[0];
    let path = r.path_str();
    let mut pairs = vec![
        ("Event-Name", name),
        ("Unique-ID", s.info().call.call_id.as_str()),
        ("Record-File-Path", path.as_str()),
        ("Recording-Variable-callrec_recording_id", r.id.as_str()),
        ("Event-Date-Timestamp", "1795459961000000"),
    ];
    pairs.extend_from_slice(extra);
    Event::from_pairs(pairs)
}

fn inspects(acts: &[Action]) -> bool {
    acts.iter().any(|a| {
        matches!(
            a,
            Action::Inspect { .. } | Action::SetTimer(Timer::DiskPoll, _)
        )
    })
}

/// The link is lost while a recording runs: an outage, not an ending. The recording stays
/// open (no file watch), the call is followed again, and FreeSWITCH's RECORD_STOP ends it.
#[test]
fn row15_a_recording_running_when_the_link_is_lost_ends_with_its_record_stop() {
    let (mut s, _) = linked_and_recording();
    let acts = s.handle(Input::LinkLost);
    assert_eq!(acts, vec![Action::Resync], "follow it again, nothing else");
    let dump = Event::from_pairs([("Event-Name", "CHANNEL_DATA"), ("Answer-State", "answered")]);
    let acts = s.handle(Input::Resynced(Ok(Some(dump))));
    assert!(!inspects(&acts), "{acts:?}");
    assert!(matches!(
        s.recordings()[0].state,
        callrec::recorder::State::Recording { .. }
    ));
    let stop = record_event(
        &s,
        "RECORD_STOP",
        &[
            ("variable_record_ms", "8000"),
            ("Record-Completion-Cause", "success-silence"),
        ],
    );
    let acts = s.handle(Input::Event(stop));
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::Inspect { measure: false, .. })),
        "{acts:?}"
    );
    let acts = s.handle(Input::Inspected {
        rec: 0,
        size: Some(128_044),
        duration_ms: None,
    });
    let Some(Action::Deliver(_, f)) = acts.iter().find(|a| matches!(a, Action::Deliver(..))) else {
        panic!("delivered: {acts:?}")
    };
    assert_eq!(f.duration_ms, 8000);
    assert_eq!(f.completion_cause, "success-silence");
    assert_eq!(f.may_grow_until_us, None);
}

/// The call ended while the link was down; it is back: the channel is gone, so its file is
/// final and is measured, with nothing left to watch.
#[test]
fn row16_a_call_gone_when_the_link_returns_is_finished_from_its_final_file() {
    let (mut s, _) = linked_and_recording();
    s.handle(Input::LinkLost);
    let acts = s.handle(Input::Resynced(Ok(None)));
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::Inspect { measure: true, .. })),
        "{acts:?}"
    );
    let acts = s.handle(Input::Inspected {
        rec: 0,
        size: Some(64_044),
        duration_ms: Some(4000),
    });
    let Some(Action::Deliver(_, f)) = acts.iter().find(|a| matches!(a, Action::Deliver(..))) else {
        panic!("delivered: {acts:?}")
    };
    assert_eq!(f.duration_ms, 4000);
    assert!(f
        .completion_cause
        .contains("ended while the event-socket link was down"));
    assert_eq!(f.may_grow_until_us, None, "final");
}

/// The link stays down past its grace: only then the file, judged final once it has not grown
/// for its quiet window (65,536-byte buffer at 8 kHz: 2 × 4.096 s + 1 s, ten 1 s looks), and
/// delivered as possibly still growing until the time limit (3600 s) and a minute have passed.
#[test]
fn row17_a_link_down_past_its_grace_judges_the_file_by_its_quiet_window() {
    let (mut s, _) = linked_and_recording();
    s.handle(Input::LinkLost);
    let acts = s.handle(Input::Resynced(Err("the link stayed down".into())));
    assert!(
        acts.contains(&Action::SetTimer(Timer::DiskPoll, Duration::from_secs(1))),
        "{acts:?}"
    );
    // One look to learn the size, then nine unchanged looks: not yet.
    for _ in 0..10 {
        let acts = s.handle(Input::Inspected {
            rec: 0,
            size: Some(65_580),
            duration_ms: None,
        });
        assert!(acts.is_empty(), "{acts:?}");
    }
    let acts = s.handle(Input::Inspected {
        rec: 0,
        size: Some(65_580),
        duration_ms: None,
    });
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::Inspect { measure: true, .. })),
        "the tenth unchanged look: {acts:?}"
    );
    let acts = s.handle(Input::Inspected {
        rec: 0,
        size: Some(65_580),
        duration_ms: Some(4096),
    });
    let Some(Action::Deliver(_, f)) = acts.iter().find(|a| matches!(a, Action::Deliver(..))) else {
        panic!("delivered: {acts:?}")
    };
    assert_eq!(
        f.may_grow_until_us,
        Some(1_795_459_961_000_000 + 3_600_000_000 + 60_000_000)
    );
}

/// Shutdown's deadline while FreeSWITCH records: the recording is neither delivered nor
/// forgotten; its journal row stays for the next start.
#[test]
fn row18_shutdown_leaves_a_running_recording_journaled() {
    let (mut s, _) = linked_and_recording();
    let acts = s.handle(Input::Abort);
    assert!(
        !acts.iter().any(|a| matches!(
            a,
            Action::Deliver(..) | Action::Forget(_) | Action::Inspect { .. }
        )),
        "{acts:?}"
    );
    assert!(acts.contains(&Action::Done), "{acts:?}");
}

/// The drop-in extension's call goes on where it was. Over the link: `resume`, and the socket is
/// let go (FreeSWITCH runs the next action once it closes), no transfer. Over the socket:
/// `socket_resume` cleared, then a transfer into the call's own context (`Caller-Context`), sent
/// back to back. With nothing to follow: `resume` in either mode.
#[test]
fn row19_the_drop_in_extensions_call_goes_on_where_it_was() {
    let linked = run(
        "outbound-uuid-record-vars.json.txt",
        &[wav()],
        World {
            follow_tag: Some("node-a".into()),
            in_place: true,
            ..World::default()
        },
    )
    .0;
    assert_eq!(linked.commands.len(), 3, "{:?}", linked.commands);
    assert!(linked.commands[0].ends_with(" callrec_follow node-a"));
    assert!(linked.commands[1].starts_with("api uuid_record "));
    assert_eq!(linked.commands[2], "resume");
    assert!(linked.released && linked.done && linked.kept.len() == 1);

    let socket = run(
        "outbound-uuid-record-vars.json.txt",
        &[wav()],
        World {
            in_place: true,
            ..World::default()
        },
    )
    .0;
    let after_start: Vec<_> = socket
        .commands
        .iter()
        .skip_while(|c| !c.starts_with("api uuid_record"))
        .skip(1)
        .take(2)
        .cloned()
        .collect();
    assert_eq!(
        after_start,
        [
            "api uuid_setvar 24213276-8a68-4c13-82e5-262303b5a3f1 socket_resume false".to_string(),
            "sendmsg execute-app-arg: 1000 XML public".into(),
        ]
    );
    assert!(!socket.commands.contains(&"resume".to_string()));
    assert!(socket.done && socket.kept.len() == 1);

    for tag in [None, Some("node-a".to_string())] {
        let (o, _) = run(
            "outbound-uuid-record-vars.json.txt",
            &[],
            World {
                follow_tag: tag.clone(),
                callee_never_records: true,
                in_place: true,
                ..World::default()
            },
        );
        assert_eq!(o.commands.last().map(String::as_str), Some("resume"));
        assert!(!o.commands.iter().any(|c| c.starts_with("sendmsg")));
        assert_eq!((o.exited, o.released), (tag.is_none(), tag.is_some()));
    }
}

/// The shutdown deadline passes while the call still waits in `socket` (the rules never
/// answered): the socket is closed with `resume` (the driver's `Close`), so the dialplan goes
/// on.
#[test]
fn row20_a_call_still_parked_at_the_shutdown_deadline_is_let_go() {
    let events = support::events("outbound-uuid-record-vars.json.txt");
    let info = CallInfo::from_channel_data(&events[0], &PartyVariables::default());
    let mut s = Session::new(info.clone(), settings());
    let _ = s.start();
    let acts = s.handle(Input::Abort);
    assert!(acts.contains(&Action::Close), "{acts:?}");
}
