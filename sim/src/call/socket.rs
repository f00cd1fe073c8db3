//! The controller's socket: reading commands (the one command parser), subscriptions
//! (`event`, `myevents`, `nixevent`, `noevents`, `filter`, `linger`), replies, and emitting
//! events in the subscribed format.

use super::*;

/// The channel events `myevents` turns on (mod_event_socket.c).
pub(super) const MYEVENTS: &[&str] = &[
    "CHANNEL_ANSWER",
    "CHANNEL_APPLICATION",
    "CHANNEL_BRIDGE",
    "CHANNEL_CREATE",
    "CHANNEL_DATA",
    "CHANNEL_DESTROY",
    "CHANNEL_EXECUTE",
    "CHANNEL_EXECUTE_COMPLETE",
    "CHANNEL_HANGUP",
    "CHANNEL_HANGUP_COMPLETE",
    "CHANNEL_ORIGINATE",
    "CHANNEL_UUID",
    "CHANNEL_OUTGOING",
    "CHANNEL_PARK",
    "CHANNEL_PROGRESS",
    "CHANNEL_PROGRESS_MEDIA",
    "CHANNEL_STATE",
    "CHANNEL_UNBRIDGE",
    "CHANNEL_UNPARK",
    "DETECTED_SPEECH",
    "DTMF",
    "NOTALK",
    "TALK",
];

/// Event names `event` accepts (a subset of switch_event_types_t that matters here).
pub(super) const KNOWN_EVENTS: &[&str] = &[
    "ALL",
    "CUSTOM",
    "CHANNEL_CALLSTATE",
    "RECORD_START",
    "RECORD_STOP",
    "MEDIA_BUG_START",
    "MEDIA_BUG_STOP",
    "BACKGROUND_JOB",
    "PLAYBACK_START",
    "PLAYBACK_STOP",
    "HEARTBEAT",
    "API",
    "PRIVATE_COMMAND",
];

impl Sim {
    pub(super) async fn run(mut self, mut ctl: mpsc::UnboundedReceiver<Control>) {
        let mut reader: Option<BufReader<OwnedReadHalf>> = None;
        let mut ctl_open = true;
        if self.drive_dialplan().await.is_err() {
            self.socket_closed().await;
        }
        // The channel outlives its socket: after the socket closes, the test can still answer,
        // advance and hang up (FreeSWITCH keeps recording a call whose controller is gone).
        loop {
            if let Some(rd) = self.new_reader.take() {
                reader = Some(BufReader::new(rd));
            }
            if self.closed && (self.hung_up || !ctl_open) {
                break;
            }
            let reading = !self.closed && reader.is_some();
            tokio::select! {
                cmd = async {
                    match reader.as_mut() {
                        Some(r) => read_command(r).await,
                        None => std::future::pending().await,
                    }
                }, if reading => match cmd {
                    Ok(Some(cmd)) => {
                        if self.on_command(cmd).await.is_err() {
                            self.socket_closed().await;
                        }
                    }
                    _ => self.socket_closed().await,
                },
                c = ctl.recv(), if ctl_open => match c {
                    Some(c) => {
                        if self.on_control(c).await.is_err() {
                            self.socket_closed().await;
                        }
                    }
                    None => ctl_open = false,
                },
            }
            if self.closed {
                reader = None;
            }
            if self.drive_dialplan().await.is_err() {
                self.socket_closed().await;
            }
        }
        self.socket_closed().await;
        if let Some(sw) = &self.switch {
            sw.unregister(&self.ch.uuid);
        }
    }

    /// The socket is gone (either side closed it). As at the end of mod_event_socket's
    /// `listener_run`: with `resume` sent or `socket_resume` true, a call parked in the socket
    /// goes on with the dialplan; without, it stays parked.
    pub(super) async fn socket_closed(&mut self) {
        if !self.closed {
            self.closed = true;
            if let Some(w) = self.w.as_mut() {
                let _ = w.shutdown().await;
            }
            self.w = None;
            self.update(|r| r.closed_at = Some(std::time::Instant::now()));
            self.on_listener_end();
        }
        self.update(|r| r.closed = true);
    }

    pub(super) fn update(&self, f: impl FnOnce(&mut CallReport)) {
        if let Ok(mut r) = self.report.lock() {
            f(&mut r);
        }
        self.changed.notify_waiters();
    }

    pub(super) async fn send(&mut self, bytes: &[u8]) -> Io {
        if self.closed {
            return Ok(());
        }
        let Some(w) = self.w.as_mut() else {
            return Ok(());
        };
        if w.write_all(bytes).await.is_err() {
            self.socket_closed().await;
        }
        Ok(())
    }

    pub(super) fn subscribed(&self, name: &str) -> bool {
        self.sub.wants(name) && !self.spec.lose_events.iter().any(|l| l == name)
    }

    /// Sends an event if the controller listens for it, and publishes it to the switch's
    /// inbound listeners.
    pub(super) async fn emit(
        &mut self,
        name: &str,
        calling: (&str, &str, u32),
        front: Headers,
        back: Headers,
        body: Option<&str>,
    ) -> Io {
        self.seq += 1;
        let to_socket = self.subscribed(name);
        // A lost event (CallSpec::lose_event) is lost for every listener.
        let to_bus = self.switch.as_ref().is_some_and(|s| s.has_listeners())
            && !self.spec.lose_events.iter().any(|l| l == name);
        if !to_socket && !to_bus {
            return Ok(());
        }
        let mut h = self.ch.event_base(name, calling, self.now_us, self.seq);
        h.extend(front);
        self.ch.channel_headers(&mut h);
        h.extend(back);
        if to_bus {
            if let Some(sw) = &self.switch {
                sw.publish(name, &h, body);
            }
        }
        if !to_socket {
            return Ok(());
        }
        let bytes = self.sub.serialize(&h, body);
        let n = name.to_string();
        self.update(|r| r.events_sent.push(n));
        self.send(&bytes).await
    }

    pub(super) async fn reply(&mut self, text: &str) -> Io {
        self.send(&wire::reply(text)).await
    }

    pub(super) async fn on_command(&mut self, cmd: Command) -> Io {
        let c2 = cmd.clone();
        self.update(|r| r.commands.push(c2));
        if self.faults.hold {
            self.faults.held.push(cmd);
            return Ok(());
        }
        self.process(cmd).await
    }

    pub(super) async fn process(&mut self, cmd: Command) -> Io {
        if self.faults.kill_next {
            self.faults.kill_next = false;
            self.socket_closed().await;
            return Ok(());
        }
        let line = cmd.line.trim_end().to_string();
        let lower = line.to_ascii_lowercase();
        let word = lower.split(' ').next().unwrap_or("").to_string();
        if !self.connected {
            if word == "connect" {
                self.connected = true;
                self.seq += 1;
                let data = self.ch.channel_data(self.now_us, self.seq, self.spec.full);
                return self.send(&wire::channel_data(&data)).await;
            }
            return self.reply("-ERR command not found").await;
        }
        match word.as_str() {
            "connect" => {
                self.seq += 1;
                let data = self.ch.channel_data(self.now_us, self.seq, self.spec.full);
                return self.send(&wire::channel_data(&data)).await;
            }
            "getvar" => {
                let name = line.split_once(' ').map(|x| x.1).unwrap_or("");
                let v = self.ch.var(name).unwrap_or("").to_string();
                let text = if v.is_empty() {
                    "-ERR command not found".to_string()
                } else {
                    v
                };
                self.reply(&text).await?;
            }
            "myevents" => {
                if self.sub.myevents {
                    self.reply("-ERR aready enabled.").await?;
                } else {
                    self.sub.myevents = true;
                    self.sub.events_on = true;
                    self.sub
                        .names
                        .extend(MYEVENTS.iter().map(|s| s.to_string()));
                    if lower.contains("json") {
                        self.sub.format = EventFmt::Json;
                    } else if lower.contains("xml") {
                        self.sub.format = EventFmt::Xml;
                    }
                    self.reply("+OK Events Enabled").await?;
                    self.park_countdown =
                        (self.spec.park_after > 0).then_some(self.spec.park_after);
                    return Ok(());
                }
            }
            "sendmsg" => {
                let target = line[7..].trim();
                if !target.is_empty() && target != self.ch.uuid {
                    self.reply(&format!("-ERR invalid session id [{target}]"))
                        .await?;
                } else {
                    self.reply("+OK").await?;
                    self.park_tick().await?;
                    return self.sendmsg(&cmd).await;
                }
            }
            _ if !self.spec.full => self.reply("-ERR command not found").await?,
            "api" => {
                let rest = line.get(4..).unwrap_or("").to_string();
                let (body, after) = self.api(&rest);
                self.send(&wire::api_response(&body)).await?;
                self.park_tick().await?;
                return self.run_after(after).await;
            }
            "bgapi" => {
                let rest = line.get(6..).unwrap_or("").to_string();
                let job = cmd.job_uuid();
                self.send(&wire::bgapi_reply(&job)).await?;
                let (body, after) = self.api(&rest);
                self.run_after(after).await?;
                let (api_cmd, arg) = rest.split_once(' ').unwrap_or((rest.as_str(), ""));
                let front = vec![
                    ("Job-UUID".into(), job.clone()),
                    ("Job-Command".into(), api_cmd.to_string()),
                    ("Job-Command-Arg".into(), arg.to_string()),
                ];
                return self.emit_job(front, &body).await;
            }
            "linger" => {
                let arg = line.get(7..).map(str::trim).unwrap_or("");
                let secs: i64 = if arg.is_empty() {
                    -1
                } else {
                    arg.parse().unwrap_or(0)
                };
                self.sub.linger = Some(secs);
                if secs == -1 {
                    self.reply("+OK will linger").await?;
                } else {
                    self.reply(&format!("+OK will linger {secs} seconds"))
                        .await?;
                }
            }
            "nolinger" => {
                self.sub.linger = None;
                self.reply("+OK will not linger").await?;
            }
            "event" => {
                let text = self.sub.event_command(&line);
                self.reply(&text).await?;
            }
            "nixevent" => {
                let text = self.sub.nixevent_command(&line);
                self.reply(&text).await?;
            }
            "noevents" => {
                let text = self.sub.noevents_command();
                self.reply(&text).await?;
            }
            "filter" => {
                let mut parts = line.splitn(3, ' ').skip(1);
                let h = parts.next().unwrap_or("");
                let v = parts.next().unwrap_or("");
                self.reply(&format!("+OK filter added. [{h}]=[{v}]"))
                    .await?;
            }
            "resume" => {
                // mod_event_socket.c: LFLAG_RESUME, and the channel variable too.
                self.resume_flag = true;
                self.ch.set_var("socket_resume", "true");
                self.reply("+OK").await?
            }
            "exit" => {
                self.reply("+OK bye").await?;
                let d = wire::disconnect_notice(&self.ch.uuid);
                self.send(&d).await?;
                self.update(|r| r.app_exited = true);
                self.socket_closed().await;
                return Ok(());
            }
            _ => self.reply("-ERR command not found").await?,
        }
        self.park_tick().await
    }

    pub(super) async fn emit_job(&mut self, front: Headers, body: &str) -> Io {
        self.seq += 1;
        if !self.subscribed("BACKGROUND_JOB") {
            return Ok(());
        }
        let mut h = self.ch.event_base(
            "BACKGROUND_JOB",
            ("mod_event_socket.c", "api_exec", 1572),
            self.now_us,
            self.seq,
        );
        // Outbound: the job belongs to the controlled channel.
        let mut front = front;
        front.insert(1, ("Job-Owner-UUID".into(), self.ch.uuid.clone()));
        h.splice(0..0, front);
        let bytes = self.sub.serialize(&h, Some(body));
        self.update(|r| r.events_sent.push("BACKGROUND_JOB".into()));
        self.send(&bytes).await
    }
}

impl Subscriptions {
    /// `event [plain|json|xml] NAME…`: the reply text.
    pub(crate) fn event_command(&mut self, line: &str) -> String {
        let mut keys = 0;
        for (i, tok) in line.split(' ').skip(1).enumerate() {
            let up = tok.to_ascii_uppercase();
            if i == 0 {
                match up.as_str() {
                    "PLAIN" => {
                        self.format = EventFmt::Plain;
                        continue;
                    }
                    "JSON" => {
                        self.format = EventFmt::Json;
                        continue;
                    }
                    "XML" => {
                        self.format = EventFmt::Xml;
                        continue;
                    }
                    _ => {}
                }
            }
            if up == "ALL" {
                self.all_events = true;
                keys += 1;
            } else if KNOWN_EVENTS.contains(&up.as_str())
                || MYEVENTS.contains(&up.as_str())
                || up.starts_with("CHANNEL_")
            {
                self.names.insert(up);
                keys += 1;
            }
        }
        if keys == 0 {
            return "-ERR no keywords supplied".into();
        }
        self.events_on = true;
        let f = match self.format {
            EventFmt::Plain => "plain",
            EventFmt::Json => "json",
            EventFmt::Xml => "xml",
        };
        format!("+OK event listener enabled {f}")
    }

    /// `nixevent NAME…`.
    pub(crate) fn nixevent_command(&mut self, line: &str) -> String {
        for tok in line.split(' ').skip(1) {
            self.names.remove(&tok.to_ascii_uppercase());
        }
        "+OK events nixed".into()
    }

    /// `noevents`.
    pub(crate) fn noevents_command(&mut self) -> String {
        if !self.events_on {
            return "-ERR not listening for events".into();
        }
        self.events_on = false;
        self.all_events = false;
        self.names.clear();
        "+OK no longer listening for events".into()
    }

    /// Whether an event of this name goes to this listener (before filters).
    pub(crate) fn wants(&self, name: &str) -> bool {
        self.events_on && (self.all_events || self.names.contains(name))
    }

    /// The event in this listener's format.
    pub(crate) fn serialize(&self, h: &Headers, body: Option<&str>) -> Vec<u8> {
        match self.format {
            EventFmt::Plain => wire::plain_event(h, body),
            EventFmt::Json => wire::json_event(h, body),
            EventFmt::Xml => wire::xml_event(h, body),
        }
    }
}
