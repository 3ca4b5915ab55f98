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
//!
//! Directory events are filtered to the config file (and Kubernetes'
//! `..data` swap) before anything is logged about them, and the file
//! watcher's own per-event trace lines are kept out of the log (see
//! [`crate::diag::init`]): with the log file in the config's
//! directory, each line about an event would cause another event.
//!
//! The watcher does not reload by itself: it sends a
//! [`Cause::FileMayHaveChanged`] to the one reloader task
//! ([`Reloader::run`]), which SIGHUP feeds too.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::app::reload::{Cause, Reloader};

/// How often the file is re-read when no event arrives.
const POLL: Duration = Duration::from_secs(1);
/// Editors write in several steps; wait for them to settle.
const SETTLE: Duration = Duration::from_millis(50);

/// Reloads the gateway's config whenever the file at `path` changes, until
/// the task is aborted. `initial` is the content the gateway started with.
/// A watcher and its own reloader together; `run` uses [`watch_events`]
/// with the reloader it shares with SIGHUP.
pub async fn watch_config(reloader: Reloader, path: PathBuf, initial: Vec<u8>) {
    let (tx, rx) = mpsc::channel(16);
    tokio::join!(reloader.run(initial, rx), watch_events(path, tx));
}

/// Sends [`Cause::FileMayHaveChanged`] to `causes` on every relevant event
/// (once the writes have settled) and once a second, until the task is
/// aborted or the reloader is gone.
pub async fn watch_events(path: PathBuf, causes: mpsc::Sender<Cause>) {
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
        // log beside the config, say) must not cost a re-read per write,
        // and nothing is logged about them.
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
        if causes.send(Cause::FileMayHaveChanged).await.is_err() {
            return;
        }
    }
}
