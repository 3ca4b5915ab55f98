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

mod admin_metrics;
mod check_cli;
mod faults;
mod feed_acl;
mod feed_faults;
mod feed_file;
mod feed_fleet;
mod fleet;
mod flood;
mod forwarding;
mod hostile;
mod invalidation;
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
mod routing;
mod smoke;
mod smuggling;
mod store;
mod tls;
