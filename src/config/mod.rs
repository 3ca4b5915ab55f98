//! `gateway.toml`: parsed, checked as a whole, and turned into runtime types.
//!
//! Loading happens at start-up, on `check`, and on every reload. A reload must be
//! all-or-nothing, so validation never stops at the first mistake: it gathers every
//! problem, each naming its field (`routes[2].upstream: ...`), and only a file with
//! none becomes a [`Config`]. The rest of the gateway can then trust every value.
//!
//! Over 400 lines because it holds the runtime type of every section; it
//! splits along the sections when one of them grows its own module.

mod checks;
mod parse;
mod raw;
mod routes;
pub mod units;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::Method;
use ipnet::IpNet;

use self::validate::Validator;
use crate::keys::Scope;

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
    /// A client that accepts no response bytes for this long is disconnected.
    pub send_timeout: Duration,
    /// Open connections beyond this wait to be accepted, bounding file descriptors.
    pub max_connections: usize,
    /// Open connections one peer IP may hold, so one client cannot take every
    /// slot; further ones are closed at accept. Above `max_connections` it
    /// never applies (the global limit holds new connections back first).
    pub max_connections_per_ip: usize,
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
    /// Failed admin-token attempts one client IP may make per minute before
    /// its calls are refused (429), slowing token guessing.
    pub failed_token_budget: u32,
    /// Who the admin token is in the audit trail (`[admin] token_name`).
    pub token_name: String,
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
        /// About how many entries the change feed keeps (`XADD … MAXLEN ~`):
        /// how far a gateway may fall behind and still catch up without
        /// flushing its cache.
        feed_max_len: u64,
        /// The CA bundle (PEM) a `rediss` server's certificate must chain
        /// to, resolved against the config file's directory; `None`: the
        /// public (Mozilla) roots built in.
        tls_ca: Option<PathBuf>,
        /// The environment variable that holds the password (read when the
        /// store is opened, never stored here); the URL then holds none.
        password_env: Option<String>,
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
    /// IPv6 clients share one budget per prefix of this length (an IPv6
    /// client usually has a whole /64); IPv4 clients have one each.
    pub failed_lookup_ipv6_prefix: u8,
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

/// How diagnostics (the process log on stderr) are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Access-log destination.
    pub access: AccessLog,
    /// Process log level, lowercase: `error`, `warn`, `info`, `debug` or `trace`.
    pub level: String,
    /// Diagnostics format.
    pub format: LogFormat,
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
    /// Connections open to each destination at most (busy and idle); a
    /// request finding all busy waits up to `pool_wait`.
    pub pool_max: usize,
    /// How long a request waits for a connection when `pool_max` are busy.
    pub pool_wait: Duration,
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
    pub scopes: Vec<(Method, Scope)>,
    /// Whether the route is served without a key.
    pub public: bool,
    /// This route's body limit, replacing `server.max_body`.
    pub max_body: Option<u64>,
}

impl Config {
    /// Every resource a route names (its default resource or a per-method
    /// scope's): what a key's scopes may name.
    pub fn known_resources(&self) -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        for r in &self.routes {
            out.extend(r.resource.iter().cloned());
            out.extend(
                r.scopes
                    .iter()
                    .filter_map(|(_, s)| s.resource().map(str::to_owned)),
            );
        }
        out
    }
}

impl StoreConfig {
    /// The Redis store's options (`None` for a file store).
    pub fn redis_options(&self) -> Option<crate::store::redis::RedisOptions> {
        match self {
            StoreConfig::Redis {
                timeout,
                feed_max_len,
                tls_ca,
                password_env,
                ..
            } => Some(crate::store::redis::RedisOptions {
                timeout: *timeout,
                feed_max_len: *feed_max_len,
                tls_ca: tls_ca.clone(),
                password_env: password_env.clone(),
            }),
            StoreConfig::File { .. } => None,
        }
    }

    /// [`StoreConfig::redis_options`], for the Redis arm of a match on
    /// `self` (where it is always `Some`).
    fn redis_or_default(&self) -> crate::store::redis::RedisOptions {
        let timeout = match self {
            StoreConfig::Redis { timeout, .. } | StoreConfig::File { timeout, .. } => *timeout,
        };
        self.redis_options()
            .unwrap_or_else(|| crate::store::redis::RedisOptions::new(timeout))
    }

    /// Opens this store (no change feed is started: a one-shot command never
    /// needs one; [`crate::state::Gateway::new`] starts it).
    pub async fn open(&self) -> Result<crate::store::Store, crate::store::StoreError> {
        use crate::store::{file::FileStore, redis, Store};
        match self {
            StoreConfig::Redis { url, .. } => {
                let options = self.redis_or_default();
                redis::connect_with(url, &options).await.map(Store::new)
            }
            StoreConfig::File { path, .. } => FileStore::open(path).map(Store::new),
        }
    }

    /// Opens this store for a serving gateway: like [`StoreConfig::open`],
    /// except that a Redis server that cannot be reached yet is waited for
    /// in the background instead of failing the start (a bad URL still
    /// fails); see [`crate::store::redis::LazyRedisStore`].
    pub async fn open_serving(&self) -> Result<crate::store::Store, crate::store::StoreError> {
        use crate::store::{redis, Store};
        match self {
            StoreConfig::Redis { url, .. } => {
                let options = self.redis_or_default();
                redis::connect_or_defer(url, &options).await.map(Store::new)
            }
            StoreConfig::File { .. } => self.open().await,
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
        let (raw, mut problems) = parse::parse(text, source).map_err(|p| ConfigErrors(vec![p]))?;
        let mut v = Validator {
            problems: Vec::new(),
            base_dir,
        };
        let config = v.config(raw);
        // A field already reported as unknown or mistyped was set aside;
        // what validation then says about its absence is not news, and in
        // a table with an unknown field a "required" field is most likely
        // that field misspelt.
        let reported: Vec<(String, String)> = problems
            .iter()
            .map(|p| (p.path.clone(), parent(&p.path).to_owned()))
            .collect();
        let kept: Vec<ConfigProblem> = v
            .problems
            .into_iter()
            .filter(|p| {
                !reported.iter().any(|(r, r_parent)| {
                    within(&p.path, r)
                        || (p.message.starts_with("required") && parent(&p.path) == *r_parent)
                })
            })
            .collect();
        problems.extend(kept);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(problems))
        }
    }
}

/// Is `path` the field `of`, or inside it?
fn within(path: &str, of: &str) -> bool {
    path.strip_prefix(of)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

/// The table holding a field: `routes[1]` for `routes[1].upstream`.
fn parent(path: &str) -> &str {
    path.rfind('.').map_or("", |i| &path[..i])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
