//! Signals: SIGTERM/SIGINT end the process (after draining), SIGHUP asks
//! the [`crate::app::reload::Reloader`] to reload.

use crate::app::reload::Cause;

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

/// Turns each SIGHUP into a [`Cause::Signal`] for the reloader.
pub async fn sighup_causes(causes: tokio::sync::mpsc::Sender<Cause>) {
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
