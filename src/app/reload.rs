//! The one reloader: every cause to look at `gateway.toml` again (SIGHUP,
//! a file event, the periodic check) arrives on one channel and is applied
//! by one task, in order, one at a time, so reloads never overlap and
//! generations only go up. Only this module applies a new config.
//!
//! A reload validates the whole file first; an invalid file is refused whole
//! and the old config keeps serving. It also reloads the TLS certificate
//! (renewed files, or new paths); a certificate that cannot be loaded
//! refuses the reload like an invalid file. Settings that apply only at
//! start ([`restart_needed`]) are compared with what the process runs, and
//! each one that differs is logged by name.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::config::Config;
use crate::server::tls::TlsAcceptor;
use crate::state::Gateway;

/// Why the [`Reloader`] should look at the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// SIGHUP: reload whatever the file holds.
    Signal,
    /// A file event or the periodic check: reload if the bytes changed
    /// since the last ones tried.
    FileMayHaveChanged,
}

/// Applies reloads to one gateway: its config file, and the TLS acceptor
/// whose certificate is reloaded with it (when a TLS listener serves).
pub struct Reloader {
    gw: Arc<Gateway>,
    path: PathBuf,
    tls: Option<Arc<TlsAcceptor>>,
}

impl Reloader {
    /// A reloader for `gw`, reading `path`; `tls` is the serving TLS
    /// listener's acceptor, if any.
    pub fn new(
        gw: Arc<Gateway>,
        path: impl Into<PathBuf>,
        tls: Option<Arc<TlsAcceptor>>,
    ) -> Reloader {
        Reloader {
            gw,
            path: path.into(),
            tls,
        }
    }

    /// Loads, validates and applies the file; the old config keeps serving on
    /// any problem. Returns the new generation. Callers must not run two at
    /// once (in `run` only the [`Reloader::run`] task calls it).
    pub fn reload(&self) -> Result<u64, String> {
        let gw = &*self.gw;
        let outcome = self.load_with_certificate().map(|new| {
            for setting in restart_needed(&gw.started, &new) {
                tracing::warn!(
                    setting,
                    "changed in the config file, but applies only at start: restart the gateway to apply it"
                );
            }
            gw.apply(new)
        });
        let result = if outcome.is_ok() {
            "success"
        } else {
            "failure"
        };
        gw.metrics.config_reloads.with_label_values(&[result]).inc();
        match &outcome {
            Ok(g) => tracing::info!(generation = g, "config reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "config reload refused; the previous config keeps serving")
            }
        }
        outcome
    }

    /// The one task that applies reloads: every [`Cause`] is handled in the
    /// order it arrived, one at a time, so generations only go up and no two
    /// reloads interleave. `initial` is the file content the gateway started
    /// with; a file-change cause reloads only when the bytes differ from the
    /// last ones tried (so an invalid file is refused, and counted, once).
    /// Ends when every sender is gone.
    pub async fn run(self, initial: Vec<u8>, mut causes: mpsc::Receiver<Cause>) {
        let path = self.path.clone();
        let mut last = initial;
        while let Some(cause) = causes.recv().await {
            let now = tokio::fs::read(&path).await;
            match (cause, now) {
                (Cause::Signal, now) => {
                    if let Ok(now) = now {
                        last = now;
                    }
                    let _ = self.reload();
                }
                (Cause::FileMayHaveChanged, Ok(now)) if now != last => {
                    last = now;
                    let _ = self.reload();
                }
                // Unchanged, or mid-swap/deleted: keep serving; the next cause retries.
                (Cause::FileMayHaveChanged, _) => {}
            }
        }
    }

    /// Loads and validates the file, then reloads the TLS certificate from its
    /// paths (renewed files are picked up on every reload). Both happen before
    /// the config is applied, so a bad certificate refuses the whole reload and
    /// the old config and old certificate keep serving together. Without a TLS
    /// listener there is no certificate to reload; adding one needs a restart
    /// (the listen-address warning says so).
    fn load_with_certificate(&self) -> Result<Config, String> {
        let new = Config::load(&self.path).map_err(|e| e.to_string())?;
        if let (Some(acceptor), Some(tls)) = (&self.tls, &new.server.tls) {
            acceptor.reload(tls)?;
        }
        Ok(new)
    }
}

/// The settings of `new` that apply only at start and differ from what
/// the process is `running` (the config it started with), by field name.
/// Everything else applies on reload.
pub fn restart_needed(running: &Config, new: &Config) -> Vec<&'static str> {
    let (r, n) = (running, new);
    let mut out = Vec::new();
    let mut differs = |name: &'static str, changed: bool| {
        if changed {
            out.push(name);
        }
    };
    differs("server.listen", r.server.listen != n.server.listen);
    differs(
        "server.tls.listen",
        r.server.tls.as_ref().map(|t| t.listen) != n.server.tls.as_ref().map(|t| t.listen),
    );
    differs("server.workers", r.server.workers != n.server.workers);
    differs("admin.listen", r.admin.listen != n.admin.listen);
    use crate::config::StoreConfig::{File, Redis};
    match (&r.store, &n.store) {
        (
            Redis {
                url: a,
                timeout: x,
                feed_max_len: f,
                tls_ca: c,
                password_env: p,
            },
            Redis {
                url: b,
                timeout: y,
                feed_max_len: g,
                tls_ca: d,
                password_env: q,
            },
        ) => {
            differs("store.url", a != b);
            differs("store.timeout", x != y);
            differs("store.feed_max_len", f != g);
            differs("store.tls_ca", c != d);
            differs("store.password_env", p != q);
        }
        (
            File {
                path: a,
                timeout: x,
            },
            File {
                path: b,
                timeout: y,
            },
        ) => {
            differs("store.path", a != b);
            differs("store.timeout", x != y);
        }
        _ => differs("store.backend", true),
    }
    differs("log.access", r.log.access != n.log.access);
    differs("log.level", r.log.level != n.log.level);
    let (rc, nc) = (&r.cache, &n.cache);
    differs("cache.capacity", rc.capacity != nc.capacity);
    differs("cache.ttl", rc.ttl != nc.ttl);
    differs("cache.negative_ttl", rc.negative_ttl != nc.negative_ttl);
    differs(
        "cache.negative_capacity",
        rc.negative_capacity != nc.negative_capacity,
    );
    differs(
        "cache.stale_if_error",
        rc.stale_if_error != nc.stale_if_error,
    );
    differs(
        "auth.failed_lookup_window",
        r.auth.failed_lookup_window != n.auth.failed_lookup_window,
    );
    out
}
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg(extra_server: &str, level: &str) -> Config {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:8080\"\n{extra_server}\n[store]\nbackend = \"file\"\npath = \"k.json\"\n[log]\nlevel = \"{level}\"\n"
        );
        Config::from_toml(&text, Path::new(".")).unwrap()
    }

    #[test]
    fn restart_warnings_compare_with_what_is_running() {
        let running = cfg("", "info");
        assert!(restart_needed(&running, &running).is_empty());
        // Live settings never need a restart.
        let live = cfg("header_read_timeout = \"1s\"\nmax_connections = 5", "info");
        assert!(restart_needed(&running, &live).is_empty());
        let moved = cfg("workers = 2", "debug");
        assert_eq!(
            restart_needed(&running, &moved),
            ["server.workers", "log.level"]
        );
        // The same file again still differs from what runs.
        assert_eq!(
            restart_needed(&running, &moved.clone()),
            ["server.workers", "log.level"]
        );
        let text = "[server]\nlisten = \"127.0.0.1:9999\"\n[store]\nurl = \"redis://127.0.0.1:1/0\"\n[cache]\nttl = \"5s\"\n";
        let other = Config::from_toml(text, Path::new(".")).unwrap();
        assert_eq!(
            restart_needed(&running, &other),
            ["server.listen", "store.backend", "cache.ttl"]
        );
    }
}
