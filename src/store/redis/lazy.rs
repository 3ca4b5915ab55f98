//! A Redis store that may not be reachable yet: what `run` serves with when
//! Redis is down at start.
//!
//! The gateway starts anyway (public routes need no key, and a store that
//! comes back later should not need a restart). Until a connection is made,
//! every store call fails at once with [`StoreError::Unavailable`] (so a key
//! gets 503 `key_store_unavailable`, never a pass) and the store reports
//! itself down. Connecting is the change feed's job: its task retries with
//! a backoff (250 ms doubling to 2 s), and once connected it runs the
//! ordinary watcher, which reports the store up. A bad URL is still refused
//! at start: only an unreachable server is waited for.

use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use super::{connect_with, RedisOptions, RedisStore};
use crate::keys::KeyHash;
use crate::keys::{AuditEntry, AuditPage, AuditQuery};
use crate::keys::{KeyRecord, KeyUsage, UsageDelta};
use crate::store::{InvalidationSink, StoreError, StoreFuture};

/// First and longest wait between connection attempts.
const RETRY_FIRST: Duration = Duration::from_millis(250);
/// See [`RETRY_FIRST`].
const RETRY_MAX: Duration = Duration::from_secs(2);

struct Inner {
    url: String,
    options: RedisOptions,
    /// Set once, by the first successful connection.
    ready: RwLock<Option<RedisStore>>,
    /// Why the last attempt failed (already free of passwords), for the
    /// answers given meanwhile.
    last_error: Mutex<String>,
}

/// A Redis store connected now, or as soon as the server answers.
#[derive(Clone)]
pub struct LazyRedisStore {
    inner: Arc<Inner>,
}

/// Like [`connect_with`], but a server that cannot be reached yet is not an
/// error: the store connects later (see the module docs). What cannot work
/// (a bad URL, an unsupported scheme, an unset password variable, an
/// unreadable CA file) still fails here.
pub async fn connect_or_defer(
    url: &str,
    options: &RedisOptions,
) -> Result<LazyRedisStore, StoreError> {
    super::check_url(url, options)?;
    let (ready, last_error) = match connect_with(url, options).await {
        Ok(s) => (Some(s), String::new()),
        Err(e) => {
            tracing::warn!(
                error = %e,
                "key store unreachable at start: serving public routes and answering 503 for keys until it connects"
            );
            (None, e.to_string())
        }
    };
    Ok(LazyRedisStore {
        inner: Arc::new(Inner {
            url: url.to_owned(),
            options: options.clone(),
            ready: RwLock::new(ready),
            last_error: Mutex::new(last_error),
        }),
    })
}

impl LazyRedisStore {
    /// The connected store, or why there is none yet.
    fn current(&self) -> Result<RedisStore, StoreError> {
        self.inner.ready.read().clone().ok_or_else(|| {
            StoreError::Unavailable(format!(
                "not connected yet: {}",
                self.inner.last_error.lock()
            ))
        })
    }

    /// Connects (retrying) unless connected, then follows the store's
    /// changes like [`RedisStore::watch`]. Holds the store weakly between
    /// attempts, so dropping the store ends the task.
    fn watch(&self, sink: Arc<dyn InvalidationSink>) -> tokio::task::JoinHandle<()> {
        if self.inner.ready.read().is_none() {
            sink.store_up(false);
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut wait = RETRY_FIRST;
            let store = loop {
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                if let Some(s) = inner.ready.read().clone() {
                    break s;
                }
                match connect_with(&inner.url, &inner.options).await {
                    Ok(s) => {
                        tracing::info!("key store connected");
                        *inner.ready.write() = Some(s.clone());
                        break s;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "key store still unreachable");
                        *inner.last_error.lock() = e.to_string();
                    }
                }
                drop(inner);
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RETRY_MAX);
            };
            let mut feed = AbortOnDrop(store.watch(sink));
            drop(store);
            let _ = (&mut feed.0).await;
        })
    }
}

/// Aborts the inner watcher when the outer task is aborted.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl crate::store::KeyLookup for LazyRedisStore {
    fn lookup<'a>(&'a self, hash: &'a KeyHash) -> StoreFuture<'a, Option<KeyRecord>> {
        Box::pin(async move { self.current()?.lookup(hash).await })
    }
}

impl crate::store::KeyAdmin for LazyRedisStore {
    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<(KeyHash, KeyRecord)>> {
        Box::pin(async move { self.current()?.get(id).await })
    }
    fn list(&self) -> StoreFuture<'_, Vec<KeyRecord>> {
        Box::pin(async move { self.current()?.list().await })
    }
    fn insert<'a>(
        &'a self,
        hash: &'a KeyHash,
        record: &'a KeyRecord,
        audit: Option<&'a AuditEntry>,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move { self.current()?.insert(hash, record, audit).await })
    }
    fn replace<'a>(
        &'a self,
        record: &'a KeyRecord,
        audit: Option<&'a AuditEntry>,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move { self.current()?.replace(record, audit).await })
    }
}

impl crate::store::AuditLog for LazyRedisStore {
    fn audit<'a>(&'a self, query: &'a AuditQuery) -> StoreFuture<'a, AuditPage> {
        Box::pin(async move { self.current()?.audit(query).await })
    }
}

impl crate::store::UsageStore for LazyRedisStore {
    fn add_usage<'a>(&'a self, batch: &'a [UsageDelta]) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if batch.is_empty() {
                return Ok(());
            }
            self.current()?.add_usage(batch).await
        })
    }
    fn usage<'a>(&'a self, id: &'a str) -> StoreFuture<'a, KeyUsage> {
        Box::pin(async move { self.current()?.usage(id).await })
    }
}

impl crate::store::ChangeFeed for LazyRedisStore {
    fn watch(&self, sink: Arc<dyn InvalidationSink>) -> tokio::task::JoinHandle<()> {
        LazyRedisStore::watch(self, sink)
    }
}

impl crate::store::Backend for LazyRedisStore {
    fn name(&self) -> &'static str {
        "redis"
    }
}
