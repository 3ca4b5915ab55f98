//! osir-gateway: the API-key gateway in front of the OSIR API.
//!
//! # Layout
//!
//! The request pipeline, in the order [`proxy`] runs it:
//!
//! | stage | module |
//! | --- | --- |
//! | accept, HTTP/1.1 + HTTP/2, timeouts | [`server`] |
//! | idle keep-alive connections | [`idle`] |
//! | connections per peer IP | [`per_ip`] |
//! | TLS: certificate loading, hot reload, handshake timeout | [`tls`] |
//! | request shape, one config snapshot per request | [`proxy`], [`gateway`] |
//! | request head size (431) | [`head`] |
//! | client IP (trusted proxies, X-Forwarded-For) | [`client_ip`] |
//! | canonical path check | [`path`] |
//! | route and required scope | [`route`] |
//! | keys sent in the wrong place; redaction | [`misplaced`] |
//! | credential extraction and stripping | [`credential`] |
//! | key format and checksum | [`key`] |
//! | key lookup: cache, single flight, epochs | [`cache`], [`store`] |
//! | expiry, revocation, IP, scope; unknown-key budget | [`auth`], [`flood`] |
//! | header hygiene | [`forward`] |
//! | upstream exchange, connection pools | [`upstream`] |
//! | every gateway-made answer | [`error`] |
//! | metrics | [`metrics`] |
//! | access log (JSON lines, non-blocking) | [`access_log`] |
//! | per-key usage, batched to the store | [`usage`] |
//!
//! Around it: [`config`] (the two-layer `gateway.toml`), [`record`] (key
//! records), [`keys`] (key management shared by [`cli`] and [`admin`]),
//! [`run`] (the `run` command, signals, reload), [`watch`] (config file
//! watching) and [`demo`].

pub mod access_log;
pub mod admin;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod client_ip;
pub mod config;
pub mod credential;
pub mod demo;
pub mod error;
pub mod flood;
pub mod forward;
pub mod gateway;
pub mod head;
pub mod idle;
pub mod key;
pub mod keys;
pub mod metrics;
pub mod misplaced;
pub mod path;
pub mod per_ip;
pub mod proxy;
pub mod record;
pub mod request_id;
pub mod route;
pub mod run;
pub mod server;
pub mod store;
pub mod tls;
pub mod upstream;
pub mod usage;
pub mod watch;
