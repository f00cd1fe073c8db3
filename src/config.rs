//! Configuration: a TOML file (all keys optional), overridden by `CALLREC_<KEY>` environment
//! variables (top-level keys; the value is read as a TOML value, else as a string), overridden
//! by command-line flags.
//!
//! Invariant: a `Config` that passed [`Config::validate`] can be used as is: the data directory
//! is absolute-or-relative without characters FreeSWITCH would split on, limits are non-zero.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::esl::Limits;
use crate::rules::model::Params;
use crate::rules::{PartyVariables, RecordCall};

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where FreeSWITCH's `socket` application connects.
    pub listen: SocketAddr,
    /// The HTTP API (recording settings). Tokens are required on every route.
    pub api_listen: SocketAddr,
    /// Root of recordings and state. FreeSWITCH writes the files, so it must be able to reach
    /// this path too (same host or shared mount).
    pub data_dir: PathBuf,
    /// `/readyz` is false below this much free space in the recordings directory, MiB.
    pub min_free_mb: u64,
    /// Peers allowed to connect to `listen` (addresses or networks); loopback by default.
    pub allow_peers: Vec<crate::outbound::allow::PeerNet>,
    /// Calls handled at once; above it new connections are closed at once so FreeSWITCH goes on
    /// with the dialplan instead of waiting.
    pub max_calls: usize,
    /// Dialplan context calls are transferred to after callrec set up their recordings. It must
    /// not route back to the socket.
    pub continue_context: String,
    pub command_timeout_ms: u64,
    /// Longest wait for the recording rules before the call is handed back unrecorded.
    pub plan_timeout_ms: u64,
    /// After hangup, how long to wait for a RECORD_STOP before finishing from the file on disk.
    pub record_stop_grace_ms: u64,
    /// How often an orphaned recording's file is checked for growth.
    pub disk_poll_ms: u64,
    /// The write buffer callrec pins on every `uuid_record` (`enable_file_write_buffering`),
    /// bytes per channel; 0 turns it off. FreeSWITCH's own default, 65,536, costs FreeSWITCH
    /// what a dialplan recording does (one write per 4.096 s at 8 kHz); smaller buffers mean
    /// more writes for FreeSWITCH and a shorter wait when a file must be judged from disk.
    pub record_write_buffer_bytes: u64,
    /// On shutdown, how long live calls may take to finish.
    pub shutdown_grace_ms: u64,
    /// Largest ESL frame accepted (Content-Length), in bytes.
    pub max_frame_bytes: usize,
    pub account_variable: String,
    pub user_variable: String,
    pub device_variable: String,
    /// Uploads running at once.
    pub upload_concurrency: usize,
    /// First retry delay; doubles per attempt up to `upload_retry_cap_ms`.
    pub upload_retry_base_ms: u64,
    pub upload_retry_cap_ms: u64,
    /// A delivery still failing after this long becomes `failed` (dead letter).
    pub upload_give_up_after_s: u64,
    /// Minimum time an upload attempt may take, before the size-based allowance.
    pub upload_min_timeout_ms: u64,
    /// Slowest acceptable upload rate, bytes/s: the timeout grows with the file at this rate.
    pub upload_min_rate: u64,
    /// Keep the local file after it was delivered everywhere.
    pub keep_local_after_upload: bool,
    /// Kept recordings (stored locally, or delivered) are erased this many days after they
    /// were kept, unless their account sets `recording_retention_days`; 0: kept for ever.
    pub retention_days: u32,
    /// Between retention passes.
    pub retention_every_s: u64,
    /// Calls' decision records (why each call was or was not recorded) are kept this many days.
    pub decision_retention_days: u32,
    /// At most this many decision records are kept (the oldest go first).
    pub decision_max_rows: u64,
    /// Webhooks sent to at once (each by one task, one event at a time).
    pub webhook_concurrency: usize,
    /// How long one webhook attempt may take (connect, send, answer).
    pub webhook_timeout_ms: u64,
    /// The sofia profile callflows bridge devices with `sip.invite_format: route` through.
    pub bridge_profile: String,
    /// FreeSWITCH's inbound event socket (`host:port`, as `event_socket.conf.xml` listens);
    /// when set, recordings journaled by a previous run are followed over it to their
    /// RECORD_STOP (else their files are watched).
    pub freeswitch_esl: Option<String>,
    /// `inbound`: once a call is handed back, follow it over the event-socket link and close
    /// its outbound socket (needs `freeswitch_esl`; falls back per call while the link is
    /// down); `socket`: follow every call over its own outbound socket to its end.
    pub follow: FollowMode,
    /// This callrec's name: the value of the `callrec_follow` channel variable its calls carry,
    /// and, with a shared database, the node its recordings belong to (unique per instance).
    pub node_id: String,
    /// `postgres://user:password@host:port/db` to keep documents, tokens and the recordings
    /// spool in a PostgreSQL database shared by several instances; unset: the SQLite file
    /// `<data_dir>/callrec.db`. Its password is never logged.
    pub database_url: Option<String>,
    /// PEM file of CA certificates trusted for a `database_url` with `sslmode=require` (besides
    /// the web PKI's roots).
    pub database_ca_file: Option<PathBuf>,
    /// Which addresses URLs written through the API may lead to (link-local never; see
    /// [`crate::settings::policy`]).
    pub destination_policy: crate::settings::policy::DestinationPolicy,
    /// The URL the other nodes of a shared database reach this node's API at (a live
    /// recording's control request goes to the node recording it); unset: `http://<api_listen>`.
    pub api_url: Option<String>,
    /// The event socket's password (never logged; `check-config` shows it as `REDACTED`).
    pub freeswitch_password: String,
    /// Reconnection backoff to the event socket doubles from 100 ms up to this.
    pub esl_reconnect_max_ms: u64,
    /// A recording followed over the event socket falls back to watching its file once the
    /// connection has been down this long.
    pub esl_down_grace_ms: u64,
    /// `s3://` destinations: an S3-compatible server's `http(s)://host:port` (unset: AWS, or
    /// `AWS_ENDPOINT_URL`), its region, and the credentials (unset: `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`). The secret is never logged.
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    pub s3_access_key_id: Option<String>,
    pub s3_secret_access_key: Option<String>,
    /// Recordings larger than this go up in parts of `s3_part_size_mb`, MiB.
    pub s3_multipart_threshold_mb: u64,
    /// At least 5 (S3's smallest part).
    pub s3_part_size_mb: u64,
    /// Applied to every call, on top of the documents; parsed (and so validated) with the
    /// same types as a document's `record_call`.
    pub record_call: Option<Params>,
}

/// The largest write buffer callrec asks FreeSWITCH for (16× its default).
const MAX_WRITE_BUFFER: u64 = 1_048_576;

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8084)),
            api_listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            data_dir: PathBuf::from("/var/lib/callrec"),
            allow_peers: crate::outbound::allow::PeerNet::loopback(),
            min_free_mb: 512,
            max_calls: 10_000,
            continue_context: "callrec-continue".into(),
            command_timeout_ms: 5_000,
            plan_timeout_ms: 2_000,
            record_stop_grace_ms: 10_000,
            disk_poll_ms: 1_000,
            record_write_buffer_bytes: crate::recorder::DEFAULT_WRITE_BUFFER,
            shutdown_grace_ms: 30_000,
            max_frame_bytes: 8 * 1024 * 1024,
            account_variable: "callrec_account_id".into(),
            user_variable: "callrec_user_id".into(),
            device_variable: "callrec_device_id".into(),
            upload_concurrency: 8,
            upload_retry_base_ms: 5_000,
            upload_retry_cap_ms: 600_000,
            upload_give_up_after_s: 7 * 24 * 3600,
            upload_min_timeout_ms: 30_000,
            upload_min_rate: 256 * 1024,
            keep_local_after_upload: false,
            retention_days: 0,
            retention_every_s: 3600,
            decision_retention_days: 30,
            decision_max_rows: 1_000_000,
            webhook_concurrency: 16,
            webhook_timeout_ms: 10_000,
            bridge_profile: "external".into(),
            freeswitch_esl: Some("127.0.0.1:8021".into()),
            follow: FollowMode::Inbound,
            node_id: "callrec".into(),
            database_url: None,
            api_url: None,
            destination_policy: Default::default(),
            database_ca_file: None,
            s3_endpoint: None,
            s3_region: None,
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_multipart_threshold_mb: 16,
            s3_part_size_mb: 8,
            freeswitch_password: "ClueCon".into(),
            esl_reconnect_max_ms: 10_000,
            esl_down_grace_ms: 30_000,
            record_call: None,
        }
    }
}

/// How calls are followed once handed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FollowMode {
    Inbound,
    Socket,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// The file (if any) with `CALLREC_*` variables of `env` over it. Errors name the key (or
    /// the variable) and what is allowed.
    pub fn load_layered(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let (mut table, origin) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                let t: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: p.display().to_string(),
                    message: e.to_string(),
                })?;
                (t, p.display().to_string())
            }
            None => (toml::Table::new(), "defaults".to_string()),
        };
        let keys = Config::keys();
        let mut from_env = Vec::new();
        for (name, value) in env {
            let Some(key) = name.strip_prefix("CALLREC_") else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            if !keys.contains(&key.as_str()) || key == "record_call" {
                return Err(ConfigError::Invalid(format!(
                    "{name}: not a configuration key (allowed: CALLREC_ and one of {})",
                    keys.iter()
                        .filter(|k| **k != "record_call")
                        .map(|k| k.to_ascii_uppercase())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            // `42`, `true`, `["10.0.0.0/8"]` are TOML values; anything else is a string.
            let v = toml::from_str::<toml::Table>(&format!("v = {value}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or(toml::Value::String(value));
            table.insert(key, v);
            from_env.push(name);
        }
        let origin = if from_env.is_empty() {
            origin
        } else {
            format!("{origin} + {}", from_env.join(", "))
        };
        serde_path_to_error::deserialize::<_, Config>(toml::Value::Table(table)).map_err(|e| {
            ConfigError::Parse {
                path: origin,
                message: format!("{}: {}", e.path(), e.inner()),
            }
        })
    }

    /// Every top-level key.
    pub fn keys() -> Vec<&'static str> {
        vec![
            "listen",
            "api_listen",
            "data_dir",
            "allow_peers",
            "min_free_mb",
            "max_calls",
            "continue_context",
            "command_timeout_ms",
            "plan_timeout_ms",
            "record_stop_grace_ms",
            "disk_poll_ms",
            "record_write_buffer_bytes",
            "shutdown_grace_ms",
            "max_frame_bytes",
            "account_variable",
            "user_variable",
            "device_variable",
            "upload_concurrency",
            "upload_retry_base_ms",
            "upload_retry_cap_ms",
            "upload_give_up_after_s",
            "upload_min_timeout_ms",
            "upload_min_rate",
            "keep_local_after_upload",
            "retention_days",
            "retention_every_s",
            "decision_retention_days",
            "decision_max_rows",
            "webhook_concurrency",
            "webhook_timeout_ms",
            "bridge_profile",
            "freeswitch_esl",
            "follow",
            "node_id",
            "database_url",
            "api_url",
            "destination_policy",
            "database_ca_file",
            "s3_endpoint",
            "s3_region",
            "s3_access_key_id",
            "s3_secret_access_key",
            "s3_multipart_threshold_mb",
            "s3_part_size_mb",
            "freeswitch_password",
            "esl_reconnect_max_ms",
            "esl_down_grace_ms",
            "record_call",
        ]
    }

    /// The effective configuration as TOML, passwords in URLs shown as `REDACTED`.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        shown.freeswitch_password = "REDACTED".into();
        if shown.s3_secret_access_key.is_some() {
            shown.s3_secret_access_key = Some("REDACTED".into());
        }
        if let Some(u) = shown.database_url.as_mut() {
            *u = crate::uploader::url::redact(u);
        }
        if let Some(rc) = shown.record_call.as_mut() {
            if let Some(u) = &rc.url {
                rc.url =
                    crate::rules::model::Url::parse(&crate::uploader::url::redact(u.as_str())).ok();
            }
        }
        toml::to_string(&shown).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }

    /// Reads a TOML file, or the defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// The URL other nodes reach this node's API at.
    pub fn advertised_api_url(&self) -> String {
        match &self.api_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("http://{}", self.api_listen),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if crate::recorder::paths::unsafe_for_fs_args(&self.data_dir) {
            return bad("data_dir must not contain spaces, control characters or braces (FreeSWITCH splits uuid_record arguments on spaces)");
        }
        if self.max_calls == 0 {
            return bad("max_calls must be at least 1");
        }
        if self.retention_days > crate::settings::model::RETENTION_DAYS_RANGE.1 {
            return bad("retention_days must be 0 (keep for ever) to 36500");
        }
        if !(1..=3650).contains(&self.decision_retention_days) {
            return bad("decision_retention_days must be 1 to 3650");
        }
        if self.decision_max_rows < 1000 {
            return bad("decision_max_rows must be at least 1000");
        }
        if let Some(u) = &self.api_url {
            let ok = reqwest::Url::parse(u)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                return bad("api_url must be an http:// or https:// URL with a host");
            }
        }
        if self.continue_context.is_empty()
            || !self
                .continue_context
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return bad(
                "continue_context must be a non-empty dialplan context name ([A-Za-z0-9._-])",
            );
        }
        if self.node_id.is_empty()
            || !self
                .node_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return bad("node_id must be a non-empty name ([A-Za-z0-9._-])");
        }
        if let Some(a) = self.freeswitch_esl.as_ref().filter(|a| !a.is_empty()) {
            if a.rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                return bad("freeswitch_esl must be host:port, e.g. \"127.0.0.1:8021\"");
            }
        }
        if self.freeswitch_password.contains(['\n', '\r']) {
            return bad("freeswitch_password must be one line");
        }
        if self.record_write_buffer_bytes > MAX_WRITE_BUFFER {
            return bad("record_write_buffer_bytes must be at most 1048576 (0 turns FreeSWITCH's write buffer off; its default is 65536)");
        }
        if self.command_timeout_ms == 0 || self.max_frame_bytes < 64 * 1024 {
            return bad("command_timeout_ms must be > 0 and max_frame_bytes at least 65536");
        }
        Ok(())
    }

    /// The `[record_call]` rule applied to every call, when it is enabled.
    pub fn global_rule(&self) -> Option<RecordCall> {
        self.record_call.as_ref()?.resolve(true)
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_head: 1024 * 1024,
            max_body: self.max_frame_bytes,
        }
    }

    pub fn party_variables(&self) -> PartyVariables {
        PartyVariables {
            account: self.account_variable.clone(),
            user: self.user_variable.clone(),
            device: self.device_variable.clone(),
        }
    }

    /// The spool's retry schedule (uploads and webhooks).
    pub fn retry_policy(&self) -> crate::net::retry::Policy {
        crate::net::retry::Policy {
            base: Duration::from_millis(self.upload_retry_base_ms.max(1)),
            cap: Duration::from_millis(self.upload_retry_cap_ms.max(1)),
            give_up_after: Duration::from_secs(self.upload_give_up_after_s),
        }
    }

    pub fn retention_config(&self) -> crate::uploader::retention::RetentionConfig {
        crate::uploader::retention::RetentionConfig {
            default_days: (self.retention_days > 0).then_some(self.retention_days),
            batch: 50,
            pause: Duration::from_millis(10),
            every: Duration::from_secs(self.retention_every_s.max(1)),
            recordings_dir: self.data_dir.join("recordings"),
            decision_days: self.decision_retention_days,
            decision_max_rows: self.decision_max_rows,
        }
    }

    pub fn webhook_config(&self) -> crate::hooks::sender::SenderConfig {
        crate::hooks::sender::SenderConfig {
            concurrency: self.webhook_concurrency.max(1),
            timeout: Duration::from_millis(self.webhook_timeout_ms.max(100)),
            retry: self.retry_policy(),
            policy: self.destination_policy,
            ..Default::default()
        }
    }

    pub fn http_config(&self) -> crate::uploader::http::HttpConfig {
        crate::uploader::http::HttpConfig {
            min_timeout: Duration::from_millis(self.upload_min_timeout_ms),
            min_rate: self.upload_min_rate.max(1),
            policy: self.retry_policy(),
            destination_policy: self.destination_policy,
            s3: crate::uploader::s3::S3Config {
                endpoint: self.s3_endpoint.clone().filter(|e| !e.is_empty()),
                region: self.s3_region.clone().filter(|e| !e.is_empty()),
                access_key_id: self.s3_access_key_id.clone().filter(|e| !e.is_empty()),
                secret_access_key: self.s3_secret_access_key.clone().filter(|e| !e.is_empty()),
                multipart_threshold: self.s3_multipart_threshold_mb.saturating_mul(1024 * 1024),
                part_size: (self.s3_part_size_mb.max(5) as usize).saturating_mul(1024 * 1024),
            },
        }
    }

    /// The inbound event-socket link, when `freeswitch_esl` is set.
    pub fn link_config(&self) -> Option<crate::inbound::LinkConfig> {
        Some(crate::inbound::LinkConfig {
            addr: self.freeswitch_esl.clone().filter(|a| !a.is_empty())?,
            follow_tag: (self.follow == FollowMode::Inbound).then(|| self.node_id.clone()),
            password: self.freeswitch_password.clone(),
            command_timeout: Duration::from_millis(self.command_timeout_ms),
            backoff_max: Duration::from_millis(self.esl_reconnect_max_ms.max(100)),
            down_grace: Duration::from_millis(self.esl_down_grace_ms),
            limits: self.limits(),
        })
    }

    /// What a call's session needs of the configuration.
    pub fn session_settings(&self) -> crate::outbound::session::Settings {
        crate::outbound::session::Settings {
            data_dir: self.data_dir.clone(),
            continue_context: self.continue_context.clone(),
            record_stop_grace: Duration::from_millis(self.record_stop_grace_ms),
            disk_poll: Duration::from_millis(self.disk_poll_ms.max(10)),
            write_buffer: self.record_write_buffer_bytes,
            bridge_profile: self.bridge_profile.clone(),
            follow_tag: (self.follow == FollowMode::Inbound && self.link_config().is_some())
                .then(|| self.node_id.clone()),
        }
    }

    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_over_file_and_every_key_is_known() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "max_calls = 5\ncontinue_context = \"ctx\"\n[record_call]\nurl = \"https://u:secret@h/r/\"\n").unwrap();
        let env = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        };
        let c = Config::load_layered(
            Some(&f),
            env(&[
                ("CALLREC_MAX_CALLS", "7"),
                ("CALLREC_LISTEN", "127.0.0.1:9999"),
                ("CALLREC_ALLOW_PEERS", "[\"10.0.0.0/8\"]"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!((c.max_calls, c.listen.port()), (7, 9999));
        assert_eq!(
            c.continue_context, "ctx",
            "the file where the environment is silent"
        );
        assert_eq!(c.allow_peers.len(), 1);
        let shown = c.to_redacted_toml();
        assert!(
            !shown.contains("secret") && shown.contains("u:REDACTED@h"),
            "{shown}"
        );
        let e = Config::load_layered(None, env(&[("CALLREC_MAX_CALL", "7")])).unwrap_err();
        assert!(e.to_string().contains("CALLREC_MAX_CALL") && e.to_string().contains("MAX_CALLS"));
        let e = Config::load_layered(None, env(&[("CALLREC_MAX_CALLS", "many")])).unwrap_err();
        assert!(e.to_string().contains("max_calls"), "{e}");
        // Every field of Config is in keys() (and so settable from the environment).
        let t: toml::Table = toml::from_str(&Config::default().to_redacted_toml()).unwrap();
        for k in t.keys() {
            assert!(Config::keys().contains(&k.as_str()), "{k}");
        }
        assert_eq!(
            t.len() + 8,
            Config::keys().len(),
            "record_call, database_url, database_ca_file, api_url and the s3 endpoint, region and credentials are absent by default"
        );
        let c = Config::load_layered(
            None,
            env(&[
                (
                    "CALLREC_DATABASE_URL",
                    "postgres://callrec:pw1@db:5432/callrec",
                ),
                ("CALLREC_S3_SECRET_ACCESS_KEY", "s3cr3t"),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.database_url.as_deref(),
            Some("postgres://callrec:pw1@db:5432/callrec")
        );
        let shown = c.to_redacted_toml();
        assert!(
            !shown.contains("pw1")
                && !shown.contains("s3cr3t")
                && shown.contains("postgres://callrec:REDACTED@db:5432/callrec"),
            "{shown}"
        );
    }

    #[test]
    fn parses_and_validates() {
        let c: Config = toml::from_str(
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/tmp/x\"\n[record_call]\nformat = \"wav\"\n",
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert!(c.validate().is_ok());
        assert!(toml::from_str::<Config>("nope = 1").is_err());
        let c = Config {
            data_dir: "/tmp/a b".into(),
            ..Config::default()
        };
        assert!(c.validate().is_err());
        let c = Config {
            continue_context: "x XML y".into(),
            ..Config::default()
        };
        assert!(c.validate().is_err());
        let e = toml::from_str::<Config>("[record_call]\ntime_limit = 1\n").unwrap_err();
        assert!(
            e.to_string().contains("from 5 to 10800"),
            "the same check as the API: {e}"
        );
        let c: Config = toml::from_str("[record_call]\nenabled = false\n").unwrap();
        assert!(c.global_rule().is_none());
    }
}
