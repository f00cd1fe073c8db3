//! Callflows: [`FlowRun`], a sans-IO machine that runs one callflow a module at a time, and the
//! session's room that acts on what it asks for.
//!
//! The machine knows the flow (modules, children, the devices `device`/`user` ring) and where
//! it is; it knows nothing of sockets, recordings or the call's state. [`FlowRun::next_step`]
//! says what is next: run an application (whose CHANNEL_EXECUTE_COMPLETE the session reports
//! with [`FlowRun::completed`]), or a module only the session can carry out (start or stop a
//! recording, record the caller, hand the call back), or that it waits, or that it cannot go on.
//!
//! Invariants: one application in flight; a flow that runs out of modules hangs up, as Kazoo's
//! does; a module that cannot run hands the call back to the dialplan (never left parked); once
//! the flow has handed the call on (dialplan, hangup) it runs nothing more.

use super::*;

/// The tone played before `record_caller` records.
pub const BEEP: &str = "tone_stream://%(500,0,800)";
/// `record`'s silence detection: energy threshold and seconds of silence that end it.
pub const SILENCE_THRESH: u32 = 200;
pub const SILENCE_HITS: u32 = 5;

/// An application the flow runs, with the recording it begins (the `record` application).
pub(super) type App = (String, String, Option<RecIdx>);

/// A callflow running on the call, one module at a time.
pub(super) struct FlowRun {
    id: String,
    /// The module to run after the current one.
    next: Option<Flow>,
    /// Applications of the current module still to run, in order.
    apps: VecDeque<App>,
    /// The application run whose CHANNEL_EXECUTE_COMPLETE the flow waits for.
    waiting: Option<String>,
    /// Recordings the flow's `record_call start` made (what `record_call stop` stops).
    started: Vec<RecIdx>,
    /// The devices `device`/`user` modules ring (resolved by the planner).
    endpoints: std::collections::BTreeMap<String, Vec<crate::callflow::Endpoint>>,
    /// The flow has handed the call on (dialplan, hangup): nothing more to run.
    over: bool,
}

/// What the flow needs next.
#[derive(Debug)]
pub(super) enum Step {
    /// Nothing until an application completes (or the flow is over).
    Wait,
    /// Run this application; tell the flow its `Event-UUID` with [`FlowRun::running`].
    Execute(App),
    /// `record_call start` with these settings.
    RecordStart(crate::rules::model::Params),
    /// `record_call stop`: stop what this flow started.
    RecordStop,
    /// `record_caller`.
    RecordCaller(RecordCaller),
    /// `dialplan`: hand the call back (to `extension` or the destination, in `context` or the
    /// call's own).
    HandBack {
        extension: Option<String>,
        context: Option<String>,
    },
    /// The flow cannot go on: why.
    Failed(String),
}

impl FlowRun {
    pub(super) fn new(
        id: String,
        flow: Flow,
        endpoints: std::collections::BTreeMap<String, Vec<crate::callflow::Endpoint>>,
    ) -> FlowRun {
        FlowRun {
            id,
            next: Some(flow),
            apps: VecDeque::new(),
            waiting: None,
            started: Vec::new(),
            endpoints,
            over: false,
        }
    }

    pub(super) fn id(&self) -> &str {
        &self.id
    }

    /// The flow has handed the call on; nothing more will run.
    pub(super) fn is_over(&self) -> bool {
        self.over
    }

    /// The application with this `Event-UUID` completed: true when it was the one the flow
    /// waited for.
    pub(super) fn completed(&mut self, app_uuid: Option<&str>) -> bool {
        if app_uuid.is_some() && self.waiting.as_deref() == app_uuid {
            self.waiting = None;
            return true;
        }
        false
    }

    /// The application [`Step::Execute`] asked for was sent with this `Event-UUID`.
    pub(super) fn running(&mut self, app_uuid: String) {
        self.waiting = Some(app_uuid);
    }

    /// Applications the session composed for a module (`record_caller`), run in order.
    pub(super) fn push_apps(&mut self, apps: impl IntoIterator<Item = App>) {
        self.apps.extend(apps);
    }

    /// A recording this flow's `record_call start` made.
    pub(super) fn note_started(&mut self, idx: RecIdx) {
        self.started.push(idx);
    }

    pub(super) fn started(&self) -> &[RecIdx] {
        &self.started
    }

    /// What is next. Modules made only of applications (answer, play, hangup, device, user) are
    /// turned into them here; `bridge_profile` is the sofia profile `route` devices use.
    pub(super) fn next_step(&mut self, bridge_profile: &str) -> Step {
        loop {
            if self.waiting.is_some() {
                return Step::Wait;
            }
            if let Some(app) = self.apps.pop_front() {
                return Step::Execute(app);
            }
            if self.over {
                return Step::Wait;
            }
            let Some(node) = self.next.take() else {
                // A flow that runs out of modules ends the call, as Kazoo's does.
                info!(callflow_id = %self.id, "callflow ended: hanging up");
                self.over = true;
                self.apps
                    .push_back(("hangup".into(), "NORMAL_CLEARING".into(), None));
                continue;
            };
            self.next = node.next().cloned();
            let module_name = node.module.name();
            info!(callflow_id = %self.id, module = module_name, "callflow module");
            match node.module {
                Module::RecordCall {
                    action: RecordAction::Start,
                    params,
                } => return Step::RecordStart(params),
                Module::RecordCall {
                    action: RecordAction::Stop,
                    ..
                } => return Step::RecordStop,
                Module::RecordCaller(rc) => return Step::RecordCaller(rc),
                Module::Answer => self.apps.push_back(("answer".into(), String::new(), None)),
                Module::Play { media } => self.apps.push_back(("playback".into(), media, None)),
                Module::Hangup { cause } => {
                    let cause = cause.unwrap_or_else(|| "NORMAL_CLEARING".into());
                    self.apps.push_back(("hangup".into(), cause, None));
                    self.over = true;
                }
                Module::Dialplan { context, extension } => {
                    self.over = true;
                    return Step::HandBack { extension, context };
                }
                Module::Device { id: target } | Module::User { id: target } => {
                    let key = format!("{module_name}:{target}");
                    let dial = self
                        .endpoints
                        .get(&key)
                        .and_then(|e| crate::callflow::dial_string(e, bridge_profile));
                    match dial {
                        Some(d) => self.apps.push_back(("bridge".into(), d, None)),
                        None => {
                            return Step::Failed(format!(
                                "{key} names no device that can be called"
                            ))
                        }
                    }
                }
            }
        }
    }
}

impl Session {
    /// Runs the callflow until it has to wait (for an application to complete) or is over.
    pub(super) fn advance_flow(&mut self, out: &mut Vec<Action>) {
        loop {
            if self.hangup_complete || self.closed {
                return;
            }
            let profile = self.settings.bridge_profile.clone();
            let Some(run) = self.flow.as_mut() else {
                return;
            };
            let id = run.id().to_string();
            match run.next_step(&profile) {
                Step::Wait => return,
                Step::Execute((app, arg, starts)) => {
                    let app_uuid = (self.ids)();
                    if let Some(run) = self.flow.as_mut() {
                        run.running(app_uuid.clone());
                    }
                    self.queue.push_back(Purpose::Execute {
                        app_uuid,
                        app,
                        arg,
                        starts,
                    });
                    self.next_queued(out);
                    return;
                }
                Step::RecordStart(params) => self.flow_record_start(&id, &params, out),
                Step::RecordStop => self.flow_record_stop(out),
                Step::RecordCaller(rc) => self.flow_record_caller(&id, &rc),
                Step::HandBack { extension, context } => {
                    let ext = extension.unwrap_or_else(|| self.info.call.callee_number.clone());
                    self.hand_back(&ext, context.as_deref(), out);
                }
                Step::Failed(why) => {
                    self.flow_failed(&why, None, out);
                    return;
                }
            }
        }
    }

    /// A module could not run: say why and hand the call back to the dialplan, never leaving it
    /// parked in the socket.
    pub(super) fn flow_failed(&mut self, why: &str, starts: Option<RecIdx>, out: &mut Vec<Action>) {
        if let Some(idx) = starts {
            self.fail(idx, why.to_string(), out);
            out.push(Action::Forget(self.recordings[idx].id.clone()));
        }
        let Some(run) = self.flow.take() else { return };
        error!(callflow_id = %run.id(), reason = %why, "callflow cannot go on; handing the call back to the dialplan");
        if self.hangup_complete || self.closed {
            return;
        }
        let dest = self.info.call.callee_number.clone();
        self.hand_back(&dest, None, out);
    }

    /// `record_call start`: a recording of the call with the module's settings (the same
    /// machinery as rule-made ones), unless the leg already records exactly that.
    pub(super) fn flow_record_start(
        &mut self,
        flow_id: &str,
        params: &crate::rules::model::Params,
        out: &mut Vec<Action>,
    ) {
        let Some(settings) = params.resolve(true) else {
            return;
        };
        let plan = PlannedRecording::new(settings, format!("callflow {flow_id} record_call start"));
        let Some(plan) = self.join_running(plan) else {
            return;
        };
        let t = plan.settings.trigger();
        let idx = self.add_planned(plan);
        if let Some(run) = self.flow.as_mut() {
            run.note_started(idx);
        }
        if t == Trigger::Immediately || (t == Trigger::OnAnswer && self.answered) {
            self.queue.push_back(Purpose::Start(idx));
            self.next_queued(out);
        }
    }

    /// `record_call stop`: stops what this flow's `record_call start` began.
    pub(super) fn flow_record_stop(&mut self, out: &mut Vec<Action>) {
        let started = self
            .flow
            .as_ref()
            .map(|r| r.started().to_vec())
            .unwrap_or_default();
        let mut stopped = 0;
        for idx in started {
            match self.recordings[idx].state {
                State::Starting | State::Recording { .. } => {
                    self.queue.push_back(Purpose::Stop(idx));
                    stopped += 1;
                }
                State::Waiting(_) => {
                    info!(recording_id = %self.recordings[idx].id, "recording not started: stopped by the callflow first");
                    self.recordings[idx].state = State::Finished;
                }
                _ => {}
            }
        }
        if stopped == 0 {
            info!("record_call stop: no recording of this callflow is running");
        }
        self.next_queued(out);
    }

    /// `record_caller`: answer if needed, beep, then record the caller with the `record`
    /// application (ends on `#`, on silence, on the time limit or on hangup).
    pub(super) fn flow_record_caller(&mut self, flow_id: &str, rc: &RecordCaller) {
        let settings = RecordCall {
            format: rc.format.unwrap_or_default(),
            time_limit: rc.time_limit(),
            url: rc.url.as_ref().map(|u| u.as_str().to_string()),
            url_by_account: rc.url.as_ref().is_some_and(|u| u.by_account()),
            method: rc.method.unwrap_or_default(),
            ..RecordCall::default()
        };
        let plan = PlannedRecording::new(settings, format!("callflow {flow_id} record_caller"));
        let mut rec = Recording::with_id((self.ids)(), plan, &self.dir());
        rec.kind = RecordingKind::Caller;
        info!(recording_id = %rec.id, reason = %rec.reason, format = rec.settings.format.ext(), "rule matched");
        let arg = format!(
            "{} {} {SILENCE_THRESH} {SILENCE_HITS}",
            rec.path_str(),
            rec.settings.time_limit
        );
        self.recordings.push(rec);
        let idx = self.recordings.len() - 1;
        let answered = self.answered;
        if let Some(run) = self.flow.as_mut() {
            let answer = (!answered).then(|| ("answer".to_string(), String::new(), None));
            run.push_apps(answer.into_iter().chain([
                ("set".into(), "playback_terminators=#".into(), None),
                ("playback".into(), BEEP.into(), None),
                ("record".into(), arg, Some(idx)),
            ]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(flow: serde_json::Value) -> FlowRun {
        let flow = crate::callflow::parse_flow(&flow, "flow").expect("a valid flow");
        FlowRun::new("cf-1".into(), flow, Default::default())
    }

    fn app(step: Step) -> String {
        match step {
            Step::Execute((app, arg, _)) => format!("{app} {arg}").trim_end().to_string(),
            other => panic!("expected an application, got {other:?}"),
        }
    }

    #[test]
    fn applications_run_one_at_a_time_and_a_flow_that_runs_out_hangs_up() {
        let mut f = run(serde_json::json!({"module": "answer", "children": {"_": {
            "module": "play", "data": {"media": "tone_stream://%(100,0,440)"}}}}));
        assert_eq!(app(f.next_step("p")), "answer");
        f.running("a-1".into());
        assert!(matches!(f.next_step("p"), Step::Wait), "waits for answer");
        assert!(
            !f.completed(Some("other")),
            "another application's completion"
        );
        assert!(f.completed(Some("a-1")));
        assert_eq!(app(f.next_step("p")), "playback tone_stream://%(100,0,440)");
        f.running("a-2".into());
        assert!(f.completed(Some("a-2")));
        assert_eq!(app(f.next_step("p")), "hangup NORMAL_CLEARING");
        assert!(f.is_over());
    }

    #[test]
    fn session_modules_come_back_as_steps_and_dialplan_ends_the_flow() {
        let mut f = run(
            serde_json::json!({"module": "record_call", "data": {"action": "start"},
            "children": {"_": {"module": "dialplan", "data": {"context": "sales"}}}}),
        );
        assert!(matches!(f.next_step("p"), Step::RecordStart(_)));
        match f.next_step("p") {
            Step::HandBack { extension, context } => {
                assert_eq!((extension, context.as_deref()), (None, Some("sales")))
            }
            other => panic!("{other:?}"),
        }
        assert!(f.is_over());
        assert!(matches!(f.next_step("p"), Step::Wait));
    }

    #[test]
    fn a_device_without_an_endpoint_is_a_failure_not_a_bridge() {
        let mut f = run(serde_json::json!({"module": "device", "data": {"id": "dev-9"}}));
        assert!(matches!(f.next_step("p"), Step::Failed(why) if why.contains("device:dev-9")));
    }
}
