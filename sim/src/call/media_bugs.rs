//! Recording media bugs: `uuid_record` start/stop/pause/resume/mask/unmask (mod_commands), the
//! `record` application's recording, files written through `media`, RECORD_START/RECORD_STOP
//! with their per-recording variables, time limits on the virtual clock.
//!
//! Pause and mask as FreeSWITCH 1.10.12 does them (tests/fixtures/facts/freeswitch-recordings.md,
//! "Mid-call recording control"): `pause` stops writing frames, so the paused time is absent from
//! the file (and from `record_ms`, which FreeSWITCH computes from the samples written); `mask`
//! writes silence in place of the audio, so the file keeps its length; no event marks either;
//! a path not being recorded answers `-ERR Cannot <action> recording session!`.

use super::*;

pub(super) struct ActiveRecording {
    pub(super) path: String,
    pub(super) start_us: u64,
    /// `uuid_record mask` periods (virtual µs); an open one has no end yet.
    pub(super) masks: Vec<(u64, Option<u64>)>,
    /// `uuid_record pause` periods (virtual µs); an open one has no end yet.
    pub(super) pauses: Vec<(u64, Option<u64>)>,
    pub(super) limit_s: u64,
    pub(super) vars: Vec<(String, String)>,
    pub(super) rate: u32,
    pub(super) channels: u16,
    pub(super) format: Format,
    /// The write buffer, bytes per channel (`pre_buffer_datalen`); 0 writes every frame.
    pub(super) buffer: u64,
    /// The open file (`None` when FreeSWITCH could not create it).
    pub(super) file: Option<media::AudioFile>,
}

impl ActiveRecording {
    /// Opens the file as `switch_core_file_open` does when the recording starts: it exists,
    /// with its header, from the first moment.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn open(
        path: String,
        start_us: u64,
        limit_s: u64,
        vars: Vec<(String, String)>,
        rate: u32,
        channels: u16,
        format: Format,
        buffer: u64,
    ) -> ActiveRecording {
        let file = media::AudioFile::create(&path, format, rate, channels).ok();
        ActiveRecording {
            path,
            start_us,
            masks: Vec::new(),
            pauses: Vec::new(),
            limit_s,
            vars,
            rate,
            channels,
            format,
            buffer,
            file,
        }
    }

    /// Masked periods as ms of the file (paused time is not in it), an open one ending `now_us`.
    fn silent_ms(&self, now_us: u64) -> Vec<(u64, u64)> {
        self.masks
            .iter()
            .map(|(a, b)| {
                let end = b.unwrap_or(now_us).min(now_us);
                (
                    self.file_us(*a, now_us) / 1000,
                    self.file_us(end, now_us) / 1000,
                )
            })
            .collect()
    }

    /// How much of the time from the start to `t` reached the file: all of it but the pauses
    /// (an open one lasting until `now_us`).
    fn file_us(&self, t: u64, now_us: u64) -> u64 {
        let t = t.max(self.start_us);
        let paused: u64 = self
            .pauses
            .iter()
            .map(|(a, b)| {
                let end = b.unwrap_or(now_us).min(t);
                end.saturating_sub((*a).max(self.start_us))
            })
            .sum();
        (t - self.start_us).saturating_sub(paused)
    }

    /// Sample frames of audio FreeSWITCH has written (or buffered) by `now_us`.
    fn produced(&self, now_us: u64) -> u64 {
        self.file_us(now_us, now_us) * self.rate as u64 / 1_000_000
    }

    /// The audio in the file at `now_us`, ms (FreeSWITCH's `record_ms`: samples written).
    pub(super) fn file_ms(&self, now_us: u64) -> u64 {
        self.file_us(now_us, now_us) / 1000
    }

    /// `switch_core_file_write` with a pre-buffer: audio reaches the file only in whole buffers
    /// (`buffer` bytes per channel, so `buffer / 2` sample frames), or frame by frame when the
    /// buffer is off.
    pub(super) fn flush(&mut self, now_us: u64) {
        let produced = self.produced(now_us);
        let chunk = self.buffer / 2;
        let due = produced
            .checked_div(chunk)
            .map_or(produced, |bursts| bursts * chunk);
        let silent = self.silent_ms(now_us);
        if let Some(f) = &mut self.file {
            if f.append_to(due, &silent).is_err() {
                self.file = None;
            }
        }
    }

    /// The recording stops (or its channel closes): the buffer's rest is written and the file
    /// closed. Returns the file size.
    fn close(&mut self, now_us: u64) -> u64 {
        let silent = self.silent_ms(now_us);
        let produced = self.produced(now_us);
        match self.file.take() {
            Some(mut f) => {
                let _ = f.append_to(produced, &silent);
                f.close().unwrap_or(0)
            }
            None => media::write_masked(
                &self.path,
                self.format,
                self.rate,
                self.channels,
                produced * 1000 / self.rate as u64,
                &silent,
            )
            .unwrap_or(0),
        }
    }

    /// What reached the disk, in ms (the process died: the buffer's rest is lost).
    fn on_disk_ms(&self) -> u64 {
        self.file
            .as_ref()
            .map_or(0, |f| f.frames() * 1000 / self.rate as u64)
    }

    /// What the test sees of this recording once it ended after `ms`.
    fn report(&self, ms: u64, cause: &str, app: bool, discarded: bool) -> RecordingReport {
        RecordingReport {
            path: self.path.clone(),
            vars: if app { vec![] } else { self.vars.clone() },
            limit_s: self.limit_s,
            rate: self.rate,
            channels: self.channels,
            ms,
            cause: cause.to_string(),
            app,
            discarded,
        }
    }
}

pub(super) struct AppRecording {
    pub(super) rec: ActiveRecording,
    pub(super) app_uuid: String,
}

pub(super) enum After {
    PreAnswer,
    Started(usize),
    Stop(Vec<usize>, &'static str),
    Kill(String),
}

impl Sim {
    /// `api` commands. Returns the response body and what happens after it is sent.
    pub(super) fn api(&mut self, rest: &str) -> (String, Vec<After>) {
        let (name, args) = rest.split_once(' ').unwrap_or((rest, ""));
        let args: Vec<&str> = args.split(' ').filter(|a| !a.is_empty()).collect();
        let ours = |u: &str| u == self.ch.uuid && !self.hung_up;
        match name {
            "uuid_record" => self.uuid_record(&args),
            "uuid_kill" => {
                if args.first().is_some_and(|u| ours(u)) {
                    let cause = args.get(1).unwrap_or(&"NORMAL_CLEARING").to_string();
                    ("+OK\n".into(), vec![After::Kill(cause)])
                } else {
                    ("-ERR No such channel!\n".into(), vec![])
                }
            }
            "uuid_getvar" => match args.as_slice() {
                [u, var, ..] if ours(u) => {
                    (self.ch.var(var).unwrap_or("_undef_").to_string(), vec![])
                }
                _ => ("-ERR No such channel!\n".into(), vec![]),
            },
            "uuid_setvar" => match args.as_slice() {
                [u, var, value @ ..] if ours(u) => {
                    self.ch.set_var(var, &value.join(" "));
                    ("+OK\n".into(), vec![])
                }
                _ => ("-ERR No such channel!\n".into(), vec![]),
            },
            "uuid_exists" => ((args.first().is_some_and(|u| ours(u))).to_string(), vec![]),
            // mod_commands' uuid_dump: a CHANNEL_DATA event that is created, filled with
            // switch_channel_event_set_data and serialised, never fired (so without the
            // Core-UUID/date/calling headers firing adds).
            "uuid_dump" => match args.as_slice() {
                [] => ("-USAGE: <uuid> [format]\n".into(), vec![]),
                [u, rest @ ..] if ours(u) => {
                    let mut h: wire::Headers = vec![("Event-Name".into(), "CHANNEL_DATA".into())];
                    self.ch.channel_headers(&mut h);
                    let body = match rest.first() {
                        Some(f) if f.eq_ignore_ascii_case("json") => wire::json_object(&h, None),
                        _ => String::from_utf8_lossy(&wire::channel_data(&h)).into_owned(),
                    };
                    (body, vec![])
                }
                _ => ("-ERR No such channel!\n".into(), vec![]),
            },
            "version" => (wire::VERSION.into(), vec![]),
            "status" => (wire::STATUS.into(), vec![]),
            other => (format!("-ERR {other} Command not found!\n"), vec![]),
        }
    }

    pub(super) fn uuid_record(&mut self, args: &[&str]) -> (String, Vec<After>) {
        const USAGE: &str = "-USAGE: <uuid> [start|stop|mask|unmask|pause|resume] <path> [<limit>] [<recording_vars>]\n";
        if args.len() < 3 {
            return (USAGE.into(), vec![]);
        }
        if args[0] != self.ch.uuid || self.hung_up {
            return ("-ERR Cannot locate session!\n".into(), vec![]);
        }
        let path = args[2].to_string();
        match args[1] {
            "start" => {
                let Some(format) = Format::from_path(&path) else {
                    return ("-ERR Cannot record session!\n".into(), vec![]);
                };
                let limit_s = args.get(3).and_then(|l| l.parse().ok()).unwrap_or(0);
                let vars = args
                    .get(4)
                    .map(|v| parse_var_block(&callrec_esl::header::percent_decode(v.as_bytes())))
                    .unwrap_or_default();
                let lookup = |name: &str| {
                    vars.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.clone())
                        .or_else(|| self.ch.var(name).map(str::to_string))
                };
                let rate = lookup("record_sample_rate")
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(8000);
                let stereo = lookup("RECORD_STEREO").is_some_and(|v| is_true(&v));
                // switch_ivr_record_session: a recording variable, else the channel variable; a
                // number is the buffer's size, a true value the default, any other value none.
                let buffer = match lookup("enable_file_write_buffering") {
                    None => media::DEFAULT_WRITE_BUFFER,
                    Some(v) => match v.trim().parse::<i64>() {
                        Ok(n) if n > 0 => n as u64,
                        _ if fs_true(&v) => media::DEFAULT_WRITE_BUFFER,
                        _ => 0,
                    },
                };
                let rec = ActiveRecording::open(
                    path,
                    self.now_us,
                    limit_s,
                    vars,
                    rate,
                    if stereo { 2 } else { 1 },
                    format,
                    buffer,
                );
                let pre_answer = self.ch.answered_us == 0 && self.ch.progress_media_us == 0;
                self.recordings.push(rec);
                let idx = self.recordings.len() - 1;
                let mut after = vec![];
                if pre_answer {
                    after.push(After::PreAnswer);
                }
                after.push(After::Started(idx));
                ("+OK Success\n".into(), after)
            }
            "stop" => {
                let idx: Vec<usize> = if path == "all" {
                    (0..self.recordings.len()).collect()
                } else {
                    self.recordings
                        .iter()
                        .position(|r| r.path == path)
                        .into_iter()
                        .collect()
                };
                if idx.is_empty() {
                    return ("-ERR Cannot stop record session!\n".into(), vec![]);
                }
                (
                    "+OK Success\n".into(),
                    vec![After::Stop(idx, "success-maxtime")],
                )
            }
            action @ ("mask" | "unmask" | "pause" | "resume") => {
                let now = self.now_us;
                // Audio produced so far reaches the buffer as it was (the state changes now).
                self.flush_recordings();
                match self.recordings.iter_mut().find(|r| r.path == path) {
                    Some(r) => {
                        let periods = if matches!(action, "mask" | "unmask") {
                            &mut r.masks
                        } else {
                            &mut r.pauses
                        };
                        let open = periods.last().is_some_and(|m| m.1.is_none());
                        if matches!(action, "mask" | "pause") && !open {
                            periods.push((now, None));
                        } else if matches!(action, "unmask" | "resume") && open {
                            if let Some(m) = periods.last_mut() {
                                m.1 = Some(now);
                            }
                        }
                        ("+OK Success\n".into(), vec![])
                    }
                    None => (format!("-ERR Cannot {action} recording session!\n"), vec![]),
                }
            }
            _ => (USAGE.into(), vec![]),
        }
    }

    pub(super) async fn run_after(&mut self, after: Vec<After>) -> Io {
        for a in after {
            match a {
                After::PreAnswer => {
                    self.ch.progress_media_us = self.now_us;
                    self.ch.answer_state = "early";
                    self.emit(
                        "CHANNEL_PROGRESS_MEDIA",
                        (
                            "switch_channel.c",
                            "switch_channel_perform_mark_pre_answered",
                            3546,
                        ),
                        vec![],
                        vec![],
                        None,
                    )
                    .await?;
                    self.set_callstate("EARLY").await?;
                }
                After::Started(idx) => {
                    let Some(r) = self.recordings.get(idx) else {
                        continue;
                    };
                    let path = r.path.clone();
                    let mut back: Headers = vec![("Record-File-Path".into(), path.clone())];
                    back.extend(
                        r.vars
                            .iter()
                            .map(|(k, v)| (format!("Recording-Variable-{k}"), v.clone())),
                    );
                    self.emit(
                        "RECORD_START",
                        ("switch_ivr_async.c", "record_callback", 1287),
                        vec![],
                        back,
                        None,
                    )
                    .await?;
                    self.emit(
                        "MEDIA_BUG_START",
                        ("switch_core_media_bug.c", "switch_core_media_bug_add", 1028),
                        vec![
                            ("Media-Bug-Function".into(), "session_record".into()),
                            ("Media-Bug-Target".into(), path),
                        ],
                        vec![],
                        None,
                    )
                    .await?;
                }
                After::Stop(mut idx, cause) => {
                    idx.sort_unstable();
                    for i in idx.into_iter().rev() {
                        let r = self.recordings.remove(i);
                        self.finish_recording(r, cause).await?;
                    }
                }
                After::Kill(cause) => self.hangup(&cause, true).await?,
            }
        }
        Ok(())
    }

    /// Closes the file, sets the `record_*` variables and emits RECORD_STOP.
    pub(super) async fn finish_recording(&mut self, mut r: ActiveRecording, cause: &str) -> Io {
        // FreeSWITCH counts the samples written: paused time is not in `record_ms`.
        let ms = r.file_ms(self.now_us);
        let samples = ms * r.rate as u64 / 1000;
        let (cause, discarded, size) = if ms == 0 {
            r.file = None;
            let _ = std::fs::remove_file(&r.path);
            ("empty-file", true, 0)
        } else {
            (cause, false, r.close(self.now_us))
        };
        self.ch.set_var("record_file_size", &size.to_string());
        self.ch.set_var("record_samples", &samples.to_string());
        self.ch.set_var("record_seconds", &(ms / 1000).to_string());
        self.ch.set_var("record_ms", &ms.to_string());
        self.ch.set_var("record_completion_cause", cause);
        if discarded {
            self.ch.set_var("RECORD_DISCARDED", "true");
        }
        let mut back: Headers = vec![("Record-File-Path".into(), r.path.clone())];
        back.extend(
            r.vars
                .iter()
                .map(|(k, v)| (format!("Recording-Variable-{k}"), v.clone())),
        );
        back.push(("Record-Completion-Cause".into(), cause.into()));
        self.emit(
            "RECORD_STOP",
            ("switch_ivr_async.c", "send_record_stop_event", 1184),
            vec![],
            back,
            None,
        )
        .await?;
        self.emit(
            "MEDIA_BUG_STOP",
            (
                "switch_core_media_bug.c",
                "switch_core_media_bug_destroy",
                84,
            ),
            vec![
                ("Media-Bug-Function".into(), "session_record".into()),
                ("Media-Bug-Target".into(), r.path.clone()),
            ],
            vec![],
            None,
        )
        .await?;
        let report = r.report(ms, cause, false, discarded);
        self.update(|rep| rep.recordings.push(report));
        Ok(())
    }

    /// FreeSWITCH's process dies: every file holds what its write buffer had flushed (the
    /// buffer's rest dies with the process, and the WAV header keeps its zero sizes), no event
    /// is sent, the channel is gone.
    pub(super) fn crash(&mut self) {
        self.flush_recordings();
        let mut written = vec![];
        let running = std::mem::take(&mut self.recordings)
            .into_iter()
            .map(|r| (r, false))
            .chain(self.app_record.take().map(|a| (a.rec, true)));
        for (r, app) in running {
            written.push(r.report(r.on_disk_ms(), "", app, false));
        }
        self.hung_up = true;
        self.update(|r| {
            r.crashed = true;
            r.hung_up = true;
            r.recordings.extend(written);
        });
    }

    /// Every running recording's buffer flushed as far as the clock says.
    pub(super) fn flush_recordings(&mut self) {
        let now = self.now_us;
        for r in &mut self.recordings {
            r.flush(now);
        }
        if let Some(a) = &mut self.app_record {
            a.rec.flush(now);
        }
    }

    /// Ends a `record` application recording (limit reached or hangup).
    pub(super) async fn finish_app_recording(&mut self) -> Io {
        let Some(a) = self.app_record.take() else {
            return Ok(());
        };
        let mut r = a.rec;
        let ms = (self.now_us.saturating_sub(r.start_us)) / 1000;
        let size = r.close(self.now_us);
        self.ch.set_var("record_file_size", &size.to_string());
        self.ch.set_var("record_samples", &(ms * 8).to_string());
        self.ch.set_var("record_seconds", &(ms / 1000).to_string());
        self.ch.set_var("record_ms", &ms.to_string());
        self.emit(
            "RECORD_STOP",
            ("switch_ivr_play_say.c", "switch_ivr_record_file_event", 437),
            vec![],
            vec![("Record-File-Path".into(), r.path.clone())],
            None,
        )
        .await?;
        let report = r.report(ms, "", true, false);
        self.update(|rep| rep.recordings.push(report));
        let arg = if r.limit_s > 0 {
            format!("{} {}", r.path, r.limit_s)
        } else {
            r.path.clone()
        };
        self.execute_complete("record", &arg, &a.app_uuid, "_none_")
            .await
    }
}

/// `switch_true`: the words, or a number other than 0.
pub(super) fn fs_true(v: &str) -> bool {
    is_true(v) || v.trim().parse::<i64>().is_ok_and(|n| n != 0)
}

pub(super) fn is_true(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "true" | "yes" | "on" | "1" | "enabled" | "active" | "allow"
    )
}

/// `{a=b,c=d}` as mod_commands parses the 5th `uuid_record` argument.
pub(super) fn parse_var_block(s: &str) -> Vec<(String, String)> {
    let inner = s
        .trim()
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or("");
    inner
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_blocks() {
        assert_eq!(
            parse_var_block("{callrec_recording_id=rec-1,record_sample_rate=16000}"),
            vec![
                ("callrec_recording_id".to_string(), "rec-1".to_string()),
                ("record_sample_rate".to_string(), "16000".to_string())
            ]
        );
        assert!(parse_var_block("nope").is_empty());
    }
}
