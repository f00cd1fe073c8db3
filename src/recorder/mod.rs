//! Recordings of one call: the `uuid_record` commands, their lifecycle, and the files.
//!
//! Lifecycle of a [`Recording`] ([`State`], each state carrying what it needs):
//! `Waiting` (for answer or bridge) → `Starting` (`uuid_record` sent) → `Recording` (RECORD_START
//! seen, with its time) → `Finishing` (RECORD_STOP seen, or the file is being measured because
//! RECORD_STOP will not come; the file is inspected) → `Finished`. When the call can no longer
//! be followed, a running recording is `Watching` its file until it has not grown for its
//! [`quiet_window`] (FreeSWITCH writes in bursts of its write buffer, which callrec pins on
//! every `uuid_record`). `Failed` when FreeSWITCH
//! refused or never acknowledged the command (a RECORD_STOP that still comes finishes it).
//! A finished recording is either kept (handed to delivery) or discarded with a reason.

pub mod paths;
pub mod quiet;
pub mod space;
pub mod wav;

use std::path::PathBuf;
use std::time::Duration;

use crate::esl::{Command, CommandError};
use crate::rules::{RecordCall, Trigger};

pub use quiet::{may_grow_until_us, quiet_window, DEFAULT_WRITE_BUFFER};

/// Where a recording is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Planned; starts on this trigger.
    Waiting(Trigger),
    /// `uuid_record` sent.
    Starting,
    /// RECORD_START seen (`Event-Date-Timestamp`, µs).
    Recording {
        started_us: Option<u64>,
    },
    /// The connection is gone: the file is polled until it has not grown for its quiet
    /// window ([`quiet_window`]).
    Watching {
        started_us: Option<u64>,
        last_size: Option<u64>,
        stable_polls: u32,
        /// Unchanged looks in a row that make the file final.
        quiet_polls: u32,
        polls_left: u32,
        /// FreeSWITCH never acknowledged `uuid_record`: it creates the file at once when it
        /// records, so a file still absent after this many polls means it never started.
        absent_polls_left: Option<u32>,
    },
    /// Ended; the file is being inspected (and, without RECORD_STOP, measured).
    Finishing {
        started_us: Option<u64>,
        stop: StopInfo,
    },
    /// Kept, discarded, or never started: accounted for.
    Finished,
    Failed(String),
}

impl State {
    /// Running in FreeSWITCH, as far as callrec knows: an end is still to come.
    pub fn is_running(&self) -> bool {
        matches!(
            self,
            State::Starting | State::Recording { .. } | State::Watching { .. }
        )
    }

    /// Asked of FreeSWITCH and not yet ended: its RECORD_STOP is still to come.
    pub fn awaits_stop(&self) -> bool {
        matches!(self, State::Starting | State::Recording { .. })
    }

    /// When RECORD_START said it started, if it did.
    pub fn started_us(&self) -> Option<u64> {
        match self {
            State::Recording { started_us }
            | State::Watching { started_us, .. }
            | State::Finishing { started_us, .. } => *started_us,
            _ => None,
        }
    }
}

/// One recording of a call.
#[derive(Debug, Clone)]
pub struct Recording {
    /// callrec's id: the file name and `callrec_recording_id` per-recording variable.
    pub id: String,
    pub settings: RecordCall,
    pub reason: String,
    /// Every destination (rules that differed only in where it goes share one recording).
    pub destinations: Vec<crate::values::Destination>,
    /// Also keep the file in local storage.
    pub keep_local: bool,
    pub path: PathBuf,
    pub state: State,
    /// Of the call (`uuid_record`) or of the caller (the `record` application).
    pub kind: crate::values::RecordingKind,
    /// Pauses asked for through the control API, in order; the last may be in force.
    pub pauses: Vec<crate::values::Pause>,
    /// `stopped` was asked for through the control API and FreeSWITCH took it.
    pub stop_requested: bool,
}

impl Recording {
    /// A planned recording with a fresh id, its file in `dir`.
    pub fn new(plan: crate::rules::PlannedRecording, dir: &std::path::Path) -> Recording {
        Recording::with_id(uuid::Uuid::new_v4().to_string(), plan, dir)
    }

    pub fn with_id(
        id: String,
        plan: crate::rules::PlannedRecording,
        dir: &std::path::Path,
    ) -> Recording {
        let path = dir.join(format!("{id}.{}", plan.settings.format.ext()));
        let state = State::Waiting(plan.settings.trigger());
        Recording {
            id,
            destinations: plan.destinations,
            keep_local: plan.keep_local,
            settings: plan.settings,
            reason: plan.reason,
            path,
            state,
            kind: crate::values::RecordingKind::Call,
            pauses: Vec::new(),
            stop_requested: false,
        }
    }

    /// The pause in force, if any.
    pub fn paused(&self) -> Option<crate::values::PauseBehavior> {
        crate::values::pause_in_force(&self.pauses)
    }

    /// When FreeSWITCH started it (RECORD_START's timestamp, µs), once known.
    pub fn started_us(&self) -> Option<u64> {
        match &self.state {
            State::Recording { started_us }
            | State::Watching { started_us, .. }
            | State::Finishing { started_us, .. } => *started_us,
            _ => None,
        }
    }

    /// Running in FreeSWITCH now (asked or started, not yet ended).
    pub fn is_running(&self) -> bool {
        matches!(self.state, State::Starting | State::Recording { .. })
    }

    /// The status the control API shows: `waiting` (for its trigger), `in-progress`, `paused`,
    /// `stopped` (stop taken, FreeSWITCH finishing the file), `completed` (ended, kept or
    /// discarded), `failed`, or `absent` (FreeSWITCH is writing it but callrec lost the call).
    pub fn status(&self) -> &'static str {
        match &self.state {
            State::Waiting(_) => "waiting",
            State::Starting | State::Recording { .. } if self.stop_requested => "stopped",
            State::Starting | State::Recording { .. } if self.paused().is_some() => "paused",
            State::Starting | State::Recording { .. } => "in-progress",
            State::Watching { .. } => "absent",
            State::Finishing { .. } | State::Finished => "completed",
            State::Failed(_) => "failed",
        }
    }

    /// `uuid_record <uuid> <action> <path>` for `pause`, `resume`, `mask`, `unmask`.
    pub fn control_command(&self, call_uuid: &str, action: &str) -> Command {
        Command::Api(format!(
            "uuid_record {call_uuid} {action} {}",
            self.path_str()
        ))
    }

    pub fn path_str(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// The write buffer FreeSWITCH writes this recording through, bytes per channel: the one
    /// callrec sets on `uuid_record` (`write_buffer`), or the `record` application's, which
    /// takes no size (`switch_ivr_play_say.c`: the default, or none).
    pub fn write_buffer(&self, write_buffer: u64) -> u64 {
        match self.kind {
            crate::values::RecordingKind::Call => write_buffer,
            crate::values::RecordingKind::Caller => DEFAULT_WRITE_BUFFER,
        }
    }

    /// How long its file may stay unchanged while FreeSWITCH still writes it.
    pub fn quiet_window(&self, write_buffer: u64) -> Duration {
        quiet_window(
            self.write_buffer(write_buffer),
            self.settings.record_sample_rate,
        )
    }

    /// `uuid_record <uuid> start <path> <limit> {vars}`, with the settings as per-recording
    /// variables so two recordings of one call never share them, and the write buffer pinned
    /// (`enable_file_write_buffering`: bytes per channel, `false` for none), so how long the
    /// file may stay unchanged is known whatever the channel's variables say.
    pub fn start_command(
        &self,
        call_uuid: &str,
        write_buffer: u64,
    ) -> Result<Command, CommandError> {
        let mut vars = vec![format!("callrec_recording_id={}", self.id)];
        if let Some(rate) = self.settings.record_sample_rate {
            vars.push(format!("record_sample_rate={rate}"));
        }
        vars.push(format!("RECORD_STEREO={}", self.settings.record_stereo));
        vars.push(match write_buffer {
            0 => "enable_file_write_buffering=false".to_string(),
            n => format!("enable_file_write_buffering={n}"),
        });
        let cmd = format!(
            "uuid_record {call_uuid} start {} {} {{{}}}",
            self.path_str(),
            self.settings.time_limit,
            vars.join(",")
        );
        let c = Command::Api(cmd);
        c.validate()?;
        Ok(c)
    }

    pub fn stop_command(&self, call_uuid: &str) -> Command {
        Command::Api(format!("uuid_record {call_uuid} stop {}", self.path_str()))
    }
}

/// What RECORD_STOP (or the file on disk) said about a finished recording.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopInfo {
    pub record_ms: u64,
    pub cause: String,
    pub discarded_by_freeswitch: bool,
    /// True when RECORD_STOP never came and the file was measured instead.
    pub from_disk: bool,
    /// Judged final because the file stopped growing, not because FreeSWITCH said so or the
    /// call is gone: it may still grow until then (µs since the epoch), so its local copy is
    /// kept and watched, and delivered again whole if it grows.
    pub may_grow_until_us: Option<u64>,
}

impl StopInfo {
    /// What a RECORD_STOP event says (FreeSWITCH's `record_ms`, completion cause, and
    /// whether it deleted an empty file).
    pub fn from_event(e: &crate::event::Event) -> StopInfo {
        StopInfo {
            record_ms: e
                .variable("record_ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            cause: e
                .record_completion_cause()
                .map(|c| c.into_owned())
                .unwrap_or_else(|| "none".into()),
            discarded_by_freeswitch: e.variable("RECORD_DISCARDED").as_deref() == Some("true"),
            from_disk: false,
            may_grow_until_us: None,
        }
    }
}

/// Why a finished recording is not kept.
pub fn discard_reason(record_min_sec: u32, stop: &StopInfo, file_exists: bool) -> Option<String> {
    if stop.discarded_by_freeswitch || stop.cause == "empty-file" {
        return Some("empty: FreeSWITCH wrote no audio and deleted the file".into());
    }
    if !file_exists {
        return Some("file missing on disk".into());
    }
    if stop.record_ms < record_min_sec as u64 * 1000 {
        return Some(format!(
            "{} ms is shorter than record_min_sec {record_min_sec}",
            stop.record_ms
        ));
    }
    None
}

/// A file's size, and its duration when `measure` (blocking: call off the async threads).
pub fn inspect(
    path: &std::path::Path,
    format: crate::values::AudioFormat,
    measure: bool,
) -> (Option<u64>, Option<u64>) {
    let size = std::fs::metadata(path).ok().map(|m| m.len());
    let ms = measure.then(|| measure_file(path, format)).flatten();
    (size, ms)
}

/// Duration of an audio file on disk, for recordings whose RECORD_STOP never came.
pub fn measure_file(path: &std::path::Path, format: crate::values::AudioFormat) -> Option<u64> {
    match format {
        crate::values::AudioFormat::Wav => wav::duration_ms(path),
        // MP3 frames are not parsed here; estimate from the size at FreeSWITCH's 16 kbit/s.
        crate::values::AudioFormat::Mp3 => {
            let len = std::fs::metadata(path).ok()?.len();
            Some(len * 8 / 16)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_command_carries_per_recording_vars() {
        let rc = RecordCall {
            record_sample_rate: Some(16000),
            record_stereo: true,
            time_limit: 30,
            ..RecordCall::default()
        };
        let plan = crate::rules::PlannedRecording::new(rc, "test");
        let r = Recording::new(plan, std::path::Path::new("/d/recordings/a"));
        let Command::Api(s) = r.start_command("u-1", DEFAULT_WRITE_BUFFER).unwrap() else {
            panic!()
        };
        assert_eq!(
            s,
            format!(
                "uuid_record u-1 start /d/recordings/a/{}.mp3 30 {{callrec_recording_id={},record_sample_rate=16000,RECORD_STEREO=true,enable_file_write_buffering=65536}}",
                r.id, r.id
            )
        );
        assert!(!s.contains("  "));
        let Command::Api(off) = r.start_command("u-1", 0).unwrap() else {
            panic!()
        };
        assert!(
            off.ends_with(",enable_file_write_buffering=false}"),
            "{off}"
        );
    }

    /// The facts' growth intervals (65,536 bytes per channel: 4.096 s at 8 kHz, 2.048 s at
    /// 16 kHz, whatever the channels), doubled, plus the margin.
    #[test]
    fn quiet_windows_follow_the_write_interval() {
        let ms = |b, r| quiet_window(b, r).as_millis();
        assert_eq!(ms(DEFAULT_WRITE_BUFFER, Some(8000)), 2 * 4096 + 1000);
        assert_eq!(ms(DEFAULT_WRITE_BUFFER, Some(16000)), 2 * 2048 + 1000);
        assert_eq!(
            ms(DEFAULT_WRITE_BUFFER, None),
            2 * 4096 + 1000,
            "native: the slowest"
        );
        assert_eq!(ms(16_000, Some(8000)), 2 * 1000 + 1000);
        assert_eq!(ms(0, Some(8000)), 2 * 20 + 1000, "one frame at a time");
        let caller = Recording {
            kind: crate::values::RecordingKind::Caller,
            ..Recording::new(
                crate::rules::PlannedRecording::new(RecordCall::default(), ""),
                std::path::Path::new("/x"),
            )
        };
        assert_eq!(
            caller.write_buffer(0),
            DEFAULT_WRITE_BUFFER,
            "record takes no size"
        );
        assert_eq!(may_grow_until_us(1_000_000, 30), 91_000_000);
    }

    #[test]
    fn min_sec_decides_discard() {
        let rc = RecordCall {
            record_min_sec: 3,
            ..RecordCall::default()
        };
        let r = Recording::new(
            crate::rules::PlannedRecording::new(rc, ""),
            std::path::Path::new("/x"),
        );
        let stop = |ms| StopInfo {
            record_ms: ms,
            cause: "success-silence".into(),
            ..StopInfo::default()
        };
        assert!(discard_reason(r.settings.record_min_sec, &stop(2999), true).is_some());
        assert!(discard_reason(r.settings.record_min_sec, &stop(3000), true).is_none());
        assert!(discard_reason(r.settings.record_min_sec, &stop(5000), false).is_some());
        let empty = StopInfo {
            cause: "empty-file".into(),
            ..StopInfo::default()
        };
        assert!(discard_reason(r.settings.record_min_sec, &empty, false)
            .unwrap()
            .starts_with("empty"));
    }
}
