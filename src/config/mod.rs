//! `gateway.toml`: parsed, checked as a whole, and turned into runtime types.
//!
//! Loading happens at start-up, on `check`, and on every reload. A reload must be
//! all-or-nothing, so validation never stops at the first mistake: it gathers every
//! problem, each naming its field (`routes[2].upstream: ...`), and only a file with
//! none becomes a [`Config`]. The rest of the gateway can then trust every value.

mod raw;
pub mod units;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::Method;
use ipnet::IpNet;

use self::units::{parse_duration, parse_size};

/// One thing wrong with the file, named by field so an operator can find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted field path (`routes[2].upstream`), or the file name when no field applies.
    pub path: String,
    /// What is wrong, quoting the offending value where that helps.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in one file, so a single `check` run shows them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A validated configuration: every value here has already been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Public listeners and the limits that protect them.
    pub server: ServerConfig,
    /// The private listener for metrics, health and the key API.
    pub admin: AdminConfig,
    /// Where key records live.
    pub store: StoreConfig,
    /// How long key records are trusted without asking the store.
    pub cache: CacheConfig,
    /// How keys and client addresses are read from requests.
    pub auth: AuthConfig,
    /// Where access logs go and how chatty the process log is.
    pub log: LogConfig,
    /// How often usage counters are written out.
    pub usage: UsageConfig,
    /// Upstreams sorted by name, so indices are stable for identical files.
    pub upstreams: Vec<UpstreamConfig>,
    /// Routes in file order; [`RouteConfig::upstream`] indexes `upstreams`.
    pub routes: Vec<RouteConfig>,
}

/// Public listeners and the limits that keep one client from starving the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Plain-HTTP address; `None` when only TLS is served.
    pub listen: Option<SocketAddr>,
    /// Default request body limit in bytes (413 past it).
    pub max_body: u64,
    /// Slow-loris guard: time allowed to receive a request head.
    pub header_read_timeout: Duration,
    /// Largest request head accepted, bounding per-connection memory.
    pub max_header_bytes: usize,
    /// Idle keep-alive connections are closed after this.
    pub idle_timeout: Duration,
    /// Open connections beyond this wait to be accepted, bounding file descriptors.
    pub max_connections: usize,
    /// On shutdown, in-flight requests get this long to finish.
    pub shutdown_grace: Duration,
    /// Runtime worker threads; `None` lets the runtime use one per CPU.
    pub workers: Option<usize>,
    /// HTTP/2 abuse limits.
    pub http2: Http2Config,
    /// The TLS listener, when configured.
    pub tls: Option<TlsConfig>,
}

/// HTTP/2 limits: one connection can carry many streams, so it needs its own caps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http2Config {
    /// Streams one connection may have open at once.
    pub max_concurrent_streams: u32,
    /// Largest decoded header block accepted, in bytes (HPACK bomb guard).
    pub max_header_list_size: u32,
    /// Pending locally reset streams before the connection is dropped (reset-flood guard).
    pub max_pending_resets: usize,
}

/// The TLS listener; paths are already resolved against the config file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Address to accept TLS connections on.
    pub listen: SocketAddr,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// Time allowed to finish a TLS handshake, so stalled handshakes cannot pile up.
    pub handshake_timeout: Duration,
}

/// The admin listener, kept apart from public traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Address for `/metrics`, `/healthz`, `/readyz` and the key API.
    pub listen: SocketAddr,
    /// Environment variable holding the admin token; `None` disables the key API.
    pub token_env: Option<String>,
}

/// Where key records live (an in-memory store exists too, but only for demos and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// Shared Redis, for several gateways over one key set.
    Redis {
        /// Connection URL; may hold a password, so never log it whole.
        url: String,
        /// Per-command timeout, so a stalled store fails fast into stale-if-error.
        timeout: Duration,
    },
    /// A JSON file on this host, for a single gateway.
    File {
        /// The key file, resolved against the config file's directory.
        path: PathBuf,
        /// Per-operation timeout, for parity with Redis.
        timeout: Duration,
    },
}

/// Key-record cache: trades revocation latency for store load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Key records held in memory.
    pub capacity: u64,
    /// How long a cached record is trusted without the store.
    pub ttl: Duration,
    /// How long an unknown key is remembered as unknown.
    pub negative_ttl: Duration,
    /// Unknown keys remembered at once; bounds memory under a flood of invented keys.
    pub negative_capacity: u64,
    /// How long past `ttl` a record may still serve while the store is down.
    pub stale_if_error: Duration,
}

/// How keys and client addresses are taken from requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Whether `?api_key=` is accepted besides the headers.
    pub query_key: bool,
    /// Whether malformed-checksum keys are refused without a store lookup.
    pub verify_checksum: bool,
    /// Peers whose `X-Forwarded-For` is believed (bare IPs become /32 or /128).
    pub trusted_proxies: Vec<IpNet>,
    /// Failed key lookups allowed per client IP per window, limiting key guessing.
    pub failed_lookup_budget: u32,
    /// The window `failed_lookup_budget` is counted over.
    pub failed_lookup_window: Duration,
}

/// Where access-log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLog {
    /// Standard output, for container log collectors.
    Stdout,
    /// No access log.
    Off,
    /// Appended to this file (resolved against the config file's directory).
    File(PathBuf),
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Access-log destination.
    pub access: AccessLog,
    /// Process log level, lowercase: `error`, `warn`, `info`, `debug` or `trace`.
    pub level: String,
}

/// Usage accounting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageConfig {
    /// How often per-key counters are flushed, trading store writes for freshness.
    pub flush_interval: Duration,
}

/// One upstream service and how the gateway talks to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// The name routes refer to.
    pub name: String,
    /// Where live-key requests go.
    pub url: UpstreamUrl,
    /// Where test-key requests go; `None` sends them to `url` too.
    pub test_url: Option<UpstreamUrl>,
    /// Time allowed to open a TCP connection.
    pub connect_timeout: Duration,
    /// Time allowed for the whole upstream response head.
    pub timeout: Duration,
    /// Idle pooled connections kept for reuse.
    pub pool_max_idle: usize,
    /// Idle pooled connections are closed after this.
    pub pool_idle_timeout: Duration,
}

/// An upstream base: only `http://host[:port][/base/path]`; no query, no fragment, no
/// userinfo, so the forwarded URL is always base + checked path and nothing else.
/// `base_path` has no trailing slash (`""` when none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    /// Always `http`; TLS to upstreams is not supported.
    pub scheme: Scheme,
    /// `host[:port]`.
    pub authority: Authority,
    /// Path prepended to the forwarded path; `""` or `/segments` without trailing slash.
    pub base_path: String,
}

impl fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.base_path)
    }
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// Path prefix matched on segment boundaries; `/` or `/a/b` without trailing slash.
    pub prefix: String,
    /// Index into [`Config::upstreams`].
    pub upstream: usize,
    /// Resource for the default scopes; `None` only on public routes.
    pub resource: Option<String>,
    /// Per-method overrides of the required scope, at most one per method.
    pub scopes: Vec<(Method, ScopeSpec)>,
    /// Whether the route is served without a key.
    pub public: bool,
    /// This route's body limit, replacing `server.max_body`.
    pub max_body: Option<u64>,
}

/// A scope as written in config: resource and action, each may be `"*"`; `"*"`
/// alone means everything. The key module owns the scope type used for checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeSpec {
    /// `[a-z0-9_-]+` or `*`.
    pub resource: String,
    /// `read`, `write`, `delete` or `*`.
    pub action: String,
}

impl fmt::Display for ScopeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.resource == "*" && self.action == "*" {
            f.write_str("*")
        } else {
            write!(f, "{}:{}", self.resource, self.action)
        }
    }
}

impl Config {
    /// Validates config text; relative paths in it are resolved against `base_dir`
    /// so the result does not depend on the process's working directory. Having no
    /// file name, it reports a syntax error under the path `config`.
    pub fn from_toml(text: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
        Self::from_named_toml(text, base_dir, "config")
    }

    /// Reads and validates a file, resolving relative paths against its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| {
            ConfigErrors(vec![ConfigProblem {
                path: name.clone(),
                message: format!("cannot read the file: {err}"),
            }])
        })?;
        let base_dir = path.parent().unwrap_or_else(|| Path::new(""));
        Self::from_named_toml(&text, base_dir, &name)
    }

    /// Finds an upstream by name, for callers holding a name rather than an index.
    pub fn upstream(&self, name: &str) -> Option<&UpstreamConfig> {
        self.upstreams
            .binary_search_by(|u| u.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.upstreams[i])
    }

    fn from_named_toml(text: &str, base_dir: &Path, source: &str) -> Result<Self, ConfigErrors> {
        let raw = raw::parse(text, source).map_err(|p| ConfigErrors(vec![p]))?;
        let mut v = Validator {
            problems: Vec::new(),
            base_dir,
        };
        let config = v.config(raw);
        if v.problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(v.problems))
        }
    }
}

/// Collects problems while building runtime values. A field in error gets a
/// placeholder value so checking can go on; the result is discarded in that case.
struct Validator<'a> {
    problems: Vec<ConfigProblem>,
    base_dir: &'a Path,
}

/// Placeholder for an address that failed to parse.
const NO_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

impl Validator<'_> {
    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(ConfigProblem {
            path: path.into(),
            message: message.into(),
        });
    }

    fn duration(&mut self, path: &str, text: &str, allow_zero: bool) -> Duration {
        match parse_duration(text) {
            Ok(d) if d.is_zero() && !allow_zero => {
                self.problem(path, format!("must be greater than zero, got {text:?}"));
                d
            }
            Ok(d) => d,
            Err(message) => {
                self.problem(path, message);
                Duration::ZERO
            }
        }
    }

    fn size<T: TryFrom<u64> + Default>(&mut self, path: &str, text: &str, min: u64) -> T {
        match parse_size(text) {
            Ok(n) if n < min => {
                self.problem(path, format!("must be at least {min} bytes, got {text:?}"))
            }
            Ok(n) => match T::try_from(n) {
                Ok(n) => return n,
                Err(_) => self.problem(path, format!("{text:?} is too large")),
            },
            Err(message) => self.problem(path, message),
        }
        T::default()
    }

    fn count<T: TryFrom<i64> + Default>(&mut self, path: &str, n: i64, min: i64) -> T {
        if n < min {
            self.problem(path, format!("must be at least {min}, got {n}"));
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

    fn upstream_url(&mut self, path: String, text: &str) -> Option<UpstreamUrl> {
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

    fn config(&mut self, raw: raw::RawConfig) -> Config {
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
        ServerConfig {
            listen,
            max_body: self.size("server.max_body", &raw.max_body, 0),
            header_read_timeout: self.duration(
                "server.header_read_timeout",
                &raw.header_read_timeout,
                false,
            ),
            max_header_bytes: self.size("server.max_header_bytes", &raw.max_header_bytes, 1024),
            idle_timeout: self.duration("server.idle_timeout", &raw.idle_timeout, false),
            max_connections: self.count("server.max_connections", raw.max_connections, 1),
            shutdown_grace: self.duration("server.shutdown_grace", &raw.shutdown_grace, true),
            workers: raw.workers.map(|n| self.count("server.workers", n, 1)),
            http2: Http2Config {
                max_concurrent_streams: self.count(
                    "server.http2.max_concurrent_streams",
                    h2.max_concurrent_streams,
                    1,
                ),
                max_header_list_size: self.size(
                    "server.http2.max_header_list_size",
                    &h2.max_header_list_size,
                    1024,
                ),
                max_pending_resets: self.count(
                    "server.http2.max_pending_resets",
                    h2.max_pending_resets,
                    1,
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
        AdminConfig {
            listen,
            token_env: raw.token_env,
        }
    }

    fn store(&mut self, raw: raw::RawStore) -> StoreConfig {
        let timeout = self.duration("store.timeout", &raw.timeout, false);
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
                StoreConfig::Redis { url, timeout }
            }
            "file" => {
                if raw.url.is_some() {
                    self.problem("store.url", "only used with backend = \"redis\"");
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
            capacity: self.count("cache.capacity", raw.capacity, 1),
            ttl: self.duration("cache.ttl", &raw.ttl, true),
            negative_ttl: self.duration("cache.negative_ttl", &raw.negative_ttl, true),
            negative_capacity: self.count("cache.negative_capacity", raw.negative_capacity, 0),
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
            ),
            failed_lookup_window: self.duration(
                "auth.failed_lookup_window",
                &raw.failed_lookup_window,
                false,
            ),
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
        LogConfig { access, level }
    }

    fn upstreams(&mut self, raw: BTreeMap<String, raw::RawUpstream>) -> Vec<UpstreamConfig> {
        let mut upstreams = Vec::with_capacity(raw.len());
        for (name, up) in raw {
            let at = |field: &str| format!("upstreams.{name}.{field}");
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                self.problem(
                    "upstreams",
                    format!("name {name:?} must match [A-Za-z0-9_-]+"),
                );
            }
            let main = match up.url.as_deref() {
                Some(text) => self.upstream_url(at("url"), text),
                None => {
                    self.problem(at("url"), "required");
                    None
                }
            };
            let test_url =
                (up.test_url.as_deref()).and_then(|t| self.upstream_url(at("test_url"), t));
            upstreams.push(UpstreamConfig {
                url: main.unwrap_or_else(placeholder_url),
                test_url,
                connect_timeout: self.duration(&at("connect_timeout"), &up.connect_timeout, false),
                timeout: self.duration(&at("timeout"), &up.timeout, false),
                pool_max_idle: self.count(&at("pool_max_idle"), up.pool_max_idle, 0),
                pool_idle_timeout: self.duration(
                    &at("pool_idle_timeout"),
                    &up.pool_idle_timeout,
                    false,
                ),
                name,
            });
        }
        upstreams
    }

    fn routes(
        &mut self,
        raw: Vec<raw::RawRoute>,
        upstreams: &[UpstreamConfig],
    ) -> Vec<RouteConfig> {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut routes = Vec::with_capacity(raw.len());
        for (i, route) in raw.into_iter().enumerate() {
            let at = |field: &str| format!("routes[{i}].{field}");
            let prefix = match route.prefix {
                Some(prefix) => {
                    if let Err(why) = check_prefix(&prefix) {
                        self.problem(at("prefix"), format!("{prefix:?} {why}"));
                    } else if let Some(first) = seen.get(&prefix) {
                        self.problem(
                            at("prefix"),
                            format!("duplicate prefix {prefix:?} (also routes[{first}])"),
                        );
                    } else {
                        seen.insert(prefix.clone(), i);
                    }
                    prefix
                }
                None => {
                    self.problem(at("prefix"), "required");
                    String::new()
                }
            };
            let upstream = match route.upstream.as_deref() {
                Some(name) => upstreams
                    .iter()
                    .position(|u| u.name == name)
                    .unwrap_or_else(|| {
                        self.problem(at("upstream"), format!("no upstream named {name:?}"));
                        0
                    }),
                None => {
                    self.problem(at("upstream"), "required");
                    0
                }
            };
            match &route.resource {
                Some(r) if !is_resource_name(r) => {
                    self.problem(at("resource"), format!("{r:?} must match [a-z0-9_-]+"));
                }
                None if !route.public => {
                    self.problem(at("resource"), "required unless public = true")
                }
                _ => {}
            }
            if route.public && !route.scopes.is_empty() {
                self.problem(
                    at("scopes"),
                    "has no effect on a public route; remove it or drop public = true",
                );
            }
            let mut scopes: Vec<(Method, ScopeSpec)> = Vec::with_capacity(route.scopes.len());
            for (key, value) in &route.scopes {
                let path = at(&format!("scopes.{key}"));
                let method = match parse_method(key) {
                    Some(m) if scopes.iter().any(|(seen, _)| *seen == m) => {
                        self.problem(&path, format!("{m} is given more than once"));
                        continue;
                    }
                    Some(m) => m,
                    None => {
                        self.problem(&path, format!("unknown method {key:?}; use GET, HEAD, OPTIONS, POST, PUT, PATCH or DELETE"));
                        continue;
                    }
                };
                match parse_scope(value) {
                    Ok(scope) => scopes.push((method, scope)),
                    Err(message) => self.problem(&path, message),
                }
            }
            scopes.sort_by_key(|(method, _)| METHODS.iter().position(|m| m == method));
            let max_body = route
                .max_body
                .as_deref()
                .map(|text| self.size(&at("max_body"), text, 0));
            routes.push(RouteConfig {
                prefix,
                upstream,
                resource: route.resource,
                scopes,
                public: route.public,
                max_body,
            });
        }
        routes
    }
}

/// Whether two listeners would fight over the same port. Port 0 (pick any) never
/// clashes; an unspecified IP clashes with every address of its family, and `[::]`
/// with IPv4 too because Linux binds it dual-stack by default.
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() != b.port() || a.port() == 0 {
        return false;
    }
    let (x, y) = (a.ip(), b.ip());
    if x.is_ipv4() == y.is_ipv4() {
        x == y || x.is_unspecified() || y.is_unspecified()
    } else {
        (x.is_ipv6() && x.is_unspecified()) || (y.is_ipv6() && y.is_unspecified())
    }
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_resource_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Checks the scheme and that something follows it: the redis client parses
/// the rest of a `redis://` URL; a `redis+sentinel://` URL is parsed whole
/// (at least one sentinel and a master name), and so is a `redis+cluster://`
/// one (at least one seed node). The URL is never quoted back because it may
/// hold a password.
fn check_redis_url(url: &str) -> Result<(), String> {
    const SCHEMES: [&str; 5] = [
        "redis",
        "redis+unix",
        "unix",
        "redis+sentinel",
        "redis+cluster",
    ];
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("must be a URL such as \"redis://127.0.0.1:6379/0\"".to_owned());
    };
    if !SCHEMES.contains(&scheme) {
        // rediss:// needs client features this build does not have yet;
        // refusing it here beats failing at start.
        return Err(format!(
            "unsupported scheme {scheme:?}; use redis://, redis+unix://, redis+sentinel:// or redis+cluster:// (TLS is not supported yet)"
        ));
    }
    if rest.is_empty() {
        return Err(format!(
            "nothing follows {scheme}://; expected a host such as {scheme}://127.0.0.1:6379/0"
        ));
    }
    if scheme == "redis+sentinel" {
        crate::store::redis::parse_sentinel_url(url)?;
    }
    if scheme == "redis+cluster" {
        crate::store::redis::parse_cluster_url(url)?;
    }
    Ok(())
}

/// A CIDR, or a bare IP meaning just that host (/32 or /128).
fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

fn placeholder_url() -> UpstreamUrl {
    UpstreamUrl {
        scheme: Scheme::HTTP,
        authority: Authority::from_static("invalid"),
        base_path: String::new(),
    }
}

/// Parses an upstream base. Userinfo is rejected before parsing so that a
/// credential-bearing URL is never echoed into an error message or log.
fn parse_upstream_url(text: &str) -> Result<UpstreamUrl, String> {
    let after_scheme = text.split_once("://").map_or(text, |(_, rest)| rest);
    let authority_end = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    if after_scheme[..authority_end].contains('@') {
        return Err(
            "must not contain userinfo (user:password@); upstream credentials are not supported"
                .to_owned(),
        );
    }
    if text.contains('#') {
        return Err(format!("{text:?} must not have a fragment"));
    }
    let uri: http::Uri = text
        .parse()
        .map_err(|err| format!("invalid URL {text:?}: {err}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err("only http:// upstreams are supported".to_owned()),
        Some(other) => {
            return Err(format!(
                "unsupported scheme {other:?}; only http:// upstreams are supported"
            ))
        }
        None => {
            return Err(format!(
                "{text:?} is not an absolute URL; expected http://host[:port][/path]"
            ))
        }
    }
    let authority = match uri.authority() {
        Some(a) if !a.host().is_empty() => a.clone(),
        _ => return Err(format!("{text:?} has no host")),
    };
    // `Authority` keeps an out-of-range port as text, so check it here.
    let after_host = authority.as_str().strip_prefix(authority.host());
    if let Some(port) = after_host.and_then(|rest| rest.strip_prefix(':')) {
        if !port.parse::<u16>().is_ok_and(|p| p > 0) {
            return Err(format!("{text:?} has an invalid port; expected 1-65535"));
        }
    }
    if uri.query().is_some() {
        return Err(format!("{text:?} must not have a query"));
    }
    let base_path = uri.path().trim_end_matches('/');
    if base_path.contains("//") || base_path.split('/').any(|s| s == "." || s == "..") {
        return Err(format!(
            "{text:?} must not have empty, \".\" or \"..\" path segments"
        ));
    }
    Ok(UpstreamUrl {
        scheme: Scheme::HTTP,
        authority,
        base_path: base_path.to_owned(),
    })
}

/// Route prefixes obey the same rules as the request paths they are matched
/// against, so a prefix that no checked request path could ever equal is an error
/// instead of a silently dead route.
fn check_prefix(prefix: &str) -> Result<(), String> {
    if !prefix.starts_with('/') {
        return Err("must start with \"/\"".to_owned());
    }
    if prefix.len() > 1 && prefix.ends_with('/') {
        return Err(
            "must not end with \"/\" (prefixes already match on segment boundaries)".to_owned(),
        );
    }
    if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".to_owned());
    }
    if !prefix.is_ascii() {
        return Err(
            "must be ASCII (request paths are matched as sent, percent-encoded)".to_owned(),
        );
    }
    if let Some(c) = prefix.chars().find(|c| "%;\\?#".contains(*c)) {
        return Err(format!("must not contain {c:?}"));
    }
    if prefix.contains("//") {
        return Err("must not contain empty segments (\"//\")".to_owned());
    }
    if prefix.split('/').any(|s| s == "." || s == "..") {
        return Err("must not contain \".\" or \"..\" segments".to_owned());
    }
    Ok(())
}

/// The methods a scope override may name, in the order overrides are listed.
const METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::OPTIONS,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

/// Any case is accepted in the file; the canonical method is stored.
fn parse_method(key: &str) -> Option<Method> {
    METHODS
        .into_iter()
        .find(|m| m.as_str().eq_ignore_ascii_case(key))
}

/// `*`, or `resource:action` with resource `[a-z0-9_-]+` or `*` and action
/// `read`, `write`, `delete` or `*`.
fn parse_scope(text: &str) -> Result<ScopeSpec, String> {
    if text == "*" {
        return Ok(ScopeSpec {
            resource: "*".to_owned(),
            action: "*".to_owned(),
        });
    }
    let Some((resource, action)) = text.split_once(':') else {
        return Err(format!(
            "invalid scope {text:?}; expected \"resource:action\" or \"*\""
        ));
    };
    if resource != "*" && !is_resource_name(resource) {
        return Err(format!(
            "invalid scope {text:?}: resource must match [a-z0-9_-]+ or be \"*\""
        ));
    }
    if !["read", "write", "delete", "*"].contains(&action) {
        return Err(format!(
            "invalid scope {text:?}: action must be read, write, delete or \"*\""
        ));
    }
    Ok(ScopeSpec {
        resource: resource.to_owned(),
        action: action.to_owned(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml"));

    /// Valid apart from what each test appends or swaps in.
    const BASE: &str = r#"
[server]
listen = "127.0.0.1:8080"
[store]
url = "redis://127.0.0.1:6379/0"
[upstreams.domains]
url = "http://127.0.0.1:7001"
[[routes]]
prefix = "/v1/domains"
upstream = "domains"
resource = "domains"
"#;

    fn parse(text: &str) -> Result<Config, ConfigErrors> {
        Config::from_toml(text, Path::new("/etc/osir"))
    }

    /// The problems as displayed, so assertions read like `check` output.
    fn problems(text: &str) -> Vec<String> {
        parse(text)
            .unwrap_err()
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Exactly one problem, at `path`, whose message contains `needle`.
    fn one(text: &str, path: &str, needle: &str) {
        let errs = parse(text).unwrap_err().0;
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert_eq!(errs[0].path, path, "{errs:#?}");
        assert!(errs[0].message.contains(needle), "{errs:#?}");
    }

    #[test]
    fn sample_file_is_valid() {
        let c = parse(SAMPLE).unwrap();
        assert_eq!(c.server.listen, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(c.server.max_body, 10 * 1024 * 1024);
        assert_eq!(c.server.http2.max_header_list_size, 65_536);
        assert!(c.server.tls.is_none());
        assert_eq!(c.admin.listen, "127.0.0.1:9090".parse().unwrap());
        assert!(
            matches!(&c.store, StoreConfig::Redis { url, .. } if url == "redis://127.0.0.1:6379/0")
        );
        assert_eq!(c.cache.stale_if_error, Duration::from_secs(600));
        let names: Vec<_> = c.upstreams.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["billing", "domains", "vps"]);
        let domains = c.upstream("domains").unwrap();
        assert_eq!(domains.url.to_string(), "http://127.0.0.1:7001");
        assert_eq!(
            domains.test_url.as_ref().unwrap().authority.port_u16(),
            Some(7101)
        );
        assert_eq!(c.routes.len(), 4);
        assert_eq!(c.upstreams[c.routes[1].upstream].name, "vps");
        let billing = &c.routes[2];
        assert_eq!(
            billing.scopes,
            [(
                Method::DELETE,
                ScopeSpec {
                    resource: "billing".into(),
                    action: "write".into()
                }
            )]
        );
        assert!(c.routes[3].public && c.routes[3].resource.is_none());
        assert!(c.upstream("nowhere").is_none());
    }

    #[test]
    fn defaults_apply_to_a_minimal_file() {
        let c = parse(BASE).unwrap();
        assert_eq!(c.server.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.server.max_connections, 10_000);
        assert_eq!(c.server.http2.max_pending_resets, 20);
        assert_eq!(c.server.workers, None);
        assert_eq!(c.admin.token_env, None);
        assert_eq!(c.cache.capacity, 100_000);
        assert_eq!(c.auth.failed_lookup_budget, 30);
        assert_eq!(c.log.access, AccessLog::Stdout);
        assert_eq!(c.usage.flush_interval, Duration::from_secs(10));
        let up = &c.upstreams[0];
        assert_eq!(
            (up.pool_max_idle, up.timeout),
            (256, Duration::from_secs(30))
        );
        assert_eq!(up.url.base_path, "");
    }

    #[test]
    fn unknown_fields_are_named() {
        let errs = parse(&format!("bogus = 1\n{BASE}")).unwrap_err().0;
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].path, "bogus");
        assert!(
            errs[0].message.contains("unknown field `bogus`"),
            "{}",
            errs[0]
        );
        assert!(
            errs[0].message.contains("(line 1, column 1)"),
            "{}",
            errs[0]
        );
        let nested = BASE.replace("[store]", "[store]\nurll = \"x\"");
        one(&nested, "store.urll", "unknown field `urll`");
        one(
            &format!("{BASE}[server.http2]\nmax_streams = 5\n"),
            "server.http2.max_streams",
            "unknown field",
        );
        one(
            &format!("{BASE}[[routes]]\nprefix = \"/a\"\nupstrem = \"x\"\n"),
            "routes[1].upstrem",
            "unknown field",
        );
        one(
            &format!("{BASE}[bogus]\n"),
            "bogus",
            "unknown field `bogus`",
        );
    }

    #[test]
    fn syntax_and_type_errors_are_one_problem() {
        one(
            &format!("{BASE}[server\n"),
            "config",
            "invalid TOML at line 12, column 8: invalid table header; expected",
        );
        one(
            &BASE.replace("[server]", "[server]\nmax_connections = \"many\""),
            "server.max_connections",
            "invalid type",
        );
    }

    #[test]
    fn bad_trusted_proxy_is_named_by_index() {
        let text = format!("{BASE}[auth]\ntrusted_proxies = [\"10.0.0.1\", \"10.0.0.0/33\", \"::1\", \"fd00::/8\"]\n");
        one(
            &text,
            "auth.trusted_proxies[1]",
            "invalid IP or CIDR \"10.0.0.0/33\"",
        );
        let ok = format!("{BASE}[auth]\ntrusted_proxies = [\"10.0.0.1\", \"::1\", \"fd00::/8\"]\n");
        let nets = parse(&ok).unwrap().auth.trusted_proxies;
        assert_eq!(nets[0], "10.0.0.1/32".parse::<IpNet>().unwrap());
        assert_eq!(nets[1], "::1/128".parse::<IpNet>().unwrap());
    }

    #[test]
    fn upstream_urls_are_checked() {
        let with = |url: &str| BASE.replace("http://127.0.0.1:7001", url);
        one(&with("not a url"), "upstreams.domains.url", "invalid URL");
        one(
            &with("https://api.example"),
            "upstreams.domains.url",
            "only http:// upstreams are supported",
        );
        one(
            &with("ftp://api.example"),
            "upstreams.domains.url",
            "only http://",
        );
        one(
            &with("/relative"),
            "upstreams.domains.url",
            "not an absolute URL",
        );
        one(
            &with("http://a.example/?x=1"),
            "upstreams.domains.url",
            "query",
        );
        one(
            &with("http://a.example/#top"),
            "upstreams.domains.url",
            "fragment",
        );
        one(
            &with("http://a.example/x/../y"),
            "upstreams.domains.url",
            "segments",
        );
        let errs = problems(&with("http://user:hunter2@a.example"));
        assert!(
            errs[0].contains("userinfo") && !errs[0].contains("hunter2"),
            "{errs:?}"
        );
        let c = parse(&with("http://a.example:81/api/v2/")).unwrap();
        assert_eq!(c.upstreams[0].url.base_path, "/api/v2");
        assert_eq!(c.upstreams[0].url.authority.as_str(), "a.example:81");
        let test = BASE.replace("7001\"", "7001\"\ntest_url = \"https://t.example\"");
        one(&test, "upstreams.domains.test_url", "only http://");
        one(
            &BASE.replace("url = \"http://127.0.0.1:7001\"", ""),
            "upstreams.domains.url",
            "required",
        );
        one(
            &format!("{BASE}[upstreams.\"a b\"]\nurl = \"http://x\"\n"),
            "upstreams",
            "[A-Za-z0-9_-]+",
        );
        one(
            &BASE.replace("7001\"", "7001\"\ntimeout = \"0s\""),
            "upstreams.domains.timeout",
            "greater than zero",
        );
    }

    #[test]
    fn routes_are_checked() {
        one(
            &BASE.replace("upstream = \"domains\"", "upstream = \"nowhere\""),
            "routes[0].upstream",
            "no upstream named \"nowhere\"",
        );
        let dup = format!("{BASE}[[routes]]\nprefix = \"/v1/x\"\nupstream = \"domains\"\nresource = \"x\"\n[[routes]]\nprefix = \"/v1/domains\"\nupstream = \"domains\"\nresource = \"d\"\n");
        let errs = problems(&dup);
        assert_eq!(
            errs,
            ["routes[2].prefix: duplicate prefix \"/v1/domains\" (also routes[0])"]
        );
        one(
            &BASE.replace("resource = \"domains\"", ""),
            "routes[0].resource",
            "required unless public = true",
        );
        one(
            &BASE.replace("resource = \"domains\"", "resource = \"Domains\""),
            "routes[0].resource",
            "[a-z0-9_-]+",
        );
        for bad in [
            "v1",
            "/v1/",
            "/v1//x",
            "/v1/./x",
            "/v1/..",
            "/v1/%41",
            "/v1;x",
            "/v1\\\\x",
            "/v1?x",
            "/v1#x",
            "/v 1",
            "/v1/\\u0007",
            "/caf\u{e9}",
        ] {
            let errs = problems(&BASE.replace("\"/v1/domains\"", &format!("\"{bad}\"")));
            assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
            assert!(errs[0].starts_with("routes[0].prefix: "), "{bad}: {errs:?}");
        }
        let root = parse(&BASE.replace("\"/v1/domains\"", "\"/\"")).unwrap();
        assert_eq!(root.routes[0].prefix, "/");
        one(
            &format!("{BASE}max_body = \"1 MiB\"\n"),
            "routes[0].max_body",
            "invalid size",
        );
        let public = format!("{BASE}[[routes]]\nprefix = \"/s\"\nupstream = \"domains\"\npublic = true\nscopes = {{ GET = \"*\" }}\n");
        one(&public, "routes[1].scopes", "public route");
    }

    #[test]
    fn scope_overrides_are_checked() {
        let with = |scopes: &str| format!("{BASE}scopes = {{ {scopes} }}\n");
        one(
            &with("DELETE = \"domains:destroy\""),
            "routes[0].scopes.DELETE",
            "action must be",
        );
        one(
            &with("GET = \"Domains:read\""),
            "routes[0].scopes.GET",
            "resource must match",
        );
        one(
            &with("GET = \"domains\""),
            "routes[0].scopes.GET",
            "invalid scope \"domains\"",
        );
        one(
            &with("FETCH = \"domains:read\""),
            "routes[0].scopes.FETCH",
            "unknown method \"FETCH\"",
        );
        one(
            &with("get = \"*\", GET = \"*\""),
            "routes[0].scopes.get",
            "more than once",
        );
        let c = parse(&with("delete = \"*:delete\", Post = \"*\"")).unwrap();
        let scopes: Vec<_> = c.routes[0]
            .scopes
            .iter()
            .map(|(m, s)| format!("{m} {s}"))
            .collect();
        assert_eq!(scopes, ["POST *", "DELETE *:delete"]);
    }

    #[test]
    fn durations_and_sizes_are_checked() {
        let with = |line: &str| BASE.replace("[server]", &format!("[server]\n{line}"));
        one(
            &with("idle_timeout = \"5 minutes\""),
            "server.idle_timeout",
            "invalid duration \"5 minutes\"",
        );
        one(
            &with("header_read_timeout = \"0s\""),
            "server.header_read_timeout",
            "greater than zero",
        );
        one(
            &with("max_body = \"10XB\""),
            "server.max_body",
            "invalid size \"10XB\"",
        );
        one(
            &format!("{BASE}[server.http2]\nmax_header_list_size = \"8GiB\"\n"),
            "server.http2.max_header_list_size",
            "too large",
        );
        one(&with("workers = 0"), "server.workers", "at least 1");
        one(
            &with("max_connections = -1"),
            "server.max_connections",
            "at least 1",
        );
        one(
            &format!("{BASE}[cache]\ncapacity = 0\n"),
            "cache.capacity",
            "at least 1",
        );
        one(
            &format!("{BASE}[cache]\nttl = \"1.5s\"\n"),
            "cache.ttl",
            "fractions",
        );
    }

    #[test]
    fn listeners_are_checked() {
        one(
            &BASE.replace("listen = \"127.0.0.1:8080\"", ""),
            "server.listen",
            "required unless [server.tls] is set",
        );
        one(
            &BASE.replace("127.0.0.1:8080", "localhost:8080"),
            "server.listen",
            "invalid address \"localhost:8080\"",
        );
        one(
            &format!("{BASE}[admin]\nlisten = \"0.0.0.0:8080\"\n"),
            "admin.listen",
            "also server.listen",
        );
        one(
            &format!("{BASE}[admin]\ntoken_env = \"1TOKEN\"\n"),
            "admin.token_env",
            "environment variable",
        );
        let zero = BASE.replace("127.0.0.1:8080", "127.0.0.1:0");
        assert!(parse(&format!("{zero}[admin]\nlisten = \"127.0.0.1:0\"\n")).is_ok());
        let tls_only = BASE.replace(
            "listen = \"127.0.0.1:8080\"",
            "[server.tls]\nlisten = \"[::]:8443\"\ncert = \"certs/a.pem\"\nkey = \"/abs/a.key\"",
        );
        let tls = parse(&tls_only).unwrap().server.tls.unwrap();
        assert_eq!(tls.cert, Path::new("/etc/osir/certs/a.pem"));
        assert_eq!(tls.key, Path::new("/abs/a.key"));
        let no_key = BASE.replace(
            "listen = \"127.0.0.1:8080\"",
            "[server.tls]\nlisten = \"[::]:8443\"\ncert = \"a.pem\"",
        );
        one(&no_key, "server.tls.key", "required");
    }

    #[test]
    fn store_backends_are_checked() {
        let file = |body: &str| BASE.replace("url = \"redis://127.0.0.1:6379/0\"", body);
        one(
            &file("backend = \"file\""),
            "store.path",
            "required when backend = \"file\"",
        );
        one(
            &file("backend = \"file\"\npath = \"k.json\"\nurl = \"redis://x\""),
            "store.url",
            "only used with backend = \"redis\"",
        );
        one(&file(""), "store.url", "required when backend = \"redis\"");
        one(
            &BASE.replace("[store]", "[store]\npath = \"k.json\""),
            "store.path",
            "only used with backend = \"file\"",
        );
        one(
            &file("backend = \"mysql\""),
            "store.backend",
            "unknown backend",
        );
        one(
            &file("url = \"http://:secret@x\""),
            "store.url",
            "unsupported scheme \"http\"",
        );
        assert!(!problems(&file("url = \"http://:secret@x\""))[0].contains("secret"));
        let c = parse(&file("backend = \"file\"\npath = \"k.json\"")).unwrap();
        assert_eq!(
            c.store,
            StoreConfig::File {
                path: "/etc/osir/k.json".into(),
                timeout: Duration::from_secs(1)
            }
        );
        for url in [
            "redis+unix:///run/redis.sock",
            "unix:///run/redis.sock",
            "redis+sentinel://h/m",
            "redis+sentinel://u:pw@h1:26379,h2:26380,[::1]:26381/mymaster/2",
            "redis+cluster://h:7000",
            "redis+cluster://u:pw@h1:7000,h2:7001,[::1]:7002/",
        ] {
            assert!(parse(&file(&format!("url = \"{url}\""))).is_ok(), "{url}");
        }
        for url in ["rediss://h:6380", "redis+clustr://h:7000"] {
            assert!(parse(&file(&format!("url = \"{url}\""))).is_err(), "{url}");
        }
        for (url, needle) in [
            ("redis+sentinel://:s3cret@/m", "names no sentinel host"),
            ("redis+sentinel://:s3cret@h:26379", "names no master set"),
            ("redis+sentinel://:s3cret@h:26379/", "names no master set"),
            ("redis+sentinel://:s3cret@h:99999/m", "not a number 1-65535"),
            ("redis+sentinel://:s3cret@h/m/x", "database \"x\""),
            (
                "redis+sentinel://:s3cret@h/m/0/extra",
                "too many path segments",
            ),
            ("redis+sentinel://:s3cret@h/m?x=1", "query parameters"),
            ("redis+cluster://:s3cret@/", "names no cluster node host"),
            ("redis+cluster://:s3cret@h:0", "not a number 1-65535"),
            ("redis+cluster://:s3cret@h:7000/3", "only database 0"),
            ("redis+cluster://:s3cret@h:7000?x=1", "query parameters"),
        ] {
            one(&file(&format!("url = \"{url}\"")), "store.url", needle);
            let errs = parse(&file(&format!("url = \"{url}\""))).unwrap_err();
            assert!(!errs.to_string().contains("s3cret"), "{url}: {errs}");
        }
    }

    #[test]
    fn log_settings_are_checked() {
        one(
            &format!("{BASE}[log]\nlevel = \"loud\"\n"),
            "log.level",
            "unknown level \"loud\"",
        );
        let c = parse(&format!(
            "{BASE}[log]\naccess = \"access.log\"\nlevel = \"DEBUG\"\n"
        ))
        .unwrap();
        assert_eq!(c.log.access, AccessLog::File("/etc/osir/access.log".into()));
        assert_eq!(c.log.level, "debug");
        assert_eq!(
            parse(&format!("{BASE}[log]\naccess = \"off\"\n"))
                .unwrap()
                .log
                .access,
            AccessLog::Off
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = r#"
[server]
max_body = "lots"
[admin]
listen = "nope"
[store]
backend = "file"
[auth]
trusted_proxies = ["bad"]
[upstreams.a]
url = "https://a.example"
[[routes]]
prefix = "/x/"
upstream = "b"
"#;
        let errs = parse(text).unwrap_err();
        let paths: Vec<_> = errs.0.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "server.listen",
                "server.max_body",
                "admin.listen",
                "store.path",
                "auth.trusted_proxies[0]",
                "upstreams.a.url",
                "routes[0].prefix",
                "routes[0].upstream",
                "routes[0].resource"
            ]
        );
        let shown = errs.to_string();
        assert_eq!(shown.lines().count(), paths.len());
        assert!(shown.starts_with("server.listen: required unless [server.tls] is set\n"));
    }

    #[test]
    fn load_resolves_paths_against_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.toml");
        let text = BASE.replace(
            "url = \"redis://127.0.0.1:6379/0\"",
            "backend = \"file\"\npath = \"keys.json\"",
        );
        std::fs::write(&path, text).unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(
            c.store,
            StoreConfig::File {
                path: dir.path().join("keys.json"),
                timeout: Duration::from_secs(1)
            }
        );

        std::fs::write(&path, "[server\n").unwrap();
        let errs = Config::load(&path).unwrap_err().0;
        assert_eq!(errs[0].path, path.display().to_string());

        let missing = dir.path().join("missing.toml");
        let errs = Config::load(&missing).unwrap_err().0;
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].path, missing.display().to_string());
        assert!(errs[0].message.starts_with("cannot read the file"));
    }
}
