//! Test helpers that start real things: redis-server, upstreams, gateways,
//! and a real HTTP client.
#![allow(dead_code)]

pub mod client;
pub mod expect;
pub mod gateway;
pub mod h2wire;
pub mod keys;
pub mod process;
pub mod redis;
pub mod scripted;
pub mod upstream;
pub mod wire;

use std::time::{Duration, Instant};

/// Polls `check` until it returns true or `deadline` passes; returns
/// whether it became true. For conditions reached asynchronously.
pub async fn eventually(deadline: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// [`eventually`] for checks that must await (HTTP requests, store reads):
/// polls `check` until it returns true or `deadline` passes.
pub async fn eventually_async<F, Fut>(deadline: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Calls `attempt` until it returns `Ok` or `deadline` passes; returns the
/// value, or panics with `what` and the last error. For operations that
/// fail until something has recovered (a store back from an outage).
pub async fn until_ok<T, E, F, Fut>(deadline: Duration, what: &str, mut attempt: F) -> T
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let end = Instant::now() + deadline;
    loop {
        match attempt().await {
            Ok(v) => return v,
            Err(e) if Instant::now() >= end => panic!("{what}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Sets an environment variable for a gateway under test (the admin token
/// is read from the variable `[admin] token_env` names). The one place the
/// tests write the environment: each caller uses a variable name of its
/// own (random suffix) that nothing else reads or writes, set before the
/// gateway that reads it starts.
#[allow(clippy::disallowed_methods)]
pub fn set_test_env(var: &str, value: &str) {
    std::env::set_var(var, value);
}
