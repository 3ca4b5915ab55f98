//! Turning the serde mirror into runtime types: [`Validator`] walks every
//! section of the file, converts each value (durations, sizes, addresses,
//! paths) and records a [`ConfigProblem`] naming the field for each mistake
//! instead of stopping, so one reload reports everything wrong at once. The
//! route table is built in `routes.rs`; single-value checks live in
//! `checks.rs`.
//!
//! One `Validator` pass over every section, so every problem of a file is
//! reported in one run; longer than 400 lines for that reason.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::checks::{
    check_redis_url, is_env_name, overlaps, parse_net, parse_upstream_url, url_has_password,
};
use super::units::{parse_duration, parse_size};
use super::{
    raw, AccessLog, AdminConfig, AuthConfig, CacheConfig, Config, ConfigProblem, Http2Config,
    LogConfig, LogFormat, ServerConfig, StoreConfig, TlsConfig, UpstreamUrl, UsageConfig,
};

/// Collects problems while building runtime values. A field in error gets a
/// placeholder value so checking can go on; the result is discarded in that case.
pub(super) struct Validator<'a> {
    pub(super) problems: Vec<ConfigProblem>,
    pub(super) base_dir: &'a Path,
}

/// Longest duration any field accepts: beyond it a timer deadline is
/// nonsense (and `Instant + Duration` could overflow).
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Upper bounds of sizes and counts: far above any sane setting, low enough
/// that a typo (`"100GiB"` headers, `99999999999` connections) is an error.
pub(super) mod bounds {
    /// `server.max_header_bytes`, `server.http2.max_header_list_size`.
    pub(crate) const HEADER_BYTES: u64 = 1 << 20;
    /// `server.max_body`, `routes[].max_body`.
    pub(crate) const BODY: u64 = 64 << 30;
    /// `server.max_connections`, `server.max_connections_per_ip`.
    pub(crate) const CONNECTIONS: i64 = 1_000_000;
    /// `server.workers`.
    pub(crate) const WORKERS: i64 = 1024;
    /// `server.http2.max_concurrent_streams`.
    pub(crate) const STREAMS: i64 = 10_000;
    /// `server.http2.max_pending_resets`.
    pub(crate) const PENDING_RESETS: i64 = 10_000;
    /// `cache.capacity`, `cache.negative_capacity`.
    pub(crate) const CACHE_ENTRIES: i64 = 100_000_000;
    /// `auth.failed_lookup_budget`, `admin.failed_token_budget`.
    pub(crate) const BUDGET: i64 = 1_000_000;
    /// `upstreams.*.pool_max_idle`, `upstreams.*.pool_max`.
    pub(crate) const POOL_IDLE: i64 = 100_000;
    /// Change-feed entries kept (`store.feed_max_len`).
    pub(crate) const FEED_LEN: i64 = 100_000_000;
}

/// `1MiB`, `64GiB`: a bound as the file would write it.
fn human_size(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{}GiB", n >> 30),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{}MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{}KiB", n >> 10),
        n => n.to_string(),
    }
}

/// Placeholder for an address that failed to parse.
const NO_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

impl Validator<'_> {
    pub(super) fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(ConfigProblem {
            path: path.into(),
            message: message.into(),
        });
    }

    pub(super) fn duration(&mut self, path: &str, text: &str, allow_zero: bool) -> Duration {
        match parse_duration(text) {
            Ok(d) if d.is_zero() && !allow_zero => {
                self.problem(path, format!("must be greater than zero, got {text:?}"));
                d
            }
            Ok(d) if d > MAX_DURATION => {
                self.problem(path, format!("must be at most 365d, got {text:?}"));
                Duration::ZERO
            }
            Ok(d) => d,
            Err(message) => {
                self.problem(path, message);
                Duration::ZERO
            }
        }
    }

    pub(super) fn size<T: TryFrom<u64> + Default>(
        &mut self,
        path: &str,
        text: &str,
        min: u64,
        max: u64,
    ) -> T {
        match parse_size(text) {
            Ok(n) if n < min => {
                self.problem(path, format!("must be at least {min} bytes, got {text:?}"))
            }
            Ok(n) if n > max => self.problem(
                path,
                format!(
                    "too large: must be at most {} ({max} bytes), got {text:?}",
                    human_size(max)
                ),
            ),
            Ok(n) => match T::try_from(n) {
                Ok(n) => return n,
                Err(_) => self.problem(path, format!("{text:?} is too large")),
            },
            Err(message) => self.problem(path, message),
        }
        T::default()
    }

    pub(super) fn count<T: TryFrom<i64> + Default>(
        &mut self,
        path: &str,
        n: i64,
        min: i64,
        max: i64,
    ) -> T {
        if n < min {
            self.problem(path, format!("must be at least {min}, got {n}"));
        } else if n > max {
            self.problem(path, format!("must be at most {max}, got {n}"));
        } else if let Ok(n) = T::try_from(n) {
            return n;
        } else {
            self.problem(path, format!("{n} is too large"));
        }
        T::default()
    }

    fn addr(&mut self, path: &str, text: &str) -> SocketAddr {
        text.parse().unwrap_or_else(|_| {
            self.problem(
                path,
                format!("invalid address {text:?}; expected IP:PORT such as \"127.0.0.1:8080\" or \"[::1]:8080\""),
            );
            NO_ADDR
        })
    }

    pub(super) fn upstream_url(&mut self, path: String, text: &str) -> Option<UpstreamUrl> {
        parse_upstream_url(text)
            .map_err(|message| self.problem(path, message))
            .ok()
    }

    fn file_path(&mut self, path: &str, text: &str) -> PathBuf {
        if text.is_empty() {
            self.problem(path, "must not be empty");
        }
        self.base_dir.join(text)
    }

    pub(super) fn config(&mut self, raw: raw::RawConfig) -> Config {
        let server = self.server(raw.server);
        let admin = self.admin(raw.admin, &server);
        let store = self.store(raw.store);
        let cache = self.cache(raw.cache);
        let auth = self.auth(raw.auth);
        let log = self.log(raw.log);
        let usage = UsageConfig {
            flush_interval: self.duration("usage.flush_interval", &raw.usage.flush_interval, false),
        };
        let upstreams = self.upstreams(raw.upstreams);
        let routes = self.routes(raw.routes, &upstreams);
        Config {
            server,
            admin,
            store,
            cache,
            auth,
            log,
            usage,
            upstreams,
            routes,
        }
    }

    fn server(&mut self, raw: raw::RawServer) -> ServerConfig {
        let listen = raw.listen.as_deref().map(|l| self.addr("server.listen", l));
        if raw.listen.is_none() && raw.tls.is_none() {
            self.problem("server.listen", "required unless [server.tls] is set");
        }
        let tls = raw.tls.map(|tls| {
            let listen = match tls.listen.as_deref() {
                Some(text) => self.addr("server.tls.listen", text),
                None => {
                    self.problem("server.tls.listen", "required when [server.tls] is set");
                    NO_ADDR
                }
            };
            let mut required = |field: &str, value: Option<String>| match value {
                Some(text) => self.file_path(&format!("server.tls.{field}"), &text),
                None => {
                    self.problem(
                        format!("server.tls.{field}"),
                        "required when [server.tls] is set",
                    );
                    PathBuf::new()
                }
            };
            let cert = required("cert", tls.cert);
            let key = required("key", tls.key);
            let handshake_timeout = self.duration(
                "server.tls.handshake_timeout",
                &tls.handshake_timeout,
                false,
            );
            TlsConfig {
                listen,
                cert,
                key,
                handshake_timeout,
            }
        });
        if let (Some(plain), Some(tls)) = (listen, &tls) {
            if overlaps(plain, tls.listen) {
                self.problem(
                    "server.tls.listen",
                    format!("{} is also server.listen", tls.listen),
                );
            }
        }
        let h2 = raw.http2;
        let max_connections = self.count(
            "server.max_connections",
            raw.max_connections,
            1,
            bounds::CONNECTIONS,
        );
        ServerConfig {
            listen,
            max_body: self.size("server.max_body", &raw.max_body, 0, bounds::BODY),
            header_read_timeout: self.duration(
                "server.header_read_timeout",
                &raw.header_read_timeout,
                false,
            ),
            max_header_bytes: self.size(
                "server.max_header_bytes",
                &raw.max_header_bytes,
                1024,
                bounds::HEADER_BYTES,
            ),
            idle_timeout: self.duration("server.idle_timeout", &raw.idle_timeout, false),
            send_timeout: self.duration("server.send_timeout", &raw.send_timeout, false),
            max_connections,
            max_connections_per_ip: self.count(
                "server.max_connections_per_ip",
                raw.max_connections_per_ip,
                1,
                bounds::CONNECTIONS,
            ),
            shutdown_grace: self.duration("server.shutdown_grace", &raw.shutdown_grace, true),
            workers: raw
                .workers
                .map(|n| self.count("server.workers", n, 1, bounds::WORKERS)),
            http2: Http2Config {
                max_concurrent_streams: self.count(
                    "server.http2.max_concurrent_streams",
                    h2.max_concurrent_streams,
                    1,
                    bounds::STREAMS,
                ),
                max_header_list_size: self.size(
                    "server.http2.max_header_list_size",
                    &h2.max_header_list_size,
                    1024,
                    bounds::HEADER_BYTES,
                ),
                max_pending_resets: self.count(
                    "server.http2.max_pending_resets",
                    h2.max_pending_resets,
                    1,
                    bounds::PENDING_RESETS,
                ),
            },
            tls,
        }
    }

    fn admin(&mut self, raw: raw::RawAdmin, server: &ServerConfig) -> AdminConfig {
        let listen = self.addr("admin.listen", &raw.listen);
        let public = [
            ("server.listen", server.listen),
            ("server.tls.listen", server.tls.as_ref().map(|t| t.listen)),
        ];
        for (name, addr) in public {
            if addr.is_some_and(|addr| overlaps(addr, listen)) {
                self.problem("admin.listen", format!("{listen} is also {name}; the admin listener must stay separate from public traffic"));
            }
        }
        if let Some(var) = &raw.token_env {
            if !is_env_name(var) {
                self.problem(
                    "admin.token_env",
                    format!("{var:?} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"),
                );
            }
        }
        let name_ok = (1..=64).contains(&raw.token_name.len())
            && raw
                .token_name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c));
        if !name_ok {
            self.problem(
                "admin.token_name",
                format!(
                    "{:?} is not a token name (1–64 of [A-Za-z0-9_.-])",
                    raw.token_name
                ),
            );
        }
        AdminConfig {
            listen,
            token_env: raw.token_env,
            failed_token_budget: self.count(
                "admin.failed_token_budget",
                raw.failed_token_budget,
                1,
                bounds::BUDGET,
            ),
            token_name: raw.token_name,
        }
    }

    fn store(&mut self, raw: raw::RawStore) -> StoreConfig {
        let timeout = self.duration("store.timeout", &raw.timeout, false);
        let feed_max_len: u64 = self.count(
            "store.feed_max_len",
            raw.feed_max_len,
            1000,
            bounds::FEED_LEN,
        );
        match raw.backend.as_str() {
            "redis" => {
                if raw.path.is_some() {
                    self.problem("store.path", "only used with backend = \"file\"");
                }
                let url = raw.url.unwrap_or_else(|| {
                    self.problem("store.url", "required when backend = \"redis\"");
                    String::new()
                });
                if !url.is_empty() {
                    if let Err(message) = check_redis_url(&url) {
                        self.problem("store.url", message);
                    }
                }
                let tls = url.starts_with("rediss");
                let tls_ca = raw.tls_ca.map(|text| {
                    if !tls && !url.is_empty() {
                        self.problem(
                            "store.tls_ca",
                            "only used with a TLS URL (rediss://, rediss+sentinel://, rediss+cluster://)",
                        );
                    }
                    self.file_path("store.tls_ca", &text)
                });
                if let Some(var) = &raw.password_env {
                    if !is_env_name(var) {
                        self.problem(
                            "store.password_env",
                            "must be an environment variable name such as \"OSIR_REDIS_PASSWORD\" (letters, digits, _; not starting with a digit)",
                        );
                    } else if url_has_password(&url) {
                        self.problem(
                            "store.password_env",
                            "store.url already holds a password: give it one way only (remove it from the URL)",
                        );
                    }
                }
                StoreConfig::Redis {
                    url,
                    timeout,
                    feed_max_len,
                    tls_ca,
                    password_env: raw.password_env,
                }
            }
            "file" => {
                if raw.url.is_some() {
                    self.problem("store.url", "only used with backend = \"redis\"");
                }
                if raw.tls_ca.is_some() {
                    self.problem("store.tls_ca", "only used with backend = \"redis\"");
                }
                if raw.password_env.is_some() {
                    self.problem("store.password_env", "only used with backend = \"redis\"");
                }
                let path = match raw.path {
                    Some(text) => self.file_path("store.path", &text),
                    None => {
                        self.problem("store.path", "required when backend = \"file\"");
                        PathBuf::new()
                    }
                };
                StoreConfig::File { path, timeout }
            }
            other => {
                self.problem(
                    "store.backend",
                    format!("unknown backend {other:?}; use \"redis\" or \"file\""),
                );
                StoreConfig::File {
                    path: PathBuf::new(),
                    timeout,
                }
            }
        }
    }

    fn cache(&mut self, raw: raw::RawCache) -> CacheConfig {
        CacheConfig {
            capacity: self.count("cache.capacity", raw.capacity, 1, bounds::CACHE_ENTRIES),
            ttl: self.duration("cache.ttl", &raw.ttl, true),
            negative_ttl: self.duration("cache.negative_ttl", &raw.negative_ttl, true),
            negative_capacity: self.count(
                "cache.negative_capacity",
                raw.negative_capacity,
                0,
                bounds::CACHE_ENTRIES,
            ),
            stale_if_error: self.duration("cache.stale_if_error", &raw.stale_if_error, true),
        }
    }

    fn auth(&mut self, raw: raw::RawAuth) -> AuthConfig {
        let mut trusted_proxies = Vec::with_capacity(raw.trusted_proxies.len());
        for (i, text) in raw.trusted_proxies.iter().enumerate() {
            match parse_net(text) {
                Some(net) => trusted_proxies.push(net),
                None => self.problem(
                    format!("auth.trusted_proxies[{i}]"),
                    format!("invalid IP or CIDR {text:?}"),
                ),
            }
        }
        AuthConfig {
            query_key: raw.query_key,
            verify_checksum: raw.verify_checksum,
            trusted_proxies,
            failed_lookup_budget: self.count(
                "auth.failed_lookup_budget",
                raw.failed_lookup_budget,
                1,
                bounds::BUDGET,
            ),
            failed_lookup_window: self.duration(
                "auth.failed_lookup_window",
                &raw.failed_lookup_window,
                false,
            ),
            failed_lookup_ipv6_prefix: {
                let n = raw.failed_lookup_ipv6_prefix;
                if !(1..=128).contains(&n) {
                    self.problem(
                        "auth.failed_lookup_ipv6_prefix",
                        format!("must be between 1 and 128, got {n}"),
                    );
                }
                n.clamp(1, 128) as u8
            },
        }
    }

    fn log(&mut self, raw: raw::RawLog) -> LogConfig {
        let access = match raw.access.as_str() {
            "stdout" => AccessLog::Stdout,
            "off" => AccessLog::Off,
            path => AccessLog::File(self.file_path("log.access", path)),
        };
        let level = raw.level.to_ascii_lowercase();
        if !["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
            self.problem(
                "log.level",
                format!(
                    "unknown level {:?}; use error, warn, info, debug or trace",
                    raw.level
                ),
            );
        }
        let format = match raw.format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                self.problem(
                    "log.format",
                    format!("unknown format {other:?}; use text or json"),
                );
                LogFormat::Text
            }
        };
        LogConfig {
            access,
            level,
            format,
        }
    }
}
