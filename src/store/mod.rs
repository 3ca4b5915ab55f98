//! Key stores: where records live, shared by every gateway that uses them.
//!
//! Three backends behind one enum (static dispatch, no boxing on the lookup
//! path):
//! - [`redis::RedisStore`]: the shared store for many gateways; writes are
//!   atomic and announce themselves on a pub/sub channel.
//! - [`file::FileStore`]: one JSON file on one host, written atomically and
//!   watched by the running gateway.
//! - [`memory::MemoryStore`]: in-process, for the demo and unit tests.
//!
//! Every store holds only `sha256(key)` handles, never keys. Whatever a store
//! changes, it reports to an [`InvalidationSink`] (the cache), so a revoke or
//! update reaches every gateway's cache.

pub mod file;
pub mod memory;
pub mod redis;

use std::sync::Arc;

use crate::keys::api_key::KeyHash;
use crate::keys::record::{KeyRecord, KeyUsage, Timestamp, UsageDelta};

/// Why the store could not answer. Messages never contain a key.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or timed out: never cached, never allows.
    #[error("key store unavailable: {0}")]
    Unavailable(String),
    /// A record exists but cannot be read; named by id or hash prefix and field.
    #[error("corrupt key record {what}: {reason}")]
    Corrupt {
        /// Which record (id, or the first characters of its hash).
        what: String,
        /// Which field and why.
        reason: String,
    },
    /// The write would break an invariant (id already taken, id unknown).
    #[error("{0}")]
    Conflict(String),
}

/// Told about every change a store sees, so cached records never outlive them.
pub trait InvalidationSink: Send + Sync + 'static {
    /// The record behind this hash changed (updated, revoked, rotated).
    fn invalidate(&self, hash: &KeyHash);
    /// Like [`InvalidationSink::invalidate`], for a change the writer says it
    /// wrote at `written_at` (its clock), so the sink can measure how long
    /// the change took to arrive. By default just invalidates.
    fn invalidate_written_at(&self, hash: &KeyHash, written_at: Timestamp) {
        let _ = written_at;
        self.invalidate(hash);
    }
    /// Anything may have changed (the channel reconnected, the file was
    /// replaced): forget every cached record.
    fn invalidate_all(&self);
    /// The store's connection state, for `osir_gateway_store_up` and readiness.
    fn store_up(&self, up: bool);
}

/// The configured key store.
#[derive(Clone)]
pub enum Store {
    /// Shared Redis (or Sentinel / Cluster).
    Redis(redis::RedisStore),
    /// Embedded JSON file.
    File(file::FileStore),
    /// In-process map.
    Memory(memory::MemoryStore),
}

impl Store {
    /// The record whose key hashes to `hash`, if any.
    pub async fn lookup(&self, hash: &KeyHash) -> Result<Option<KeyRecord>, StoreError> {
        match self {
            Store::Redis(s) => s.lookup(hash).await,
            Store::File(s) => s.lookup(hash),
            Store::Memory(s) => s.lookup(hash).await,
        }
    }

    /// A record and its hash, by public id.
    pub async fn get(&self, id: &str) -> Result<Option<(KeyHash, KeyRecord)>, StoreError> {
        match self {
            Store::Redis(s) => s.get(id).await,
            Store::File(s) => s.get(id),
            Store::Memory(s) => s.get(id),
        }
    }

    /// Every record, sorted by creation time then id.
    pub async fn list(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let mut all = match self {
            Store::Redis(s) => s.list().await,
            Store::File(s) => s.list(),
            Store::Memory(s) => s.list(),
        }?;
        all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(all)
    }

    /// Adds a new record; fails with `Conflict` if the id or hash exists.
    pub async fn insert(&self, hash: &KeyHash, record: &KeyRecord) -> Result<(), StoreError> {
        match self {
            Store::Redis(s) => s.insert(hash, record).await,
            Store::File(s) => s.insert(hash, record),
            Store::Memory(s) => s.insert(hash, record),
        }
    }

    /// Replaces the record with `record.id` (which must exist) and tells every
    /// gateway's cache. Record and id index change together or not at all.
    pub async fn replace(&self, record: &KeyRecord) -> Result<(), StoreError> {
        match self {
            Store::Redis(s) => s.replace(record).await,
            Store::File(s) => s.replace(record),
            Store::Memory(s) => s.replace(record),
        }
    }

    /// Adds a batch of usage counts (one round trip for the whole batch).
    pub async fn add_usage(&self, batch: &[UsageDelta]) -> Result<(), StoreError> {
        match self {
            Store::Redis(s) => s.add_usage(batch).await,
            Store::File(s) => s.add_usage(batch),
            Store::Memory(s) => s.add_usage(batch),
        }
    }

    /// Usage recorded so far for one key id (zeroes when none).
    pub async fn usage(&self, id: &str) -> Result<KeyUsage, StoreError> {
        match self {
            Store::Redis(s) => s.usage(id).await,
            Store::File(s) => s.usage(id),
            Store::Memory(s) => s.usage(id),
        }
    }

    /// Starts the background task that feeds `sink` with this store's
    /// changes (pub/sub, file watch, or in-process notifications) until the
    /// returned handle is aborted or the store is dropped.
    pub fn watch(&self, sink: Arc<dyn InvalidationSink>) -> tokio::task::JoinHandle<()> {
        match self {
            Store::Redis(s) => s.watch(sink),
            Store::File(s) => s.watch(sink),
            Store::Memory(s) => s.watch(sink),
        }
    }

    /// A short name for logs and `/readyz`.
    pub fn backend_name(&self) -> &'static str {
        match self {
            Store::Redis(_) => "redis",
            Store::File(_) => "file",
            Store::Memory(_) => "memory",
        }
    }
}
