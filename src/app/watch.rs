//! Watching `gateway.toml` for changes.
//!
//! Editors save by writing a temp file and renaming it over the original;
//! Kubernetes swaps a `..data` symlink under a ConfigMap mount. Both replace
//! the inode, so watching the file itself loses track after the first save.
//! This watches the file's directory (notify, inotify on Linux) and, as a
//! fallback for missed events and remounted volumes, re-reads the file once a
//! second. Either way a reload is attempted only when the file's bytes
//! differ from the last ones tried, so an invalid file is refused (and
//! counted) once, not every second.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::state::Gateway;

/// How often the file is re-read when no event arrives.
const POLL: Duration = Duration::from_secs(1);
/// Editors write in several steps; wait for them to settle.
const SETTLE: Duration = Duration::from_millis(50);

/// Reloads the gateway's config whenever the file at `path` changes, until
/// the task is aborted. `initial` is the content the gateway started with.
pub async fn watch_config(gw: Arc<Gateway>, path: PathBuf, initial: Vec<u8>) {
    let (tx, mut rx) = mpsc::channel::<()>(16);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let name = path.file_name().map(|n| n.to_owned());
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        // Only events that can change what `path` reads: the file itself, or
        // Kubernetes' `..data` swap. Other files in the directory (an access
        // log beside the config, say) must not cost a re-read per write.
        let relevant = res.is_ok_and(|ev| {
            ev.paths.iter().any(|p| {
                let f = p.file_name();
                f == name.as_deref() || f.is_some_and(|f| f.to_string_lossy().starts_with(".."))
            })
        });
        if relevant {
            // A full channel already holds a wake-up; dropping this one is fine.
            let _ = tx.try_send(());
        }
    });
    let _watcher = match watcher {
        Ok(mut w) => match w.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => Some(w),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the config directory; polling only");
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot start a file watcher; polling only");
            None
        }
    };
    let mut last = initial;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {},
            Some(()) = rx.recv() => {
                tokio::time::sleep(SETTLE).await;
                while rx.try_recv().is_ok() {}
            }
        }
        let Ok(now) = tokio::fs::read(&path).await else {
            // Mid-swap or deleted: keep serving; the next event or tick retries.
            continue;
        };
        if now != last {
            last = now;
            let _ = crate::app::reload::reload(&gw, &path);
        }
    }
}
