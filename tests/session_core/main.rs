//! The call session's pure core, fed the event sequences of real FreeSWITCH 1.10.12 captures:
//! no sockets, no clock. A small scripted "world" answers the core's actions (every command
//! `+OK`, files present with a size, timers fired when the events run out), and each row of the
//! table asserts the commands the core sent and what became of each recording.

#[path = "../support/mod.rs"]
mod support;

mod link_rows;
mod rows;

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
