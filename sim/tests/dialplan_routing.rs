//! The simulator's dialplan against what FreeSWITCH's source and the measured facts say of the
//! `socket` application (tests/fixtures/facts/freeswitch-recordings.md, "Outbound socket";
//! mod_event_socket.c `socket_function` and the end of `listener_run`).

use std::sync::Arc;

use callrec_sim::{place, CallHandle, CallReport, CallSpec, Dialplan};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A controller that sends `script` (raw commands) after `connect`, then waits for
/// FreeSWITCH to close (or closes itself when `close` is set).
async fn controller(script: &'static str, close: bool) -> (String, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(b"connect\n\n").await.unwrap();
        s.write_all(script.as_bytes()).await.unwrap();
        if close {
            // Give FreeSWITCH the commands before the FIN, as a real peer's kernel would.
            let mut buf = [0u8; 4096];
            let mut seen = 0;
            let wanted = script.matches("\n\n").count() + 1;
            while seen < wanted {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen += count_replies(&buf[..n]),
                }
            }
            return;
        }
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    });
    (addr, task)
}

/// Replies and channel data start with `Content-Type:`.
fn count_replies(b: &[u8]) -> usize {
    String::from_utf8_lossy(b).matches("Content-Type:").count()
}

fn dialplan(socket_to: &str, preset_resume: bool) -> Arc<Dialplan> {
    let resume = if preset_resume {
        r#"<action application="set" data="socket_resume=true"/>"#
    } else {
        ""
    };
    let xml = format!(
        r#"<include>
        <extension name="recorder" continue="true">
          <condition field="${{recorder_passed}}" expression="^$">
            <action application="set" data="recorder_passed=true"/>
            {resume}
            <action application="socket" data="{socket_to} async full"/>
            <action application="log" data="after socket"/>
          </condition>
        </extension>
        <extension name="users">
          <condition field="destination_number" expression="^(1[0-9]{{3}})$">
            <action application="bridge" data="user/$1@${{domain_name}}"/>
          </condition>
        </extension>
        <extension name="menu">
          <condition field="destination_number" expression="^(2000)$">
            <action application="execute_extension" data="1005 XML default"/>
            <action application="hangup"/>
          </condition>
        </extension>
      </include>"#
    );
    Arc::new(Dialplan::new().include("default", &xml).unwrap())
}

fn spec(dest: &str) -> CallSpec {
    let mut s = CallSpec::new("1000", dest).var("domain_name", "example.org");
    s.context = "default".into();
    s
}

async fn bridged(call: &CallHandle) -> CallReport {
    call.wait_until(|r| r.dialplan.iter().any(|a| a.starts_with("bridge")) || r.hung_up)
        .await
}

#[tokio::test]
async fn a_refused_socket_returns_at_once_and_the_next_actions_route_the_call() {
    let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let call = place(dialplan(&addr, false), spec("1001"));
    let r = bridged(&call).await;
    assert_eq!((r.sockets, r.sockets_refused), (0, 1));
    assert_eq!(
        r.dialplan,
        [
            "set recorder_passed=true".to_string(),
            format!("socket {addr} async full"),
            "log after socket".into(),
            "bridge user/1001@example.org".into(),
        ]
    );
    assert_eq!(r.hunted, ["default/recorder", "default/users"]);
}

#[tokio::test]
async fn resume_then_exit_goes_on_after_the_socket_and_into_the_later_extensions() {
    let (addr, ctl) = controller("resume\n\nexit\n\n", false).await;
    let call = place(dialplan(&addr, false), spec("1001"));
    let r = bridged(&call).await;
    ctl.await.unwrap();
    assert_eq!(r.sockets, 1);
    assert!(r.app_exited && !r.stuck_in_park && r.resume_hazard.is_none());
    assert_eq!(r.dialplan.last().unwrap(), "bridge user/1001@example.org");
    assert!(r.dialplan.contains(&"log after socket".to_string()));
}

#[tokio::test]
async fn a_socket_closed_without_resume_leaves_the_call_parked() {
    let (addr, ctl) = controller("exit\n\n", false).await;
    let call = place(dialplan(&addr, false), spec("1001"));
    let r = call.wait_until(|r| r.closed && r.sockets == 1).await;
    ctl.await.unwrap();
    call.sync().await;
    let r2 = call.report();
    assert!(r2.stuck_in_park, "{r:?}");
    assert!(!r2.dialplan.iter().any(|a| a.starts_with("bridge")));
    call.hangup("NORMAL_CLEARING");
    call.wait_until(|r| r.hung_up).await;
}

#[tokio::test]
async fn socket_resume_set_by_the_dialplan_lets_a_controller_that_just_closes_go() {
    let (addr, ctl) = controller("", true).await;
    let call = place(dialplan(&addr, true), spec("1002"));
    let r = bridged(&call).await;
    ctl.await.unwrap();
    assert!(!r.stuck_in_park);
    assert_eq!(r.dialplan.last().unwrap(), "bridge user/1002@example.org");
}

#[tokio::test]
async fn a_transfer_with_the_guard_set_skips_the_socket_extension() {
    let (addr, ctl) = controller(
        "sendmsg\ncall-command: execute\nexecute-app-name: transfer\nexecute-app-arg: 1003 XML default\n\n",
        false,
    )
    .await;
    let call = place(dialplan(&addr, false), spec("1001"));
    let r = bridged(&call).await;
    assert_eq!(r.sockets, 1);
    assert_eq!(r.dialplan.last().unwrap(), "bridge user/1003@example.org");
    assert_eq!(
        r.hunted,
        ["default/recorder", "default/users", "default/users"]
    );
    assert!(r.resume_hazard.is_none());
    call.hangup("NORMAL_CLEARING");
    ctl.await.unwrap();
}

#[tokio::test]
async fn a_transfer_while_socket_resume_is_set_is_the_trap_the_source_shows() {
    let (addr, ctl) = controller(
        "sendmsg\ncall-command: execute\nexecute-app-name: transfer\nexecute-app-arg: 1003 XML default\n\n",
        false,
    )
    .await;
    let call = place(dialplan(&addr, true), spec("1001"));
    let r = bridged(&call).await;
    assert!(r.resume_hazard.is_some(), "{r:?}");
    // The transfer was lost: the first hunt's list went on.
    assert_eq!(r.dialplan.last().unwrap(), "bridge user/1001@example.org");
    call.hangup("NORMAL_CLEARING");
    ctl.await.unwrap();
}

#[tokio::test]
async fn execute_extension_runs_the_hunted_extension_inline_and_passes_the_guard_once() {
    let (addr, ctl) = controller("resume\n\nexit\n\n", false).await;
    let call = place(dialplan(&addr, false), spec("2000"));
    let r = bridged(&call).await;
    ctl.await.unwrap();
    assert_eq!(r.sockets, 1);
    assert_eq!(r.dialplan.last().unwrap(), "bridge user/1005@example.org");
    call.unbridge();
    let r = call.wait_until(|r| r.hung_up).await;
    assert_eq!(r.dialplan.last().unwrap(), "hangup");
}

#[tokio::test]
async fn an_unknown_context_after_a_transfer_ends_the_call_with_no_route() {
    let (addr, ctl) = controller(
        "sendmsg\ncall-command: execute\nexecute-app-name: transfer\nexecute-app-arg: 1001 XML callrec-continue\n\n",
        false,
    )
    .await;
    let call = place(dialplan(&addr, false), spec("1001"));
    let r = call.wait_until(|r| r.hung_up).await;
    assert_eq!(r.dialplan.last().unwrap(), "hangup NO_ROUTE_DESTINATION");
    ctl.await.unwrap();
}

#[tokio::test]
async fn a_socket_closed_before_connect_leaves_the_call_waiting_even_with_socket_resume() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let ctl = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        drop(s);
    });
    let call = place(dialplan(&addr, true), spec("1001"));
    let r = call.wait_until(|r| r.stuck_in_park || r.hung_up).await;
    ctl.await.unwrap();
    assert!(r.stuck_in_park);
    assert!(!r.dialplan.iter().any(|a| a.starts_with("bridge")));
}

/// The applications the dialplan runs after the socket, as FreeSWITCH's source has them:
/// `playback` holds the dialplan until the file has played (`switch_ivr_play_file` returns only
/// then), and `respond` ends the call once reached (its cause, e.g. UNALLOCATED_NUMBER for 404,
/// is mod_sofia's SIP-to-Q.850 mapping, `sofia_glue_sip_cause_to_freeswitch`).
#[tokio::test]
async fn playback_holds_the_dialplan_and_respond_ends_with_the_mapped_cause() {
    let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let xml = format!(
        r#"<include>
        <extension name="x" continue="true"><condition field="destination_number" expression="^3000$">
          <action application="socket" data="{addr} async full"/>
          <action application="answer"/>
          <action application="playback" data="tone_stream://%(1000,0,440);loops=2"/>
          <action application="respond" data="404"/>
        </condition></extension></include>"#
    );
    let dp = Arc::new(Dialplan::new().include("default", &xml).unwrap());
    let call = place(dp, spec("3000"));
    let r = call
        .wait_until(|r| r.dialplan.iter().any(|a| a.starts_with("playback")))
        .await;
    call.sync().await;
    assert!(!call.report().hung_up, "still playing: {:?}", r.dialplan);
    call.advance(std::time::Duration::from_millis(1999));
    call.sync().await;
    assert!(!call.report().hung_up, "2 s of tone not played yet");
    call.advance(std::time::Duration::from_millis(1));
    let r = call.wait_until(|r| r.hung_up).await;
    assert_eq!(r.dialplan.last().unwrap(), "respond 404");
    assert!(r.events_sent.is_empty(), "no socket took it");
}
