//! The documentation's examples, run from the documentation's own text, so a page that drifts
//! from what callrec does fails the test suite.
//!
//! - Every ```` ```console ```` block of `README.md` and `docs/*.md` is a script: a line
//!   `$ <command>` runs the command with `sh` (stdout and stderr together, in the order written;
//!   at most a minute),
//!   an optional `? <code>` line right after it gives the exit status expected (0 otherwise),
//!   and the lines up to the next `$` are the output expected. In them a line `...` stands for
//!   any number of lines, and `[..]` for any text within a line.
//! - A page's blocks run in order in one fresh directory of their own (so a page can create a
//!   token, then list with it), where the repository's `docs`, `lab`, `tests`, `dialplans` and
//!   `contrib` are reachable by their names and `callrec` (with `callrec-lab`) is on the PATH.
//! - The README's seed example (the `curl … PATCH` block) runs as written against a real
//!   `callrec serve`, its placeholders filled in.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod support;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The pages whose examples are run.
fn pages() -> Vec<PathBuf> {
    let mut out = vec![repo().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    out.extend(docs);
    out
}

/// One `$` command of a console block, with what it must print and exit with.
#[derive(Debug)]
struct Step {
    /// Where it is: `docs/configuration.md:42`.
    at: String,
    command: String,
    status: i32,
    expected: Vec<String>,
}

/// The fenced blocks of `info` (```` ```console ````) in `text`, each with its first line number.
fn blocks<'a>(text: &'a str, info: &str) -> Vec<(usize, Vec<&'a str>)> {
    let mut out = vec![];
    let mut current: Option<(usize, Vec<&str>)> = None;
    for (i, line) in text.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        match &mut current {
            None if fence && line.trim_start().trim_start_matches('`').trim() == info => {
                current = Some((i + 2, vec![]));
            }
            None => {}
            Some(_) if fence => {
                if let Some(b) = current.take() {
                    out.push(b);
                }
            }
            Some((_, lines)) => lines.push(line),
        }
    }
    out
}

fn steps(page: &Path) -> Vec<Step> {
    let text = std::fs::read_to_string(page).unwrap();
    let name = page
        .strip_prefix(repo())
        .unwrap_or(page)
        .display()
        .to_string();
    let mut out: Vec<Step> = vec![];
    for (first, lines) in blocks(&text, "console") {
        for (n, line) in lines.iter().enumerate() {
            if let Some(cmd) = line.strip_prefix("$ ") {
                out.push(Step {
                    at: format!("{name}:{}", first + n),
                    command: cmd.to_string(),
                    status: 0,
                    expected: vec![],
                });
            } else if let Some(step) = out.last_mut() {
                match line.strip_prefix("? ") {
                    Some(code) if step.expected.is_empty() => {
                        step.status = code.trim().parse().expect("`? <exit status>`")
                    }
                    _ => step.expected.push(line.to_string()),
                }
            }
        }
    }
    out
}

/// Whether `line` matches `pattern`, where `[..]` stands for any text.
fn line_matches(pattern: &str, line: &str) -> bool {
    let mut parts = pattern.split("[..]");
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = line.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, p) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            return rest.ends_with(p);
        }
        match rest.find(p) {
            Some(at) => rest = &rest[at + p.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// Whether the output lines match the expected ones (`...` for any number of lines).
fn output_matches(expected: &[String], got: &[&str]) -> bool {
    match expected.split_first() {
        None => got.is_empty(),
        Some((e, rest)) if e.trim() == "..." => {
            (0..=got.len()).any(|skip| output_matches(rest, &got[skip..]))
        }
        Some((e, rest)) => got.split_first().is_some_and(|(g, more)| {
            line_matches(e.trim_end(), g.trim_end()) && output_matches(rest, more)
        }),
    }
}

/// A fresh directory where the repository's folders are reachable by name.
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for d in ["docs", "lab", "tests", "dialplans", "contrib"] {
        std::os::unix::fs::symlink(repo().join(d), dir.path().join(d)).unwrap();
    }
    dir
}

fn path_with_callrec() -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_callrec"))
        .parent()
        .unwrap()
        .to_path_buf();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn run_step(step: &Step, dir: &Path) -> Result<(), String> {
    if std::env::var_os("DOCS_TRACE").is_some() {
        eprintln!("{}: $ {}", step.at, step.command);
    }
    // A step that never ends (a port already taken, a server that did not start) fails after a
    // minute instead of hanging the suite.
    let out = Command::new("timeout")
        .args(["60", "sh", "-c"])
        .arg(format!(
            "{{ {}
}} 2>&1",
            step.command
        ))
        .current_dir(dir)
        .env("PATH", path_with_callrec())
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .envs(
            std::env::vars()
                .filter(|(k, _)| k.starts_with("CALLREC_"))
                .map(|(k, _)| (k, String::new())),
        )
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: cannot run: {e}", step.at))?;
    let text = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
    if std::env::var_os("DOCS_TRACE").is_some() {
        eprintln!("{text}");
    }
    let got: Vec<&str> = text.lines().collect();
    let status = out.status.code().unwrap_or(-1);
    if status != step.status || !output_matches(&step.expected, &got) {
        return Err(format!(
            "{}: `{}` exited {status} (the page says {}) and printed:\n{text}\n--- the page shows:\n{}",
            step.at,
            step.command,
            step.status,
            step.expected.join("\n")
        ));
    }
    Ok(())
}

/// Kills what a page left running in the background (its `*.pid` files), even when one of its
/// steps failed before the page's own `kill`.
fn stop_leftovers(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().extension().is_some_and(|x| x == "pid") {
            if let Ok(pid) = std::fs::read_to_string(e.path()) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
}

#[test]
fn every_console_example_in_the_docs_runs_as_shown() {
    let mut failures = vec![];
    let mut ran = 0;
    for page in pages() {
        let steps = steps(&page);
        if steps.is_empty() {
            continue;
        }
        let dir = workdir();
        for step in &steps {
            ran += 1;
            if let Err(e) = run_step(step, dir.path()) {
                failures.push(e);
            }
        }
        stop_leftovers(dir.path());
    }
    assert!(ran >= 10, "only {ran} examples found");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_matcher_takes_wildcards_and_refuses_differences() {
    let e = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(output_matches(
        &e(&["a", "...", "z"]),
        &["a", "b", "c", "z"]
    ));
    assert!(output_matches(&e(&["a", "...", "z"]), &["a", "z"]));
    assert!(!output_matches(&e(&["a", "z"]), &["a", "b", "z"]));
    assert!(output_matches(
        &e(&["token [..] once"]),
        &["token for x; once"]
    ));
    assert!(!output_matches(
        &e(&["token [..] once"]),
        &["token for x; twice"]
    ));
    assert!(output_matches(&e(&["[..]"]), &["3f9a"]));
    assert!(!output_matches(&e(&["x"]), &[]));
}

/// The README's seed example, as written, against a running `callrec serve`: its token,
/// account and user filled in, and the API's address where it says 127.0.0.1:8000.
#[tokio::test]
async fn the_readmes_seed_curl_example_runs_as_written() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let example = blocks(&readme, "sh")
        .into_iter()
        .map(|(_, lines)| lines.join("\n"))
        .find(|b| b.contains("curl") && b.contains("PATCH") && b.contains("{AUTH_TOKEN}"))
        .expect("the README shows the seed's curl example");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (listen, api) = (support::process::free_port(), support::process::free_port());
    let token = Command::new(env!("CARGO_BIN_EXE_callrec"))
        .args(["token", "create", "--admin", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let token = String::from_utf8(token.stdout).unwrap().trim().to_string();
    let _serve = support::process::Killed(
        Command::new(env!("CARGO_BIN_EXE_callrec"))
            .args(["serve", "--data-dir"])
            .arg(&data)
            .args([
                "--listen",
                &format!("127.0.0.1:{listen}"),
                "--api-listen",
                &format!("127.0.0.1:{api}"),
            ])
            .env("CALLREC_FREESWITCH_ESL", "")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{api}");
    let http = reqwest::Client::new();
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for (path, body) in [
        ("/v2/accounts/acc-1", r#"{"data":{"name":"Acme"}}"#),
        (
            "/v2/accounts/acc-1/users/user-1",
            r#"{"data":{"first_name":"Ann"}}"#,
        ),
    ] {
        let r = http
            .put(format!("{base}{path}"))
            .header("X-Auth-Token", &token)
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }
    let script = example
        .replace("{AUTH_TOKEN}", &token)
        .replace("{ACCOUNT_ID}", "acc-1")
        .replace("{USER_ID}", "user-1")
        .replace("http://127.0.0.1:8000", &base);
    let out = tokio::task::spawn_blocking(move || {
        Command::new("sh").arg("-c").arg(script).output().unwrap()
    })
    .await
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(v["status"], "success", "{v}");
    assert_eq!(v["data"]["record_call"]["record_min_sec"], 5);
    assert_eq!(v["data"]["first_name"], "Ann", "PATCH merges");
}
