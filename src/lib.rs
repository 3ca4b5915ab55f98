//! osir-gateway: the API-key gateway in front of the OSIR API.
//!
//! # Layout
//!
//! Folders are layers. Each imports only from layers below it (checked by
//! `tests/it/layout.rs`, which also refuses import circles); `keys`,
//! `error`, `metrics` and `version` are the ground everything stands on.
//!
//! | layer | what it holds |
//! | --- | --- |
//! | [`cli`] | argument parsing, the `keys` commands, human and JSON output |
//! | [`app`] | building and running a gateway (`run`, `demo`), config reloads, logging, signals |
//! | [`server`] | listeners, TLS, idle connections, the HTTP engines: [`server::h1`], the gateway's own HTTP/1.1 engine, and hyper for HTTP/2 |
//! | [`admin`] | the admin listener: health, metrics, the key API |
//! | [`pipeline`] | [`pipeline::handle`]: one request through the stages, in order |
//! | [`state`] | the gateway's shared state, its immutable config snapshot, per-IP connection slots |
//! | pipeline stages | one file per stage, each a plain function or type (below) |
//! | [`lookup`] | the hot-path key lookup: cache, single flight, epochs; usage counting |
//! | [`manage`] | key management shared by the CLI and the admin API |
//! | [`config`] | `gateway.toml`: a serde mirror, validated into runtime types |
//! | [`store`] | key stores, one trait per job; memory, file, Redis backends |
//! | [`diag`] | diagnostics: the process log on stderr (text or JSON, one line per event) |
//! | [`http1`] | HTTP/1.1 on the wire without I/O: strict request heads, chunked bodies, upstream response heads |
//! | [`keys`], [`error`], [`metrics`], [`version`] | the key model; every answer the gateway makes itself; metrics; the build's version and commit |
//!
//! # The request pipeline
//!
//! [`pipeline::handle`] loads one config snapshot and runs, in this order
//! (the first refusal answers):
//!
//! | stage | module |
//! | --- | --- |
//! | request head size (431) | [`pipeline::shape`] |
//! | client IP (trusted proxies, X-Forwarded-For) | [`pipeline::client_ip`] |
//! | a key sent in the wrong place (400) | [`keys::misplaced`] |
//! | request shape: methods, upgrades, authority, `_method` (405, 400) | [`pipeline::shape`], [`pipeline::rewrite`] |
//! | canonical path check | [`pipeline::path`] |
//! | route and required scope | [`pipeline::route`] |
//! | credential extraction and stripping | [`pipeline::credential`] |
//! | key lookup, expiry, revocation, IP, scope | [`pipeline::authorize`] |
//! | unknown-key budget (flood defence) | `pipeline::budget` |
//! | header hygiene and identity headers | `pipeline::rewrite` |
//! | upstream exchange, connection pools | `pipeline::upstream` |
//! | access log (JSON lines, non-blocking) | [`pipeline::access_log`] |
//!
//! The stage files hold the long-lived tables they need (compiled routes,
//! upstream pools, the access-log writer), which [`state::Snapshot`] and
//! [`state::Gateway`] own; so the stages sit below the state and only
//! `handle()` sits above it. Every gateway-made answer is an
//! [`error::GatewayError`], turned into a response in one place.

pub(crate) mod admin;
pub mod app;
pub mod cli;
pub mod config;
pub mod diag;
pub mod error;
pub mod http1;
pub mod keys;
pub mod lookup;
pub mod manage;
pub mod metrics;
pub mod pipeline;
pub mod server;
pub mod state;
pub mod store;
pub mod version;
