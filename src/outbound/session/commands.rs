//! The session's command room: the plan acted on once the subscriptions are in, commands queued
//! one at a time (recording starts, the follow mark, the hand-back) and their replies, and the
//! hand-back itself: `resume` for the drop-in extension's call let go now, else a transfer (into
//! the call's own context after clearing `socket_resume`, or to `continue_context`).
//!
//! Invariants: one queued command in flight at a time, except `socket_resume` cleared and the
//! transfer right behind it; a call still parked in `socket` is never left there: a hand-back
//! that cannot be sent or is refused ends in `Action::Close` (with `resume`).

use super::*;

impl Session {
    pub(super) fn plan_or_nothing(&mut self, result: Result<Plan, String>) -> Plan {
        match result {
            Ok(p) => p,
            Err(e) => {
                error!(error = %e, "recording rules unavailable or too slow: call not recorded");
                Plan::default()
            }
        }
    }

    /// Once the subscriptions are acknowledged and the plan is in: plan the recordings, queue
    /// the starts and the hand-back.
    pub(super) fn after_setup(&mut self, out: &mut Vec<Action>) {
        let Phase::Setup {
            replies,
            plan: Some(_),
        } = &self.phase
        else {
            return;
        };
        if *replies != self.setup_replies {
            return;
        }
        let Phase::Setup {
            plan: Some(mut plan),
            ..
        } = std::mem::replace(&mut self.phase, Phase::Starting)
        else {
            return;
        };
        let callflow = plan.callflow.take();
        self.identified(&plan);
        self.nothing_to_follow =
            plan.recordings.is_empty() && callflow.is_none() && plan.callee_never_records;
        if self.link && !self.nothing_to_follow {
            if callflow.is_some() {
                // A callflow waits on CHANNEL_EXECUTE_COMPLETE, which the link does not carry:
                // the call keeps its socket.
                self.follow_over_socket(out);
            } else {
                self.queue.push_back(Purpose::Follow);
            }
        }
        if plan.recordings.is_empty() {
            info!("no recording: no rule matched");
        }
        for p in plan.recordings {
            self.add_planned(p);
        }
        for idx in 0..self.recordings.len() {
            let t = self.recordings[idx].settings.trigger();
            if t == Trigger::Immediately || (t == Trigger::OnAnswer && self.answered) {
                self.queue.push_back(Purpose::Start(idx));
            }
        }
        if let Some(cf) = callflow {
            info!(callflow_id = %cf.id, "callflow matched: running it");
            self.flow = Some(FlowRun::new(cf.id, cf.flow, cf.endpoints));
            // The call stays in the socket while the flow runs; its events are followed.
            self.phase = Phase::Following;
            self.next_queued(out);
            self.advance_flow(out);
            return;
        }
        let dest = self.info.call.callee_number.clone();
        self.hand_back(&dest, None, out);
    }

    /// Hands the call back to the dialplan. With `context` named: `transfer <extension> XML
    /// <context>`. Without: a call from the drop-in extension goes on where it was (`resume`
    /// when the socket is let go now, else a transfer into its own context, which its guard
    /// variable makes skip the callrec extension); any other goes to `continue_context`. An
    /// argument FreeSWITCH would split (spaces, braces…) is never sent: the socket is closed
    /// with `resume`, so the dialplan goes on after `socket`.
    pub(super) fn hand_back(
        &mut self,
        extension: &str,
        context: Option<&str>,
        out: &mut Vec<Action>,
    ) {
        if context.is_none() && self.in_place() && self.lets_socket_go() {
            self.queue.push_back(Purpose::Resume);
            self.next_queued(out);
            return;
        }
        let context = match context {
            Some(c) => c.to_string(),
            None if self.in_place() => self.info.context.clone(),
            None => self.settings.continue_context.clone(),
        };
        if !safe_destination(extension) || !safe_destination(&context) {
            warn!(
                destination = %extension.escape_debug(),
                context = %context.escape_debug(),
                "destination or context has characters unsafe in a transfer; closing the socket so the dialplan goes on after `socket`"
            );
            self.queue.clear();
            self.abandon("destination unsafe to hand back", out);
            return;
        }
        if self.in_place() {
            self.queue.push_back(Purpose::ClearResume);
        }
        self.queue
            .push_back(Purpose::Transfer(format!("{extension} XML {context}")));
        self.next_queued(out);
    }

    /// Whether the socket goes as soon as the call is handed back: followed over the link, or
    /// nothing to follow.
    pub(super) fn lets_socket_go(&self) -> bool {
        (self.link && self.flow.is_none()) || self.nothing_to_follow
    }

    /// A planned recording joins the call (waiting for its trigger), with its reason logged.
    pub(super) fn add_planned(&mut self, plan: PlannedRecording) -> RecIdx {
        let rec = Recording::with_id((self.ids)(), plan, &self.dir());
        info!(
            recording_id = %rec.id,
            reason = %rec.reason,
            trigger = rec.settings.trigger().as_str(),
            format = rec.settings.format.ext(),
            "rule matched"
        );
        self.recordings.push(rec);
        self.recordings.len() - 1
    }

    /// Takes the parties the rules identified where the channel variables were silent.
    pub(super) fn identified(&mut self, plan: &Plan) {
        if self.info.call.account_id.is_none() {
            let shown = plan.account_id.as_deref().unwrap_or("-");
            tracing::Span::current()
                .record("account_id", tracing::field::display(printable(shown)));
            self.info.call.account_id = plan.account_id.clone();
        }
        if self.info.call.user_id.is_none() {
            self.info.call.user_id = plan.user_id.clone();
        }
        if self.info.call.device_id.is_none() {
            self.info.call.device_id = plan.device_id.clone();
        }
        if self.encrypt_to.is_none() {
            self.encrypt_to = plan.encrypt_to.clone();
        }
    }

    pub(super) fn dir(&self) -> PathBuf {
        paths::recording_dir(
            &self.settings.data_dir,
            self.info.call.account_id.as_deref(),
            self.info.started_us,
        )
    }

    /// Sends the next queued command, unless one is in flight.
    pub(super) fn next_queued(&mut self, out: &mut Vec<Action>) {
        if !self.in_flight.is_empty() || self.closed {
            return;
        }
        while let Some(p) = self.queue.pop_front() {
            match p {
                Purpose::Start(idx) => {
                    let cmd = match self.recordings[idx]
                        .start_command(&self.info.call.call_id, self.settings.write_buffer)
                    {
                        Ok(c) => c,
                        Err(e) => {
                            self.fail(idx, format!("cannot build command: {e}"), out);
                            continue;
                        }
                    };
                    if let Some(parent) = self.recordings[idx].path.parent() {
                        out.push(Action::CreateDir(parent.to_path_buf()));
                    }
                    out.push(Action::Journal(Box::new(self.journal_entry(idx))));
                    self.recordings[idx].state = State::Starting;
                    out.push(self.send(cmd, Purpose::Start(idx)));
                }
                Purpose::Transfer(arg) => {
                    let cmd = Command::SendMsg(SendMsg::execute("transfer", Some(arg.clone())));
                    out.push(self.send(cmd, Purpose::Transfer(arg)));
                }
                Purpose::Resume => {
                    if !self.lets_socket_go() {
                        // The link fell back to the socket since the hand-back was queued:
                        // the socket stays, so the call moves by transfer instead.
                        let dest = self.info.call.callee_number.clone();
                        let ctx = self.info.context.clone();
                        self.hand_back(&dest, Some(&ctx), out);
                        return;
                    }
                    out.push(self.send(Command::Resume, Purpose::Resume));
                }
                Purpose::ClearResume => {
                    let cmd = Command::Api(format!(
                        "uuid_setvar {} socket_resume false",
                        self.info.call.call_id
                    ));
                    out.push(self.send(cmd, Purpose::ClearResume));
                    // Pipelined: the transfer goes right behind it, without waiting for this
                    // reply, so the moment where callrec could die between the two (leaving the
                    // call parked with resume off) is as short as it can be.
                    continue;
                }
                Purpose::Stop(idx) => {
                    let cmd = self.recordings[idx].stop_command(&self.info.call.call_id);
                    out.push(self.send(cmd, Purpose::Stop(idx)));
                }
                Purpose::Execute {
                    app_uuid,
                    app,
                    arg,
                    starts,
                } => {
                    let mut msg =
                        SendMsg::execute(app.clone(), (!arg.is_empty()).then(|| arg.clone()));
                    msg.event_uuid = Some(app_uuid.clone());
                    if let Some(idx) = starts {
                        if let Some(parent) = self.recordings[idx].path.parent() {
                            out.push(Action::CreateDir(parent.to_path_buf()));
                        }
                        out.push(Action::Journal(Box::new(self.journal_entry(idx))));
                        self.recordings[idx].state = State::Starting;
                        info!(recording_id = %self.recordings[idx].id, path = %self.recordings[idx].path.display(), "recording the caller");
                    }
                    let purpose = Purpose::Execute {
                        app_uuid,
                        app,
                        arg,
                        starts,
                    };
                    out.push(self.send(Command::SendMsg(msg), purpose));
                }
                Purpose::Follow => {
                    let tag = self.settings.follow_tag.clone().unwrap_or_default();
                    let cmd = Command::Api(format!(
                        "uuid_setvar {} {} {tag}",
                        self.info.call.call_id,
                        crate::inbound::FOLLOW_VARIABLE
                    ));
                    if cmd.validate().is_err() {
                        self.follow_over_socket(out);
                        continue;
                    }
                    out.push(self.send(cmd, Purpose::Follow));
                }
                Purpose::Control { idx, req, action } => {
                    let a = self.send_control(idx, req, action);
                    out.push(a);
                }
                Purpose::Subscribe => continue,
            }
            return;
        }
    }

    pub(super) fn on_reply(&mut self, id: CmdId, result: ReplyResult, out: &mut Vec<Action>) {
        let Some(pos) = self.in_flight.iter().position(|(c, _)| *c == id) else {
            return;
        };
        let (_, purpose) = self.in_flight.remove(pos);
        match purpose {
            Purpose::Follow => match result {
                Ok((true, _)) => {}
                Ok((false, text)) => {
                    warn!(reply = %text, "cannot mark the call for the event-socket link; following it over its socket");
                    self.follow_over_socket(out);
                }
                Err(e) => {
                    warn!(error = %e, "no reply marking the call for the event-socket link; following it over its socket");
                    self.follow_over_socket(out);
                }
            },
            Purpose::Subscribe => match result {
                Ok((true, _)) => {}
                Ok((false, text)) => {
                    warn!(reply = %text, "subscription refused (is the socket opened with `async full`?)")
                }
                Err(e) => {
                    warn!(error = %e, "no reply to subscription; closing so the dialplan's fallback routes the call");
                    self.closed = true;
                    out.push(Action::Close);
                    out.push(Action::Done);
                    self.phase = Phase::Over;
                    return;
                }
            },
            Purpose::Start(idx) => match result {
                Ok((true, _)) => info!(
                    recording_id = %self.recordings[idx].id,
                    path = %self.recordings[idx].path.display(),
                    "recording requested"
                ),
                Ok((false, text)) => {
                    self.fail(idx, format!("FreeSWITCH refused uuid_record: {text}"), out);
                    // Refused: nothing records, so nothing stays journaled. (Without a reply
                    // FreeSWITCH may be recording: the row stays for RECORD_STOP or a restart.)
                    out.push(Action::Forget(self.recordings[idx].id.clone()));
                }
                Err(e) => self.fail(idx, format!("uuid_record not acknowledged: {e}"), out),
            },
            Purpose::Stop(idx) => match result {
                Ok((true, _)) => {
                    info!(recording_id = %self.recordings[idx].id, "recording stop requested by the callflow")
                }
                Ok((false, text)) => {
                    warn!(recording_id = %self.recordings[idx].id, reply = %text, "FreeSWITCH refused to stop the recording")
                }
                Err(e) => {
                    warn!(recording_id = %self.recordings[idx].id, error = %e, "recording stop not acknowledged")
                }
            },
            Purpose::Execute { app, starts, .. } => match result {
                Ok((true, _)) => {}
                Ok((false, text)) => {
                    self.flow_failed(&format!("FreeSWITCH refused {app}: {text}"), starts, out)
                }
                Err(e) => self.flow_failed(&format!("{app} not acknowledged: {e}"), starts, out),
            },
            Purpose::Control { idx, req, action } => {
                self.on_control_reply(idx, req, action, result, out)
            }
            Purpose::ClearResume => match result {
                Ok((true, _)) => {}
                Ok((false, text)) => {
                    error!(reply = %text, "could not clear socket_resume before the transfer; FreeSWITCH may keep the call in its old extension")
                }
                Err(e) => {
                    error!(error = %e, "clearing socket_resume not acknowledged before the transfer")
                }
            },
            Purpose::Resume => match result {
                Ok((true, _)) => {
                    info!("call handed back to the dialplan: it goes on after the callrec extension once the socket closes");
                    self.handed_back(out);
                }
                Ok((false, text)) => {
                    error!(reply = %text, "resume refused; closing the socket");
                    self.abandon("the call could not be handed back", out);
                }
                Err(e) => {
                    error!(error = %e, "resume not acknowledged; closing the socket");
                    self.abandon("the call could not be handed back", out);
                }
            },
            Purpose::Transfer(arg) => match result {
                Ok((true, _)) => {
                    info!(to = %arg, "call handed back to the dialplan");
                    self.handed_back(out);
                }
                // A call left parked in the socket would wait forever: close, and FreeSWITCH's
                // dialplan goes on with its fallback.
                Ok((false, text)) => {
                    error!(reply = %text, "transfer refused; closing the socket so the dialplan's fallback routes the call");
                    self.abandon("the call could not be handed back", out);
                }
                Err(e) => {
                    error!(error = %e, "transfer not acknowledged; closing the socket so the dialplan's fallback routes the call");
                    self.abandon("the call could not be handed back", out);
                }
            },
        }
        if let Phase::Setup { replies, .. } = &mut self.phase {
            *replies += 1;
            self.after_setup(out);
            return;
        }
        self.next_queued(out);
    }

    /// FreeSWITCH took the hand-back: follow the call, letting the socket go now when the link
    /// follows it or there is nothing to follow.
    pub(super) fn handed_back(&mut self, out: &mut Vec<Action>) {
        self.phase = Phase::Following;
        if self.nothing_to_follow && !self.closed {
            // Nothing to record now or on a bridge: let the call go at once.
            info!("nothing to record on this call: not following it");
            out.push(if self.link {
                Action::Release
            } else {
                Action::Exit
            });
            self.released = self.link;
            self.closed = true;
        } else if self.link && self.flow.is_none() && !self.closed {
            self.released = true;
            info!("outbound socket released; following the call over the event-socket link");
            out.push(Action::Release);
        }
    }

    /// The call could not be handed back: say what happens to each planned recording, close
    /// the socket, and follow what FreeSWITCH is recording from the files.
    pub(super) fn abandon(&mut self, why: &str, out: &mut Vec<Action>) {
        for r in &mut self.recordings {
            if matches!(r.state, State::Waiting(_)) {
                info!(recording_id = %r.id, reason = why, "recording not started");
                r.state = State::Finished;
            }
        }
        self.queue.clear();
        self.phase = Phase::Following;
        out.push(Action::Close);
        self.on_closed(None, out);
    }
}
