//! Logging for operators tailing callrec: one line per lifecycle step, carrying the call's
//! `call_id` and `account_id` (from the `call` span), human-readable by default, JSON lines
//! with `--log-json`. `RUST_LOG` filters as usual (default `info`).
//!
//! Invariants: colour codes only when stderr is a terminal (operators tail files and
//! journald); field values are shown with `Display`, never Rust's `Debug` shapes.

pub mod metrics;

use tracing_subscriber::EnvFilter;

pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false);
    let result = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
    // A subscriber already installed (tests) is fine.
    drop(result);
}

/// Text from the call (names, numbers, ids) made safe for a log line: control characters
/// (line breaks, terminal escapes) are escaped, so a caller cannot forge or hide log lines.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().any(char::is_control) {
        std::borrow::Cow::Owned(s.escape_debug().to_string())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// An error and every cause under it, `: `-joined, a cause left out when the text so far
/// already says it (wrappers often repeat their source).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        src = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn printable_escapes_controls_only() {
        assert_eq!(super::printable("Alice Smith"), "Alice Smith");
        assert_eq!(super::printable("x\nINFO forged"), "x\\nINFO forged");
        assert_eq!(super::printable("\u{1b}[31m"), "\\u{1b}[31m");
    }
}
