//! Command-line interface: `callrec <command>`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "callrec", version, about = "Records phone calls on FreeSWITCH")]
pub struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    pub log_json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Accept calls from FreeSWITCH's outbound socket and record them.
    Serve(ServeArgs),
    /// Where recordings are: list, show, retry failed uploads, adopt orphaned files.
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
    /// Simulated FreeSWITCH calls against a running `callrec serve` (runs `callrec-lab`, built
    /// from the `callrec-sim` crate, from the same directory as this binary or the PATH).
    Lab {
        /// Arguments for callrec-lab (`--help` lists them).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Event Socket tools.
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
    /// TOML configuration file (see README); flags below override it.
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
}

fn parse_state(s: &str) -> Result<crate::store::RecordingState, String> {
    crate::store::RecordingState::parse(s)
        .ok_or_else(|| "expected pending, uploading, delivered, failed or stored".to_string())
}
