//! The session's recording room: events (answer, bridge, RECORD_START/STOP, hangup) moving each
//! recording through its states, the bridge's plan for the callee, a closed socket, timers, files
//! inspected, and the one decision per recording: kept (delivered) or discarded, with the reason.
//!
//! Invariants: a recording is matched to its events by `callrec_recording_id` (or path), never by
//! channel; a file is final only when FreeSWITCH said so or the call is over, otherwise it is
//! judged by its quiet window and delivered as possibly still growing; every recording ends in
//! exactly one log line.

use super::*;

impl Session {
    pub(super) fn fail(&mut self, idx: RecIdx, why: String, out: &mut Vec<Action>) {
        let rec = &mut self.recordings[idx];
        error!(recording_id = %rec.id, reason = %why, "recording failed");
        metrics::inc(&METRICS.recordings_failed_total);
        let started = rec.state.started_us();
        rec.state = State::Failed(why.clone());
        let meta = self.finished_meta(idx, started);
        out.push(Action::Notify(HookEvent::Failed, Box::new(meta), Some(why)));
    }

    pub(super) fn on_event(&mut self, e: Event, out: &mut Vec<Action>) {
        let Some(name) = e.name() else { return };
        match name {
            EventName::ChannelAnswer => {
                self.answered = true;
                self.start_waiting(Trigger::OnAnswer, out)
            }
            EventName::ChannelExecuteComplete => {
                let done = e.application_uuid();
                if let Some(run) = &mut self.flow {
                    if run.completed(done.as_deref()) {
                        self.advance_flow(out);
                    }
                }
            }
            EventName::ChannelBridge => self.on_bridged(&e, out),
            EventName::RecordStart => {
                if let Some(idx) = self.find(&e) {
                    let rec = &mut self.recordings[idx];
                    if matches!(rec.state, State::Starting | State::Failed(_)) {
                        rec.state = State::Recording {
                            started_us: e.timestamp_us(),
                        };
                    }
                    info!(recording_id = %rec.id, "recording started");
                    metrics::inc(&METRICS.recordings_started_total);
                    let meta = self.finished_meta(idx, e.timestamp_us());
                    out.push(Action::Notify(HookEvent::Started, Box::new(meta), None));
                }
            }
            EventName::RecordStop => {
                if let Some(idx) = self.find(&e) {
                    self.finish(idx, StopInfo::from_event(&e), out);
                }
            }
            EventName::ChannelHangupComplete => {
                self.hangup_complete = true;
                if let Some(run) = self.flow.take() {
                    if !run.is_over() {
                        info!(callflow_id = %run.id(), "callflow stopped: the call ended");
                    }
                }
                let cause = e.hangup_cause().map(|c| c.into_owned()).unwrap_or_default();
                info!(hangup_cause = %printable(&cause), "call hung up");
                for r in &mut self.recordings {
                    if let State::Waiting(t) = r.state {
                        info!(recording_id = %r.id, trigger = t.as_str(), "recording not started: the call ended first");
                        r.state = State::Finished;
                    }
                }
                if self.unfinished() > 0 {
                    out.push(Action::SetTimer(
                        Timer::Grace,
                        self.settings.record_stop_grace,
                    ));
                }
            }
            _ => {}
        }
    }

    /// The call is bridged (CHANNEL_BRIDGE, or a channel dump naming the other leg): start
    /// what waits for answer or bridge, and plan for the callee once.
    pub(super) fn on_bridged(&mut self, e: &Event, out: &mut Vec<Action>) {
        self.start_waiting(Trigger::OnAnswer, out);
        self.start_waiting(Trigger::OnBridge, out);
        if let Some(target) = e.get("Other-Leg-Destination-Number") {
            let target = target.into_owned();
            if target != self.info.call.callee_number && !self.bridge_planned {
                self.bridge_planned = true;
                let mut call = self.info.clone();
                call.call.callee_number = target.clone();
                out.push(Action::Plan {
                    call,
                    bridge_target: Some(target),
                });
            }
        }
    }

    /// Never the same leg twice: when a recording with the same settings is planned or running,
    /// it also goes where `plan` would (its destinations, local copy, reason), and `None` is
    /// returned; otherwise `plan` comes back to be started.
    pub(super) fn join_running(&mut self, plan: PlannedRecording) -> Option<PlannedRecording> {
        let Some(r) = self.recordings.iter_mut().find(|r| {
            r.settings.same_recording(&plan.settings)
                && !matches!(r.state, State::Finished | State::Failed(_))
        }) else {
            return Some(plan);
        };
        for d in plan.destinations {
            if !r.destinations.contains(&d) {
                r.destinations.push(d);
            }
        }
        r.keep_local |= plan.keep_local;
        r.reason = format!("{}; {}", r.reason, plan.reason);
        info!(recording_id = %r.id, reason = %plan.reason, "the leg already records with these settings; destinations joined");
        None
    }

    /// The bridge revealed the callee: start what the callee's settings add (never a second
    /// recording with settings already in use on this leg).
    pub(super) fn on_bridge_plan(
        &mut self,
        target: String,
        result: Result<Plan, String>,
        out: &mut Vec<Action>,
    ) {
        let plan = match result {
            Ok(p) => p.recordings,
            Err(e) => {
                error!(error = %e, "recording rules unavailable for the bridge target");
                return;
            }
        };
        if self.hangup_complete || self.closed {
            return;
        }
        let dir = self.dir();
        for p in plan {
            let Some(p) = self.join_running(p) else {
                continue;
            };
            let rec = Recording::with_id((self.ids)(), p, &dir);
            info!(
                recording_id = %rec.id,
                reason = %rec.reason,
                bridge_target = %printable(&target),
                "rule matched for the bridged callee"
            );
            self.recordings.push(rec);
            self.queue
                .push_back(Purpose::Start(self.recordings.len() - 1));
        }
        self.next_queued(out);
    }

    pub(super) fn start_waiting(&mut self, trigger: Trigger, out: &mut Vec<Action>) {
        for idx in 0..self.recordings.len() {
            if self.recordings[idx].state == State::Waiting(trigger)
                && !self.queue.contains(&Purpose::Start(idx))
            {
                self.queue.push_back(Purpose::Start(idx));
            }
        }
        self.next_queued(out);
    }

    /// The recording a RECORD_START/STOP is about: by our id variable, else by path.
    pub(super) fn find(&self, e: &Event) -> Option<RecIdx> {
        if let Some(id) = e.recording_variable("callrec_recording_id") {
            if let Some(i) = self.recordings.iter().position(|r| r.id == id) {
                return Some(i);
            }
        }
        let path = e.record_file_path()?;
        self.recordings
            .iter()
            .position(|r| r.path.as_os_str() == std::ffi::OsStr::new(path.as_ref()))
    }

    pub(super) fn on_closed(&mut self, err: Option<String>, out: &mut Vec<Action>) {
        if self.closed {
            return;
        }
        self.closed = true;
        match err {
            Some(e) => error!(error = %e, "connection to FreeSWITCH failed"),
            None if !self.hangup_complete => {
                warn!("FreeSWITCH closed the connection before the call ended")
            }
            None => {}
        }
        // Commands in flight will get no reply: their recordings are watched like the rest.
        self.in_flight.clear();
        self.flow = None;
        self.queue.clear();
        if self.phase != Phase::Following {
            self.phase = Phase::Following;
        }
        // Recordings still waiting for their trigger can no longer see it.
        for r in &mut self.recordings {
            if matches!(r.state, State::Waiting(_)) {
                info!(recording_id = %r.id, reason = "the call's events can no longer be followed", "recording not started");
                r.state = State::Finished;
            }
        }
        self.watch_started(out);
    }

    /// FreeSWITCH keeps recording until the call ends: started recordings whose RECORD_STOP
    /// cannot be seen any more are watched on disk until they have not grown for their quiet
    /// window (twice the write buffer's interval, plus a margin).
    pub(super) fn watch_started(&mut self, out: &mut Vec<Action>) {
        let poll_ms = self.settings.disk_poll.as_millis().max(1) as u64;
        let mut watching = false;
        for r in &mut self.recordings {
            if r.state.awaits_stop() {
                let quiet = r.quiet_window(self.settings.write_buffer);
                warn!(
                    recording_id = %r.id,
                    quiet_ms = quiet.as_millis() as u64,
                    "RECORD_STOP will not arrive; watching the file on disk until it has not grown for the quiet window"
                );
                let max_wait_ms = (r.settings.time_limit as u64 + 60) * 1000;
                let grace_ms = self.settings.record_stop_grace.as_millis() as u64;
                let unconfirmed = matches!(r.state, State::Starting);
                r.state = State::Watching {
                    started_us: r.state.started_us(),
                    last_size: None,
                    stable_polls: 0,
                    quiet_polls: recorder::quiet::looks(quiet, self.settings.disk_poll),
                    polls_left: max_wait_ms.div_ceil(poll_ms) as u32,
                    absent_polls_left: unconfirmed
                        .then_some((grace_ms.div_ceil(poll_ms) as u32).max(3)),
                };
                watching = true;
            }
        }
        if watching {
            out.push(Action::SetTimer(Timer::DiskPoll, self.settings.disk_poll));
        }
    }

    pub(super) fn on_timer(&mut self, t: Timer, out: &mut Vec<Action>) {
        match t {
            Timer::Grace => {
                for idx in 0..self.recordings.len() {
                    if self.recordings[idx].state.awaits_stop() {
                        warn!(
                            recording_id = %self.recordings[idx].id,
                            grace_ms = self.settings.record_stop_grace.as_millis() as u64,
                            "no RECORD_STOP after hangup; finishing from the file on disk"
                        );
                        self.finish_from_disk(idx, "hangup without RECORD_STOP", out);
                    }
                }
            }
            Timer::DiskPoll => {
                let mut watching = false;
                for (idx, r) in self.recordings.iter().enumerate() {
                    if matches!(r.state, State::Watching { .. }) {
                        watching = true;
                        out.push(Action::Inspect {
                            rec: idx,
                            path: r.path.clone(),
                            format: r.settings.format,
                            measure: false,
                        });
                    }
                }
                if watching {
                    out.push(Action::SetTimer(Timer::DiskPoll, self.settings.disk_poll));
                }
            }
        }
    }

    pub(super) fn on_inspected(
        &mut self,
        idx: RecIdx,
        size: Option<u64>,
        duration_ms: Option<u64>,
        out: &mut Vec<Action>,
    ) {
        match &mut self.recordings[idx].state {
            State::Watching {
                last_size,
                stable_polls,
                quiet_polls,
                polls_left,
                absent_polls_left,
                ..
            } => {
                if size.is_some() && size == *last_size {
                    *stable_polls += 1;
                } else {
                    *stable_polls = 0;
                }
                *last_size = size;
                *polls_left = polls_left.saturating_sub(1);
                if size.is_some() {
                    *absent_polls_left = None;
                } else if let Some(n) = absent_polls_left {
                    *n = n.saturating_sub(1);
                }
                if *absent_polls_left == Some(0) {
                    // The journal row stays: if FreeSWITCH did record after all, a restart
                    // finds the file; if not, the restart discards the row as file-missing.
                    self.fail(
                        idx,
                        "the connection was lost before FreeSWITCH acknowledged uuid_record, and no file appeared".into(),
                        out,
                    );
                } else if *stable_polls >= *quiet_polls {
                    self.finish_quiet(idx, out);
                } else if *polls_left == 0 {
                    self.fail(
                        idx,
                        "connection lost and the file never settled".into(),
                        out,
                    );
                }
            }
            State::Finishing { started_us, stop } => {
                let (started_us, mut stop) = (*started_us, stop.clone());
                if stop.from_disk {
                    stop.record_ms = duration_ms.unwrap_or(0);
                }
                self.decide(idx, started_us, stop, size, out);
            }
            _ => {}
        }
    }

    /// The recording has ended for certain (the call is over): its file is final.
    pub(super) fn finish_from_disk(&mut self, idx: RecIdx, cause: &str, out: &mut Vec<Action>) {
        let stop = StopInfo {
            record_ms: 0,
            cause: cause.to_string(),
            discarded_by_freeswitch: false,
            from_disk: true,
            may_grow_until_us: None,
        };
        self.finish(idx, stop, out);
    }

    /// The file has not grown for its quiet window: it is taken as it is, but FreeSWITCH may
    /// still write it until the recording's time limit has passed.
    pub(super) fn finish_quiet(&mut self, idx: RecIdx, out: &mut Vec<Action>) {
        let r = &self.recordings[idx];
        let start = r.state.started_us().unwrap_or(self.info.started_us);
        let stop = StopInfo {
            record_ms: 0,
            cause: "connection lost; file stopped growing".into(),
            discarded_by_freeswitch: false,
            from_disk: true,
            may_grow_until_us: Some(recorder::may_grow_until_us(start, r.settings.time_limit)),
        };
        self.finish(idx, stop, out);
    }

    /// A recording has ended: inspect its file, then keep or discard it.
    pub(super) fn finish(&mut self, idx: RecIdx, stop: StopInfo, out: &mut Vec<Action>) {
        let rec = &mut self.recordings[idx];
        if matches!(rec.state, State::Finished | State::Finishing { .. }) {
            return;
        }
        let measure = stop.from_disk;
        rec.state = State::Finishing {
            started_us: rec.state.started_us(),
            stop,
        };
        out.push(Action::Inspect {
            rec: idx,
            path: rec.path.clone(),
            format: rec.settings.format,
            measure,
        });
    }

    /// Keep (deliver) or discard a finished recording, and say which.
    pub(super) fn decide(
        &mut self,
        idx: RecIdx,
        started_us: Option<u64>,
        stop: StopInfo,
        size: Option<u64>,
        out: &mut Vec<Action>,
    ) {
        let rec = &self.recordings[idx];
        info!(
            recording_id = %rec.id,
            record_ms = stop.record_ms,
            cause = %stop.cause,
            from_disk = stop.from_disk,
            "recording stopped"
        );
        if let Some(reason) =
            recorder::discard_reason(rec.settings.record_min_sec, &stop, size.is_some())
        {
            if size.is_some() {
                out.push(Action::Delete(rec.path.clone()));
            }
            info!(recording_id = %rec.id, reason = %reason, "recording discarded");
            metrics::inc(&METRICS.recordings_discarded_total);
            let mut meta = self.finished_meta(idx, started_us);
            meta.duration_ms = stop.record_ms;
            meta.size = size.unwrap_or(0);
            meta.completion_cause = stop.cause.clone();
            out.push(Action::Notify(
                HookEvent::Discarded,
                Box::new(meta),
                Some(reason.to_string()),
            ));
            let rec = &self.recordings[idx];
            out.push(Action::Forget(rec.id.clone()));
            self.recordings[idx].state = State::Finished;
            return;
        }
        let mut finished = self.finished_meta(idx, started_us);
        finished.duration_ms = stop.record_ms;
        finished.size = size.unwrap_or(0);
        finished.completion_cause = stop.cause;
        finished.may_grow_until_us = stop.may_grow_until_us;
        out.push(Action::Deliver(idx, Box::new(finished)));
    }

    /// What delivery will get for recording `idx` (duration, size and cause still to fill in).
    pub(super) fn finished_meta(&self, idx: RecIdx, started_us: Option<u64>) -> FinishedRecording {
        let rec = &self.recordings[idx];
        FinishedRecording {
            call: self.info.call.clone(),
            recording_id: rec.id.clone(),
            start_us: started_us.unwrap_or(self.info.started_us),
            duration_ms: 0,
            format: rec.settings.format,
            sample_rate: rec.settings.record_sample_rate,
            stereo: rec.settings.record_stereo,
            file_path: rec.path_str(),
            size: 0,
            destinations: rec.destinations.clone(),
            keep_local: rec.keep_local,
            origin: rec.reason.clone(),
            completion_cause: "recording".into(),
            sequence: idx as u32,
            kind: rec.kind,
            may_grow_until_us: None,
            pauses: rec.pauses.clone(),
            encryption: None,
            encrypt_to: self.encrypt_to.clone(),
        }
    }

    /// The journal row of recording `idx`, written before FreeSWITCH is asked to record it.
    pub(super) fn journal_entry(&self, idx: RecIdx) -> JournalEntry {
        let r = &self.recordings[idx];
        JournalEntry {
            rec: self.finished_meta(idx, None),
            record_min_sec: r.settings.record_min_sec,
            time_limit: r.settings.time_limit,
            write_buffer: r.write_buffer(self.settings.write_buffer),
        }
    }
}
