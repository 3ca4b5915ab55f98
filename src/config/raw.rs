//! The file as written: a serde mirror of `gateway.toml`, before any checking.
//!
//! Kept separate from the runtime types so that serde only has to catch what it is
//! good at (syntax, unknown keys, wrong value types) while every semantic check
//! lives in one validation pass that can report all problems at once. For that
//! reason required fields are `Option`s, numbers are `i64` (TOML's integer type)
//! and durations and sizes are strings: range and syntax errors then surface as
//! precise, path-named problems instead of one opaque serde failure.
//!
//! Defaults live here, in the `Default` impls, and are documented in `gateway.toml`.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use super::ConfigProblem;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawConfig {
    pub server: RawServer,
    pub admin: RawAdmin,
    pub store: RawStore,
    pub cache: RawCache,
    pub auth: RawAuth,
    pub log: RawLog,
    pub usage: RawUsage,
    /// A `BTreeMap` so upstreams come out sorted by name, whatever the file order.
    pub upstreams: BTreeMap<String, RawUpstream>,
    pub routes: Vec<RawRoute>,
}

/// `[server]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawServer {
    pub listen: Option<String>,
    pub max_body: String,
    pub header_read_timeout: String,
    pub max_header_bytes: String,
    pub idle_timeout: String,
    pub max_connections: i64,
    pub shutdown_grace: String,
    pub workers: Option<i64>,
    pub http2: RawHttp2,
    pub tls: Option<RawTls>,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: None,
            max_body: "10MiB".to_owned(),
            header_read_timeout: "10s".to_owned(),
            max_header_bytes: "64KiB".to_owned(),
            idle_timeout: "60s".to_owned(),
            max_connections: 10_000,
            shutdown_grace: "30s".to_owned(),
            workers: None,
            http2: RawHttp2::default(),
            tls: None,
        }
    }
}

/// `[server.http2]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawHttp2 {
    pub max_concurrent_streams: i64,
    pub max_header_list_size: String,
    pub max_pending_resets: i64,
}

impl Default for RawHttp2 {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 100,
            max_header_list_size: "64KiB".to_owned(),
            max_pending_resets: 20,
        }
    }
}

/// `[server.tls]`: `listen`, `cert` and `key` are required once the table exists.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawTls {
    pub listen: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub handshake_timeout: String,
}

impl Default for RawTls {
    fn default() -> Self {
        Self {
            listen: None,
            cert: None,
            key: None,
            handshake_timeout: "10s".to_owned(),
        }
    }
}

/// `[admin]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub listen: String,
    pub token_env: Option<String>,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9090".to_owned(),
            token_env: None,
        }
    }
}

/// `[store]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawStore {
    pub backend: String,
    pub url: Option<String>,
    pub path: Option<String>,
    pub timeout: String,
    pub feed_max_len: i64,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            backend: "redis".to_owned(),
            url: None,
            path: None,
            timeout: "1s".to_owned(),
            feed_max_len: 100_000,
        }
    }
}

/// `[cache]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawCache {
    pub capacity: i64,
    pub ttl: String,
    pub negative_ttl: String,
    pub negative_capacity: i64,
    pub stale_if_error: String,
}

impl Default for RawCache {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            ttl: "60s".to_owned(),
            negative_ttl: "5s".to_owned(),
            negative_capacity: 100_000,
            stale_if_error: "10m".to_owned(),
        }
    }
}

/// `[auth]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawAuth {
    pub query_key: bool,
    pub verify_checksum: bool,
    pub trusted_proxies: Vec<String>,
    pub failed_lookup_budget: i64,
    pub failed_lookup_window: String,
    pub failed_lookup_ipv6_prefix: i64,
}

impl Default for RawAuth {
    fn default() -> Self {
        Self {
            query_key: true,
            verify_checksum: true,
            trusted_proxies: Vec::new(),
            failed_lookup_budget: 30,
            failed_lookup_window: "60s".to_owned(),
            failed_lookup_ipv6_prefix: 64,
        }
    }
}

/// `[log]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawLog {
    pub access: String,
    pub level: String,
    /// Diagnostics format: `text` or `json`.
    pub format: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            access: "stdout".to_owned(),
            level: "info".to_owned(),
            format: "text".to_owned(),
        }
    }
}

/// `[usage]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawUsage {
    pub flush_interval: String,
}

impl Default for RawUsage {
    fn default() -> Self {
        Self {
            flush_interval: "10s".to_owned(),
        }
    }
}

/// `[upstreams.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawUpstream {
    pub url: Option<String>,
    pub test_url: Option<String>,
    pub connect_timeout: String,
    pub timeout: String,
    pub pool_max_idle: i64,
    pub pool_idle_timeout: String,
}

impl Default for RawUpstream {
    fn default() -> Self {
        Self {
            url: None,
            test_url: None,
            connect_timeout: "2s".to_owned(),
            timeout: "30s".to_owned(),
            pool_max_idle: 256,
            pool_idle_timeout: "90s".to_owned(),
        }
    }
}

/// `[[routes]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawRoute {
    pub prefix: Option<String>,
    pub upstream: Option<String>,
    pub resource: Option<String>,
    /// Method name as written (any case) to scope string.
    pub scopes: BTreeMap<String, String>,
    pub public: bool,
    pub max_body: Option<String>,
}

/// Parses the text into the raw mirror; a failure is one problem because serde
/// stops at the first one. `source` names the file when no better path is known.
pub(super) fn parse(text: &str, source: &str) -> Result<RawConfig, ConfigProblem> {
    // Parsing to a plain table first tells syntax errors (the file is not TOML)
    // apart from shape errors (TOML, but not our schema): they read differently.
    if let Err(err) = toml::from_str::<toml::Table>(text) {
        return Err(ConfigProblem {
            path: source.to_owned(),
            message: match location(text, err.span()) {
                Some(at) => format!("invalid TOML at {at}: {}", one_line(err.message())),
                None => format!("invalid TOML: {}", one_line(err.message())),
            },
        });
    }
    toml::from_str::<RawConfig>(text).map_err(|err| ConfigProblem {
        path: err
            .span()
            .and_then(|span| path_at(text, span.start))
            .unwrap_or_else(|| source.to_owned()),
        message: match location(text, err.span()) {
            Some(at) => format!("{} ({at})", one_line(err.message())),
            None => one_line(err.message()),
        },
    })
}

/// Keeps each problem on one line, as `ConfigErrors` promises.
fn one_line(message: &str) -> String {
    let lines = message
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "));
    lines
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// `"line L, column C"` for the start of a byte span, when toml gave one.
fn location(text: &str, span: Option<std::ops::Range<usize>>) -> Option<String> {
    let before = text.get(..span?.start)?;
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Some(format!("line {line}, column {column}"))
}

/// Best-effort dotted path (`routes[2].bogus`, `server.http2`) of the key at a byte
/// offset, reconstructed from table headers and the nearest `key =` at or above it.
///
/// toml's errors carry a span but not the key path, and operators want the field
/// name. This is a line-oriented heuristic: it understands headers, arrays of
/// tables and `key = value` lines (a value spanning lines belongs to the last key
/// above it), which is all our schema uses; when it cannot tell, it returns `None`
/// and the caller falls back to the file name.
fn path_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let mut arrays: HashMap<String, usize> = HashMap::new();
    let mut table: Option<String> = None;
    let mut last_key: Option<&str> = None;
    for line in text.get(..line_start)?.lines() {
        if let Some(path) = header(line.trim(), &mut arrays) {
            table = Some(path);
            last_key = None;
        } else if let Some(key) = key_of(line) {
            last_key = Some(key);
        }
    }
    let line = text.get(line_start..)?.lines().next().unwrap_or("").trim();
    if let Some(path) = header(line, &mut arrays) {
        return Some(path);
    }
    match (table, key_of(line).or(last_key)) {
        (Some(table), Some(key)) => Some(format!("{table}.{key}")),
        (None, Some(key)) => Some(key.to_owned()),
        (table, None) => table,
    }
}

/// The bare or dotted key of a `key = value` line.
fn key_of(line: &str) -> Option<&str> {
    let key = line.split_once('=')?.0.trim();
    let bare = |c: char| c.is_ascii_alphanumeric() || "_-.".contains(c);
    (!key.is_empty() && key.chars().all(bare)).then_some(key)
}

/// If `line` is a table header, its resolved path; arrays of tables are counted in
/// `arrays` so `[[routes]]` becomes `routes[N]` and `[routes.x]` under it `routes[N].x`.
fn header(line: &str, arrays: &mut HashMap<String, usize>) -> Option<String> {
    let (name, is_array) = if let Some(rest) = line.strip_prefix("[[") {
        (rest.split_once("]]")?.0, true)
    } else if let Some(rest) = line.strip_prefix('[') {
        (rest.split_once(']')?.0, false)
    } else {
        return None;
    };
    let name = name.split('.').map(str::trim).collect::<Vec<_>>().join(".");
    if is_array {
        *arrays.entry(name.clone()).or_insert(0) += 1;
    }
    let mut plain = String::new();
    let mut resolved = String::new();
    for (i, part) in name.split('.').enumerate() {
        if i > 0 {
            plain.push('.');
            resolved.push('.');
        }
        plain.push_str(part);
        resolved.push_str(part);
        if let Some(count) = arrays.get(&plain) {
            resolved.push_str(&format!("[{}]", count - 1));
        }
    }
    Some(resolved)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_documented_defaults() {
        let raw = parse("", "x.toml").unwrap();
        assert_eq!(raw.server.max_body, "10MiB");
        assert_eq!(raw.admin.listen, "127.0.0.1:9090");
        assert_eq!(raw.store.backend, "redis");
        assert_eq!(raw.cache.capacity, 100_000);
        assert!(raw.auth.query_key && raw.auth.verify_checksum);
        assert!(raw.upstreams.is_empty() && raw.routes.is_empty());
    }

    #[test]
    fn syntax_error_names_the_file_and_position() {
        let err = parse("[server]\nlisten = \n", "gw.toml").unwrap_err();
        assert_eq!(err.path, "gw.toml");
        assert!(err.message.starts_with("invalid TOML at line 2"), "{err}");
        assert!(!err.message.contains('\n'));
    }

    #[test]
    fn paths_follow_headers_and_arrays_of_tables() {
        let text = concat!(
            "a = 1\n[server]\nx = 1\n[[routes]]\ny = 2\n[[routes]]\n[routes.scopes]\nz = 3\n",
            "[auth]\nt = [\n  \"a\",\n  5,\n]\n",
        );
        let at = |needle: &str| path_at(text, text.find(needle).unwrap());
        assert_eq!(at("a =").as_deref(), Some("a"));
        assert_eq!(at("x =").as_deref(), Some("server.x"));
        assert_eq!(at("y =").as_deref(), Some("routes[0].y"));
        assert_eq!(at("z =").as_deref(), Some("routes[1].scopes.z"));
        assert_eq!(at("[routes.scopes]").as_deref(), Some("routes[1].scopes"));
        assert_eq!(at("5,").as_deref(), Some("auth.t"));
    }
}
