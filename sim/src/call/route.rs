//! The channel running its own dialplan (calls [`place`](super::place)d through a
//! [`Dialplan`]): hunting, the applications between sockets, and the `socket` application's
//! park, as FreeSWITCH 1.10's source has them.
//!
//! What the model follows, and where it comes from:
//! - `socket <host:port> async full` (mod_event_socket.c, `socket_function`): a refused
//!   connection returns at once and the next action runs. A connected one parks the channel
//!   (`switch_ivr_park`) until a transfer changes its state, the call hangs up, or the listener
//!   ends with LFLAG_RESUME (the `resume` command) or `socket_resume=true` on the channel: then
//!   `listener_run` sets CS_RESET, the park returns, `socket_function` sets CS_EXECUTE and the
//!   next action of the hunted list runs (including later extensions' actions when the socket's
//!   extension has `continue="true"`). Closed without either, the call stays parked until the
//!   caller hangs up (measured: tests/fixtures/facts/freeswitch-recordings.md).
//! - `socket_function` first waits for the controller's `connect` (LFLAG_CONNECTED): a socket
//!   closed before it leaves the call waiting there until the hangup, resume or not.
//! - The two `socket_resume` traps the source shows, reported in
//!   [`CallReport::resume_hazard`](super::CallReport) and never played as if harmless:
//!   a transfer ending the park while resume is set (`socket_function` then sets CS_EXECUTE
//!   over the transfer's CS_ROUTING: the old list goes on, the transfer is lost), and a socket
//!   closing with resume set after the call has left the park (CS_RESET on a live channel).
//! - `transfer <dest> [XML <context>]` hunts again from the top of the context (the context
//!   must exist, else NO_ROUTE_DESTINATION); `execute_extension` hunts and runs the result
//!   inline, then the rest of the list.
//! - `playback` waits until its tone has played (virtual time), `bridge` until the far end
//!   hangs up ([`CallHandle::unbridge`](super::CallHandle)), `park` until the hangup
//!   (`switch_ivr_play_file`, `switch_ivr_multi_threaded_bridge` and `switch_ivr_park` return
//!   only then); `respond <code>` ends the call with the code's cause.
//!
//! Invariant: at most one `socket` is open per channel; the list runs only while the channel
//! is not parked, bridged or hung up.

use std::collections::VecDeque;

use super::*;

/// The dialplan and where the channel is in it.
pub(super) struct Route {
    dialplan: Arc<Dialplan>,
    /// The hunted actions still to run.
    pending: VecDeque<DialplanAction>,
    /// Hunting is due (a new channel, or a transfer): `(destination, context)`.
    hunt: Option<(String, String)>,
    /// `bridge` or `park` is running.
    waiting: bool,
}

impl Route {
    pub(super) fn new(dialplan: Arc<Dialplan>) -> Route {
        Route {
            dialplan,
            pending: VecDeque::new(),
            hunt: None,
            waiting: false,
        }
    }
}

impl Sim {
    /// Runs the dialplan as far as it goes now: hunts when due, then the next actions until one
    /// waits (socket, bridge, park) or the call ends.
    pub(super) async fn drive_dialplan(&mut self) -> Io {
        loop {
            if self.hung_up {
                return Ok(());
            }
            if self.unpark_pending {
                self.unpark_pending = false;
                self.leave_socket_app("_none_").await?;
            }
            let Some(route) = self.route.as_mut() else {
                return Ok(());
            };
            if let Some((dest, context)) = route.hunt.take() {
                self.hunt(&dest, &context);
                continue;
            }
            if self.parked || route.waiting {
                return Ok(());
            }
            let Some(next) = route.pending.pop_front() else {
                return Ok(());
            };
            self.dialplan_app(next).await?;
        }
    }

    /// Routing a new channel: hunt its context for its destination.
    pub(super) fn route_start(&mut self) {
        let (dest, context) = (self.ch.destination.clone(), self.ch.context.clone());
        if let Some(route) = self.route.as_mut() {
            route.hunt = Some((dest, context));
        }
    }

    fn hunt(&mut self, dest: &str, context: &str) {
        let Some(route) = self.route.as_ref() else {
            return;
        };
        let dialplan = route.dialplan.clone();
        self.ch.destination = dest.to_string();
        self.ch.context = context.to_string();
        let found = dialplan.hunt(context, &|f| self.field_value(f));
        let (matched, actions) = match found {
            Some(x) => x,
            None => (
                vec![],
                vec![DialplanAction {
                    app: "hangup".into(),
                    data: "NO_ROUTE_DESTINATION".into(),
                }],
            ),
        };
        let names: Vec<String> = matched.iter().map(|m| format!("{context}/{m}")).collect();
        self.update(|r| r.hunted.extend(names));
        let actions = if actions.is_empty() {
            // Nothing matched: FreeSWITCH hangs up with NO_ROUTE_DESTINATION.
            vec![DialplanAction {
                app: "hangup".into(),
                data: "NO_ROUTE_DESTINATION".into(),
            }]
        } else {
            actions
        };
        if let Some(route) = self.route.as_mut() {
            route.pending = actions.into();
        }
    }

    /// A condition's field: a caller-profile field by name, or the field with `${…}` expanded.
    fn field_value(&self, field: &str) -> String {
        if field.contains("${") {
            return self.expand(field);
        }
        match field {
            "destination_number" => self.ch.destination.clone(),
            "caller_id_number" | "ani" => self.ch.caller_id_number.clone(),
            "caller_id_name" => self.ch.caller_id_name.clone(),
            "context" => self.ch.context.clone(),
            "network_addr" => "127.0.0.1".into(),
            "username" => self
                .spec
                .sip_auth_username
                .clone()
                .unwrap_or_else(|| self.spec.sip_from_user.clone()),
            other => self.ch.var(other).unwrap_or("").to_string(),
        }
    }

    /// `${name}` replaced by the channel variable (empty when unset), as FreeSWITCH expands an
    /// application's data when it runs.
    fn expand(&self, data: &str) -> String {
        let mut out = String::with_capacity(data.len());
        let mut rest = data;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            match after.find('}') {
                Some(j) => {
                    out.push_str(self.ch.var(&after[..j]).unwrap_or(""));
                    rest = &after[j + 1..];
                }
                None => {
                    out.push_str(&rest[i..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out
    }

    async fn dialplan_app(&mut self, action: DialplanAction) -> Io {
        let data = self.expand(&action.data);
        let app = action.app.as_str();
        let line = if data.is_empty() {
            app.to_string()
        } else {
            format!("{app} {data}")
        };
        self.update(|r| r.dialplan.push(line));
        let app_uuid = uuid_v4();
        match app {
            "socket" => self.socket_app(&data, &app_uuid).await,
            "unset" => {
                self.execute(app, &data, &app_uuid).await?;
                self.ch.vars.retain(|(k, _)| k != &data);
                self.execute_complete(app, &data, &app_uuid, "_none_").await
            }
            "execute_extension" => {
                self.execute(app, &data, &app_uuid).await?;
                let mut parts = data.split_whitespace();
                let ext = parts.next().unwrap_or("").to_string();
                let _ = parts.next();
                let context = parts.next().unwrap_or(&self.ch.context).to_string();
                let Some(route) = self.route.as_ref() else {
                    return Ok(());
                };
                let dialplan = route.dialplan.clone();
                // The extension's hunt sees the same channel with a different destination.
                let saved = std::mem::replace(&mut self.ch.destination, ext);
                let found = dialplan.hunt(&context, &|f| self.field_value(f));
                self.ch.destination = saved;
                if let (Some((_, inline)), Some(route)) = (found, self.route.as_mut()) {
                    for a in inline.into_iter().rev() {
                        route.pending.push_front(a);
                    }
                }
                self.execute_complete(app, &data, &app_uuid, "_none_").await
            }
            "respond" => {
                self.execute(app, &data, &app_uuid).await?;
                let cause = match data.split_whitespace().next().unwrap_or("") {
                    "404" => "UNALLOCATED_NUMBER",
                    "486" => "USER_BUSY",
                    "480" => "NO_USER_RESPONSE",
                    "503" => "NORMAL_TEMPORARY_FAILURE",
                    _ => "NORMAL_CLEARING",
                };
                self.hangup(cause, false).await
            }
            "playback" => {
                if let Some(route) = self.route.as_mut() {
                    route.waiting = true;
                }
                self.run_app(app, &data, &app_uuid).await?;
                // A playback that ends at once (unknown length) has already returned.
                if self.playback.is_none() {
                    self.playback_returned();
                }
                Ok(())
            }
            "bridge" | "park" => {
                if let Some(route) = self.route.as_mut() {
                    route.waiting = true;
                }
                if app == "park" {
                    self.execute(app, &data, &app_uuid).await
                } else {
                    self.run_app(app, &data, &app_uuid).await
                }
            }
            _ => self.run_app(app, &data, &app_uuid).await,
        }
    }

    /// The `socket` application: dial the controller; a refusal returns at once.
    async fn socket_app(&mut self, data: &str, app_uuid: &str) -> Io {
        self.execute("socket", data, app_uuid).await?;
        let target = data.split_whitespace().next().unwrap_or("");
        let connected = match target.parse::<SocketAddr>() {
            Ok(addr) => TcpStream::connect(addr).await.ok(),
            Err(_) => None,
        };
        let Some(stream) = connected else {
            // "Socket Error!": the application returns, the dialplan goes on.
            self.update(|r| r.sockets_refused += 1);
            return self
                .execute_complete("socket", data, app_uuid, "_none_")
                .await;
        };
        let _ = stream.set_nodelay(true);
        let (rd, wr) = stream.into_split();
        self.w = Some(wr);
        self.new_reader = Some(rd);
        self.socket_arg = data.to_string();
        self.resume_flag = false;
        self.connected = false;
        self.sub = Subscriptions::default();
        self.park_countdown = None;
        self.closed = false;
        self.parked = true;
        self.update(|r| {
            r.sockets += 1;
            r.closed = false;
            r.dialled_at = Some(std::time::Instant::now());
        });
        Ok(())
    }

    /// Whether a closing socket resumes the dialplan (LFLAG_RESUME or `socket_resume`).
    fn resume_set(&self) -> bool {
        self.resume_flag
            || self
                .ch
                .var("socket_resume")
                .is_some_and(media_bugs::fs_true)
    }

    /// The end of `listener_run` for this channel's socket.
    pub(super) fn on_listener_end(&mut self) {
        if self.hung_up {
            return;
        }
        if !self.connected {
            // `socket_function` waits for LFLAG_CONNECTED (set by `connect`) before it parks,
            // and nothing else ends that wait but the hangup: resume or not, the call stays.
            self.update(|r| r.stuck_in_park = true);
            return;
        }
        let resume = self.resume_set();
        match (self.parked, resume) {
            (true, true) => {
                // CS_RESET ends the park; the dialplan goes on (see `resumed`).
                if let Some(route) = self.route.as_mut() {
                    route.waiting = false;
                }
                self.unpark_due();
            }
            (true, false) => self.update(|r| r.stuck_in_park = true),
            (false, true) => self.update(|r| {
                r.resume_hazard = Some(
                    "the socket closed with socket_resume set after the call had left the park: \
                     FreeSWITCH sets CS_RESET on the live channel"
                        .into(),
                )
            }),
            (false, false) => {}
        }
    }

    /// The park ends by resume: leave the `socket` application, then the list goes on.
    fn unpark_due(&mut self) {
        self.unpark_pending = true;
    }

    /// Called after a transfer left the park (`was_parked`) or ran from the dialplan.
    pub(super) fn transferred(&mut self, was_parked: bool, dest: &str, context: &str) {
        if self.route.is_none() {
            return;
        }
        if was_parked && self.resume_set() {
            // socket_function: after the park, CS_EXECUTE over the transfer's CS_ROUTING.
            self.update(|r| {
                r.resume_hazard = Some(
                    "a transfer ended the socket's park with socket_resume set: FreeSWITCH sets \
                     CS_EXECUTE over the transfer, and the old extension's next action runs"
                        .into(),
                )
            });
            return;
        }
        if let Some(route) = self.route.as_mut() {
            route.pending.clear();
            route.waiting = false;
            route.hunt = Some((dest.to_string(), context.to_string()));
        }
    }

    /// A dialplan `playback` ended: the next action runs.
    pub(super) fn playback_returned(&mut self) {
        if let Some(route) = self.route.as_mut() {
            route.waiting = false;
        }
    }

    /// The far end of a dialplan `bridge` hung up: the next action runs.
    pub(super) fn bridge_returned(&mut self) {
        if let Some(route) = self.route.as_mut() {
            route.waiting = false;
        }
    }
}
