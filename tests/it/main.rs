//! Integration tests: one binary, real sockets, real redis-server, real
//! upstreams. Shared helpers live in `support/`.
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

mod support;

mod auth;
mod bounded_times;
mod budget_known;
mod client_ips;
mod cluster;
mod keys_cli;
mod layout;
mod revocation;
mod secrets;
mod sentinel;

mod admin_api;
mod admin_metrics;
mod audit;
mod check_cli;
mod degraded;
mod edge_admin;
mod edge_config;
mod edge_keys;
mod edge_overrides;
mod edge_paths;
mod edge_reload;
mod edge_slots;
mod engine;
mod engine_conn;
mod engine_pool;
mod engine_slow;
mod faults;
mod feed_acl;
mod feed_faults;
mod feed_file;
mod feed_fleet;
mod fleet;
mod flood;
mod forwarding;
mod h1_oracle;
mod hostile;
mod invalidation;
mod key_model;
mod limits;
mod ops;
mod ops_cli;
mod ops_diag;
mod ops_http;
mod ops_log;
mod ops_metrics;
mod outage;
mod paths;
mod pool;
mod props;
mod props_inputs;
mod redis_password;
mod redis_tls;
mod reload;
mod routing;
mod smoke;
mod smuggling;
mod store;
mod tls;
