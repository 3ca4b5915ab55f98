//! In-process store: the demo's store and the unit tests' store.
//!
//! It behaves like the shared stores (id index, conflicts, invalidation
//! messages) so code tested against it meets no surprise on Redis. It also
//! counts lookups and can hold one back, which is how the cache's
//! single-flight and in-flight-revoke rules are tested without timing luck.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::{broadcast, Semaphore};

use super::{FlushReason, InvalidationSink, StoreError, StoreFuture};
use crate::keys::KeyHash;
use crate::keys::{AuditEntry, AuditId, AuditPage, AuditQuery};
use crate::keys::{KeyRecord, KeyUsage, Timestamp, UsageDelta};

#[derive(Default)]
struct Maps {
    by_hash: HashMap<KeyHash, KeyRecord>,
    by_id: HashMap<String, KeyHash>,
    usage: HashMap<String, KeyUsage>,
    /// The audit trail, oldest first.
    audit: Vec<AuditEntry>,
}

/// Appends `entry` with the next id; shared by the in-process backends.
pub(crate) fn append_audit(trail: &mut Vec<AuditEntry>, entry: Option<&AuditEntry>) {
    if let Some(e) = entry {
        let mut e = e.clone();
        e.id = AuditId::next_after(trail.last().map(|l| l.id), Timestamp::now());
        trail.push(e);
    }
}

struct Inner {
    maps: RwLock<Maps>,
    /// Each change with its write time, for the revocation-delay metric.
    changes: broadcast::Sender<(KeyHash, Timestamp)>,
    lookups: AtomicU64,
    /// When set, each lookup takes a permit first: tests hold lookups back.
    gate: RwLock<Option<Arc<Semaphore>>>,
}

/// A store in this process's memory; cloning shares it.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore {
            inner: Arc::new(Inner {
                maps: RwLock::default(),
                changes: broadcast::channel(1024).0,
                lookups: AtomicU64::new(0),
                gate: RwLock::new(None),
            }),
        }
    }

    /// How many lookups by hash this store has answered (tests).
    pub fn lookup_count(&self) -> u64 {
        self.inner.lookups.load(Ordering::SeqCst)
    }

    /// Makes every later lookup wait for a permit of `gate` (tests).
    pub fn set_lookup_gate(&self, gate: Option<Arc<Semaphore>>) {
        *self.inner.gate.write() = gate;
    }

    pub(super) async fn lookup(&self, hash: &KeyHash) -> Result<Option<KeyRecord>, StoreError> {
        self.inner.lookups.fetch_add(1, Ordering::SeqCst);
        let snapshot = self.inner.maps.read().by_hash.get(hash).cloned();
        let gate = self.inner.gate.read().clone();
        if let Some(gate) = gate {
            // The record was read before waiting: a change landing meanwhile
            // must not be seen, exactly like a slow network round trip.
            let permit = gate
                .acquire()
                .await
                .map_err(|_| StoreError::Unavailable("lookup gate closed".into()))?;
            permit.forget();
        }
        Ok(snapshot)
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
        let mut maps = self.inner.maps.write();
        if maps.by_id.contains_key(&record.id) || maps.by_hash.contains_key(hash) {
            return Err(StoreError::Conflict(format!(
                "key id {} already exists",
                record.id
            )));
        }
        maps.by_id.insert(record.id.clone(), *hash);
        maps.by_hash.insert(*hash, record.clone());
        append_audit(&mut maps.audit, audit);
        Ok(())
    }

    pub(super) fn replace(
        &self,
        record: &KeyRecord,
        audit: Option<&AuditEntry>,
    ) -> Result<(), StoreError> {
        let hash = {
            let mut maps = self.inner.maps.write();
            let Some(hash) = maps.by_id.get(&record.id).copied() else {
                return Err(StoreError::Conflict(format!(
                    "no key with id {}",
                    record.id
                )));
            };
            maps.by_hash.insert(hash, record.clone());
            append_audit(&mut maps.audit, audit);
            hash
        };
        // No receiver is fine: nobody caches.
        let _ = self.inner.changes.send((hash, Timestamp::now()));
        Ok(())
    }

    pub(super) fn add_usage(&self, batch: &[UsageDelta]) -> Result<(), StoreError> {
        let mut maps = self.inner.maps.write();
        for d in batch {
            apply_usage(maps.usage.entry(d.id.clone()).or_default(), d);
        }
        Ok(())
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

    pub(super) fn watch(&self, sink: Arc<dyn InvalidationSink>) -> tokio::task::JoinHandle<()> {
        let mut rx = self.inner.changes.subscribe();
        sink.store_up(true);
        sink.feed_state(None);
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok((hash, at)) => sink.invalidate_written_at(&hash, at),
                    Err(broadcast::error::RecvError::Lagged(_)) => sink.flush(FlushReason::Trimmed),
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        })
    }
}

/// Adds one delta to a usage record; shared by the in-process backends.
pub(crate) fn apply_usage(u: &mut KeyUsage, d: &UsageDelta) {
    for (day, n) in &d.daily {
        *u.daily.entry(day.clone()).or_default() += n;
        u.total += n;
    }
    if u.last_used_at.is_none_or(|t| t <= d.last_used_at) {
        u.last_used_at = Some(d.last_used_at);
        u.last_ip = Some(d.last_ip);
    }
}

impl super::KeyLookup for MemoryStore {
    fn lookup<'a>(&'a self, hash: &'a KeyHash) -> StoreFuture<'a, Option<KeyRecord>> {
        Box::pin(MemoryStore::lookup(self, hash))
    }
}

impl super::KeyAdmin for MemoryStore {
    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<(KeyHash, KeyRecord)>> {
        Box::pin(async move { MemoryStore::get(self, id) })
    }
    fn list(&self) -> StoreFuture<'_, Vec<KeyRecord>> {
        Box::pin(async move { MemoryStore::list(self) })
    }
    fn insert<'a>(
        &'a self,
        hash: &'a KeyHash,
        record: &'a KeyRecord,
        audit: Option<&'a AuditEntry>,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move { MemoryStore::insert(self, hash, record, audit) })
    }
    fn replace<'a>(
        &'a self,
        record: &'a KeyRecord,
        audit: Option<&'a AuditEntry>,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move { MemoryStore::replace(self, record, audit) })
    }
}

impl super::AuditLog for MemoryStore {
    fn audit<'a>(&'a self, query: &'a AuditQuery) -> StoreFuture<'a, AuditPage> {
        Box::pin(async move { Ok(query.page_of(self.inner.maps.read().audit.iter())) })
    }
}

impl super::UsageStore for MemoryStore {
    fn add_usage<'a>(&'a self, batch: &'a [UsageDelta]) -> StoreFuture<'a, ()> {
        Box::pin(async move { MemoryStore::add_usage(self, batch) })
    }
    fn usage<'a>(&'a self, id: &'a str) -> StoreFuture<'a, KeyUsage> {
        Box::pin(async move { MemoryStore::usage(self, id) })
    }
}

impl super::ChangeFeed for MemoryStore {
    fn watch(&self, sink: Arc<dyn InvalidationSink>) -> tokio::task::JoinHandle<()> {
        MemoryStore::watch(self, sink)
    }
}

impl super::Backend for MemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }
}
