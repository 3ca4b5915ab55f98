//! Applying a changed config file: load, validate, reload the TLS
//! certificate, then swap the snapshot, or refuse the whole file and keep
//! the old one serving. Called by the file watcher (`watch.rs`), SIGHUP
//! (`run.rs`) and tests; the one place a new config is applied.

use std::path::Path;

use crate::config::Config;
use crate::state::Gateway;

/// Loads, validates and applies the file; the old config keeps serving on
/// any problem. Returns the new generation.
pub fn reload(gw: &Gateway, path: &Path) -> Result<u64, String> {
    let outcome = load_with_certificate(gw, path).map(|new| {
        let old = gw.snapshot.load();
        let old = &old.config;
        if old.server.listen != new.server.listen
            || old.admin.listen != new.admin.listen
            || old.server.tls.as_ref().map(|t| t.listen)
                != new.server.tls.as_ref().map(|t| t.listen)
        {
            tracing::warn!(
                "listen addresses changed in the config: restart the gateway to apply them"
            );
        }
        if old.log.access != new.log.access {
            tracing::warn!("[log] access changed in the config: restart the gateway to apply it");
        }
        if old.store != new.store {
            tracing::warn!("[store] changed in the config: restart the gateway to apply it");
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
