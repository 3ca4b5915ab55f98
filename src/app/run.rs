//! `osir-gateway run`: load the config, open the store, bind, serve until
//! SIGTERM or SIGINT; reload the config on SIGHUP.
//!
//! A reload validates the whole file first; an invalid file is refused whole
//! and the old config keeps serving. Settings that apply only at start
//! ([`restart_needed`]: listen addresses, workers, the store, the access
//! log, the log level, the key cache) are compared with what the process is
//! running, and each one that differs is logged by name on every reload
//! until a restart. A reload also reloads the TLS certificate (renewed
//! files, or new paths); a certificate that cannot be loaded refuses the
//! reload like an invalid file.
//!
//! SIGHUP and file changes (see [`crate::app::watch`]) are funnelled into one
//! [`reloader`] task, the only one that applies reloads in `run`, so
//! reloads never overlap and generations only go up.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::server::tls::TlsAcceptor;
use crate::server::{self, Listeners};
use crate::state::Gateway;

/// Serves the gateway described by the config file at `path`.
pub fn run(path: &Path) -> ExitCode {
    let cfg = match Config::load(path) {
        Ok(c) => c,
        Err(errs) => {
            for p in &errs.0 {
                eprintln!("{p}");
            }
            eprintln!("error: invalid config {}; not starting", path.display());
            return ExitCode::FAILURE;
        }
    };
    crate::diag::init(&cfg.log.level, cfg.log.format);
    // One worker: a current-thread runtime does the same work without the
    // work-stealing scheduler's cross-thread wake-ups.
    let mut rt = match cfg.server.workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(w) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(w);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    rt.enable_all();
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(serve_from_config(path, cfg))
}

/// Plain-text logs on stderr at `level` (`RUST_LOG` overrides); see
/// [`crate::diag`].
pub fn init_logging(level: &str) {
    crate::diag::init(level, crate::config::LogFormat::Text);
}

async fn bind(what: &str, addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} ({what}): {e}"))
}

async fn serve_from_config(path: &Path, cfg: Config) -> ExitCode {
    // What the file held at start, for the watcher to compare with; read
    // first, so a change made once the gateway says it is serving is seen.
    let initial = std::fs::read(path).unwrap_or_default();
    // The certificate first: a missing or mismatched file is the likeliest
    // start failure, and it is reported before anything is opened or bound.
    let acceptor = match cfg.server.tls.as_ref().map(TlsAcceptor::new).transpose() {
        Ok(a) => a.map(Arc::new),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let store = match cfg.store.open().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let http = match cfg.server.listen {
        Some(a) => match bind("server.listen", a).await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let admin = match bind("admin.listen", cfg.admin.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let tls = match (&cfg.server.tls, acceptor) {
        (Some(t), Some(acceptor)) => match bind("server.tls.listen", t.listen).await {
            Ok(l) => Some((l, acceptor)),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    tracing::info!(
        listen = ?cfg.server.listen,
        tls = ?cfg.server.tls.as_ref().map(|t| t.listen),
        admin = %cfg.admin.listen,
        store = store.backend_name(),
        routes = cfg.routes.len(),
        "osir-gateway serving"
    );
    let access_log = match crate::pipeline::access_log::AccessLog::open(&cfg.log.access) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let gw = Gateway::new(cfg, store, Arc::new(Metrics::new()));
    gw.access_log.store(access_log.map(Arc::new));
    let (causes, rx) = tokio::sync::mpsc::channel(16);
    let reloader = tokio::spawn(reloader(gw.clone(), path.to_owned(), initial, rx));
    let hup = tokio::spawn(reload_on_sighup(causes.clone()));
    let watcher = tokio::spawn(crate::app::watch::watch_events(path.to_owned(), causes));
    server::serve(
        gw,
        Listeners {
            http,
            admin: Some(admin),
            tls,
        },
        shutdown_signal(),
    )
    .await;
    hup.abort();
    watcher.abort();
    reloader.abort();
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutdown signal received; draining");
}

/// Loads, validates and applies the file; the old config keeps serving on
/// any problem. Returns the new generation. Callers must not run two at
/// once (in `run` only the [`reloader`] task calls it).
pub fn reload(gw: &Gateway, path: &Path) -> Result<u64, String> {
    let outcome = load_with_certificate(gw, path).map(|new| {
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
        (Redis { url: a, timeout: x }, Redis { url: b, timeout: y }) => {
            differs("store.url", a != b);
            differs("store.timeout", x != y);
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

/// Why the [`reloader`] should look at the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// SIGHUP: reload whatever the file holds.
    Signal,
    /// A file event or the periodic check: reload if the bytes changed
    /// since the last ones tried.
    FileMayHaveChanged,
}

/// The one task that applies reloads: every [`Cause`] is handled in the
/// order it arrived, one at a time, so generations only go up and no two
/// reloads interleave. `initial` is the file content the gateway started
/// with; a file-change cause reloads only when the bytes differ from the
/// last ones tried (so an invalid file is refused, and counted, once).
/// Ends when every sender is gone.
pub async fn reloader(
    gw: Arc<Gateway>,
    path: std::path::PathBuf,
    initial: Vec<u8>,
    mut causes: tokio::sync::mpsc::Receiver<Cause>,
) {
    let mut last = initial;
    while let Some(cause) = causes.recv().await {
        let now = tokio::fs::read(&path).await;
        match (cause, now) {
            (Cause::Signal, now) => {
                if let Ok(now) = now {
                    last = now;
                }
                let _ = reload(&gw, &path);
            }
            (Cause::FileMayHaveChanged, Ok(now)) if now != last => {
                last = now;
                let _ = reload(&gw, &path);
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
fn load_with_certificate(gw: &Gateway, path: &Path) -> Result<Config, String> {
    let new = Config::load(path).map_err(|e| e.to_string())?;
    if let (Some(acceptor), Some(tls)) = (gw.tls.load_full(), &new.server.tls) {
        acceptor.reload(tls)?;
    }
    Ok(new)
}

/// Turns each SIGHUP into a [`Cause::Signal`] for the reloader.
async fn reload_on_sighup(causes: tokio::sync::mpsc::Sender<Cause>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            if causes.send(Cause::Signal).await.is_err() {
                return;
            }
        }
    }
    #[cfg(not(unix))]
    drop(causes);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
