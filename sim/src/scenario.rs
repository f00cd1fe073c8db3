//! Named call scripts: what FreeSWITCH and the caller do, whatever the controller does.
//! Used by `callrec-lab --scenario` and by tests.

use std::net::SocketAddr;
use std::time::Duration;

use crate::{dial, CallReport, CallSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Answered, talks for `talk`, hangs up normally.
    NormalCall,
    /// Answered; the caller hangs up while the recording runs (half of `talk` in).
    CallerHangsUpDuringRecording,
    /// Rings for `talk`, then the caller cancels.
    NeverAnswered,
    /// Answered and kept up for `talk` plus an hour: any recording limit is reached first.
    TimeLimitReached,
    /// The controller closes the socket (after `exit` or on its own): the call goes on and ends
    /// normally; the report tells whether the controller left before the hangup.
    ControllerDisconnects,
    /// FreeSWITCH drops the socket when the controller's next command arrives; the call goes on.
    FreeswitchKillsMidCommand,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::NormalCall,
        Scenario::CallerHangsUpDuringRecording,
        Scenario::NeverAnswered,
        Scenario::TimeLimitReached,
        Scenario::ControllerDisconnects,
        Scenario::FreeswitchKillsMidCommand,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::NormalCall => "normal",
            Scenario::CallerHangsUpDuringRecording => "caller-hangup",
            Scenario::NeverAnswered => "never-answered",
            Scenario::TimeLimitReached => "time-limit",
            Scenario::ControllerDisconnects => "controller-disconnects",
            Scenario::FreeswitchKillsMidCommand => "fs-kills-mid-command",
        }
    }

    pub fn parse(s: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|x| x.name() == s)
    }
}

/// Places one call and plays `scenario`. The controller must hand the call back (`sendmsg`)
/// first, as callrec does; `expect_recording` makes the script wait for `uuid_record` after the
/// answer before time moves on (so the recording has something to record).
pub async fn play(
    target: SocketAddr,
    spec: CallSpec,
    scenario: Scenario,
    talk: Duration,
    expect_recording: bool,
) -> std::io::Result<CallReport> {
    let call = dial(target, spec).await?;
    call.wait_until(|r| r.closed || r.transferred_to.is_some())
        .await;
    let wait_record = |call: crate::CallHandle| async move {
        if expect_recording {
            call.wait_for_command("api uuid_record").await;
        }
    };
    match scenario {
        Scenario::NormalCall | Scenario::ControllerDisconnects => {
            call.answer();
            wait_record(call.clone()).await;
            call.advance(talk);
            call.hangup("NORMAL_CLEARING");
        }
        Scenario::CallerHangsUpDuringRecording => {
            call.answer();
            wait_record(call.clone()).await;
            call.advance(talk / 2);
            call.hangup("NORMAL_CLEARING");
        }
        Scenario::NeverAnswered => {
            call.advance(talk);
            call.hangup("ORIGINATOR_CANCEL");
        }
        Scenario::TimeLimitReached => {
            call.answer();
            wait_record(call.clone()).await;
            call.advance(talk + Duration::from_secs(3600));
            call.hangup("NORMAL_CLEARING");
        }
        Scenario::FreeswitchKillsMidCommand => {
            call.kill_on_next_command();
            call.answer();
            call.wait_until(|r| r.closed).await;
            call.advance(talk);
            call.hangup("NORMAL_CLEARING");
        }
    }
    call.wait_until(|r| r.hung_up).await;
    Ok(call.closed().await)
}
