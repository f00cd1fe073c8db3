//! One call handed over by FreeSWITCH: from `connect` to the last RECORD_STOP.
//!
//! Order of work: read the channel data, subscribe (pipelined), ask the rules, start the
//! recordings that start at once, hand the call back to the dialplan (`transfer` into the
//! continuation context), then follow its events: start recordings on answer/bridge, correlate
//! RECORD_START/STOP by `callrec_recording_id` (or path), and finish every recording — from
//! RECORD_STOP, or from the file on disk when RECORD_STOP never comes.
//!
//! Invariants: the call is handed back before anything slow happens and whatever the rules
//! say; every planned recording ends in exactly one log line saying kept, discarded (and why) or
//! failed (and why); nothing from the channel data reaches a file name unsanitised.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, info_span, warn, Instrument};

use crate::config::Config;
use crate::connection::{wait_reply, Connection, Incoming, Reply};
use crate::esl::{Command, Disposition, EventFormat, SendMsg};
use crate::event::{Event, EventName};
use crate::recorder::{self, paths, Recording, State, StopInfo};
use crate::rules::{CallInfo, Planner, Trigger};
use crate::telemetry::metrics::{self, METRICS};
use crate::telemetry::printable;
use crate::uploader::{Delivery, FinishedRecording};

/// What every session shares.
pub struct SessionContext {
    pub config: Arc<Config>,
    pub planner: Arc<dyn Planner>,
    pub delivery: Arc<dyn Delivery>,
    /// Cancelled when the shutdown deadline has passed: sessions stop waiting and finish
    /// their recordings from disk.
    pub abort: CancellationToken,
}

/// Runs one outbound connection to its end. Never panics on what FreeSWITCH sends.
pub async fn run(stream: TcpStream, ctx: Arc<SessionContext>) {
    let _ = stream.set_nodelay(true);
    let mut conn = Connection::new(stream, ctx.config.limits(), 16 * 1024);
    let timeout = ctx.config.command_timeout();
    let data = match conn.request(&Command::Connect, timeout).await {
        Ok(Reply::Command(r)) => match r.channel_data() {
            Some(d) => d,
            None => {
                warn!(peer = %conn.peer, reply = %r.text(), "connect reply without channel data; closing");
                return;
            }
        },
        Ok(other) => {
            warn!(peer = %conn.peer, reply = %other.text(), "unexpected reply to connect; closing");
            return;
        }
        Err(e) => {
            warn!(peer = %conn.peer, error = %e, "no channel data from FreeSWITCH; closing");
            return;
        }
    };
    let info = CallInfo::from_channel_data(&data, &ctx.config.party_variables());
    let span = info_span!(
        "call",
        call_id = %printable(&info.call_id),
        account_id = %printable(info.account_id.as_deref().unwrap_or("-"))
    );
    let session = Session {
        conn,
        ctx,
        info,
        recordings: Vec::new(),
        hangup_complete: false,
        closed: false,
        grace_until: None,
        disk: Vec::new(),
        bridge_planned: false,
    };
    session.drive().instrument(span).await
}

/// Tracks an orphaned recording's file until it stops growing.
struct DiskWatch {
    idx: usize,
    last_size: Option<u64>,
    stable_polls: u32,
    give_up: Instant,
}

struct Session {
    conn: Connection,
    ctx: Arc<SessionContext>,
    info: CallInfo,
    recordings: Vec<Recording>,
    hangup_complete: bool,
    closed: bool,
    grace_until: Option<Instant>,
    disk: Vec<DiskWatch>,
    /// The bridge target has been planned for (once per call).
    bridge_planned: bool,
}

/// Destination numbers are put in a `transfer` argument, which FreeSWITCH splits on spaces.
fn safe_destination(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 128
        && d.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+*#._@:-".contains(c))
}

impl Session {
    fn timeout(&self) -> Duration {
        self.ctx.config.command_timeout()
    }

    async fn drive(mut self) {
        let i = &self.info;
        info!(
            caller = %printable(&i.caller_id_number),
            caller_name = %printable(&i.caller_id_name),
            destination = %printable(&i.destination),
            user_id = %printable(i.user_id.as_deref().unwrap_or("-")),
            device_id = %printable(i.device_id.as_deref().unwrap_or("-")),
            "call accepted"
        );
        let subscriptions = [
            Command::MyEvents {
                uuid: None,
                format: Some(EventFormat::Json),
            },
            Command::Linger(None),
            Command::Event {
                format: EventFormat::Json,
                events: vec!["RECORD_START".into(), "RECORD_STOP".into()],
            },
        ];
        let mut pending = Vec::new();
        for c in &subscriptions {
            match self.conn.send(c).await {
                Ok(rx) => pending.push(rx),
                Err(e) => {
                    warn!(error = %e, "cannot subscribe; closing so the dialplan's fallback routes the call");
                    return;
                }
            }
        }
        let plan_timeout = Duration::from_millis(self.ctx.config.plan_timeout_ms);
        let planner = self.ctx.planner.clone();
        let plan = match tokio::time::timeout(plan_timeout, planner.plan(&self.info)).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                error!(error = %e, "recording rules unavailable: call not recorded");
                Default::default()
            }
            Err(_) => {
                error!(
                    timeout_ms = plan_timeout.as_millis() as u64,
                    "recording rules too slow: call not recorded"
                );
                Default::default()
            }
        };
        self.identified(&plan);
        let plan = plan.recordings;
        for rx in pending {
            match wait_reply(rx, self.timeout()).await {
                Ok(r) if r.is_ok() => {}
                Ok(r) => {
                    warn!(reply = %r.text(), "subscription refused (is the socket opened with `async full`?)")
                }
                Err(e) => {
                    warn!(error = %e, "no reply to subscription; closing so the dialplan's fallback routes the call");
                    return;
                }
            }
        }
        if plan.is_empty() {
            info!("no recording: no rule matched");
        }
        let dir = paths::recording_dir(
            &self.ctx.config.data_dir,
            self.info.account_id.as_deref(),
            self.info.started_us,
        );
        for p in plan {
            let rec = Recording::new(p, &dir);
            info!(
                recording_id = %rec.id,
                reason = %rec.reason,
                trigger = rec.settings.trigger().as_str(),
                format = rec.settings.format.ext(),
                "rule matched"
            );
            self.recordings.push(rec);
        }
        let answered = self.info.answered;
        for idx in 0..self.recordings.len() {
            let t = self.recordings[idx].settings.trigger();
            if t == Trigger::Immediately || (t == Trigger::OnAnswer && answered) {
                self.start(idx).await;
            }
        }
        if !self.hand_back().await {
            return;
        }
        self.follow().await;
    }

    /// Takes the parties the rules identified where the channel variables were silent.
    fn identified(&mut self, plan: &crate::rules::Plan) {
        if self.info.account_id.is_none() {
            if let Some(a) = &plan.account_id {
                tracing::Span::current().record("account_id", printable(a).as_ref());
                self.info.account_id = Some(a.clone());
            }
        }
        if self.info.user_id.is_none() {
            self.info.user_id = plan.user_id.clone();
        }
        if self.info.device_id.is_none() {
            self.info.device_id = plan.device_id.clone();
        }
    }

    /// Sends the call on to the continuation context. False when the connection is unusable.
    async fn hand_back(&mut self) -> bool {
        let dest = self.info.destination.clone();
        if !safe_destination(&dest) {
            warn!(
                destination = %dest.escape_debug(),
                "destination has characters unsafe in a transfer; closing the socket so the dialplan's fallback routes the call"
            );
            self.abandon_all("destination unsafe to hand back").await;
            return false;
        }
        let arg = format!("{dest} XML {}", self.ctx.config.continue_context);
        let cmd = Command::SendMsg(SendMsg::execute("transfer", Some(arg.clone())));
        match self.conn.request(&cmd, self.timeout()).await {
            Ok(r) if r.is_ok() => {
                info!(to = %arg, "call handed back to the dialplan");
                true
            }
            // A call left parked in the socket would wait forever: close, and FreeSWITCH's
            // dialplan goes on with its fallback.
            Ok(r) => {
                error!(reply = %r.text(), "transfer refused; closing the socket so the dialplan's fallback routes the call");
                self.abandon_all("the call could not be handed back").await;
                false
            }
            Err(e) => {
                error!(error = %e, "transfer not acknowledged; closing the socket so the dialplan's fallback routes the call");
                self.abandon_all("the call could not be handed back").await;
                false
            }
        }
    }

    /// Starts recording `idx` with `uuid_record`.
    async fn start(&mut self, idx: usize) {
        let call_uuid = self.info.call_id.clone();
        let cmd = match self.recordings[idx].start_command(&call_uuid) {
            Ok(c) => c,
            Err(e) => {
                self.fail(idx, format!("cannot build command: {e}"));
                return;
            }
        };
        if let Some(parent) = self.recordings[idx].path.parent() {
            if let Err(e) = tokio::fs::create_dir_all(parent).await {
                // FreeSWITCH creates missing directories itself; this is only a warning.
                warn!(error = %e, dir = %parent.display(), "cannot create recording directory");
            }
        }
        self.recordings[idx].state = State::Starting;
        match self.conn.request(&cmd, self.timeout()).await {
            Ok(r) if r.is_ok() => info!(
                recording_id = %self.recordings[idx].id,
                path = %self.recordings[idx].path.display(),
                "recording requested"
            ),
            Ok(r) => self.fail(idx, format!("FreeSWITCH refused uuid_record: {}", r.text())),
            Err(e) => self.fail(idx, format!("uuid_record not acknowledged: {e}")),
        }
    }

    fn fail(&mut self, idx: usize, why: String) {
        let rec = &mut self.recordings[idx];
        error!(recording_id = %rec.id, reason = %why, "recording failed");
        metrics::inc(&METRICS.recordings_failed_total);
        rec.state = State::Failed(why);
    }

    fn unfinished(&self) -> usize {
        self.recordings
            .iter()
            .filter(|r| matches!(r.state, State::Starting | State::Recording))
            .count()
    }

    /// Follows the call until it has ended and every recording is accounted for.
    async fn follow(&mut self) {
        let poll = Duration::from_millis(self.ctx.config.disk_poll_ms.max(10));
        loop {
            if (self.hangup_complete || self.closed) && self.unfinished() == 0 {
                break;
            }
            let next_poll = (!self.disk.is_empty()).then(|| Instant::now() + poll);
            let wake = match (self.grace_until, next_poll) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                inc = self.conn.next(), if !self.closed => match inc {
                    Some(Incoming::Event(e)) => self.on_event(e).await,
                    Some(Incoming::Disconnect(d)) => {
                        if d.disposition() == Disposition::Disconnect {
                            self.on_closed(None).await;
                        }
                    }
                    Some(Incoming::Closed(err)) => self.on_closed(err.map(|e| e.to_string())).await,
                    None => self.on_closed(None).await,
                },
                _ = sleep_opt(wake) => self.on_timer().await,
                _ = self.ctx.abort.cancelled() => {
                    warn!(unfinished = self.unfinished(), "shutdown deadline: finishing recordings from disk");
                    self.finish_orphans_now().await;
                    break;
                }
            }
        }
        if !self.closed {
            // Everything is accounted for: let FreeSWITCH close the lingering socket.
            if let Ok(rx) = self.conn.send(&Command::Exit).await {
                let _ = wait_reply(rx, Duration::from_secs(2)).await;
            }
            let drain = async { while self.conn.next().await.is_some() {} };
            let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
        }
        info!(recordings = self.recordings.len(), "call finished");
    }

    async fn on_event(&mut self, e: Event) {
        let Some(name) = e.name() else { return };
        match name {
            EventName::ChannelAnswer => self.start_waiting(Trigger::OnAnswer).await,
            EventName::ChannelBridge => {
                self.start_waiting(Trigger::OnAnswer).await;
                self.start_waiting(Trigger::OnBridge).await;
                if let Some(target) = e.get("Other-Leg-Destination-Number") {
                    let target = target.into_owned();
                    self.plan_bridge_target(target).await;
                }
            }
            EventName::RecordStart => {
                if let Some(idx) = self.find(&e) {
                    let rec = &mut self.recordings[idx];
                    rec.state = State::Recording;
                    rec.started_us = e.timestamp_us();
                    info!(recording_id = %rec.id, "recording started");
                    metrics::inc(&METRICS.recordings_started_total);
                }
            }
            EventName::RecordStop => {
                if let Some(idx) = self.find(&e) {
                    let stop = StopInfo {
                        record_ms: e
                            .variable("record_ms")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0),
                        cause: e
                            .record_completion_cause()
                            .map(|c| c.into_owned())
                            .unwrap_or_else(|| "none".into()),
                        discarded_by_freeswitch: e.variable("RECORD_DISCARDED").as_deref()
                            == Some("true"),
                        stopped_us: e.timestamp_us(),
                        from_disk: false,
                    };
                    self.finish(idx, stop).await;
                }
            }
            EventName::ChannelHangupComplete => {
                self.hangup_complete = true;
                let cause = e.hangup_cause().map(|c| c.into_owned()).unwrap_or_default();
                info!(hangup_cause = %printable(&cause), "call hung up");
                for r in &mut self.recordings {
                    if let State::Waiting(t) = r.state {
                        info!(recording_id = %r.id, trigger = t.as_str(), "recording not started: the call ended first");
                        r.state = State::Finished;
                    }
                }
                if self.unfinished() > 0 {
                    self.grace_until = Some(
                        Instant::now()
                            + Duration::from_millis(self.ctx.config.record_stop_grace_ms),
                    );
                }
            }
            _ => {}
        }
    }

    /// The bridge reveals the callee: ask the rules again with it, and start what the callee's
    /// settings add (never a second recording with settings already in use on this leg).
    async fn plan_bridge_target(&mut self, target: String) {
        if target == self.info.destination || self.bridge_planned {
            return;
        }
        self.bridge_planned = true;
        let mut info = self.info.clone();
        info.destination = target.clone();
        let plan_timeout = Duration::from_millis(self.ctx.config.plan_timeout_ms);
        let planner = self.ctx.planner.clone();
        let plan = match tokio::time::timeout(plan_timeout, planner.plan(&info)).await {
            Ok(Ok(p)) => p.recordings,
            Ok(Err(e)) => {
                error!(error = %e, "recording rules unavailable for the bridge target");
                return;
            }
            Err(_) => {
                error!("recording rules too slow for the bridge target");
                return;
            }
        };
        let dir = paths::recording_dir(
            &self.ctx.config.data_dir,
            self.info.account_id.as_deref(),
            self.info.started_us,
        );
        for p in plan {
            if self
                .recordings
                .iter()
                .any(|r| r.settings.same_recording(&p.settings))
            {
                continue;
            }
            let rec = Recording::new(p, &dir);
            info!(
                recording_id = %rec.id,
                reason = %rec.reason,
                bridge_target = %printable(&target),
                "rule matched for the bridged callee"
            );
            self.recordings.push(rec);
            let idx = self.recordings.len() - 1;
            self.start(idx).await;
        }
    }

    async fn start_waiting(&mut self, trigger: Trigger) {
        for idx in 0..self.recordings.len() {
            if self.recordings[idx].state == State::Waiting(trigger) {
                self.start(idx).await;
            }
        }
    }

    /// The recording a RECORD_START/STOP is about: by our id variable, else by path.
    fn find(&self, e: &Event) -> Option<usize> {
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

    async fn on_closed(&mut self, err: Option<String>) {
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
        if self.unfinished() == 0 {
            return;
        }
        // FreeSWITCH keeps recording until the call ends; watch the files instead.
        let max_wait = |r: &Recording| Duration::from_secs(r.settings.time_limit as u64 + 60);
        for idx in 0..self.recordings.len() {
            if matches!(
                self.recordings[idx].state,
                State::Starting | State::Recording
            ) {
                warn!(recording_id = %self.recordings[idx].id, "RECORD_STOP will not arrive; watching the file on disk");
                self.disk.push(DiskWatch {
                    idx,
                    last_size: None,
                    stable_polls: 0,
                    give_up: Instant::now() + max_wait(&self.recordings[idx]),
                });
            }
        }
    }

    async fn on_timer(&mut self) {
        if let Some(t) = self.grace_until {
            if Instant::now() >= t {
                self.grace_until = None;
                for idx in 0..self.recordings.len() {
                    if matches!(
                        self.recordings[idx].state,
                        State::Starting | State::Recording
                    ) {
                        warn!(
                            recording_id = %self.recordings[idx].id,
                            grace_ms = self.ctx.config.record_stop_grace_ms,
                            "no RECORD_STOP after hangup; finishing from the file on disk"
                        );
                        self.finish_from_disk(idx, "hangup without RECORD_STOP")
                            .await;
                    }
                }
            }
        }
        let mut watches = std::mem::take(&mut self.disk);
        let mut keep = Vec::new();
        for mut w in watches.drain(..) {
            if !matches!(
                self.recordings[w.idx].state,
                State::Starting | State::Recording
            ) {
                continue;
            }
            let size = tokio::fs::metadata(&self.recordings[w.idx].path)
                .await
                .ok()
                .map(|m| m.len());
            if size.is_some() && size == w.last_size {
                w.stable_polls += 1;
            } else {
                w.stable_polls = 0;
            }
            w.last_size = size;
            if w.stable_polls >= 3 {
                self.finish_from_disk(w.idx, "connection lost; file stopped growing")
                    .await;
            } else if Instant::now() >= w.give_up {
                let idx = w.idx;
                self.fail(idx, "connection lost and the file never settled".into());
            } else {
                keep.push(w);
            }
        }
        self.disk = keep;
    }

    async fn finish_orphans_now(&mut self) {
        for idx in 0..self.recordings.len() {
            if matches!(
                self.recordings[idx].state,
                State::Starting | State::Recording
            ) {
                self.finish_from_disk(idx, "shutdown before RECORD_STOP")
                    .await;
            }
        }
    }

    async fn finish_from_disk(&mut self, idx: usize, cause: &str) {
        let rec = &self.recordings[idx];
        let path = rec.path.clone();
        let format = rec.settings.format;
        let ms = tokio::task::spawn_blocking(move || recorder::measure_file(&path, format))
            .await
            .ok()
            .flatten();
        let stop = StopInfo {
            record_ms: ms.unwrap_or(0),
            cause: cause.to_string(),
            discarded_by_freeswitch: false,
            stopped_us: None,
            from_disk: true,
        };
        self.finish(idx, stop).await;
    }

    /// A recording has ended: keep it (hand it to delivery) or discard it, and say so.
    async fn finish(&mut self, idx: usize, stop: StopInfo) {
        let rec = self.recordings[idx].clone();
        if rec.state == State::Finished {
            return;
        }
        self.recordings[idx].state = State::Finished;
        info!(
            recording_id = %rec.id,
            record_ms = stop.record_ms,
            cause = %stop.cause,
            from_disk = stop.from_disk,
            "recording stopped"
        );
        let size = tokio::fs::metadata(&rec.path).await.ok().map(|m| m.len());
        if let Some(reason) = recorder::discard_reason(&rec, &stop, size.is_some()) {
            if size.is_some() {
                if let Err(e) = tokio::fs::remove_file(&rec.path).await {
                    error!(recording_id = %rec.id, error = %e, "cannot delete discarded recording");
                }
            }
            info!(recording_id = %rec.id, reason = %reason, "recording discarded");
            metrics::inc(&METRICS.recordings_discarded_total);
            return;
        }
        let i = &self.info;
        let finished = FinishedRecording {
            recording_id: rec.id.clone(),
            call_id: i.call_id.clone(),
            account_id: i.account_id.clone(),
            user_id: i.user_id.clone(),
            device_id: i.device_id.clone(),
            caller_id_name: i.caller_id_name.clone(),
            caller_id_number: i.caller_id_number.clone(),
            callee_number: i.destination.clone(),
            callee_name: i.callee_id_name.clone(),
            direction: i.direction.clone(),
            interaction_id: i.interaction_id.clone(),
            start_us: rec.started_us.unwrap_or(i.started_us),
            duration_ms: stop.record_ms,
            format: rec.settings.format,
            sample_rate: rec.settings.record_sample_rate,
            stereo: rec.settings.record_stereo,
            file_path: rec.path_str(),
            size: size.unwrap_or(0),
            destinations: rec.destinations.clone(),
            keep_local: rec.keep_local,
            origin: rec.reason.clone(),
            completion_cause: stop.cause.clone(),
            sequence: idx as u32,
        };
        match self.ctx.delivery.accept(finished).await {
            Ok(()) => {
                info!(recording_id = %rec.id, "recording kept");
                metrics::inc(&METRICS.recordings_kept_total);
            }
            Err(e) => error!(
                recording_id = %rec.id,
                error = %e,
                path = %rec.path.display(),
                "recording kept on disk but delivery could not take it"
            ),
        }
    }

    /// The call could not be followed at all: say what happens to each planned recording.
    async fn abandon_all(&mut self, why: &str) {
        for r in &mut self.recordings {
            if matches!(r.state, State::Waiting(_)) {
                info!(recording_id = %r.id, reason = why, "recording not started");
                r.state = State::Finished;
            }
        }
        self.on_closed(None).await;
        self.conn.shutdown().await;
        let poll = Duration::from_millis(self.ctx.config.disk_poll_ms.max(10));
        while !self.disk.is_empty() {
            tokio::time::sleep(poll).await;
            self.on_timer().await;
        }
    }
}

async fn sleep_opt(until: Option<Instant>) {
    match until {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        for ok in ["1000", "+15551234567", "*97", "user@example.com", "a.b-c_d"] {
            assert!(safe_destination(ok), "{ok}");
        }
        for bad in ["", "1000 XML evil", "1000\nexit", "a'b", "${x}"] {
            assert!(!safe_destination(bad), "{bad}");
        }
    }
}
