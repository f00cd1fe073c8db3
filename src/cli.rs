//! Command-line interface: `callrec <command>`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "callrec",
    version,
    about = "Records phone calls on FreeSWITCH",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    pub log_json: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// Exit codes, for every command.
pub const EXIT_CODES: &str = "Exit codes: 0 success; 1 the command ran and failed (callrec serve stopped on an error, a recording not found, malformed ESL input); 2 the command could not start (bad flags, configuration or file).";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Accept calls from FreeSWITCH's outbound socket and record them.
    #[command(
        after_help = "Example:\n  callrec serve --config /etc/callrec/callrec.toml\n  CALLREC_MAX_CALLS=500 callrec serve --data-dir /var/lib/callrec --log-json"
    )]
    Serve(ServeArgs),
    /// Validate the configuration and print the one `serve` would use (file < CALLREC_*
    /// environment < flags), passwords in URLs redacted.
    #[command(
        after_help = "Example:\n  callrec check-config --config /etc/callrec/callrec.toml\n  CALLREC_LISTEN=0.0.0.0:8084 callrec check-config"
    )]
    CheckConfig(ServeArgs),
    /// Where recordings are: list, show, retry failed uploads, adopt orphaned files, erase.
    #[command(
        after_help = "Example:\n  callrec recordings list --state failed --config /etc/callrec/callrec.toml\n  callrec recordings retry --all-failed --data-dir /var/lib/callrec"
    )]
    Recordings {
        #[command(subcommand)]
        command: RecordingsCommand,
        /// TOML configuration file (for its data_dir).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        /// Directory holding callrec.db [default: the configuration's data_dir].
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
    },
    /// Webhook events: list them, put failed ones back in the queue.
    #[command(
        after_help = "Example:\n  callrec webhooks list --state failed --config /etc/callrec/callrec.toml\n  callrec webhooks retry --all-failed --data-dir /var/lib/callrec"
    )]
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
        /// TOML configuration file (for its data_dir or database_url).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        /// Directory holding callrec.db [default: the configuration's data_dir].
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
    },
    /// Simulated FreeSWITCH calls against a running `callrec serve` (runs `callrec-lab`, built
    /// from the `callrec-sim` crate, from the same directory as this binary or the PATH).
    #[command(
        after_help = "Example:\n  callrec lab --calls 20 --rate 5 --account lab\n  callrec lab --scenario caller-hangup"
    )]
    Lab {
        /// Arguments for callrec-lab (`--help` lists them).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// API tokens.
    #[command(
        after_help = "Example:\n  callrec token create --account acc-1 --config /etc/callrec/callrec.toml\n  callrec token create --admin --data-dir /var/lib/callrec"
    )]
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Event Socket tools.
    #[command(
        after_help = "Example:\n  callrec esl decode capture.raw\n  callrec esl decode --brief - < capture.raw"
    )]
    Esl {
        #[command(subcommand)]
        command: EslCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum EslCommand {
    /// Decode a raw ESL byte stream (or a capture transcript) into one JSON line per frame.
    Decode(DecodeArgs),
}

#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// File to read; `-` for standard input.
    pub file: PathBuf,
    /// Omit event headers from the output.
    #[arg(long)]
    pub brief: bool,
    /// Largest accepted Content-Length, in bytes.
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    pub max_body: usize,
    /// Largest accepted header block, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_head: usize,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file (see docs/configuration.md); flags below override it.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Address FreeSWITCH's `socket` application connects to [default: 127.0.0.1:8084].
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Directory for recordings and state [default: /var/lib/callrec].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Calls handled at once [default: 10000].
    #[arg(long)]
    pub max_calls: Option<usize>,
    /// Dialplan context calls are handed back to [default: callrec-continue].
    #[arg(long)]
    pub continue_context: Option<String>,
    /// Address of the HTTP API [default: 127.0.0.1:8000].
    #[arg(long)]
    pub api_listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token for one account (`--account ID`) or for everything (`--admin`). The token
    /// is printed once; only its hash is stored.
    Create(TokenCreateArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("scope").required(true).args(["account", "admin"])))]
pub struct TokenCreateArgs {
    #[arg(long)]
    pub account: Option<String>,
    #[arg(long)]
    pub admin: bool,
    /// TOML configuration file (for its data_dir).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Directory holding callrec.db [default: the configuration's data_dir].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum RecordingsCommand {
    /// Recordings, newest first: id, state, account, call, start, duration, file.
    List {
        /// pending, uploading, delivered, failed or stored.
        #[arg(long, value_parser = parse_state)]
        state: Option<crate::store::RecordingState>,
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        call_id: Option<String>,
        /// Only the recordings of this node (`node_id`).
        #[arg(long)]
        node: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Everything about one recording (JSON), deliveries included.
    Show { id: String },
    /// Put failed uploads back in the queue: one recording, or every failed one.
    Retry {
        #[arg(required_unless_present = "all_failed")]
        id: Option<String>,
        #[arg(long)]
        all_failed: bool,
    },
    /// Take a recording file the spool does not know into it (its `.json` metadata is used
    /// when present); with `--url` it is uploaded there, else stored locally.
    Adopt {
        path: PathBuf,
        #[arg(long)]
        url: Option<String>,
    },
    /// Erase recordings: the file, its `.json`, its row and deliveries (what was delivered to
    /// a server is that server's to delete). One recording, or every recording of a call.
    #[command(
        after_help = "Example:\n  callrec recordings delete 8c0f2b6e4d1a4f6b --config /etc/callrec/callrec.toml\n  callrec recordings delete --call-id 5f0c8a2e-1b7d-4c1e-9a53-2d7e4f1a9b60 --account acc-1"
    )]
    Delete {
        #[arg(required_unless_present = "call_id")]
        id: Option<String>,
        #[arg(long, conflicts_with = "id")]
        call_id: Option<String>,
        /// Only recordings of this account.
        #[arg(long)]
        account: Option<String>,
    },
    /// Hand the recordings of a node that is gone for good to another node, after moving their
    /// files (same paths) to it: that node's callrec then delivers them (its journaled ones at
    /// its next start).
    #[command(
        after_help = "Example:\n  callrec recordings reassign --from fs-2 --to fs-1 --config /etc/callrec/callrec.toml"
    )]
    Reassign {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        /// Only this recording.
        #[arg(long)]
        id: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Webhook events, newest first: id (the `webhook-id` header), state, type, account,
    /// webhook, recording, attempts, last error.
    List {
        /// pending, sending, delivered or failed.
        #[arg(long, value_parser = parse_hook_state)]
        state: Option<crate::store::webhooks::HookState>,
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        recording_id: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Put failed events back in the queue (same `webhook-id`, due now): one, or every failed
    /// one.
    Retry {
        #[arg(required_unless_present = "all_failed")]
        id: Option<String>,
        #[arg(long)]
        all_failed: bool,
    },
}

fn parse_hook_state(s: &str) -> Result<crate::store::webhooks::HookState, String> {
    crate::store::webhooks::HookState::parse(s)
        .ok_or_else(|| "expected pending, sending, delivered or failed".to_string())
}

fn parse_state(s: &str) -> Result<crate::store::RecordingState, String> {
    crate::store::RecordingState::parse(s)
        .ok_or_else(|| "expected pending, uploading, delivered, failed or stored".to_string())
}
