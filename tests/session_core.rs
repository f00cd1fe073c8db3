//! The call session's pure core, fed the event sequences of real FreeSWITCH 1.10.12 captures:
//! no sockets, no clock. A small scripted "world" answers the core's actions (every command
//! `+OK`, files present with a size, timers fired when the events run out), and each row of the
//! table asserts the commands the core sent and what became of each recording.

mod support;

use std::collections::VecDeque;
use std::time::Duration;

use callrec::esl::Command;
use callrec::event::{Event, EventName};
use callrec::outbound::session::{Action, Input, Session, Settings, Timer};
use callrec::rules::{CallInfo, PartyVariables, Plan, PlannedRecording, RecordCall};

fn settings() -> Settings {
    Settings {
        data_dir: "/rec".into(),
        continue_context: "callrec-continue".into(),
        record_stop_grace: Duration::from_secs(10),
        disk_poll: Duration::from_secs(1),
        write_buffer: callrec::recorder::DEFAULT_WRITE_BUFFER,
        bridge_profile: "external".into(),
        follow_tag: None,
    }
}

fn plan(rules: &[RecordCall]) -> Plan {
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| PlannedRecording::new(r.clone(), format!("rule {i}")))
        .collect::<Vec<_>>()
        .into()
}

/// How the scripted world behaves.
#[derive(Clone)]
struct World {
    /// Stop feeding events after this one (the connection is then lost).
    lose_connection_after: Option<EventName>,
    /// Drop these events from the capture.
    drop: Vec<EventName>,
    /// What the rules add for a bridged callee.
    bridge_rules: Vec<RecordCall>,
    /// Files exist on disk (FreeSWITCH deletes empty ones).
    files_exist: bool,
    /// Followed over the event-socket link with this tag.
    follow_tag: Option<String>,
    /// The rules say no callee could be recorded either.
    callee_never_records: bool,
    /// The link is lost just before this event, which is missed; the channel dump asked for
    /// when the link returns shows the state it brought (`None` in the dump: the call is gone).
    link_lost_before: Option<(EventName, bool)>,
    /// The call came from the drop-in extension (`callrec_passed=true` on the channel).
    in_place: bool,
}

impl Default for World {
    fn default() -> Self {
        World {
            lose_connection_after: None,
            drop: vec![],
            bridge_rules: vec![],
            files_exist: true,
            follow_tag: None,
            callee_never_records: false,
            link_lost_before: None,
            in_place: false,
        }
    }
}

/// What happened, for the assertions.
#[derive(Default, Debug)]
struct Outcome {
    /// Commands as FreeSWITCH would have received them (first line).
    commands: Vec<String>,
    /// Kept recordings: (recording id, duration ms, completion cause).
    kept: Vec<(String, u64, String)>,
    deleted: usize,
    /// Journaled before their `uuid_record`, and journal rows dropped.
    journaled: Vec<String>,
    forgotten: Vec<String>,
    /// Webhook notices raised: (event, recording id, reason).
    notices: Vec<(&'static str, String, Option<String>)>,
    exited: bool,
    /// The socket was let go after the hand-back (followed over the link).
    released: bool,
    /// The core asked for the channel's state once the link returned.
    resynced: usize,
    done: bool,
    /// `uuid_record` counted against the events fed before it (its position in the call).
    events_before_first_start: usize,
}

/// The capture's RECORD_START/STOP rewritten to carry our recording's id and path (the
/// capture's own recordings, in order of appearance, map to ours).
fn rewrite(e: &Event, paths: &mut Vec<String>, session: &Session) -> Event {
    if !matches!(
        e.name(),
        Some(EventName::RecordStart | EventName::RecordStop)
    ) {
        return e.clone();
    }
    let theirs = e.record_file_path().unwrap_or_default().into_owned();
    let idx = match paths.iter().position(|p| *p == theirs) {
        Some(i) => i,
        None => {
            paths.push(theirs);
            paths.len() - 1
        }
    };
    let Some(ours) = session.recordings().get(idx) else {
        return e.clone();
    };
    let path = ours.path_str();
    let pairs: Vec<(String, String)> = e
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("Recording-Variable-callrec_recording_id"))
        .map(|(n, v)| {
            let v = if n == "Record-File-Path" {
                path.clone()
            } else {
                v.into_owned()
            };
            (n.into_owned(), v)
        })
        .chain([(
            "Recording-Variable-callrec_recording_id".to_string(),
            ours.id.clone(),
        )])
        .collect();
    Event::from_pairs(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())))
}

fn run(capture: &str, rules: &[RecordCall], world: World) -> (Outcome, Session) {
    let events = support::events(capture);
    let mut info = CallInfo::from_channel_data(&events[0], &PartyVariables::default());
    info.in_place = world.in_place;
    let mut n = 0;
    let mut st = settings();
    st.follow_tag = world.follow_tag.clone();
    let mut s = Session::with_ids(info.clone(), st, move || {
        n += 1;
        format!("rec-{n}")
    });
    let mut out = Outcome::default();
    let first = s.start();
    assert_eq!(
        first.last(),
        Some(&Action::Plan {
            call: info,
            bridge_target: None
        })
    );
    let mut queue: VecDeque<Action> = first.into();
    let mut inputs: VecDeque<Input> = VecDeque::new();
    let mut planned = false;
    let mut feed = events[1..].iter();
    let mut fed = 0;
    let mut timers: Vec<Timer> = vec![];
    let mut paths = vec![];
    let mut connected = true;
    let mut missed: Option<Event> = None;
    loop {
        while let Some(a) = queue.pop_front() {
            match a {
                Action::Send(id, cmd) => {
                    let text = String::from_utf8(cmd.to_bytes().unwrap().to_vec()).unwrap();
                    let line = text.lines().next().unwrap_or("").to_string();
                    let line = if let Command::SendMsg(_) = cmd {
                        text.lines()
                            .find(|l| l.starts_with("execute-app-arg"))
                            .map(|l| format!("sendmsg {l}"))
                            .unwrap_or(line)
                    } else {
                        line
                    };
                    if line.starts_with("api uuid_record")
                        && out
                            .commands
                            .iter()
                            .all(|c| !c.starts_with("api uuid_record"))
                    {
                        out.events_before_first_start = fed;
                    }
                    out.commands.push(line);
                    inputs.push_back(Input::Reply(id, Ok((true, "+OK".into()))));
                }
                Action::Plan { bridge_target, .. } => {
                    let rules = if bridge_target.is_some() {
                        world.bridge_rules.clone()
                    } else {
                        planned = true;
                        rules.to_vec()
                    };
                    let mut p = plan(&rules);
                    p.callee_never_records = world.callee_never_records;
                    inputs.push_back(Input::Planned {
                        bridge_target,
                        result: Ok(p),
                    });
                }
                Action::SetTimer(t, _) => timers.push(t),
                Action::CreateDir(_) => {}
                Action::Journal(e) => out.journaled.push(e.rec.recording_id.clone()),
                Action::Forget(id) => out.forgotten.push(id),
                Action::Notify(e, rec, reason) => {
                    out.notices
                        .push((e.as_str(), rec.recording_id.clone(), reason))
                }
                Action::Inspect { rec, measure, .. } => inputs.push_back(Input::Inspected {
                    rec,
                    size: world.files_exist.then_some(48_044),
                    duration_ms: measure.then_some(3000),
                }),
                Action::Delete(_) => out.deleted += 1,
                Action::Deliver(rec, f) => {
                    out.kept.push((
                        f.recording_id.clone(),
                        f.duration_ms,
                        f.completion_cause.clone(),
                    ));
                    inputs.push_back(Input::Delivered {
                        rec,
                        result: Ok(()),
                    });
                }
                Action::Close => connected = false,
                Action::Exit => out.exited = true,
                Action::Release => out.released = true,
                Action::ControlDone(..) => {}
                Action::Resync => {
                    out.resynced += 1;
                    let gone = world.link_lost_before.as_ref().is_some_and(|(_, g)| *g);
                    let dump = missed.take().filter(|_| !gone);
                    if gone {
                        // Nothing more comes of a call that ended during the outage.
                        connected = false;
                    }
                    inputs.push_back(Input::Resynced(Ok(dump)));
                }
                Action::Done => {
                    out.done = true;
                    return (out, s);
                }
            }
        }
        let input = if let Some(i) = inputs.pop_front() {
            i
        } else if !planned {
            panic!("the core never asked the rules");
        } else if let Some(e) = connected.then(|| feed.next()).flatten() {
            let name = e.name();
            if name.as_ref().is_some_and(|n| world.drop.contains(n)) {
                continue;
            }
            if world
                .link_lost_before
                .as_ref()
                .is_some_and(|(n, _)| name.as_ref() == Some(n))
                && missed.is_none()
            {
                missed = Some(e.clone());
                queue.extend(s.handle(Input::LinkLost));
                continue;
            }
            fed += 1;
            if world.lose_connection_after.is_some() && name == world.lose_connection_after {
                connected = false;
                queue.extend(s.handle(Input::Event(rewrite(e, &mut paths, &s))));
                Input::Closed(None)
            } else {
                Input::Event(rewrite(e, &mut paths, &s))
            }
        } else if !timers.is_empty() {
            Input::Timer(timers.remove(0))
        } else {
            return (out, s);
        };
        queue.extend(s.handle(input));
    }
}

fn wav() -> RecordCall {
    RecordCall {
        format: callrec::rules::AudioFormat::Wav,
        ..RecordCall::default()
    }
}

const SUBSCRIBE: [&str; 3] = [
    "myevents json",
    "linger",
    "event json RECORD_START RECORD_STOP",
];

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
