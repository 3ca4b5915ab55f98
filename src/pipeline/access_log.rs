//! The access log: one JSON line per request, written off the request path.
//!
//! Lines go through a `tracing-appender` non-blocking writer: the request
//! task only formats the line and hands it to a channel; a background thread
//! writes it. When the writer falls behind, lines are dropped (and counted by
//! the writer) rather than slowing requests down.
//!
//! What a line may hold is fixed here: the key's id, account and env, never
//! the key; the path only when it passed the path check; the query only with
//! `api_key` removed; never the Authorization header.

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};

use crate::config::AccessLog as AccessLogConfig;
use crate::keys::Timestamp;

/// One request, as the access log records it.
#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    /// When the response head was ready (RFC 3339, UTC).
    pub ts: String,
    /// The request id also sent to the client and the upstream.
    pub request_id: &'a str,
    /// Route prefix, or `none`.
    pub route: &'a str,
    /// Request method.
    pub method: &'a str,
    /// The checked path (absent when the path was refused).
    pub path: Option<&'a str>,
    /// The query with any `api_key` removed.
    pub query: Option<&'a str>,
    /// Response status.
    pub status: u16,
    /// `ok` or the contract error code.
    pub reason: &'a str,
    /// The key's public id, when a key was found.
    pub key_id: Option<&'a str>,
    /// The key's account.
    pub account: Option<&'a str>,
    /// `live` or `test`.
    pub env: Option<&'a str>,
    /// Client IP as decided (peer or trusted X-Forwarded-For).
    pub client_ip: Option<IpAddr>,
    /// Request head to response head, milliseconds.
    pub duration_ms: f64,
    /// Upstream time to response head, milliseconds, when forwarded.
    pub upstream_ms: Option<f64>,
    /// Request body size from Content-Length, when declared.
    pub bytes_in: Option<u64>,
    /// Response body size from Content-Length, when declared.
    pub bytes_out: Option<u64>,
}

/// Milliseconds with microsecond resolution, for log fields.
pub fn millis(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

/// The writer behind the access log; dropping it flushes what is queued.
pub struct AccessLog {
    writer: NonBlocking,
    _guard: WorkerGuard,
}

impl AccessLog {
    /// Opens the configured destination; `None` when the log is off.
    pub fn open(cfg: &AccessLogConfig) -> Result<Option<AccessLog>, String> {
        let builder = NonBlockingBuilder::default()
            .lossy(true)
            .buffered_lines_limit(64 * 1024);
        let (writer, guard) = match cfg {
            AccessLogConfig::Off => return Ok(None),
            AccessLogConfig::Stdout => builder.finish(std::io::stdout()),
            AccessLogConfig::File(path) => builder.finish(open_append(path)?),
        };
        Ok(Some(AccessLog {
            writer,
            _guard: guard,
        }))
    }

    /// Queues one line; never blocks on I/O.
    pub fn write(&self, entry: &Entry<'_>) {
        let mut line = Vec::with_capacity(384);
        if serde_json::to_writer(&mut line, entry).is_ok() {
            line.push(b'\n');
            let _ = self.writer.clone().write_all(&line);
        }
    }

    /// Lines dropped because the writer fell behind.
    pub fn dropped(&self) -> usize {
        self.writer.error_counter().dropped_lines()
    }
}

fn open_append(path: &Path) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open access log {}: {e}", path.display()))
}

/// The timestamp field.
pub fn now_rfc3339() -> String {
    Timestamp::now().to_string()
}
