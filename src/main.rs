use std::io::{BufWriter, Write};
use std::process::ExitCode;

use clap::Parser;

use callrec::cli::{
    Cli, Command, DecodeArgs, EslCommand, RecordingsCommand, ServeArgs, TokenCommand,
    TokenCreateArgs, WebhooksCommand,
};
use callrec::esl::Limits;
use callrec::tools::esl_decode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            callrec::telemetry::init(cli.log_json);
            serve_main(args)
        }
        Command::CheckConfig(args) => check_config_main(args),
        Command::Token {
            command: TokenCommand::Create(args),
        } => on_runtime(token_create(args)),
        Command::Recordings {
            command,
            config,
            data_dir,
        } => on_runtime(recordings_main(command, config, data_dir)),
        Command::Webhooks {
            command,
            config,
            data_dir,
        } => on_runtime(webhooks_main(command, config, data_dir)),
        Command::Lab { args } => lab_main(args),
        Command::Esl {
            command: EslCommand::Decode(args),
        } => esl_decode_main(args),
    }
}

/// Runs an operator tool (its store calls are async) to its exit code.
fn on_runtime(tool: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(tool),
        Err(e) => {
            eprintln!("callrec: cannot start the runtime: {e}");
            ExitCode::from(2)
        }
    }
}

fn esl_decode_main(args: DecodeArgs) -> ExitCode {
    let opts = esl_decode::Options {
        limits: Limits {
            max_head: args.max_head,
            max_body: args.max_body,
        },
        brief: args.brief,
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let result = if args.file.as_os_str() == "-" {
        esl_decode::run(std::io::stdin().lock(), &mut out, opts)
    } else {
        match std::fs::File::open(&args.file) {
            Ok(f) => esl_decode::run(f, &mut out, opts),
            Err(e) => {
                eprintln!("callrec: cannot open {}: {e}", args.file.display());
                return ExitCode::from(2);
            }
        }
    };
    let flushed = out.flush();
    // The reader stopped reading (`… | head`): nothing is wrong with the input.
    let closed = |e: &std::io::Error| e.kind() == std::io::ErrorKind::BrokenPipe;
    match (result, flushed) {
        (Ok(_), Ok(())) => ExitCode::SUCCESS,
        (Err(esl_decode::DecodeFailure::Io(e)), _) if closed(&e) => ExitCode::SUCCESS,
        (Ok(_), Err(e)) if closed(&e) => ExitCode::SUCCESS,
        (Err(e), _) => {
            eprintln!("callrec: {}: {e}", args.file.display());
            ExitCode::from(1)
        }
        (Ok(_), Err(e)) => {
            eprintln!("callrec: writing output: {e}");
            ExitCode::from(2)
        }
    }
}

/// The configuration `serve` would run with: the file, `CALLREC_*` over it, flags over both.
fn effective_config(args: ServeArgs) -> Result<callrec::config::Config, String> {
    let mut config = callrec::config::Config::load_layered(args.config.as_deref(), callrec_env())
        .map_err(|e| e.to_string())?;
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(m) = args.max_calls {
        config.max_calls = m;
    }
    if let Some(c) = args.continue_context {
        config.continue_context = c;
    }
    if let Some(a) = args.api_listen {
        config.api_listen = a;
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

/// `callrec check-config`: 0 and the effective configuration (secrets redacted), or 2 and why.
fn check_config_main(args: ServeArgs) -> ExitCode {
    match effective_config(args) {
        Ok(c) => {
            println!("# effective configuration: file < CALLREC_* environment < flags");
            print!("{}", c.to_redacted_toml());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("callrec: {e}");
            ExitCode::from(2)
        }
    }
}

fn serve_main(args: ServeArgs) -> ExitCode {
    let config = match effective_config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("callrec: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("callrec: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(callrec::app::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("callrec: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn token_create(args: TokenCreateArgs) -> ExitCode {
    let mut config =
        match callrec::config::Config::load_layered(args.config.as_deref(), callrec_env()) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("callrec: {e}");
                return ExitCode::from(2);
            }
        };
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    let scope = match (args.admin, args.account) {
        (true, _) => callrec::store::Scope::Admin,
        (false, Some(a)) => callrec::store::Scope::Account(a),
        (false, None) => {
            eprintln!("callrec: --account ID or --admin is required");
            return ExitCode::from(2);
        }
    };
    let store = match callrec::app::open_store(&config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("callrec: {e:#}");
            return ExitCode::from(1);
        }
    };
    match store.create_token(&scope).await {
        Ok(secret) => {
            println!("{secret}");
            let whom = match &scope {
                callrec::store::Scope::Admin => "every account (admin)".to_string(),
                callrec::store::Scope::Account(a) => format!("account {a}"),
            };
            eprintln!("callrec: token created for {whom}; it is shown only this once");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("callrec: cannot create the token: {e}");
            ExitCode::from(1)
        }
    }
}

/// The store the configuration names (for the operator tools); `Err`: the exit code.
async fn tool_store(
    config: Option<std::path::PathBuf>,
    data_dir: Option<std::path::PathBuf>,
) -> Result<callrec::store::Store, ExitCode> {
    let mut cfg = match callrec::config::Config::load_layered(config.as_deref(), callrec_env()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("callrec: {e}");
            return Err(ExitCode::from(2));
        }
    };
    if let Some(d) = data_dir {
        cfg.data_dir = d;
    }
    callrec::app::open_store(&cfg).await.map_err(|e| {
        eprintln!("callrec: {e:#}");
        ExitCode::from(1)
    })
}

async fn webhooks_main(
    command: WebhooksCommand,
    config: Option<std::path::PathBuf>,
    data_dir: Option<std::path::PathBuf>,
) -> ExitCode {
    let store = match tool_store(config, data_dir).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut out = std::io::stdout().lock();
    let result: anyhow::Result<()> = async {
        match command {
            WebhooksCommand::List {
                state,
                account,
                recording_id,
                limit,
            } => {
                let f = callrec::store::webhooks::HookFilter {
                    state,
                    account_id: account,
                    recording_id,
                    limit: Some(limit),
                };
                callrec::tools::webhooks::list(&store, &f, &mut out).await?;
                Ok(())
            }
            WebhooksCommand::Retry { id, all_failed } => {
                let n = store
                    .retry_hook_events(if all_failed { None } else { id.as_deref() })
                    .await?;
                println!("{n} failed webhook events queued again");
                Ok(())
            }
        }
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("callrec: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn recordings_main(
    command: RecordingsCommand,
    config: Option<std::path::PathBuf>,
    data_dir: Option<std::path::PathBuf>,
) -> ExitCode {
    use callrec::tools::recordings;
    use callrec::uploader::spool;
    let store = match tool_store(config, data_dir).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut out = std::io::stdout().lock();
    let result: anyhow::Result<ExitCode> = async { match command {
        RecordingsCommand::List {
            state,
            account,
            call_id,
            node,
            limit,
        } => {
            let f = spool::Filter {
                state,
                account_id: account,
                call_id,
                node,
                limit: Some(limit),
                ..Default::default()
            };
            recordings::list(&store, &f, &mut out).await?;
            Ok(ExitCode::SUCCESS)
        }
        RecordingsCommand::Show { id } => {
            if recordings::show(&store, &id, &mut out).await? {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("callrec: no recording {id}");
                Ok(ExitCode::from(1))
            }
        }
        RecordingsCommand::Retry { id, all_failed } => {
            let n = store
                .retry_failed(if all_failed { None } else { id.as_deref() })
                .await?;
            println!("{n} failed deliveries queued again");
            Ok(ExitCode::SUCCESS)
        }
        RecordingsCommand::Reassign { from, to, id } => {
            let n = store.reassign(&from, &to, id.as_deref()).await?;
            println!("{n} recordings of node {from} now belong to node {to}");
            Ok(ExitCode::SUCCESS)
        }
        RecordingsCommand::Delete {
            id,
            call_id,
            account,
        } => {
            use callrec::store::retention::Erasure;
            let ids = match (&id, &call_id) {
                (Some(id), _) => vec![id.clone()],
                (None, Some(call)) => store.recordings_of_call(account.as_deref(), call).await?,
                (None, None) => vec![],
            };
            // A call's decision record (its parties, its rules) goes with its recordings.
            let decisions = match (&id, &call_id) {
                (None, Some(call)) => store.erase_decisions(account.as_deref(), call).await?,
                _ => 0,
            };
            if decisions > 0 {
                println!("erased {decisions} decision record(s) of the call");
            }
            if ids.is_empty() {
                if decisions > 0 {
                    return Ok(ExitCode::SUCCESS);
                }
                eprintln!("callrec: no such recording");
                return Ok(ExitCode::from(1));
            }
            let mut code = ExitCode::SUCCESS;
            for id in ids {
                let (outcome, files) =
                    callrec::uploader::retention::erase(&store, &id, account.as_deref()).await?;
                match outcome {
                    Erasure::Removed(r) => println!(
                        "erased {} of call {} ({} files, {} bytes)",
                        r.id, r.call_id, files.files, files.bytes
                    ),
                    Erasure::Unknown => {
                        eprintln!("callrec: no recording {id}");
                        code = ExitCode::from(1);
                    }
                    Erasure::Busy(s) => {
                        eprintln!(
                            "callrec: recording {id} is {s}: not erased; try again once it is kept"
                        );
                        code = ExitCode::from(1);
                    }
                    Erasure::Elsewhere(node) => {
                        eprintln!("callrec: recording {id}'s file is on node {node}: erase it there (or through the API)");
                        code = ExitCode::from(1);
                    }
                }
            }
            Ok(code)
        }
        RecordingsCommand::Adopt { path, url } => {
            let (id, state) = recordings::adopt(&store, &path, url).await?;
            println!("adopted {} as {id} ({state})", path.display());
            Ok(ExitCode::SUCCESS)
        }
    }}
    .await;
    match result {
        Ok(c) => c,
        Err(e) => {
            eprintln!("callrec: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `callrec lab`: hands over to `callrec-lab` (the simulator's binary; a separate crate, since
/// the simulator itself is built on callrec's library).
fn lab_main(args: Vec<String>) -> ExitCode {
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("callrec-lab")))
        .filter(|p| p.exists());
    let program = sibling.unwrap_or_else(|| std::path::PathBuf::from("callrec-lab"));
    match std::process::Command::new(&program).args(&args).status() {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => ExitCode::from(s.code().unwrap_or(1).clamp(1, 255) as u8),
        Err(e) => {
            eprintln!(
                "callrec: cannot run {}: {e} (build it with `cargo build --release -p callrec-sim`)",
                program.display()
            );
            ExitCode::from(2)
        }
    }
}

/// `CALLREC_*` variables of the environment (other variables, including any that are not
/// UTF-8, are not callrec's business; a `CALLREC_*` value that is not UTF-8 is read lossily and
/// then refused by the configuration's checks).
fn callrec_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| {
            let k = k.into_string().ok()?;
            k.starts_with("CALLREC_")
                .then(|| (k, v.to_string_lossy().into_owned()))
        })
        .collect()
}
