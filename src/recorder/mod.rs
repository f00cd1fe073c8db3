//! Recordings of one call: the `uuid_record` commands, their lifecycle, and the files.
//!
//! Lifecycle of a [`Recording`]: `Waiting` (for answer or bridge) → `Starting` (command sent)
//! → `Recording` (RECORD_START seen) → `Finished` (RECORD_STOP seen, or the file read from disk
//! when RECORD_STOP never came) | `Failed` (FreeSWITCH refused, or no reply). A finished
//! recording is either kept (handed to delivery) or discarded with a reason.

pub mod paths;
pub mod wav;

use std::path::PathBuf;

use crate::esl::{Command, CommandError};
use crate::rules::{RecordCall, Trigger};

/// Where a recording is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Waiting(Trigger),
    Starting,
    Recording,
    Finished,
    Failed(String),
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
    /// Event-Date-Timestamp of RECORD_START, µs.
    pub started_us: Option<u64>,
}

impl Recording {
    pub fn new(plan: crate::rules::PlannedRecording, dir: &std::path::Path) -> Recording {
        let id = uuid::Uuid::new_v4().to_string();
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
            started_us: None,
        }
    }

    pub fn path_str(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// `uuid_record <uuid> start <path> <limit> {vars}`, with the settings as per-recording
    /// variables so two recordings of one call never share them.
    pub fn start_command(&self, call_uuid: &str) -> Result<Command, CommandError> {
        let mut vars = vec![format!("callrec_recording_id={}", self.id)];
        if let Some(rate) = self.settings.record_sample_rate {
            vars.push(format!("record_sample_rate={rate}"));
        }
        vars.push(format!("RECORD_STEREO={}", self.settings.record_stereo));
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
#[derive(Debug, Clone, Default)]
pub struct StopInfo {
    pub record_ms: u64,
    pub cause: String,
    pub discarded_by_freeswitch: bool,
    pub stopped_us: Option<u64>,
    /// True when RECORD_STOP never came and the file was measured instead.
    pub from_disk: bool,
}

/// Why a finished recording is not kept.
pub fn discard_reason(rec: &Recording, stop: &StopInfo, file_exists: bool) -> Option<String> {
    if stop.discarded_by_freeswitch || stop.cause == "empty-file" {
        return Some("empty: FreeSWITCH wrote no audio and deleted the file".into());
    }
    if !file_exists {
        return Some("file missing on disk".into());
    }
    let min_ms = rec.settings.record_min_sec as u64 * 1000;
    if stop.record_ms < min_ms {
        return Some(format!(
            "{} ms is shorter than record_min_sec {}",
            stop.record_ms, rec.settings.record_min_sec
        ));
    }
    None
}

/// Duration of an audio file on disk, for recordings whose RECORD_STOP never came.
pub fn measure_file(path: &std::path::Path, format: crate::rules::AudioFormat) -> Option<u64> {
    match format {
        crate::rules::AudioFormat::Wav => wav::duration_ms(path),
        // MP3 frames are not parsed here; estimate from the size at FreeSWITCH's 16 kbit/s.
        crate::rules::AudioFormat::Mp3 => {
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
        let Command::Api(s) = r.start_command("u-1").unwrap() else {
            panic!()
        };
        assert_eq!(
            s,
            format!(
                "uuid_record u-1 start /d/recordings/a/{}.mp3 30 {{callrec_recording_id={},record_sample_rate=16000,RECORD_STEREO=true}}",
                r.id, r.id
            )
        );
        assert!(!s.contains("  "));
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
        assert!(discard_reason(&r, &stop(2999), true).is_some());
        assert!(discard_reason(&r, &stop(3000), true).is_none());
        assert!(discard_reason(&r, &stop(5000), false).is_some());
        let empty = StopInfo {
            cause: "empty-file".into(),
            ..StopInfo::default()
        };
        assert!(discard_reason(&r, &empty, false)
            .unwrap()
            .starts_with("empty"));
    }
}
