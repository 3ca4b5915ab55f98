//! `osir-gateway run`: load the config, open the store, bind, serve until
//! SIGTERM or SIGINT; reload the config on SIGHUP.
//!
//! A reload validates the whole file first; an invalid file is refused whole
//! and the old config keeps serving. Listener addresses and the store need a
//! restart, and the log says so. A reload also reloads the TLS certificate
//! (renewed files, or new paths); a certificate that cannot be loaded
//! refuses the reload like an invalid file.

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

pub use crate::app::reload::reload;

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
    let reloader = tokio::spawn(reload_on_sighup(gw.clone(), path.to_owned()));
    let initial = std::fs::read(path).unwrap_or_default();
    let watcher = tokio::spawn(crate::app::watch::watch_config(
        gw.clone(),
        path.to_owned(),
        initial,
    ));
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
    reloader.abort();
    watcher.abort();
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

async fn reload_on_sighup(gw: Arc<Gateway>, path: std::path::PathBuf) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            let _ = reload(&gw, &path);
        }
    }
}
