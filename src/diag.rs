//! Diagnostics: the process log on stderr, one line per event.
//!
//! `[log] format` picks plain text or JSON (one object per line, fields at
//! the top level). Either way an event is exactly one line: errors are
//! flattened with their source chain into one message ([`chain`]), and the
//! writer turns any line break left inside an event into `"; "`, so no
//! continuation line ever appears without a timestamp and a level.
//!
//! [`Throttle`] keeps an error that repeats per request (an upstream that
//! is down) to one line per second per source, with a count of the lines
//! it held back.

use std::error::Error;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::LogFormat;

/// Installs the process log on stderr at `level` (`RUST_LOG` overrides) in
/// `format`. A second call does nothing (the first subscriber stays).
pub fn init(level: &str, format: LogFormat) {
    // The audit trail (target `audit`) is not diagnostic noise: it logs at
    // info whatever the level.
    init_filter(&format!("osir_gateway={level},audit=info,warn"), format);
}

/// The `keys` commands' log: only the audit trail's lines (one JSON line
/// per change, on stderr), so a command's output is otherwise unchanged.
pub fn init_audit_only(format: LogFormat) {
    init_filter("audit=info", format);
}

fn init_filter(default: &str, format: LogFormat) {
    let from_env = std::env::var("RUST_LOG").ok();
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // The file watcher (`notify`) writes a trace line for every directory
    // event, before the gateway can filter them to the config file; with
    // the log file in the config's directory each line would cause another
    // event (megabytes a second at `RUST_LOG=trace`). So `notify` is held
    // to `info` unless `RUST_LOG` names it explicitly.
    if !from_env.as_deref().is_some_and(|v| v.contains("notify")) {
        if let Ok(d) = "notify=info".parse() {
            filter = filter.add_directive(d);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| OneLine(io::stderr()));
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}

/// A writer that keeps each event on one line: the subscriber writes one
/// event per `write` call, ending in `\n`; line breaks before that end are
/// replaced by `"; "` (JSON escapes them already, so this only touches
/// text).
pub struct OneLine<W>(pub W);

impl<W: Write> Write for OneLine<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let body = buf.strip_suffix(b"\n").unwrap_or(buf);
        if !body.iter().any(|&b| b == b'\n' || b == b'\r') {
            self.0.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut out = Vec::with_capacity(buf.len() + 16);
        let mut pending_break = false;
        for &b in body {
            if b == b'\n' || b == b'\r' {
                pending_break = true;
                continue;
            }
            if pending_break {
                out.extend_from_slice(b"; ");
                pending_break = false;
            }
            out.push(b);
        }
        if body.len() < buf.len() {
            out.push(b'\n');
        }
        self.0.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// An error and its sources in one line, outermost first, joined by `": "`.
/// A source whose text the previous message already contains is skipped
/// (many errors repeat their cause in their own message).
pub fn chain(e: &(dyn Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The operating system's error in an error's source chain, if any
/// (`Connection refused (os error 111)`).
pub fn os_error(e: &(dyn Error + 'static)) -> Option<String> {
    let mut source: Option<&(dyn Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return Some(io.to_string());
        }
        source = s.source();
    }
    None
}

/// At most one line per `every` for one source of repeated errors.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    state: Mutex<ThrottleState>,
}

#[derive(Debug)]
struct ThrottleState {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// One line per `every`.
    pub const fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            state: parking_lot::const_mutex(ThrottleState {
                last: None,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)` when a line may be written now, `n` being how many were
    /// held back since the last one; `None` (and one more held back) when
    /// the last line was written less than `every` ago.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock();
        match s.last {
            Some(last) if now.saturating_duration_since(last) < self.every => {
                s.suppressed += 1;
                None
            }
            _ => {
                s.last = Some(now);
                Some(std::mem::take(&mut s.suppressed))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(io::Error);

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error (Connect)")
        }
    }

    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn chains_read_as_one_line_with_the_os_error() {
        let e = Outer(io::Error::from_raw_os_error(111));
        let text = chain(&e);
        assert!(text.starts_with("client error (Connect): "), "{text}");
        assert!(text.contains("os error 111"), "{text}");
        assert!(os_error(&e).unwrap().contains("os error 111"));
        assert!(os_error(&io::Error::other("x")).is_some());
        let plain = std::fmt::Error;
        assert_eq!(os_error(&plain), None);
    }

    #[test]
    fn events_stay_on_one_line() {
        let mut w = OneLine(Vec::new());
        w.write_all(b"ERROR refused: a\nb\r\n\nc\n").unwrap();
        w.write_all(b"INFO plain\n").unwrap();
        assert_eq!(
            String::from_utf8(w.0).unwrap(),
            "ERROR refused: a; b; c\nINFO plain\n"
        );
    }

    #[test]
    fn throttle_admits_one_per_period_and_counts_the_rest() {
        let t = Throttle::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(t.admit(t0), Some(0));
        assert_eq!(t.admit(t0 + Duration::from_millis(10)), None);
        assert_eq!(t.admit(t0 + Duration::from_millis(999)), None);
        assert_eq!(t.admit(t0 + Duration::from_millis(1000)), Some(2));
        assert_eq!(t.admit(t0 + Duration::from_millis(1500)), None);
        assert_eq!(t.admit(t0 + Duration::from_millis(2100)), Some(1));
    }
}
