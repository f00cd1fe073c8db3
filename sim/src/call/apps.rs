//! Dialplan applications as FreeSWITCH runs them for a call parked in `socket`: `answer`,
//! `playback`, `record`, `bridge`, `transfer`, `hangup`… with their CHANNEL_EXECUTE /
//! CHANNEL_EXECUTE_COMPLETE events, call state changes and the hangup sequence.

use super::*;

/// Applications the simulated dialplan knows; executing any other hangs the call up with
/// DESTINATION_OUT_OF_ORDER, as FreeSWITCH does.
pub(super) const KNOWN_APPS: &[&str] = &[
    "answer",
    "pre_answer",
    "transfer",
    "playback",
    "record",
    "hangup",
    "set",
    "export",
    "park",
    "sleep",
    "log",
    "info",
    "echo",
    "ring_ready",
    "bridge",
    "record_session",
    "socket",
];

impl Sim {
    /// CHANNEL_PARK fires a little after `myevents`; see `CallSpec::park_after`.
    pub(super) async fn park_tick(&mut self) -> Io {
        match self.park_countdown {
            Some(n) if n <= 1 => {
                self.park_countdown = None;
                self.emit(
                    "CHANNEL_PARK",
                    ("switch_ivr.c", "switch_ivr_park", 1001),
                    vec![],
                    vec![],
                    None,
                )
                .await
            }
            Some(n) => {
                self.park_countdown = Some(n - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }

    pub(super) fn app_headers(app: &str, arg: &str, app_uuid: &str) -> Headers {
        vec![
            ("Application".into(), app.into()),
            ("Application-Data".into(), arg.into()),
            ("Application-UUID".into(), app_uuid.into()),
        ]
    }

    pub(super) async fn execute(&mut self, app: &str, arg: &str, app_uuid: &str) -> Io {
        self.ch.set_var("current_application", app);
        self.ch.set_var("current_application_data", arg);
        let back = Self::app_headers(app, arg, app_uuid);
        self.emit(
            "CHANNEL_EXECUTE",
            ("switch_core_session.c", "switch_core_session_exec", 2946),
            vec![],
            back,
            None,
        )
        .await
    }

    pub(super) async fn execute_complete(
        &mut self,
        app: &str,
        arg: &str,
        app_uuid: &str,
        response: &str,
    ) -> Io {
        let mut back = Self::app_headers(app, arg, app_uuid);
        back.insert(2, ("Application-Response".into(), response.into()));
        self.emit(
            "CHANNEL_EXECUTE_COMPLETE",
            ("switch_core_session.c", "switch_core_session_exec", 2992),
            vec![],
            back,
            None,
        )
        .await
    }

    pub(super) async fn answer(&mut self) -> Io {
        if self.ch.answered_us != 0 || self.hung_up {
            return Ok(());
        }
        self.ch.answered_us = self.now_us;
        self.ch.answer_state = "answered";
        self.emit(
            "CHANNEL_ANSWER",
            (
                "switch_channel.c",
                "switch_channel_perform_mark_answered",
                3753,
            ),
            vec![],
            vec![],
            None,
        )
        .await?;
        let at = std::time::Instant::now();
        self.update(|r| {
            r.answered = true;
            r.answer_sent_at = Some(at);
        });
        self.set_callstate("ACTIVE").await
    }

    /// Changes `Channel-Call-State` and says so with CHANNEL_CALLSTATE.
    pub(super) async fn set_callstate(&mut self, new: &'static str) -> Io {
        let previous = std::mem::replace(&mut self.ch.call_state, new);
        self.emit(
            "CHANNEL_CALLSTATE",
            (
                "switch_channel.c",
                "switch_channel_perform_set_callstate",
                360,
            ),
            vec![],
            vec![("Original-Channel-Call-State".into(), previous.into())],
            None,
        )
        .await
    }

    pub(super) async fn answer_via_app(&mut self) -> Io {
        if self.ch.answered_us != 0 || self.hung_up {
            return Ok(());
        }
        let u = uuid_v4();
        self.execute("answer", "", &u).await?;
        self.answer().await?;
        self.execute_complete("answer", "", &u, "_none_").await
    }

    pub(super) async fn sendmsg(&mut self, cmd: &Command) -> Io {
        if self.hung_up {
            return Ok(());
        }
        let call_command = cmd
            .header("call-command")
            .unwrap_or("")
            .to_ascii_lowercase();
        match call_command.as_str() {
            "execute" => {
                let app = cmd.header("execute-app-name").unwrap_or("").to_string();
                let arg = cmd.header("execute-app-arg").unwrap_or("").to_string();
                let app_uuid = cmd
                    .header("Event-UUID")
                    .map(str::to_string)
                    .unwrap_or_else(uuid_v4);
                self.run_app(&app, &arg, &app_uuid).await
            }
            "hangup" => {
                let cause = cmd
                    .header("hangup-cause")
                    .unwrap_or("NORMAL_CLEARING")
                    .to_string();
                self.hangup(&cause, false).await
            }
            _ => Ok(()),
        }
    }

    pub(super) async fn run_app(&mut self, app: &str, arg: &str, app_uuid: &str) -> Io {
        if !KNOWN_APPS.contains(&app) {
            return self.hangup("DESTINATION_OUT_OF_ORDER", false).await;
        }
        match app {
            "answer" => {
                self.execute(app, arg, app_uuid).await?;
                self.answer().await?;
                self.execute_complete(app, arg, app_uuid, "_none_").await
            }
            "transfer" => {
                self.execute(app, arg, app_uuid).await?;
                let mut parts = arg.split_whitespace();
                let dest = parts.next().unwrap_or("").to_string();
                let _dialplan = parts.next();
                let context = parts.next().unwrap_or(&self.ch.context).to_string();
                self.ch.destination = dest.clone();
                self.ch.context = context.clone();
                self.ch.transfer_us = self.now_us;
                self.update(|r| r.transferred_to = Some(format!("{dest} XML {context}")));
                self.execute_complete(app, arg, app_uuid, "_none_").await?;
                let was_parked = self.parked;
                self.leave_socket_app("_none_").await?;
                self.ch.state = ("CS_ROUTING", 2);
                self.emit_state().await?;
                self.ch.state = ("CS_EXECUTE", 4);
                self.emit_state().await?;
                self.transferred(was_parked, &dest, &context);
                Ok(())
            }
            "hangup" => {
                self.execute(app, arg, app_uuid).await?;
                let cause = if arg.is_empty() {
                    "NORMAL_CLEARING"
                } else {
                    arg
                };
                self.hangup(cause, false).await
            }
            "set" | "export" => {
                self.execute(app, arg, app_uuid).await?;
                if let Some((k, v)) = arg.split_once('=') {
                    self.ch.set_var(k, v);
                }
                self.execute_complete(app, arg, app_uuid, "_none_").await
            }
            "playback" => {
                self.finish_playback().await?;
                self.execute(app, arg, app_uuid).await?;
                let ms = tone_stream_ms(arg);
                if ms == 0 {
                    return self
                        .execute_complete(app, arg, app_uuid, "FILE PLAYED")
                        .await;
                }
                self.playback = Some((
                    app_uuid.to_string(),
                    arg.to_string(),
                    self.now_us.saturating_add(ms.saturating_mul(1000)),
                ));
                Ok(())
            }
            "record" => {
                self.execute(app, arg, app_uuid).await?;
                let mut parts = arg.split_whitespace();
                let path = parts.next().unwrap_or("").to_string();
                let limit_s = parts.next().and_then(|l| l.parse().ok()).unwrap_or(0);
                let Some(format) = Format::from_path(&path) else {
                    return self.execute_complete(app, arg, app_uuid, "_none_").await;
                };
                // switch_ivr_record_file: the default buffer unless the channel variable is
                // false (a size is not honoured here, unlike uuid_record).
                let buffer = match self.ch.var("enable_file_write_buffering") {
                    Some(v) if !media_bugs::fs_true(v) => 0,
                    _ => media::DEFAULT_WRITE_BUFFER,
                };
                let rec = ActiveRecording::open(
                    path.clone(),
                    self.now_us,
                    limit_s,
                    vec![],
                    8000,
                    1,
                    format,
                    buffer,
                );
                self.app_record = Some(AppRecording {
                    rec,
                    app_uuid: app_uuid.to_string(),
                });
                self.ch.set_var("silence_hits_exhausted", "false");
                self.emit(
                    "RECORD_START",
                    ("switch_ivr_play_say.c", "switch_ivr_record_file_event", 437),
                    vec![],
                    vec![("Record-File-Path".into(), path)],
                    None,
                )
                .await
            }
            "bridge" => {
                // The first target's user part: `user/1001@dom`, `sofia/prof/1001@host`, after
                // any `{vars}`, with `,` (ring all) or `|` (in turn) between targets.
                let rest = match arg.strip_prefix('{') {
                    Some(r) => r.split_once('}').map_or(r, |(_, t)| t),
                    None => arg,
                };
                let first = rest.split([',', '|']).next().unwrap_or("");
                let target = first.rsplit('/').next().unwrap_or("");
                let number = target.split('@').next().unwrap_or("").to_string();
                self.bridge_app(&number, arg, app_uuid).await
            }
            _ => {
                self.execute(app, arg, app_uuid).await?;
                self.execute_complete(app, arg, app_uuid, "_none_").await
            }
        }
    }

    pub(super) async fn emit_state(&mut self) -> Io {
        self.emit(
            "CHANNEL_STATE",
            (
                "switch_core_state_machine.c",
                "switch_core_session_run",
                628,
            ),
            vec![],
            vec![],
            None,
        )
        .await
    }

    pub(super) async fn leave_socket_app(&mut self, response: &str) -> Io {
        if !self.parked {
            return Ok(());
        }
        self.parked = false;
        self.emit(
            "CHANNEL_UNPARK",
            ("switch_ivr.c", "switch_ivr_park", 1190),
            vec![],
            vec![],
            None,
        )
        .await?;
        let arg = self.socket_arg.clone();
        self.execute_complete("socket", &arg, &uuid_v4(), response)
            .await
    }

    /// Ends a running playback (its end time passed, another replaced it, or hangup).
    pub(super) async fn finish_playback(&mut self) -> Io {
        let Some((u, arg, _)) = self.playback.take() else {
            return Ok(());
        };
        self.playback_returned();
        self.execute_complete("playback", &arg, &u, "FILE PLAYED")
            .await
    }

    /// The dialplan (or the test) bridging the call to `number`.
    pub(super) async fn bridge(&mut self, number: &str) -> Io {
        let arg = format!("sofia/test/{number}@127.0.0.1:5090");
        self.bridge_app(number, &arg, &uuid_v4()).await
    }

    /// The `bridge` application: the B-leg answers at once (the test hangs it up with
    /// `unbridge`), CHANNEL_BRIDGE names it, and CHANNEL_EXECUTE_COMPLETE (with the caller's
    /// `Application-UUID`) follows the unbridge, as in `outbound-bridge-callee.json.txt`.
    pub(super) async fn bridge_app(&mut self, number: &str, arg: &str, app_uuid: &str) -> Io {
        self.execute("bridge", arg, app_uuid).await?;
        self.bridge_run = Some((app_uuid.to_string(), arg.to_string()));
        let b = uuid_v4();
        self.ch.other_leg = Some(OtherLeg {
            uuid: b.clone(),
            number: number.to_string(),
            answered_us: self.now_us,
        });
        self.answer().await?;
        self.ch.bridged_us = self.now_us;
        self.ch.set_var("signal_bond", &b);
        let front = vec![
            ("Bridge-A-Unique-ID".into(), self.ch.uuid.clone()),
            ("Bridge-B-Unique-ID".into(), b.clone()),
        ];
        self.emit(
            "CHANNEL_BRIDGE",
            ("switch_ivr_bridge.c", "audio_bridge_on_exchange_media", 786),
            front,
            vec![],
            None,
        )
        .await?;
        self.ch.set_var("bridge_uuid", &b);
        Ok(())
    }

    pub(super) async fn unbridge(&mut self) -> Io {
        let Some(o) = self.ch.other_leg.clone() else {
            return Ok(());
        };
        let front = vec![
            ("Bridge-A-Unique-ID".into(), self.ch.uuid.clone()),
            ("Bridge-B-Unique-ID".into(), o.uuid.clone()),
        ];
        self.ch.set_var("bridge_hangup_cause", "NORMAL_CLEARING");
        self.emit(
            "CHANNEL_UNBRIDGE",
            ("switch_ivr_bridge.c", "audio_bridge_on_exchange_media", 896),
            front,
            vec![],
            None,
        )
        .await?;
        self.ch.other_leg = None;
        let (app_uuid, arg) = self
            .bridge_run
            .take()
            .unwrap_or_else(|| (uuid_v4(), format!("sofia/test/{}@127.0.0.1:5090", o.number)));
        self.execute_complete("bridge", &arg, &app_uuid, "_none_")
            .await?;
        self.bridge_returned();
        Ok(())
    }

    /// The hangup sequence of the captures. `killed` (uuid_kill) sends the linger notice right
    /// after CHANNEL_HANGUP, before RECORD_STOP, as observed.
    pub(super) async fn hangup(&mut self, cause: &str, killed: bool) -> Io {
        if self.hung_up {
            return Ok(());
        }
        self.hung_up = true;
        self.ch.hangup_us = self.now_us;
        self.ch.hangup_cause = Some(cause.to_string());
        self.ch.answer_state = "hangup";
        self.ch.set_var("hangup_cause", cause);
        self.emit(
            "CHANNEL_HANGUP",
            ("switch_channel.c", "switch_channel_perform_hangup", 3244),
            vec![],
            vec![],
            None,
        )
        .await?;
        if killed {
            if let Some(t) = self.sub.linger {
                let n = wire::linger_notice(&self.ch.uuid, &self.ch.name, t);
                self.send(&n).await?;
            }
        }
        self.finish_playback().await?;
        if self.app_record.is_some() {
            self.finish_app_recording().await?;
        }
        self.leave_socket_app("_none_").await?;
        self.ch.state = ("CS_HANGUP", 10);
        self.emit_state().await?;
        let active: Vec<ActiveRecording> = self.recordings.drain(..).collect();
        for r in active {
            self.finish_recording(r, "success-silence").await?;
        }
        self.set_callstate("HANGUP").await?;
        self.ch.state = ("CS_REPORTING", 11);
        self.emit_state().await?;
        self.emit(
            "CHANNEL_HANGUP_COMPLETE",
            (
                "switch_core_state_machine.c",
                "switch_core_session_reporting_state",
                947,
            ),
            vec![("Hangup-Cause".into(), cause.to_string())],
            vec![],
            None,
        )
        .await?;
        self.update(|r| r.hung_up = true);
        match self.sub.linger {
            Some(t) => {
                if !killed {
                    let n = wire::linger_notice(&self.ch.uuid, &self.ch.name, t);
                    self.send(&n).await?;
                }
            }
            None => {
                let d = wire::disconnect_notice(&self.ch.uuid);
                self.send(&d).await?;
                self.socket_closed().await;
            }
        }
        Ok(())
    }
}

/// Length of a `tone_stream://%(on,off,freq);loops=N` playback in ms (0 when unknown).
pub(super) fn tone_stream_ms(arg: &str) -> u64 {
    let Some(spec) = arg.strip_prefix("tone_stream://%(") else {
        return 0;
    };
    let mut nums = spec.split([',', ')']).map(|n| n.trim().parse::<u64>().ok());
    let (Some(Some(on)), Some(Some(off))) = (nums.next(), nums.next()) else {
        return 0;
    };
    let loops = arg
        .split(';')
        .find_map(|p| p.strip_prefix("loops="))
        .and_then(|l| l.parse::<i64>().ok())
        .unwrap_or(1);
    if loops < 0 {
        // `loops=-1`: until something ends it (the hangup).
        return u64::MAX;
    }
    (on + off).saturating_mul(loops as u64)
}
