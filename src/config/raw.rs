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

use std::collections::BTreeMap;

use serde::Deserialize;

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
    pub send_timeout: String,
    pub max_connections: i64,
    pub max_connections_per_ip: i64,
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
            send_timeout: "30s".to_owned(),
            max_connections: 10_000,
            max_connections_per_ip: 4096,
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
    pub failed_token_budget: i64,
    pub token_name: String,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9090".to_owned(),
            token_env: None,
            failed_token_budget: 10,
            token_name: "admin".to_owned(),
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
    pub tls_ca: Option<String>,
    pub password_env: Option<String>,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            backend: "redis".to_owned(),
            url: None,
            path: None,
            timeout: "1s".to_owned(),
            feed_max_len: 100_000,
            tls_ca: None,
            password_env: None,
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
    pub pool_max: i64,
    pub pool_wait: String,
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
            pool_max: 1024,
            pool_wait: "1s".to_owned(),
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
