//! Every real FreeSWITCH capture decodes completely, with concrete values asserted.

mod support;

use callrec::esl::{Disposition, Message};
use callrec::event::{EventName, Format};
use support::*;

#[test]
fn every_capture_decodes_to_the_last_byte() {
    for name in capture_names() {
        let stream = fs_stream(&name);
        let frames = frames(&stream);
        assert!(!frames.is_empty(), "{name}");
        let total: usize = frames.iter().map(|f| f.wire_len()).sum();
        assert_eq!(total, stream.len(), "{name}: every byte belongs to a frame");
        for f in frames {
            let at = f.offset();
            Message::from_frame(f).unwrap_or_else(|e| panic!("{name} @{at}: {e}"));
        }
    }
}

#[test]
fn raw_stream_file_matches_its_transcript() {
    let raw = std::fs::read(fixture_dir().join("outbound-answer-record-hangup.plain.fs2app.raw"))
        .unwrap();
    assert_eq!(raw, fs_stream("outbound-answer-record-hangup.plain.txt"));
}

const CANONICAL_ORDER: &[&str] = &[
    "CHANNEL_DATA",
    "CHANNEL_PARK",
    "CHANNEL_EXECUTE",
    "CHANNEL_ANSWER",
    "CHANNEL_CALLSTATE",
    "CHANNEL_EXECUTE_COMPLETE",
    "CHANNEL_EXECUTE",
    "PLAYBACK_START",
    "RECORD_START",
    "MEDIA_BUG_START",
    "RECORD_STOP",
    "MEDIA_BUG_STOP",
    "CHANNEL_HANGUP",
    "PRIVATE_COMMAND",
    "PLAYBACK_STOP",
    "CHANNEL_EXECUTE_COMPLETE",
    "PRIVATE_COMMAND",
    "CHANNEL_UNPARK",
    "CHANNEL_EXECUTE_COMPLETE",
    "CHANNEL_STATE",
    "CHANNEL_CALLSTATE",
    "CHANNEL_STATE",
    "CHANNEL_HANGUP_COMPLETE",
];

#[test]
fn canonical_plain_flow() {
    let name = "outbound-answer-record-hangup.plain.txt";
    assert_eq!(event_names(name), CANONICAL_ORDER);
    let msgs = messages(name);
    let replies: Vec<String> = msgs
        .iter()
        .filter_map(|m| match m {
            Message::Reply(r) => Some(r.text().into_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(
        replies,
        [
            "+OK\n",
            "+OK Events Enabled",
            "+OK will linger",
            "+OK event listener enabled plain",
            "+OK",
            "+OK",
            "+OK",
            "+OK bye"
        ]
    );
    let evs = events(name);
    let data = &evs[0];
    assert_eq!(data.format(), Format::ChannelData);
    assert_eq!(
        data.unique_id().as_deref(),
        Some("9560fcb1-a15d-411a-a88c-6dbd57725d92")
    );
    assert_eq!(data.variable("account_id").as_deref(), Some("acc-1"));
    assert_eq!(data.variable("owner_id").as_deref(), Some("user-1"));
    assert_eq!(data.caller_id_name().as_deref(), Some("Alice"));
    assert_eq!(data.caller_id_number().as_deref(), Some("15551234567"));
    assert_eq!(data.destination_number().as_deref(), Some("1000"));
    assert_eq!(data.call_direction().as_deref(), Some("inbound"));
    assert_eq!(data.get("Socket-Mode").as_deref(), Some("async"));
    assert_eq!(
        data.get("Channel-Name").as_deref(),
        Some("sofia/test/15551234567@127.0.0.1:5070"),
        "percent-decoded"
    );
    assert_eq!(
        data.get_raw("Channel-Name"),
        Some(&b"sofia/test/15551234567%40127.0.0.1%3A5070"[..])
    );
    assert_eq!(data.get("FreeSWITCH-IPv6").as_deref(), Some("fd00::2"));
    assert_eq!(
        data.variable("current_application_data").as_deref(),
        Some("127.0.0.1:8084 async full")
    );

    let stop = first(&evs, "RECORD_STOP");
    let path = "/tmp/rec/9560fcb1-a15d-411a-a88c-6dbd57725d92.wav";
    assert_eq!(stop.record_file_path().as_deref(), Some(path));
    assert_eq!(
        stop.record_completion_cause().as_deref(),
        Some("success-maxtime")
    );
    assert_eq!(stop.variable("record_ms").as_deref(), Some("5010"));
    assert_eq!(stop.variable("record_samples").as_deref(), Some("40080"));
    assert_eq!(
        stop.get("Event-Calling-Function").as_deref(),
        Some("send_record_stop_event")
    );
    let start = first(&evs, "RECORD_START");
    assert_eq!(start.record_file_path().as_deref(), Some(path));
    assert_eq!(start.record_completion_cause(), None);
    assert_eq!(
        start.get("Event-Date-Local").as_deref(),
        Some("2026-11-23 18:52:42")
    );

    let hc = first(&evs, "CHANNEL_HANGUP_COMPLETE");
    assert_eq!(hc.get_all("Hangup-Cause").count(), 2);
    assert_eq!(hc.hangup_cause().as_deref(), Some("NORMAL_CLEARING"));

    let notices: Vec<_> = msgs
        .iter()
        .filter_map(|m| match m {
            Message::Disconnect(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(notices.len(), 2);
    assert_eq!(notices[0].disposition(), Disposition::Linger);
    assert_eq!(notices[0].linger_time(), Some(-1));
    assert_eq!(
        notices[0].channel_name().as_deref(),
        Some("sofia/test/15551234567@127.0.0.1:5070")
    );
    assert_eq!(notices[1].disposition(), Disposition::Disconnect);
    assert_eq!(
        notices[1].body().as_ref(),
        b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
    );
}

#[test]
fn json_flow_matches_plain_flow() {
    let plain = events("outbound-answer-record-hangup.plain.txt");
    let json = events("outbound-json.txt");
    assert_eq!(event_names("outbound-json.txt"), CANONICAL_ORDER);
    assert!(json[1..].iter().all(|e| e.format() == Format::Json));
    let stop = first(&json, "RECORD_STOP");
    assert!(stop.record_file_path().unwrap().starts_with("/tmp/rec/"));
    assert_eq!(
        stop.record_completion_cause().as_deref(),
        Some("success-maxtime")
    );
    assert_eq!(stop.variable("record_ms").as_deref(), Some("5010"));
    assert_eq!(
        first(&json, "CHANNEL_ANSWER").caller_id_name().as_deref(),
        Some("Alice")
    );
    let hc = first(&json, "CHANNEL_HANGUP_COMPLETE");
    assert_eq!(
        hc.get_all("Hangup-Cause").collect::<Vec<_>>(),
        ["NORMAL_CLEARING", "NORMAL_CLEARING"],
        "the duplicate JSON key is kept"
    );
    // Same header set in both formats for the same kind of event.
    let p = first(&plain, "RECORD_STOP");
    for h in [
        "Record-Completion-Cause",
        "variable_record_samples",
        "Answer-State",
    ] {
        assert_eq!(p.get(h), stop.get(h), "{h}");
    }
}

#[test]
fn inbound_auth_and_background_jobs() {
    let msgs = messages("inbound-auth-ok.txt");
    assert!(matches!(msgs[0], Message::AuthRequest));
    let Message::Reply(r) = &msgs[1] else {
        panic!()
    };
    assert_eq!(r.text(), "+OK accepted");
    let Message::Reply(bg) = &msgs[3] else {
        panic!()
    };
    assert_eq!(
        bg.text(),
        "+OK Job-UUID: 72be0bce-4a8f-4906-a38f-eb9910cdf85a"
    );
    assert_eq!(
        bg.job_uuid().as_deref(),
        Some("72be0bce-4a8f-4906-a38f-eb9910cdf85a")
    );
    let job = msgs
        .iter()
        .find_map(|m| match m {
            Message::Event(e) if e.is(EventName::BackgroundJob) => Some(e),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        job.job_uuid().as_deref(),
        Some("f9e7a974-eb13-445d-84e2-4fea54ca477e")
    );
    assert!(job.body().unwrap().starts_with(b"UP 0 years"));
    let errs: Vec<String> = msgs
        .iter()
        .filter_map(|m| match m {
            Message::ApiResponse(a) if a.is_err() => Some(a.text().into_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(
        errs,
        [
            "-ERR Cannot locate session!\n",
            "-ERR nosuchapicommand Command not found!\n"
        ]
    );

    let fail = messages("inbound-auth-fail.txt");
    let Message::Reply(r) = &fail[1] else {
        panic!()
    };
    assert!(r.is_err());
    assert_eq!(r.text(), "-ERR invalid");
    let Message::Disconnect(d) = &fail[2] else {
        panic!()
    };
    assert_eq!(d.disposition(), Disposition::Other(String::new()));
    assert_eq!(d.body().len(), 67);
}

#[test]
fn api_error_texts() {
    let texts: Vec<String> = messages("api-errors.txt")
        .iter()
        .filter_map(|m| match m {
            Message::ApiResponse(a) => Some(a.text().into_owned()),
            Message::Reply(r) if !r.is_channel_data() => Some(r.text().into_owned()),
            _ => None,
        })
        .collect();
    for expected in [
        "-ERR Cannot stop record session!\n",
        "-ERR Cannot record session!\n",
        "-USAGE: <uuid> [start|stop|mask|unmask] <path> [<limit>] [<recording_vars>]\n",
        "-ERR invalid session id [00000000-0000-0000-0000-000000000000]",
        "-ERR no keywords supplied",
        "-ERR aready enabled.",
        "+OK will linger 10 seconds",
        "acc-1",
        "_undef_",
        "user-1",
    ] {
        assert!(texts.iter().any(|t| t == expected), "missing {expected:?}");
    }
}

#[test]
fn per_recording_variables() {
    let evs = events("outbound-uuid-record-vars.json.txt");
    for name in ["RECORD_START", "RECORD_STOP"] {
        let e = first(&evs, name);
        let vars: Vec<(String, String)> = e
            .recording_variables()
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(
            vars,
            [
                ("callrec_recording_id".into(), "rec-123".into()),
                ("record_sample_rate".into(), "16000".into()),
                ("RECORD_STEREO".into(), "true".into())
            ]
        );
    }
    let stop = first(&evs, "RECORD_STOP");
    assert_eq!(stop.variable("record_ms").as_deref(), Some("4020"));
    assert_eq!(stop.variable("record_samples").as_deref(), Some("32160"));
    assert_eq!(stop.variable("callrec_recording_id"), None);

    let two = events("outbound-two-recordings-vars.json.txt");
    let stops: Vec<_> = two.iter().filter(|e| e.is(EventName::RecordStop)).collect();
    assert_eq!(stops.len(), 2);
    assert_eq!(
        stops[0]
            .recording_variable("callrec_recording_id")
            .as_deref(),
        Some("rec-A")
    );
    assert_eq!(stops[0].variable("record_ms").as_deref(), Some("3030"));
    assert_eq!(stops[0].recording_variable("RECORD_STEREO"), None);
    assert_eq!(
        stops[1]
            .recording_variable("callrec_recording_id")
            .as_deref(),
        Some("rec-B")
    );
    assert_eq!(stops[1].variable("record_ms").as_deref(), Some("3990"));
}

#[test]
fn record_app_echoes_event_uuid() {
    let evs = events("outbound-record-app.json.txt");
    let uuid = "6d1f3a52-0c4e-4b7a-9a51-00000000a001";
    let tagged: Vec<String> = evs
        .iter()
        .filter(|e| e.application_uuid().as_deref() == Some(uuid))
        .map(|e| e.get("Event-Name").unwrap().into_owned())
        .collect();
    assert_eq!(tagged, ["CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE"]);
    let stop = first(&evs, "RECORD_STOP");
    assert_eq!(stop.record_completion_cause(), None);
    assert_eq!(stop.recording_variables().count(), 0);
    assert_eq!(stop.variable("record_ms").as_deref(), Some("4710"));
    assert!(stop.record_file_path().unwrap().ends_with("-caller.wav"));
}

#[test]
fn empty_file_is_discarded_by_freeswitch() {
    let evs = events("outbound-noanswer-record-emptyfile.plain.txt");
    let stop = first(&evs, "RECORD_STOP");
    assert_eq!(
        stop.record_completion_cause().as_deref(),
        Some("empty-file")
    );
    assert_eq!(stop.variable("RECORD_DISCARDED").as_deref(), Some("true"));
    let cancel = events("outbound-noanswer-cancel.plain.txt");
    assert_eq!(
        first(&cancel, "CHANNEL_HANGUP_COMPLETE")
            .hangup_cause()
            .as_deref(),
        Some("ORIGINATOR_CANCEL")
    );
}

#[test]
fn plain_event_inside_a_json_session() {
    let evs = events("outbound-transfer-handback.json.txt");
    assert_eq!(evs[1].format(), Format::Plain);
    assert!(evs[1].is(EventName::ChannelPark));
    assert!(evs[2..].iter().all(|e| e.format() == Format::Json));
    let stop = first(&evs, "RECORD_STOP");
    assert_eq!(
        stop.recording_variable("callrec_recording_id").as_deref(),
        Some("xfer-1")
    );
    assert_eq!(
        stop.record_completion_cause().as_deref(),
        Some("success-silence")
    );
    let names = event_names("outbound-transfer-handback.json.txt");
    let stop_at = names.iter().position(|n| n == "RECORD_STOP").unwrap();
    let hc_at = names
        .iter()
        .position(|n| n == "CHANNEL_HANGUP_COMPLETE")
        .unwrap();
    let hangup_at = names.iter().position(|n| n == "CHANNEL_HANGUP").unwrap();
    assert!(hangup_at < stop_at && stop_at < hc_at);
}

#[test]
fn bridge_headers() {
    let evs = events("outbound-bridge-callee.json.txt");
    let b = first(&evs, "CHANNEL_BRIDGE");
    assert_eq!(
        b.get("Other-Leg-Destination-Number").as_deref(),
        Some("1001")
    );
    assert_eq!(b.get("Other-Type").as_deref(), Some("originatee"));
    assert!(b.get("Bridge-B-Unique-ID").is_some());
    assert_eq!(b.variable("bridge_uuid"), None);
    let stop = first(&evs, "RECORD_STOP");
    assert_eq!(
        stop.recording_variable("callrec_recording_id").as_deref(),
        Some("br-1")
    );
}

#[test]
fn inbound_json_background_job_body() {
    let evs = events("inbound-record-events.json.txt");
    let job = first(&evs, "BACKGROUND_JOB");
    assert_eq!(job.get("Job-Command").as_deref(), Some("uuid_record"));
    assert_eq!(job.body().map(|b| b.as_ref()), Some(&b"+OK Success\n"[..]));
    assert_eq!(job.get("Content-Length").as_deref(), Some("12"));
    assert_eq!(job.get("Job-Owner-UUID"), None);
}
