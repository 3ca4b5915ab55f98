//! Key stores: where records live, shared by every gateway that uses them.
//!
//! A store does five jobs, one trait each, so a part of the gateway depends
//! only on the job it needs and a backend implements each job its own way:
//! - [`KeyLookup`]: the hot path's one read, by key hash (only on a cache
//!   miss: a cache hit never reaches the store);
//! - [`KeyAdmin`]: records by id, listing, inserting, replacing (the CLI and
//!   the admin API, through [`crate::manage`]);
//! - [`UsageStore`]: per-key usage counters, written in batches;
//! - [`ChangeFeed`]: telling a gateway's cache about every change;
//! - [`AuditLog`]: reading the audit trail. Entries are appended by the
//!   write they describe ([`KeyAdmin::insert`] and [`KeyAdmin::replace`]
//!   take one), in the same Lua script or file write, so a change and its
//!   entry exist together or not at all.
//!
//! [`Store`] is an opened backend seen through all four
//! ([`crate::config::StoreConfig::open`] opens the one a config names). Three backends:
//! - [`redis::RedisStore`]: the shared store for many gateways; writes are
//!   atomic and append themselves to a replayable change feed (a stream).
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

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::keys::KeyHash;
use crate::keys::{AuditEntry, AuditPage, AuditQuery};
use crate::keys::{KeyRecord, KeyUsage, Timestamp, UsageDelta};

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
    /// The store refused the command for this user (a Redis ACL's
    /// `NOPERM`): a write refused so has changed nothing.
    #[error("the key store refused this (nothing was changed): {0}")]
    Denied(String),
    /// The write would break an invariant (id already taken, id unknown).
    #[error("{0}")]
    Conflict(String),
}

/// What [`KeyAdmin::list_all`] found.
#[derive(Debug, Default)]
pub struct Listing {
    /// The records that could be read.
    pub records: Vec<KeyRecord>,
    /// One [`StoreError::Corrupt`] per record that could not, naming it.
    pub corrupt: Vec<StoreError>,
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
    /// Anything may have changed: forget every cached record.
    fn invalidate_all(&self);
    /// Like [`InvalidationSink::invalidate_all`], for a flush the feed had
    /// to make (it was trimmed past this gateway, or replaced, or asked for
    /// one), so the sink can count it by reason. By default just flushes.
    fn flush(&self, reason: FlushReason) {
        let _ = reason;
        self.invalidate_all();
    }
    /// The store's connection state, for `osir_gateway_store_up` and readiness.
    fn store_up(&self, up: bool);
    /// Whether changes reach this gateway: `None` while the feed is
    /// followed, else why not (a missing permission, a dead or silent
    /// connection). For `osir_gateway_change_feed_up` and `/readyz`.
    fn feed_state(&self, problem: Option<&str>) {
        let _ = problem;
    }
    /// Whether this gateway may write usage counters: `None` when it may,
    /// else why not. Reported by `/readyz`; revocations do not depend on it.
    fn usage_state(&self, problem: Option<&str>) {
        let _ = problem;
    }
}

/// Why a change feed told its sink to forget everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushReason {
    /// The feed was trimmed past this gateway's position: changes it never
    /// read are gone.
    Trimmed,
    /// The feed is not the one this gateway read (the store lost its data,
    /// or failed over to a copy that had not received the latest changes).
    Reset,
    /// An entry asked for it (`h *`, written after editing the store by hand).
    Requested,
    /// An entry this build cannot read: it may have been about any key.
    Unreadable,
}

impl FlushReason {
    /// Every reason, for pre-registering metric series.
    pub const ALL: [FlushReason; 4] = [
        FlushReason::Trimmed,
        FlushReason::Reset,
        FlushReason::Requested,
        FlushReason::Unreadable,
    ];

    /// The `reason` label of `osir_gateway_key_cache_flushes_total`.
    pub fn label(self) -> &'static str {
        match self {
            FlushReason::Trimmed => "trimmed",
            FlushReason::Reset => "reset",
            FlushReason::Requested => "requested",
            FlushReason::Unreadable => "unreadable",
        }
    }
}

/// What a store call returns: a boxed future, so the jobs can be trait
/// objects. The box costs one allocation per store round trip, which is
/// nothing beside the round trip (a cache hit never gets here).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The request path's read: one record by key hash.
pub trait KeyLookup: Send + Sync + 'static {
    /// The record whose key hashes to `hash`, if any.
    fn lookup<'a>(&'a self, hash: &'a KeyHash) -> StoreFuture<'a, Option<KeyRecord>>;
}

/// Key administration: records by public id.
pub trait KeyAdmin: Send + Sync + 'static {
    /// A record and its hash, by public id.
    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<(KeyHash, KeyRecord)>>;
    /// Every record, in no particular order; fails on the first one that
    /// cannot be read.
    fn list(&self) -> StoreFuture<'_, Vec<KeyRecord>>;
    /// Every readable record, and a [`StoreError::Corrupt`] (naming the id)
    /// for each one that is not, so one bad record hides no other. By
    /// default [`KeyAdmin::list`], for stores that cannot hold a bad record.
    fn list_all(&self) -> StoreFuture<'_, Listing> {
        Box::pin(async move {
            Ok(Listing {
                records: self.list().await?,
                corrupt: Vec::new(),
            })
        })
    }
    /// Adds a new record; fails with `Conflict` if the id or hash exists.
    /// With `audit`, appends that entry (its id assigned by the store) in
    /// the same atomic write.
    fn insert<'a>(
        &'a self,
        hash: &'a KeyHash,
        record: &'a KeyRecord,
        audit: Option<&'a AuditEntry>,
    ) -> StoreFuture<'a, ()>;
    /// Replaces the record with `record.id` (which must exist) and tells
    /// every gateway's cache. Record, id index and the `audit` entry change
    /// together or not at all.
    fn replace<'a>(
        &'a self,
        record: &'a KeyRecord,
        audit: Option<&'a AuditEntry>,
    ) -> StoreFuture<'a, ()>;
}

/// The audit trail: append-only (appended by [`KeyAdmin`]'s writes), read
/// newest first in pages.
pub trait AuditLog: Send + Sync + 'static {
    /// One page of entries matching `query`, newest first.
    fn audit<'a>(&'a self, query: &'a AuditQuery) -> StoreFuture<'a, AuditPage>;
}

/// Per-key usage counters.
pub trait UsageStore: Send + Sync + 'static {
    /// Adds a batch of usage counts (one round trip for the whole batch).
    fn add_usage<'a>(&'a self, batch: &'a [UsageDelta]) -> StoreFuture<'a, ()>;
    /// Usage recorded so far for one key id (zeroes when none).
    fn usage<'a>(&'a self, id: &'a str) -> StoreFuture<'a, KeyUsage>;
}

/// The changes a store sees, delivered to a gateway's cache.
pub trait ChangeFeed: Send + Sync + 'static {
    /// Starts the background task that feeds `sink` with this store's
    /// changes (a Redis stream, file watch, or in-process notifications) until the
    /// returned handle is aborted or the store is dropped.
    fn watch(&self, sink: Arc<dyn InvalidationSink>) -> tokio::task::JoinHandle<()>;
}

/// A backend that does every job; what [`Store::new`] takes.
pub trait Backend: KeyLookup + KeyAdmin + UsageStore + ChangeFeed + AuditLog {
    /// A short name for logs and `/readyz`.
    fn name(&self) -> &'static str;
}

/// An opened key store, seen through each of its jobs. Cloning shares it.
#[derive(Clone)]
pub struct Store {
    lookup: Arc<dyn KeyLookup>,
    admin: Arc<dyn KeyAdmin>,
    usage: Arc<dyn UsageStore>,
    feed: Arc<dyn ChangeFeed>,
    audit: Arc<dyn AuditLog>,
    name: &'static str,
}

impl Store {
    /// Wraps a backend.
    pub fn new<B: Backend>(backend: B) -> Store {
        let b = Arc::new(backend);
        Store {
            name: b.name(),
            lookup: b.clone(),
            admin: b.clone(),
            usage: b.clone(),
            audit: b.clone(),
            feed: b,
        }
    }

    /// The hot path's job.
    pub fn key_lookup(&self) -> &dyn KeyLookup {
        &*self.lookup
    }

    /// The record whose key hashes to `hash`, if any.
    pub async fn lookup(&self, hash: &KeyHash) -> Result<Option<KeyRecord>, StoreError> {
        self.lookup.lookup(hash).await
    }

    /// A record and its hash, by public id.
    pub async fn get(&self, id: &str) -> Result<Option<(KeyHash, KeyRecord)>, StoreError> {
        self.admin.get(id).await
    }

    /// Every record, sorted by creation time then id.
    pub async fn list(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let mut all = self.admin.list().await?;
        all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(all)
    }

    /// Every readable record, sorted like [`Store::list`], and the records
    /// that could not be read (see [`KeyAdmin::list_all`]).
    pub async fn list_all(&self) -> Result<Listing, StoreError> {
        let mut all = self.admin.list_all().await?;
        all.records
            .sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(all)
    }

    /// See [`KeyAdmin::insert`]; writes no audit entry.
    pub async fn insert(&self, hash: &KeyHash, record: &KeyRecord) -> Result<(), StoreError> {
        self.admin.insert(hash, record, None).await
    }

    /// See [`KeyAdmin::replace`]; writes no audit entry.
    pub async fn replace(&self, record: &KeyRecord) -> Result<(), StoreError> {
        self.admin.replace(record, None).await
    }

    /// [`KeyAdmin::insert`] with its audit entry, in one atomic write.
    pub async fn insert_audited(
        &self,
        hash: &KeyHash,
        record: &KeyRecord,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.admin.insert(hash, record, Some(audit)).await
    }

    /// [`KeyAdmin::replace`] with its audit entry, in one atomic write.
    pub async fn replace_audited(
        &self,
        record: &KeyRecord,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.admin.replace(record, Some(audit)).await
    }

    /// See [`AuditLog::audit`].
    pub async fn audit(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        self.audit.audit(query).await
    }

    /// See [`UsageStore::add_usage`].
    pub async fn add_usage(&self, batch: &[UsageDelta]) -> Result<(), StoreError> {
        self.usage.add_usage(batch).await
    }

    /// See [`UsageStore::usage`].
    pub async fn usage(&self, id: &str) -> Result<KeyUsage, StoreError> {
        self.usage.usage(id).await
    }

    /// See [`ChangeFeed::watch`].
    pub fn watch(&self, sink: Arc<dyn InvalidationSink>) -> tokio::task::JoinHandle<()> {
        self.feed.watch(sink)
    }

    /// A short name for logs and `/readyz`.
    pub fn backend_name(&self) -> &'static str {
        self.name
    }
}
