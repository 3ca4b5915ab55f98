//! The `keys` commands of the real binary (contract §10), against a Redis
//! store and a file store: create (shown once), list and show (never a
//! secret), update, revoke and rotate, and the exit statuses: 1 with one
//! clear line for a failure, 2 for a usage error, no password ever echoed.

use serde_json::Value;

use crate::support::keys::{body, CliConfig, CliRun};

mod batch;
mod failures;
mod lifecycle;

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

/// Asserts the run printed none of `keys`, whole or as a 32-char body.
fn no_secret(run: &CliRun, keys: &[&str]) {
    for k in keys {
        for text in [&run.stdout, &run.stderr] {
            assert!(!text.contains(body(k)), "a key was printed: {run:?}");
        }
    }
}

fn show(cfg: &CliConfig, id: &str, keys: &[&str]) -> Value {
    let run = cfg.run(&["keys", "show", id, "--json"]).ok();
    no_secret(&run, keys);
    run.json()
}
