//! Embedded store: one JSON file on one host.
//!
//! Reads are served from memory. Every write is a read-modify-write of the
//! whole file under an exclusive lock on `<path>.lock`, re-reading the file
//! first, so two processes (a running gateway and a `keys` command, or two
//! commands) never lose each other's writes. The new content goes to a
//! temporary file in the same directory, is synced, and is renamed over the
//! old one: a reader sees the old file or the new one, never half of either.
//!
//! A running gateway watches the file (directory events plus a 500 ms
//! `stat` poll, because event delivery is best effort) and tells its cache
//! about every record that changed. A file that fails to parse is logged and
//! ignored: the last good content keeps serving.
//!
//! Format (also in `docs/store.md`):
//! `{"version":1,"keys":[{"hash":"<sha256 hex>", ...record}],"usage":{"<id>":{...}},"audit":[...]}`;
//! `audit` (the trail, oldest first, written with the change it records)
//! is left out while empty.
//!
//! Over 400 lines: it grew with the audit trail and the change counter; the
//! on-disk format (serde types, parsing) is the next split.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Deserializer, Serialize};
use tokio::sync::watch as generation;

use super::memory::{append_audit, apply_usage};
use super::{InvalidationSink, StoreError, StoreFuture};
use crate::keys::KeyHash;
use crate::keys::{parse_ip_or_cidr, valid_key_id, KeyRecord, KeyUsage, UsageDelta};
use crate::keys::{AuditEntry, AuditPage, AuditQuery};

/// The only format version this code reads and writes.
const VERSION: u32 = 1;
/// Fallback check for changes the directory watcher did not report.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// Editors and our own writer produce bursts of events; one reload per burst.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// More changed records than this in one reload: flush the whole cache
/// rather than invalidating one by one.
const MANY_CHANGES: usize = 1000;

#[derive(Debug, Default)]
struct Maps {
    by_hash: HashMap<KeyHash, KeyRecord>,
    by_id: HashMap<String, KeyHash>,
    usage: HashMap<String, KeyUsage>,
    /// The audit trail, oldest first.
    audit: Vec<AuditEntry>,
    /// The file's change counter: bumped by every record write (not by
    /// usage), so a watcher can tell the file went back to an older copy.
    changes: u64,
}

struct Inner {
    path: PathBuf,
    lock_path: PathBuf,
    maps: RwLock<Maps>,
    /// Orders this process's disk reads with its own writes, so a reload
    /// that read the file before a write cannot overwrite the newer memory.
    gate: Mutex<()>,
    /// Bumped after each write by this process: wakes the watcher at once.
    written: generation::Sender<u64>,
}

/// A JSON key file and its in-memory copy; cloning shares both.
#[derive(Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

impl FileStore {
    /// Loads `path`. A missing (or empty) file is an empty store, created on
    /// the first write; an unreadable or invalid file is an error naming the
    /// path and, for JSON errors, the line and column.
    pub fn open(path: &Path) -> Result<FileStore, StoreError> {
        let mut lock_name = path.as_os_str().to_owned();
        lock_name.push(".lock");
        let maps = load(path)?;
        Ok(FileStore {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                lock_path: PathBuf::from(lock_name),
                maps: RwLock::new(maps),
                gate: Mutex::new(()),
                written: generation::channel(0).0,
            }),
        })
    }

    /// The file this store reads and writes.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub(super) fn lookup(&self, hash: &KeyHash) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self.inner.maps.read().by_hash.get(hash).cloned())
    }

    pub(super) fn get(&self, id: &str) -> Result<Option<(KeyHash, KeyRecord)>, StoreError> {
        let maps = self.inner.maps.read();
        Ok(maps
            .by_id
            .get(id)
            .and_then(|h| maps.by_hash.get(h).map(|r| (*h, r.clone()))))
    }

    pub(super) fn list(&self) -> Result<Vec<KeyRecord>, StoreError> {
        Ok(self.inner.maps.read().by_hash.values().cloned().collect())
    }

    pub(super) fn insert(
        &self,
        hash: &KeyHash,
        record: &KeyRecord,
        audit: Option<&AuditEntry>,
    ) -> Result<(), StoreError> {
        self.modify(|maps| {
            if maps.by_id.contains_key(&record.id) || maps.by_hash.contains_key(hash) {
                return Err(StoreError::Conflict(format!(
                    "key id {} already exists",
                    record.id
                )));
            }
            maps.by_id.insert(record.id.clone(), *hash);
            maps.by_hash.insert(*hash, record.clone());
            append_audit(&mut maps.audit, audit);
            maps.changes = maps.changes.saturating_add(1);
            Ok(())
        })
    }

    pub(super) fn replace(
        &self,
        record: &KeyRecord,
        audit: Option<&AuditEntry>,
    ) -> Result<(), StoreError> {
        self.modify(|maps| {
            let Some(hash) = maps.by_id.get(&record.id).copied() else {
                return Err(StoreError::Conflict(format!(
                    "no key with id {}",
                    record.id
                )));
            };
            maps.by_hash.insert(hash, record.clone());
            append_audit(&mut maps.audit, audit);
            maps.changes = maps.changes.saturating_add(1);
            Ok(())
        })
    }

    pub(super) fn audit(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        Ok(query.page_of(self.inner.maps.read().audit.iter()))
    }

    pub(super) fn add_usage(&self, batch: &[UsageDelta]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.modify(|maps| {
            for d in batch {
                apply_usage(maps.usage.entry(d.id.clone()).or_default(), d);
            }
            Ok(())
        })
    }

    pub(super) fn usage(&self, id: &str) -> Result<KeyUsage, StoreError> {
        Ok(self
            .inner
            .maps
            .read()
            .usage
            .get(id)
            .cloned()
            .unwrap_or_default())
    }

    /// Read-modify-write under the cross-process lock. Memory takes the
    /// freshly read content even when `change` refuses (a conflict), so this
    /// process learns what the other one wrote.
    fn modify(
        &self,
        change: impl FnOnce(&mut Maps) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let path = &self.inner.path;
        let _gate = self.inner.gate.lock();
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.inner.lock_path)
            .map_err(|e| io_error("cannot open lock file", &self.inner.lock_path, &e))?;
        lock.lock()
            .map_err(|e| io_error("cannot lock", &self.inner.lock_path, &e))?;
        let mut maps = load(path)?;
        let outcome = change(&mut maps);
        if outcome.is_ok() {
            write_atomic(path, &render(&maps)?)?;
        }
        *self.inner.maps.write() = maps;
        // Closing the descriptor releases the lock; say so explicitly.
        drop(lock);
        // Memory changed (our write, or another process's seen on a
        // conflict): the watcher tells the cache.
        self.inner.written.send_modify(|g| *g += 1);
        outcome
    }

    /// Re-reads the file into memory; returns the records now served and
    /// the file's change counter.
    fn reload(&self) -> Result<(HashMap<KeyHash, KeyRecord>, u64), StoreError> {
        let _gate = self.inner.gate.lock();
        let maps = load(&self.inner.path)?;
        let records = maps.by_hash.clone();
        let changes = maps.changes;
        *self.inner.maps.write() = maps;
        Ok((records, changes))
    }

    /// The watcher holds only a weak handle: it ends when the handle is
    /// aborted or when the last clone of the store is dropped.
    pub(super) fn watch(&self, sink: Arc<dyn InvalidationSink>) -> tokio::task::JoinHandle<()> {
        let store = Arc::downgrade(&self.inner);
        let path = self.inner.path.clone();
        let seen = {
            let maps = self.inner.maps.read();
            (maps.by_hash.clone(), maps.changes)
        };
        let written = self.inner.written.subscribe();
        sink.store_up(true);
        sink.feed_state(None);
        tokio::spawn(async move { watch_loop(store, path, seen, &*sink, written).await })
    }
}

/// Runs a blocking file operation (lock, read, write, fsync) on Tokio's
/// blocking pool, so an async caller (the usage flusher, the admin API)
/// never stalls a runtime thread on disk I/O.
async fn off_runtime<T: Send + 'static>(
    job: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| StoreError::Unavailable(format!("file store task failed: {e}")))?
}

impl super::KeyLookup for FileStore {
    fn lookup<'a>(&'a self, hash: &'a KeyHash) -> StoreFuture<'a, Option<KeyRecord>> {
        // Served from memory: no I/O.
        Box::pin(async move { FileStore::lookup(self, hash) })
    }
}

impl super::KeyAdmin for FileStore {
    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<(KeyHash, KeyRecord)>> {
        Box::pin(async move { FileStore::get(self, id) })
    }
    fn list(&self) -> StoreFuture<'_, Vec<KeyRecord>> {
        Box::pin(async move { FileStore::list(self) })
    }
    fn insert<'a>(
        &'a self,
        hash: &'a KeyHash,
        record: &'a KeyRecord,
        audit: Option<&'a AuditEntry>,
    ) -> StoreFuture<'a, ()> {
        let (store, hash, record) = (self.clone(), *hash, record.clone());
        let audit = audit.cloned();
        Box::pin(off_runtime(move || {
            store.insert(&hash, &record, audit.as_ref())
        }))
    }
    fn replace<'a>(
        &'a self,
        record: &'a KeyRecord,
        audit: Option<&'a AuditEntry>,
    ) -> StoreFuture<'a, ()> {
        let (store, record, audit) = (self.clone(), record.clone(), audit.cloned());
        Box::pin(off_runtime(move || store.replace(&record, audit.as_ref())))
    }
}

impl super::AuditLog for FileStore {
    fn audit<'a>(&'a self, query: &'a AuditQuery) -> StoreFuture<'a, AuditPage> {
        // Served from memory, like lookups: the watcher keeps it current.
        Box::pin(async move { FileStore::audit(self, query) })
    }
}

impl super::UsageStore for FileStore {
    fn add_usage<'a>(&'a self, batch: &'a [UsageDelta]) -> StoreFuture<'a, ()> {
        let (store, batch) = (self.clone(), batch.to_vec());
        Box::pin(off_runtime(move || store.add_usage(&batch)))
    }
    fn usage<'a>(&'a self, id: &'a str) -> StoreFuture<'a, KeyUsage> {
        Box::pin(async move { FileStore::usage(self, id) })
    }
}

impl super::ChangeFeed for FileStore {
    fn watch(&self, sink: Arc<dyn InvalidationSink>) -> tokio::task::JoinHandle<()> {
        FileStore::watch(self, sink)
    }
}

impl super::Backend for FileStore {
    fn name(&self) -> &'static str {
        "file"
    }
}

async fn watch_loop(
    weak: Weak<Inner>,
    path: PathBuf,
    seen: (HashMap<KeyHash, KeyRecord>, u64),
    sink: &dyn InvalidationSink,
    mut written: generation::Receiver<u64>,
) {
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel::<()>();
    // Owned by this task: ending or aborting the task drops it, which stops
    // its thread.
    let _watcher = dir_watcher(&path, tx);
    let mut stamp = None;
    let mut poll = tokio::time::interval(POLL_EVERY);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut first = true;
    let (mut seen, mut seen_changes) = seen;
    loop {
        tokio::select! {
            Some(()) = events.recv() => {
                tokio::time::sleep(DEBOUNCE).await;
                while events.try_recv().is_ok() {}
            }
            changed = written.changed() => {
                if changed.is_err() {
                    return; // The store is gone.
                }
            }
            _ = poll.tick() => {
                // The first tick is immediate: it catches changes made
                // between `open` and `watch`.
                if !first && file_stamp(&path) == stamp {
                    continue;
                }
                first = false;
            }
        }
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let store = FileStore { inner };
        // Stat before reading: a change landing during the read then shows
        // up as a new stamp at the next poll instead of being lost.
        stamp = file_stamp(&path);
        match tokio::task::spawn_blocking(move || store.reload()).await {
            Ok(Ok((now, changes))) => {
                if changes < seen_changes {
                    // An older copy of the file (a restored backup) or a
                    // deleted one: said so; the diff below still tells the
                    // cache about every record that differs.
                    tracing::warn!(
                        "key file change counter went back from {seen_changes} to {changes} \
                         (an older copy of the file?)"
                    );
                }
                report_changes(&seen, &now, sink);
                seen = now;
                seen_changes = changes;
            }
            Ok(Err(e)) => {
                tracing::error!("key file not reloaded, previous keys stay in force: {e}")
            }
            Err(e) => tracing::error!("key file reload failed: {e}"),
        }
    }
}

/// Watches the directory, not the file: an atomic write replaces the file's
/// inode, which a watch on the file itself would lose.
fn dir_watcher(
    path: &Path,
    tx: tokio::sync::mpsc::UnboundedSender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let name = path.file_name()?.to_owned();
    let dir = parent_dir(path);
    let handler = move |res: notify::Result<notify::Event>| {
        if let Ok(event) = res {
            if event
                .paths
                .iter()
                .any(|p| p.file_name() == Some(name.as_os_str()))
            {
                let _ = tx.send(());
            }
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!("cannot watch {}: {e}; polling only", dir.display());
            return None;
        }
    };
    if let Err(e) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
        tracing::warn!("cannot watch {}: {e}; polling only", dir.display());
        return None;
    }
    Some(watcher)
}

/// Tells the sink about every record that appeared, changed or vanished.
/// Usage-only writes change no record and so flush nothing.
fn report_changes(
    old: &HashMap<KeyHash, KeyRecord>,
    new: &HashMap<KeyHash, KeyRecord>,
    sink: &dyn InvalidationSink,
) {
    let changed: Vec<&KeyHash> = old
        .iter()
        .filter(|(h, r)| new.get(*h) != Some(*r))
        .map(|(h, _)| h)
        .chain(new.keys().filter(|h| !old.contains_key(*h)))
        .collect();
    if changed.len() > MANY_CHANGES {
        sink.invalidate_all();
    } else {
        for h in changed {
            sink.invalidate(h);
        }
    }
}

/// What identifies one version of the file without reading it.
#[derive(PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn file_stamp(path: &Path) -> Option<Stamp> {
    let meta = fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn io_error(doing: &str, path: &Path, e: &io::Error) -> StoreError {
    StoreError::Unavailable(format!("{doing} {}: {e}", path.display()))
}

fn corrupt(path: &Path, reason: String) -> StoreError {
    StoreError::Corrupt {
        what: path.display().to_string(),
        reason,
    }
}

/// Reads and validates the whole file; missing or blank means empty.
fn load(path: &Path) -> Result<Maps, StoreError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Maps::default()),
        Err(e) => return Err(io_error("cannot read key file", path, &e)),
    };
    parse(&bytes).map_err(|reason| corrupt(path, reason))
}

#[derive(Deserialize)]
struct VersionOnly {
    version: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DocIn {
    /// Checked by [`VersionOnly`] first; listed so it is a known field.
    #[allow(dead_code)]
    version: u32,
    #[serde(default)]
    keys: Vec<FileKey>,
    #[serde(default)]
    changes: u64,
    #[serde(default)]
    usage: BTreeMap<String, KeyUsage>,
    #[serde(default)]
    audit: Vec<AuditEntry>,
}

/// A record with its hash. Deserialized by hand so the record keeps its own
/// `deny_unknown_fields` (serde's `flatten` would silently drop a misspelt
/// `revoked_at`), while errors keep the JSON position.
struct FileKey {
    hash: KeyHash,
    record: KeyRecord,
}

impl<'de> Deserialize<'de> for FileKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<FileKey, D::Error> {
        use serde::de::Error;
        let mut map = serde_json::Map::deserialize(d)?;
        let hash = match map.remove("hash") {
            Some(serde_json::Value::String(s)) => KeyHash::from_hex(&s)
                .ok_or_else(|| D::Error::custom("hash: expected 64 lowercase hex characters"))?,
            Some(_) => return Err(D::Error::custom("hash: expected a string")),
            None => return Err(D::Error::missing_field("hash")),
        };
        let prefix = &hash.to_hex()[..12];
        // Same rules as every other way in: a bare address is a /32 or /128,
        // mapped IPv6 becomes IPv4, host bits are cleared.
        if let Some(serde_json::Value::Array(items)) = map.get_mut("allowed_ips") {
            for item in items {
                if let serde_json::Value::String(text) = item {
                    let net = parse_ip_or_cidr(text).map_err(|e| {
                        D::Error::custom(format_args!("key {prefix}: allowed_ips: {e}"))
                    })?;
                    *text = net.to_string();
                }
            }
        }
        let record = KeyRecord::deserialize(serde_json::Value::Object(map))
            .map_err(|e| D::Error::custom(format_args!("key {prefix}: {e}")))?;
        Ok(FileKey { hash, record })
    }
}

fn parse(bytes: &[u8]) -> Result<Maps, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Maps::default());
    }
    let v: VersionOnly = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if v.version != VERSION {
        return Err(format!(
            "version {} is not supported (expected {VERSION})",
            v.version
        ));
    }
    let doc: DocIn = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if doc.audit.windows(2).any(|w| w[0].id >= w[1].id) {
        return Err("audit: entries are not in increasing id order".into());
    }
    let mut maps = Maps {
        usage: doc.usage.into_iter().collect(),
        audit: doc.audit,
        changes: doc.changes,
        ..Maps::default()
    };
    for FileKey { hash, record } in doc.keys {
        if !valid_key_id(&record.id) {
            return Err(format!("key id {:?} is not a valid key id", record.id));
        }
        if maps.by_id.insert(record.id.clone(), hash).is_some() {
            return Err(format!("key id {} appears twice", record.id));
        }
        if maps.by_hash.insert(hash, record).is_some() {
            return Err(format!("key hash {}… appears twice", &hash.to_hex()[..12]));
        }
    }
    Ok(maps)
}

#[derive(Serialize)]
struct DocOut<'a> {
    version: u32,
    changes: u64,
    keys: Vec<FileKeyOut<'a>>,
    usage: BTreeMap<&'a str, &'a KeyUsage>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    audit: &'a [AuditEntry],
}

#[derive(Serialize)]
struct FileKeyOut<'a> {
    hash: String,
    #[serde(flatten)]
    record: &'a KeyRecord,
}

/// Pretty JSON, records in creation order, so the file diffs and edits well.
fn render(maps: &Maps) -> Result<Vec<u8>, StoreError> {
    let mut keys: Vec<FileKeyOut<'_>> = maps
        .by_hash
        .iter()
        .map(|(h, r)| FileKeyOut {
            hash: h.to_hex(),
            record: r,
        })
        .collect();
    keys.sort_by(|a, b| {
        (a.record.created_at, &a.record.id).cmp(&(b.record.created_at, &b.record.id))
    });
    let doc = DocOut {
        version: VERSION,
        changes: maps.changes,
        keys,
        usage: maps.usage.iter().map(|(k, v)| (k.as_str(), v)).collect(),
        audit: &maps.audit,
    };
    let mut out = serde_json::to_vec_pretty(&doc)
        .map_err(|e| StoreError::Unavailable(format!("cannot encode key file: {e}")))?;
    out.push(b'\n');
    Ok(out)
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Temp file in the same directory (rename is atomic only within one file
/// system), synced, renamed over `path`, then the directory synced so the
/// rename itself survives a crash. Keeps the old file's permissions.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| -> io::Result<()> {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        if let Ok(meta) = fs::metadata(path) {
            f.set_permissions(meta.permissions())?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        #[cfg(unix)]
        File::open(&dir)?.sync_all()?;
        Ok(())
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_error("cannot write key file", path, &e)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A write waiting for the cross-process lock must not hold a runtime
    /// thread: on a one-thread runtime, other tasks keep running. (Were the
    /// write blocking, the thread would wait until the helper thread gives
    /// the lock up after its deadline, and the write would be finished by
    /// the time this task runs again.)
    #[test]
    fn a_write_waiting_for_the_lock_does_not_block_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let store = crate::store::Store::new(FileStore::open(&path).unwrap());
        let lock = File::create(dir.path().join("keys.json.lock")).unwrap();
        lock.lock().unwrap();
        let (seen_tx, seen_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let _ = seen_rx.recv_timeout(Duration::from_secs(5));
            drop(lock);
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let delta = UsageDelta {
                id: "key_a".into(),
                daily: BTreeMap::from([("2026-12-01".to_owned(), 1)]),
                last_used_at: crate::keys::Timestamp::now(),
                last_ip: std::net::Ipv4Addr::LOCALHOST.into(),
            };
            let write = tokio::spawn(async move { store.add_usage(&[delta]).await });
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            let ran_while_locked = !write.is_finished();
            seen_tx.send(()).unwrap();
            write.await.unwrap().unwrap();
            assert!(ran_while_locked, "the write held the runtime thread");
        });
        holder.join().unwrap();
    }

    #[test]
    fn blank_and_minimal_files_are_empty_stores() {
        assert!(parse(b"").unwrap().by_hash.is_empty());
        assert!(parse(b" \n").unwrap().by_hash.is_empty());
        assert!(parse(br#"{"version":1}"#).unwrap().by_hash.is_empty());
    }

    #[test]
    fn errors_say_where() {
        let e = parse(b"{\"version\":1,\n\"keys\":[{]}").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        let e = parse(br#"{"version":2,"keys":[]}"#).unwrap_err();
        assert!(e.contains("version 2"), "{e}");
        let e = parse(br#"{"version":1,"kyes":[]}"#).unwrap_err();
        assert!(e.contains("kyes"), "{e}");
        let hash = "ab".repeat(32);
        let doc = format!(
            r#"{{"version":1,"keys":[{{"hash":"{hash}","id":"key_a","name":"n","env":"live","scopes":[],
            "created_at":"2026-01-01T00:00:00Z","hint":"h","revokd_at":"2026-01-02T00:00:00Z"}}]}}"#
        );
        let e = parse(doc.as_bytes()).unwrap_err();
        assert!(e.contains("revokd_at") && e.contains("line 2"), "{e}");
        let bad_ip = doc.replace(
            r#""revokd_at""#,
            r#""allowed_ips":["10.0.0.0/33"],"revoked_at""#,
        );
        let e = parse(bad_ip.as_bytes()).unwrap_err();
        assert!(
            e.contains("allowed_ips") && e.contains("10.0.0.0/33"),
            "{e}"
        );
    }

    #[test]
    fn allowed_ips_are_canonical() {
        let hash = "cd".repeat(32);
        let doc = format!(
            r#"{{"version":1,"keys":[{{"hash":"{hash}","id":"key_a","name":"n","env":"live","scopes":["*"],
            "allowed_ips":["192.0.2.7","10.1.2.3/8","::ffff:198.51.100.1"],
            "created_at":"2026-01-01T00:00:00Z","hint":"h"}}]}}"#
        );
        let maps = parse(doc.as_bytes()).unwrap();
        let r = &maps.by_hash[&KeyHash::from_hex(&hash).unwrap()];
        let ips: Vec<String> = r.allowed_ips.iter().map(|n| n.to_string()).collect();
        assert_eq!(ips, ["192.0.2.7/32", "10.0.0.0/8", "198.51.100.1/32"]);
    }
}
