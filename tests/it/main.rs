//! Integration tests: one binary, real sockets, real redis-server, real
//! upstreams. Shared helpers live in `support/`.
#![allow(clippy::unwrap_used, missing_docs)]

mod support;

mod store;
