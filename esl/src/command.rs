//! Commands callrec sends to FreeSWITCH, and their exact encoding.
//!
//! Invariant: `encode` never writes a line break that the command did not intend; any value that
//! would end a line or a header block early is rejected with a [`CommandError`] instead.

use bytes::{BufMut, BytesMut};

use super::error::CommandError;

/// Event serialization format for `event` / `myevents`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFormat {
    Plain,
    Json,
    Xml,
}

impl EventFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            EventFormat::Plain => "plain",
            EventFormat::Json => "json",
            EventFormat::Xml => "xml",
        }
    }
}

/// What a `sendmsg` asks the channel to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallCommand {
    /// Run a dialplan application.
    Execute {
        app: String,
        arg: Option<String>,
        loops: Option<u32>,
    },
    /// Hang the channel up with a cause such as `NORMAL_CLEARING`.
    Hangup { cause: String },
    /// Send the channel's media to a UDP/TCP peer.
    Unicast {
        local_ip: String,
        local_port: u16,
        remote_ip: String,
        remote_port: u16,
        transport: String,
        flags: Option<String>,
    },
}

/// A `sendmsg` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendMsg {
    /// Target channel; `None` means the socket's own channel (outbound mode).
    pub uuid: Option<String>,
    pub command: CallCommand,
    /// `event-lock: true`: run this before any later message is processed.
    pub event_lock: bool,
    /// `Event-UUID`: echoed back as `Application-UUID` on the app's EXECUTE events.
    pub event_uuid: Option<String>,
}

impl SendMsg {
    pub fn execute(app: impl Into<String>, arg: Option<String>) -> SendMsg {
        SendMsg {
            uuid: None,
            command: CallCommand::Execute {
                app: app.into(),
                arg,
                loops: None,
            },
            event_lock: false,
            event_uuid: None,
        }
    }

    pub fn hangup(cause: impl Into<String>) -> SendMsg {
        SendMsg {
            uuid: None,
            command: CallCommand::Hangup {
                cause: cause.into(),
            },
            event_lock: false,
            event_uuid: None,
        }
    }
}

/// Every command callrec can send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Auth {
        password: String,
    },
    Connect,
    /// `myevents [uuid] [format]`.
    MyEvents {
        uuid: Option<String>,
        format: Option<EventFormat>,
    },
    /// `linger [seconds]`.
    Linger(Option<u32>),
    NoLinger,
    Event {
        format: EventFormat,
        events: Vec<String>,
    },
    NixEvent(Vec<String>),
    NoEvents,
    Filter {
        header: String,
        value: String,
    },
    FilterDelete {
        header: String,
        value: Option<String>,
    },
    Api(String),
    /// `bgapi` with an optional caller-chosen `Job-UUID`.
    BgApi {
        command: String,
        job_uuid: Option<String>,
    },
    SendMsg(SendMsg),
    GetVar(String),
    Resume,
    Exit,
}

fn line(field: &'static str, v: &str) -> Result<(), CommandError> {
    if v.contains(['\n', '\r']) {
        return Err(CommandError::LineBreak { field });
    }
    Ok(())
}

fn word(field: &'static str, v: &str) -> Result<(), CommandError> {
    if v.is_empty() {
        return Err(CommandError::Empty { field });
    }
    line(field, v)?;
    if v.contains([' ', '\t']) {
        return Err(CommandError::Space { field });
    }
    Ok(())
}

impl Command {
    /// Checks that every value fits on its line.
    pub fn validate(&self) -> Result<(), CommandError> {
        match self {
            Command::Auth { password } => word("password", password),
            Command::Connect
            | Command::NoLinger
            | Command::NoEvents
            | Command::Resume
            | Command::Exit
            | Command::Linger(_) => Ok(()),
            Command::MyEvents { uuid, .. } => uuid.as_deref().map_or(Ok(()), |u| word("uuid", u)),
            Command::Event { events, .. } | Command::NixEvent(events) => {
                if events.is_empty() {
                    return Err(CommandError::Empty { field: "events" });
                }
                events.iter().try_for_each(|e| word("event name", e))
            }
            Command::Filter { header, value } => {
                word("filter header", header)?;
                line("filter value", value)
            }
            Command::FilterDelete { header, value } => {
                word("filter header", header)?;
                value.as_deref().map_or(Ok(()), |v| line("filter value", v))
            }
            Command::Api(cmd) => {
                if cmd.trim().is_empty() {
                    return Err(CommandError::Empty {
                        field: "api command",
                    });
                }
                line("api command", cmd)
            }
            Command::BgApi { command, job_uuid } => {
                if command.trim().is_empty() {
                    return Err(CommandError::Empty {
                        field: "bgapi command",
                    });
                }
                line("bgapi command", command)?;
                job_uuid.as_deref().map_or(Ok(()), |u| word("Job-UUID", u))
            }
            Command::GetVar(name) => word("variable name", name),
            Command::SendMsg(m) => {
                if let Some(u) = &m.uuid {
                    word("uuid", u)?;
                }
                if let Some(u) = &m.event_uuid {
                    word("Event-UUID", u)?;
                }
                match &m.command {
                    CallCommand::Execute { app, arg, .. } => {
                        word("execute-app-name", app)?;
                        arg.as_deref()
                            .map_or(Ok(()), |a| line("execute-app-arg", a))
                    }
                    CallCommand::Hangup { cause } => word("hangup-cause", cause),
                    CallCommand::Unicast {
                        local_ip,
                        remote_ip,
                        transport,
                        flags,
                        ..
                    } => {
                        word("local-ip", local_ip)?;
                        word("remote-ip", remote_ip)?;
                        word("transport", transport)?;
                        flags.as_deref().map_or(Ok(()), |f| word("flags", f))
                    }
                }
            }
        }
    }

    /// Appends the command's wire form (ending in the blank line) to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), CommandError> {
        self.validate()?;
        let mut put = |s: &str| dst.put_slice(s.as_bytes());
        match self {
            Command::Auth { password } => {
                put("auth ");
                put(password);
            }
            Command::Connect => put("connect"),
            Command::MyEvents { uuid, format } => {
                put("myevents");
                if let Some(u) = uuid {
                    put(" ");
                    put(u);
                }
                if let Some(f) = format {
                    put(" ");
                    put(f.as_str());
                }
            }
            Command::Linger(None) => put("linger"),
            Command::Linger(Some(secs)) => {
                put("linger ");
                put(&secs.to_string());
            }
            Command::NoLinger => put("nolinger"),
            Command::Event { format, events } => {
                put("event ");
                put(format.as_str());
                for e in events {
                    put(" ");
                    put(e);
                }
            }
            Command::NixEvent(events) => {
                put("nixevent");
                for e in events {
                    put(" ");
                    put(e);
                }
            }
            Command::NoEvents => put("noevents"),
            Command::Filter { header, value } => {
                put("filter ");
                put(header);
                put(" ");
                put(value);
            }
            Command::FilterDelete { header, value } => {
                put("filter delete ");
                put(header);
                if let Some(v) = value {
                    put(" ");
                    put(v);
                }
            }
            Command::Api(cmd) => {
                put("api ");
                put(cmd);
            }
            Command::BgApi { command, job_uuid } => {
                put("bgapi ");
                put(command);
                if let Some(j) = job_uuid {
                    put("\nJob-UUID: ");
                    put(j);
                }
            }
            Command::GetVar(name) => {
                put("getvar ");
                put(name);
            }
            Command::Resume => put("resume"),
            Command::Exit => put("exit"),
            Command::SendMsg(m) => {
                put("sendmsg");
                if let Some(u) = &m.uuid {
                    put(" ");
                    put(u);
                }
                match &m.command {
                    CallCommand::Execute { app, arg, loops } => {
                        put("\ncall-command: execute\nexecute-app-name: ");
                        put(app);
                        if let Some(a) = arg {
                            put("\nexecute-app-arg: ");
                            put(a);
                        }
                        if let Some(l) = loops {
                            put("\nloops: ");
                            put(&l.to_string());
                        }
                    }
                    CallCommand::Hangup { cause } => {
                        put("\ncall-command: hangup\nhangup-cause: ");
                        put(cause);
                    }
                    CallCommand::Unicast {
                        local_ip,
                        local_port,
                        remote_ip,
                        remote_port,
                        transport,
                        flags,
                    } => {
                        put("\ncall-command: unicast\nlocal-ip: ");
                        put(local_ip);
                        put("\nlocal-port: ");
                        put(&local_port.to_string());
                        put("\nremote-ip: ");
                        put(remote_ip);
                        put("\nremote-port: ");
                        put(&remote_port.to_string());
                        put("\ntransport: ");
                        put(transport);
                        if let Some(f) = flags {
                            put("\nflags: ");
                            put(f);
                        }
                    }
                }
                if m.event_lock {
                    put("\nevent-lock: true");
                }
                if let Some(u) = &m.event_uuid {
                    put("\nEvent-UUID: ");
                    put(u);
                }
            }
        }
        put("\n\n");
        Ok(())
    }

    pub fn to_bytes(&self) -> Result<bytes::Bytes, CommandError> {
        let mut b = BytesMut::with_capacity(64);
        self.encode(&mut b)?;
        Ok(b.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(c: Command) -> String {
        String::from_utf8(c.to_bytes().unwrap().to_vec()).unwrap()
    }

    #[test]
    fn encodes_as_the_captures_show() {
        assert_eq!(enc(Command::Connect), "connect\n\n");
        assert_eq!(
            enc(Command::MyEvents {
                uuid: None,
                format: None
            }),
            "myevents\n\n"
        );
        assert_eq!(
            enc(Command::MyEvents {
                uuid: None,
                format: Some(EventFormat::Json)
            }),
            "myevents json\n\n"
        );
        assert_eq!(enc(Command::Linger(None)), "linger\n\n");
        assert_eq!(enc(Command::Linger(Some(5))), "linger 5\n\n");
        assert_eq!(
            enc(Command::Event {
                format: EventFormat::Plain,
                events: vec!["ALL".into()]
            }),
            "event plain ALL\n\n"
        );
        assert_eq!(
            enc(Command::Api("uuid_record u start /tmp/a.wav 30".into())),
            "api uuid_record u start /tmp/a.wav 30\n\n"
        );
        assert_eq!(
            enc(Command::BgApi {
                command: "status".into(),
                job_uuid: Some("11111111-2222-3333-4444-555555555555".into())
            }),
            "bgapi status\nJob-UUID: 11111111-2222-3333-4444-555555555555\n\n"
        );
        assert_eq!(
            enc(Command::SendMsg(SendMsg::execute("answer", None))),
            "sendmsg\ncall-command: execute\nexecute-app-name: answer\n\n"
        );
        assert_eq!(
            enc(Command::SendMsg(SendMsg::hangup("NORMAL_CLEARING"))),
            "sendmsg\ncall-command: hangup\nhangup-cause: NORMAL_CLEARING\n\n"
        );
        let mut rec = SendMsg::execute("record", Some("/tmp/x.wav 20 200 3".into()));
        rec.event_lock = true;
        rec.event_uuid = Some("6d1f3a52-0c4e-4b7a-9a51-00000000a001".into());
        assert_eq!(
            enc(Command::SendMsg(rec)),
            "sendmsg\ncall-command: execute\nexecute-app-name: record\nexecute-app-arg: /tmp/x.wav 20 200 3\nevent-lock: true\nEvent-UUID: 6d1f3a52-0c4e-4b7a-9a51-00000000a001\n\n"
        );
        assert_eq!(enc(Command::Exit), "exit\n\n");
        assert_eq!(enc(Command::Resume), "resume\n\n");
        assert_eq!(enc(Command::NoLinger), "nolinger\n\n");
        assert_eq!(
            enc(Command::Filter {
                header: "Unique-ID".into(),
                value: "abc".into()
            }),
            "filter Unique-ID abc\n\n"
        );
        assert_eq!(
            enc(Command::NixEvent(vec!["HEARTBEAT".into()])),
            "nixevent HEARTBEAT\n\n"
        );
    }

    #[test]
    fn rejects_values_that_break_framing() {
        let bad = [
            Command::Api("status\n\nexit".into()),
            Command::Api("  ".into()),
            Command::BgApi {
                command: "status".into(),
                job_uuid: Some("a\nb".into()),
            },
            Command::SendMsg(SendMsg::execute("playback", Some("x\r\ny".into()))),
            Command::SendMsg(SendMsg::execute("play back", None)),
            Command::SendMsg(SendMsg::hangup("")),
            Command::Event {
                format: EventFormat::Json,
                events: vec![],
            },
            Command::Auth {
                password: "a b".into(),
            },
            Command::GetVar("x\n".into()),
        ];
        for c in bad {
            let mut b = BytesMut::new();
            assert!(c.encode(&mut b).is_err(), "{c:?}");
            assert!(b.is_empty(), "nothing written for {c:?}");
        }
    }
}
