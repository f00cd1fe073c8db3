//! The drop-in extension (`dialplans/callrec.xml`) included first in a context that already
//! routes its calls, run by the simulator's dialplan (which parks, resumes and hunts again as
//! mod_event_socket and mod_dialplan_xml do). Every scenario runs in both follow modes: over
//! the event-socket link (callrec hands back with `resume`) and over the call's socket (callrec
//! transfers the call into its own context, the guard skipping the callrec extension).
//! README "Install": "the call goes on where it was".

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use callrec_sim::{CallHandle, CallReport, CallSpec, Dialplan};
use support::harness::{wav, Harness};

fn file(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).expect(rel)
}

/// The shipped drop-in file, pointed at this test's callrec.
fn callrec_xml(h: &Harness) -> String {
    let text = file("dialplans/callrec.xml");
    assert!(text.contains("127.0.0.1:8084 async full"));
    text.replace("127.0.0.1:8084", &h.addr.to_string())
}

/// A site's own routing for context `name`: local users, an in-context transfer from 1009 to
/// 1002, a menu number that runs 1003 inline, and a 404 for the rest.
fn routing(name: &str) -> String {
    format!(
        r#"<include><context name="{name}">
        <extension name="local-users">
          <condition field="destination_number" expression="^(100[0-8])$">
            <action application="bridge" data="user/$1@${{domain_name}}"/>
          </condition>
        </extension>
        <extension name="moved">
          <condition field="destination_number" expression="^1009$">
            <action application="transfer" data="1002 XML {name}"/>
          </condition>
        </extension>
        <extension name="menu">
          <condition field="destination_number" expression="^2000$">
            <action application="execute_extension" data="1003 XML {name}"/>
          </condition>
        </extension>
        <extension name="unrouted">
          <condition field="destination_number" expression="^.*$">
            <action application="respond" data="404"/>
          </condition>
        </extension>
      </context></include>"#
    )
}

/// `callrec.xml` first in each context, then the context's own routing (the order FreeSWITCH
/// includes `00_callrec.xml` and the site's files in).
fn site(h: &Harness, contexts: &[&str]) -> Arc<Dialplan> {
    site_with(&callrec_xml(h), contexts)
}

fn site_with(first: &str, contexts: &[&str]) -> Arc<Dialplan> {
    let mut dp = Dialplan::new();
    for c in contexts {
        dp = dp
            .include(c, first)
            .unwrap()
            .include(c, &routing(c))
            .unwrap();
    }
    Arc::new(dp)
}

fn phone_call(dest: &str, context: &str, domain: &str) -> CallSpec {
    let mut s = CallSpec::new("1000", dest)
        .auth_username("1000")
        .var("domain_name", domain);
    s.context = context.into();
    s
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("within 10 s")
}

/// Waits until the dialplan bridged the call (or gave up on it).
async fn routed(call: &CallHandle) -> CallReport {
    within(call.wait_until(|r| {
        r.dialplan.iter().any(|a| a.starts_with("bridge")) || r.hung_up || r.stuck_in_park
    }))
    .await
}

fn last_bridge(r: &CallReport) -> Option<&str> {
    r.dialplan
        .iter()
        .rev()
        .find(|a| a.starts_with("bridge"))
        .map(String::as_str)
}

/// What must hold of every drop-in call, whatever happened.
fn clean(r: &CallReport) {
    assert!(!r.stuck_in_park, "the call was left parked: {r:?}");
    assert!(r.resume_hazard.is_none(), "{:?}", r.resume_hazard);
}

async fn talk_and_hang_up(h: &Harness, call: &CallHandle, secs: u64) {
    call.advance(Duration::from_secs(secs));
    call.hangup("NORMAL_CLEARING");
    within(call.wait_until(|r| r.hung_up)).await;
    h.idle().await;
}

#[tokio::test]
async fn a_call_in_context_default_is_recorded_and_then_reaches_the_contexts_own_routing() {
    for link in [false, true] {
        let h = Harness::start_mode(vec![wav(|_| {})], |_| {}, link).await;
        let call = h.place(
            site(&h, &["default"]),
            phone_call("1001", "default", "example.org"),
        );
        let r = routed(&call).await;
        clean(&r);
        assert_eq!(r.sockets, 1, "link={link}");
        assert_eq!(last_bridge(&r), Some("bridge user/1001@example.org"));
        assert!(r.hunted[0] == "default/callrec", "{:?}", r.hunted);
        // The rules saw the account the extension set, from the directory domain.
        let seen = h.planner.seen.lock().unwrap().clone();
        assert_eq!(seen[0].call.account_id.as_deref(), Some("example.org"));
        assert!(seen[0].in_place);
        let handback: Vec<_> = r
            .commands
            .iter()
            .map(|c| c.line.clone())
            .filter(|l| l == "resume" || l.starts_with("sendmsg"))
            .collect();
        if link {
            assert_eq!(handback, ["resume"], "over the link: resume, no transfer");
        } else {
            assert!(
                !handback.contains(&"resume".to_string()),
                "over the socket: no resume"
            );
        }
        talk_and_hang_up(&h, &call, 3).await;
        let got = h.delivered();
        assert_eq!(got.len(), 1, "link={link}");
        assert_eq!(got[0].duration_ms, 3_000);
    }
}

#[tokio::test]
async fn a_transfer_to_another_number_of_the_same_context_keeps_exactly_one_recording() {
    for link in [false, true] {
        let h = Harness::start_mode(vec![wav(|_| {})], |_| {}, link).await;
        let call = h.place(
            site(&h, &["default"]),
            phone_call("1009", "default", "example.org"),
        );
        let r = routed(&call).await;
        clean(&r);
        assert_eq!(last_bridge(&r), Some("bridge user/1002@example.org"));
        assert_eq!(
            r.sockets, 1,
            "the guard kept the call from callrec's second pass"
        );
        assert_eq!(
            r.hunted.iter().filter(|x| *x == "default/callrec").count(),
            1,
            "{:?}",
            r.hunted
        );
        talk_and_hang_up(&h, &call, 4).await;
        let got = h.delivered();
        assert_eq!(got.len(), 1, "link={link}");
        assert_eq!(got[0].duration_ms, 4_000, "one recording, to the end");
    }
}

#[tokio::test]
async fn execute_extension_runs_the_site_routing_inline_and_the_leg_passes_callrec_once() {
    for link in [false, true] {
        let h = Harness::start_mode(vec![wav(|_| {})], |_| {}, link).await;
        let call = h.place(
            site(&h, &["default"]),
            phone_call("2000", "default", "example.org"),
        );
        let r = routed(&call).await;
        clean(&r);
        assert_eq!(last_bridge(&r), Some("bridge user/1003@example.org"));
        assert_eq!(r.sockets, 1);
        talk_and_hang_up(&h, &call, 2).await;
        assert_eq!(h.delivered().len(), 1);
    }
}

#[tokio::test]
async fn with_callrec_down_the_call_is_routed() {
    for link in [false, true] {
        let h = Harness::start_mode(vec![wav(|_| {})], |_| {}, link).await;
        let dp = site(&h, &["default"]);
        let mut h = h;
        h.shutdown().await;
        let call = h.place(dp, phone_call("1001", "default", "example.org"));
        let r = routed(&call).await;
        clean(&r);
        assert_eq!((r.sockets, r.sockets_refused), (0, 1));
        assert_eq!(last_bridge(&r), Some("bridge user/1001@example.org"));
        call.hangup("NORMAL_CLEARING");
    }
}

#[tokio::test]
async fn over_max_calls_the_call_is_handed_back_and_routed_unrecorded() {
    for link in [false, true] {
        let h = Harness::start_mode(vec![wav(|_| {})], |c| c.max_calls = 1, link).await;
        let dp = site(&h, &["default"]);
        // The first call holds the only slot (it records, so callrec follows it).
        let first = h.place(dp.clone(), phone_call("1001", "default", "example.org"));
        within(first.wait_for_command("api uuid_record")).await;
        if !link {
            routed(&first).await;
        }
        let second = h.place(dp, phone_call("1002", "default", "example.org"));
        let r = routed(&second).await;
        clean(&r);
        assert_eq!(last_bridge(&r), Some("bridge user/1002@example.org"));
        assert!(!r
            .commands
            .iter()
            .any(|c| c.line.starts_with("api uuid_record")));
        second.hangup("NORMAL_CLEARING");
        talk_and_hang_up(&h, &first, 1).await;
    }
}

#[tokio::test]
async fn two_contexts_with_different_routing_each_route_their_own_calls() {
    for link in [false, true] {
        let h = Harness::start_mode(vec![wav(|_| {})], |_| {}, link).await;
        let dp = site(&h, &["tenant-a.example", "tenant-b.example"]);
        let a = h.place(
            dp.clone(),
            phone_call("1009", "tenant-a.example", "tenant-a.example"),
        );
        let b = h.place(
            dp,
            phone_call("1009", "tenant-b.example", "tenant-b.example"),
        );
        let (ra, rb) = (routed(&a).await, routed(&b).await);
        clean(&ra);
        clean(&rb);
        assert_eq!(last_bridge(&ra), Some("bridge user/1002@tenant-a.example"));
        assert_eq!(last_bridge(&rb), Some("bridge user/1002@tenant-b.example"));
        for r in [&ra, &rb] {
            assert!(
                r.hunted.iter().all(|x| x.starts_with(&r.hunted[0][..16])),
                "every hunt stayed in the call's own context: {:?}",
                r.hunted
            );
        }
        for call in [&a, &b] {
            call.advance(Duration::from_secs(1));
            call.hangup("NORMAL_CLEARING");
            within(call.wait_until(|r| r.hung_up)).await;
        }
        h.idle().await;
        let mut accounts: Vec<_> = h
            .delivered()
            .iter()
            .map(|f| f.call.account_id.clone().unwrap_or_default())
            .collect();
        accounts.sort();
        assert_eq!(accounts, ["tenant-a.example", "tenant-b.example"]);
    }
}

#[tokio::test]
async fn the_legacy_extension_and_continue_context_still_route_after_an_upgrade() {
    for link in [false, true] {
        let h = Harness::start_mode(vec![wav(|_| {})], |_| {}, link).await;
        let legacy =
            file("dialplans/public/00_callrec.xml").replace("127.0.0.1:8084", &h.addr.to_string());
        let dp = Arc::new(
            Dialplan::new()
                .include("public", &legacy)
                .unwrap()
                .include("public", &file("dialplans/callrec-continue.xml"))
                .unwrap(),
        );
        let call = h.place(dp, phone_call("1001", "public", "example.org"));
        let r = routed(&call).await;
        clean(&r);
        assert_eq!(last_bridge(&r), Some("bridge user/1001@example.org"));
        assert_eq!(
            r.transferred_to.as_deref(),
            Some("1001 XML callrec-continue")
        );
        talk_and_hang_up(&h, &call, 2).await;
        assert_eq!(h.delivered().len(), 1);
    }
}

/// The docker-compose lab's own FreeSWITCH configuration (`lab/freeswitch/conf/dialplan/
/// public.xml`, which includes `dialplans/callrec.xml` through the `callrec` link), read the way
/// FreeSWITCH's preprocessor reads it: the caller's 9000 passes callrec once, is recorded from
/// the answer, and is answered by the lab's own routing right after the callrec extension.
#[tokio::test]
async fn the_labs_public_context_records_the_call_and_its_own_routing_answers_it() {
    for link in [false, true] {
        let h = Harness::start_mode(vec![wav(|r| r.record_on_answer = true)], |_| {}, link).await;
        let addr = h.addr.to_string();
        let dp = Dialplan::from_file(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/freeswitch/conf/dialplan/public.xml"),
            "public",
            |text| text.replace("127.0.0.1:8084", &addr),
        )
        .expect("the lab's dialplan reads");
        let mut spec = CallSpec::new("sipp", "9000");
        spec.context = "public".into();
        let call = h.place(Arc::new(dp), spec);
        // The lab's routing answers; callrec starts the recording on CHANNEL_ANSWER.
        within(call.wait_for_command("api uuid_record")).await;
        let r = call.report();
        clean(&r);
        // Over the link: one hunt. Over the socket: a second one after the transfer back into
        // `public`, where the guard skips the callrec extension.
        assert_eq!(
            &r.hunted[..3],
            ["public/lab-account", "public/callrec", "public/lab-tone"]
        );
        assert_eq!(
            r.hunted.iter().filter(|x| *x == "public/callrec").count(),
            1
        );
        assert_eq!(r.hunted.len(), if link { 3 } else { 5 }, "{:?}", r.hunted);
        assert_eq!(r.sockets, 1);
        assert!(r
            .dialplan
            .contains(&"set callrec_account_id=lab".to_string()));
        assert!(r
            .dialplan
            .iter()
            .any(|a| a.starts_with("playback tone_stream://")));
        talk_and_hang_up(&h, &call, 6).await;
        let got = h.delivered();
        assert_eq!(got.len(), 1, "link={link}");
        assert_eq!(got[0].duration_ms, 6_000);
        assert_eq!(got[0].call.account_id.as_deref(), Some("lab"));
    }
}

/// Every drop-in example (FusionPBX, one account, DIDs) included first in a context that
/// routes its own calls: the call is recorded under the account the example names, and routed.
#[tokio::test]
async fn every_example_drops_in_first_and_the_context_routes_its_calls() {
    let cases = [
        ("fusionpbx.xml", Some("6b1c0d2e-domain"), Some("u-77")),
        ("single-account.xml", Some("main"), None),
        ("did.xml", None, None),
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dialplans/examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut named: Vec<_> = cases.iter().map(|c| c.0.to_string()).collect();
    named.sort();
    assert_eq!(files, named, "every example is run here");
    for (name, account, user) in cases {
        for link in [false, true] {
            let h = Harness::start_mode(vec![wav(|_| {})], |_| {}, link).await;
            let text = file(&format!("dialplans/examples/{name}"))
                .replace("127.0.0.1:8084", &h.addr.to_string());
            let dp = site_with(&text, &["tenant"]);
            let spec = phone_call("1009", "tenant", "tenant.example")
                .var("domain_uuid", "6b1c0d2e-domain")
                .var("user_uuid", "u-77");
            let call = h.place(dp, spec);
            let r = routed(&call).await;
            clean(&r);
            assert_eq!(r.sockets, 1, "{name}");
            assert_eq!(
                last_bridge(&r),
                Some("bridge user/1002@tenant.example"),
                "{name}"
            );
            let seen = h.planner.seen.lock().unwrap()[0].clone();
            assert_eq!(seen.call.account_id.as_deref(), account, "{name}");
            assert_eq!(seen.call.user_id.as_deref(), user, "{name}");
            assert!(seen.in_place, "{name}");
            talk_and_hang_up(&h, &call, 1).await;
            assert_eq!(h.delivered().len(), 1, "{name} link={link}");
        }
    }
}
