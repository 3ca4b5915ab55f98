//! The key cache: records in memory so a known key costs no store trip.
//!
//! Rules (contract §8, HOSTILE §6 and §8):
//! - It caches records, not decisions: expiry, revocation, IP and scope are
//!   checked on every request against the cached record.
//! - A positive entry is trusted for `ttl`; after that it is refreshed from
//!   the store, and if the store fails it keeps serving ("stale") until
//!   `ttl + stale_if_error`. A store error is never cached and never allows
//!   a key the cache does not already hold.
//! - Unknown keys go to a separate, bounded negative cache for
//!   `negative_ttl`, so a flood of invented keys neither reaches the store
//!   nor evicts hot keys from the positive cache.
//! - One store lookup per key however many requests wait for it (single
//!   flight).
//! - Epochs: every invalidation bumps the epoch of the key's shard before
//!   removing the entry. A lookup remembers the epoch it started under and
//!   may only insert if it is unchanged, so a slow lookup that read the old
//!   record can never put it back after a revoke or update landed.
//!
//! The hit path is one moka read plus a clock read; no lock, no allocation.
//!
//! Over 400 lines because the cache, its single flight and its epochs
//! share one state and must be read together; the known-key fingerprints
//! are the part that could move out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;
use parking_lot::Mutex;
use tokio::sync::OnceCell;

use crate::config::CacheConfig;
use crate::keys::Env;
use crate::keys::KeyHash;
use crate::keys::{KeyRecord, Scope, Timestamp};
use crate::metrics::{Metrics, StoreOp};
use crate::store::{FlushReason, InvalidationSink, Store, StoreError};
use ipnet::IpNet;

const EPOCH_SHARDS: usize = 64;

/// What the request path needs of a record, and nothing more: header values
/// pre-built once, grants parsed, times as plain numbers. Name, hint and
/// creation time stay in the store; at a million cached keys every byte
/// here counts (see `bench/cache_memory.rs`).
#[derive(Debug)]
pub struct CachedKey {
    /// `X-Osir-Key-Id`: the record's public id.
    pub key_id: HeaderValue,
    /// `X-Osir-Account`, when the record has one.
    pub account: Option<HeaderValue>,
    /// `X-Osir-Scopes`, space-separated.
    pub scopes_header: HeaderValue,
    /// Grants, checked against each route's required scope.
    pub scopes: Box<[Scope]>,
    /// Where the key may be used from; empty means anywhere.
    pub allowed_ips: Box<[IpNet]>,
    /// Live or test.
    pub env: Env,
    /// `expires_at` in ms, or `i64::MAX`: one comparison per request.
    pub expires_ms: i64,
    /// `revoked_at` in ms, or `i64::MAX`.
    pub revoked_ms: i64,
    /// When it was read from the store, for `ttl` and `stale_if_error`.
    fetched_at: Instant,
}

impl CachedKey {
    /// Pre-builds the header values. Fails on a record whose fields cannot
    /// be header values (the store's validation should make that impossible).
    pub fn new(record: KeyRecord) -> Result<CachedKey, StoreError> {
        let corrupt = |field: &str| StoreError::Corrupt {
            what: record.id.clone(),
            reason: format!("{field}: not a valid header value"),
        };
        // The three header values share one allocation (slices of one
        // buffer): memory per cached key matters at a million keys.
        let joined = record
            .scopes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        let account_text = record.account.as_deref().unwrap_or("");
        let mut buf =
            bytes::BytesMut::with_capacity(record.id.len() + account_text.len() + joined.len());
        buf.extend_from_slice(record.id.as_bytes());
        buf.extend_from_slice(account_text.as_bytes());
        buf.extend_from_slice(joined.as_bytes());
        let buf = buf.freeze();
        let (a, b) = (record.id.len(), record.id.len() + account_text.len());
        let value = |range: std::ops::Range<usize>, field: &str| {
            HeaderValue::from_maybe_shared(buf.slice(range)).map_err(|_| corrupt(field))
        };
        let key_id = value(0..a, "id")?;
        let account = match record.account {
            Some(_) => Some(value(a..b, "account")?),
            None => None,
        };
        let scopes_header = value(b..buf.len(), "scopes")?;
        Ok(CachedKey {
            key_id,
            account,
            scopes_header,
            scopes: record.scopes.into_boxed_slice(),
            allowed_ips: record.allowed_ips.into_boxed_slice(),
            env: record.env,
            expires_ms: record.expires_at.map_or(i64::MAX, |t| t.0),
            revoked_ms: record.revoked_at.map_or(i64::MAX, |t| t.0),
            fetched_at: Instant::now(),
        })
    }

    /// The key's public id.
    pub fn id(&self) -> &str {
        // Built from a `String`, so always valid UTF-8.
        self.key_id.to_str().unwrap_or("")
    }

    /// The key's account, when it has one.
    pub fn account(&self) -> Option<&str> {
        self.account.as_ref().and_then(|a| a.to_str().ok())
    }

    /// Has it expired at `now`?
    pub fn expired_at(&self, now: Timestamp) -> bool {
        now.0 >= self.expires_ms
    }

    /// Was it revoked at or before `now`?
    pub fn revoked_at(&self, now: Timestamp) -> bool {
        now.0 >= self.revoked_ms
    }
}

/// What the cache knows about a key.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// A record (fresh, or stale while the store is down).
    Found(Arc<CachedKey>),
    /// The store has no such key.
    Unknown,
}

type Flight = Arc<OnceCell<Result<Lookup, Arc<StoreError>>>>;

use super::Hasher;

/// The cache in front of the store; one per gateway process.
pub struct KeyCache {
    positive: moka::sync::Cache<KeyHash, Arc<CachedKey>, Hasher>,
    negative: moka::sync::Cache<KeyHash, (), Hasher>,
    /// Fingerprints (64 bits of the hash) of every key found in the store,
    /// bounded like the cache and untouched by flushes: what makes a key
    /// "known" to the unknown-key budget. 64 bits make a guess that
    /// collides with a known key as likely as guessing a 64-bit secret.
    seen: moka::sync::Cache<u64, (), Hasher>,
    epochs: [AtomicU64; EPOCH_SHARDS],
    inflight: Mutex<HashMap<KeyHash, Flight, Hasher>>,
    store: Store,
    metrics: Arc<Metrics>,
    /// Pre-resolved `cache_lookups{result}` counters: no label hashing per request.
    hits: prometheus::IntCounter,
    misses: prometheus::IntCounter,
    negative_hits: prometheus::IntCounter,
    stale_hits: prometheus::IntCounter,
    ttl: Duration,
    stale_limit: Duration,
    store_up: AtomicBool,
    /// Why changes cannot reach this gateway (`None` while the feed is
    /// followed): what `/readyz` answers 503 with.
    feed_problem: Mutex<Option<String>>,
    /// Why this gateway cannot write usage counters, if it cannot.
    usage_problem: Mutex<Option<String>>,
    /// When the last store call failed (ms since `born`; 0 = never): while
    /// recent, stale records are served without waiting for another timeout.
    last_error_ms: AtomicU64,
    born: Instant,
}

impl KeyCache {
    /// A cache sized by `[cache]`, in front of `store`.
    pub fn new(cfg: &CacheConfig, store: Store, metrics: Arc<Metrics>) -> KeyCache {
        let stale_limit = cfg.ttl + cfg.stale_if_error;
        KeyCache {
            // No moka TTL: every read checks the entry's own age against
            // `ttl` and `stale_if_error`, so an expired entry is never
            // served; dropping the TTL saves moka's write-order queue node
            // per entry (memory per cached key matters at a million keys).
            positive: moka::sync::Cache::builder()
                .max_capacity(cfg.capacity)
                .build_with_hasher(Hasher::default()),
            negative: moka::sync::Cache::builder()
                .max_capacity(cfg.negative_capacity)
                .time_to_live(cfg.negative_ttl.max(Duration::from_millis(1)))
                .build_with_hasher(Hasher::default()),
            seen: moka::sync::Cache::builder()
                .max_capacity(cfg.capacity.max(1))
                .build_with_hasher(Hasher::default()),
            epochs: std::array::from_fn(|_| AtomicU64::new(0)),
            inflight: Mutex::new(HashMap::with_hasher(Hasher::default())),
            store,
            hits: metrics.cache_lookups.with_label_values(&["hit"]),
            misses: metrics.cache_lookups.with_label_values(&["miss"]),
            negative_hits: metrics.cache_lookups.with_label_values(&["negative_hit"]),
            stale_hits: metrics.cache_lookups.with_label_values(&["stale"]),
            metrics,
            ttl: cfg.ttl,
            stale_limit,
            store_up: AtomicBool::new(true),
            feed_problem: Mutex::new(Some("the change feed has not started yet".to_owned())),
            usage_problem: Mutex::new(None),
            last_error_ms: AtomicU64::new(0),
            born: Instant::now(),
        }
    }

    /// The store behind this cache.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Is the store answering (as far as the invalidation channel knows)?
    pub fn store_is_up(&self) -> bool {
        self.store_up.load(Ordering::Relaxed)
    }

    /// Why key changes cannot reach this gateway now, if they cannot.
    pub fn feed_problem(&self) -> Option<String> {
        self.feed_problem.lock().clone()
    }

    /// Why this gateway cannot write usage counters, if it cannot.
    pub fn usage_problem(&self) -> Option<String> {
        self.usage_problem.lock().clone()
    }

    /// The hit path alone: a fresh cached record, or `None`. Synchronous so
    /// the whole cache-hit decision can be benchmarked without a runtime.
    /// `now` is the caller's clock reading (one read serves the request's
    /// stages).
    pub fn get_fresh(&self, hash: &KeyHash, now: Instant) -> Option<Arc<CachedKey>> {
        let e = self.positive.get(hash)?;
        if now.saturating_duration_since(e.fetched_at) < self.ttl {
            self.hits.inc();
            Some(e)
        } else {
            None
        }
    }

    /// Does the positive cache hold a record for `hash`, whatever its age?
    pub fn holds(&self, hash: &KeyHash) -> bool {
        self.positive.contains_key(hash)
    }

    /// Is `hash` a key this gateway knows: held now, or found in the store
    /// before (and since dropped by a flush, an invalidation or eviction)?
    /// Such a key is never a guess, so the unknown-key budget never refuses
    /// it.
    pub fn known(&self, hash: &KeyHash) -> bool {
        self.holds(hash) || self.seen.contains_key(&hash.fingerprint())
    }

    /// The record for `hash`: from the cache, or from the store (once per
    /// key however many callers ask at the same time).
    pub async fn get(&self, hash: &KeyHash) -> Result<Lookup, Arc<StoreError>> {
        let cached = self.positive.get(hash);
        if let Some(e) = &cached {
            let age = e.fetched_at.elapsed();
            if age < self.ttl {
                self.hits.inc();
                return Ok(Lookup::Found(e.clone()));
            }
            // Past ttl while the store is known to be down: serve the stale
            // record at once instead of waiting for a store timeout.
            if (!self.store_is_up() || self.failed_recently()) && age < self.stale_limit {
                self.stale_hits.inc();
                return Ok(Lookup::Found(e.clone()));
            }
        } else if self.negative.contains_key(hash) {
            self.negative_hits.inc();
            return Ok(Lookup::Unknown);
        }
        self.misses.inc();

        let flight = self.inflight.lock().entry(*hash).or_default().clone();
        let result = flight
            .get_or_init(|| async {
                // A flight that finished between our cache check and our
                // joining it has already filled the cache and left the
                // in-flight map; look again before asking the store twice.
                match self.positive.get(hash) {
                    Some(e) if e.fetched_at.elapsed() < self.ttl => Ok(Lookup::Found(e)),
                    _ if self.negative.contains_key(hash) => Ok(Lookup::Unknown),
                    _ => self.load(hash).await,
                }
            })
            .await
            .clone();
        {
            let mut inflight = self.inflight.lock();
            if inflight.get(hash).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
                inflight.remove(hash);
            }
        }
        match result {
            Err(e) => match cached {
                Some(stale) if stale.fetched_at.elapsed() < self.stale_limit => {
                    self.stale_hits.inc();
                    Ok(Lookup::Found(stale))
                }
                _ => Err(e),
            },
            ok => ok,
        }
    }

    /// Did a store call fail within the last second?
    fn failed_recently(&self) -> bool {
        let at = self.last_error_ms.load(Ordering::Relaxed);
        at != 0 && (self.born.elapsed().as_millis() as u64).saturating_sub(at) < 1000
    }

    fn note_store_error(&self) {
        self.metrics.store_errors.inc(StoreOp::Lookup);
        let now = (self.born.elapsed().as_millis() as u64).max(1);
        self.last_error_ms.store(now, Ordering::Relaxed);
    }

    fn epoch(&self, hash: &KeyHash) -> u64 {
        self.epochs[hash.shard(EPOCH_SHARDS)].load(Ordering::SeqCst)
    }

    /// One store read; caches the answer only if no invalidation of this
    /// key's shard happened meanwhile. If one did, reads again (the record
    /// may be the old one), a few times at most.
    async fn load(&self, hash: &KeyHash) -> Result<Lookup, Arc<StoreError>> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let before = self.epoch(hash);
            let started = Instant::now();
            self.metrics.store_lookups.inc();
            let read = self.store.lookup(hash).await;
            self.metrics
                .store_duration
                .observe(started.elapsed().as_secs_f64());
            let lookup = match read {
                Ok(Some(record)) => match CachedKey::new(record) {
                    Ok(entry) => {
                        self.seen.insert(hash.fingerprint(), ());
                        Lookup::Found(Arc::new(entry))
                    }
                    Err(e) => {
                        self.metrics.store_errors.inc(StoreOp::Lookup);
                        tracing::error!(error = %e, "unusable key record");
                        return Err(Arc::new(e));
                    }
                },
                Ok(None) => Lookup::Unknown,
                Err(e) => {
                    self.note_store_error();
                    tracing::warn!(error = %e, "key lookup failed");
                    return Err(Arc::new(e));
                }
            };
            if self.epoch(hash) == before {
                match &lookup {
                    Lookup::Found(entry) => {
                        self.positive.insert(*hash, entry.clone());
                        self.negative.invalidate(hash);
                    }
                    Lookup::Unknown => self.negative.insert(*hash, ()),
                }
                return Ok(lookup);
            }
            if attempts >= 3 {
                // Under constant churn: answer with the newest read, uncached.
                return Ok(lookup);
            }
        }
    }

    /// Entry counts, refreshed into the gauges (called at scrape time).
    pub fn publish_sizes(&self) {
        self.positive.run_pending_tasks();
        self.negative.run_pending_tasks();
        let m = &self.metrics.cache_entries;
        m.with_label_values(&["positive"])
            .set(self.positive.entry_count() as i64);
        m.with_label_values(&["negative"])
            .set(self.negative.entry_count() as i64);
    }
}

impl InvalidationSink for KeyCache {
    fn invalidate(&self, hash: &KeyHash) {
        self.metrics.invalidations.inc();
        self.epochs[hash.shard(EPOCH_SHARDS)].fetch_add(1, Ordering::SeqCst);
        self.positive.invalidate(hash);
        self.negative.invalidate(hash);
    }

    fn invalidate_written_at(&self, hash: &KeyHash, written_at: Timestamp) {
        self.invalidate(hash);
        // Clocks of different hosts may disagree: never a negative delay.
        let ms = u64::try_from(Timestamp::now().0.saturating_sub(written_at.0)).unwrap_or(0);
        self.metrics
            .revocation_delay
            .observe(Duration::from_millis(ms).as_secs_f64());
    }

    fn invalidate_all(&self) {
        for e in &self.epochs {
            e.fetch_add(1, Ordering::SeqCst);
        }
        self.positive.invalidate_all();
        self.negative.invalidate_all();
    }

    fn flush(&self, reason: FlushReason) {
        self.metrics
            .cache_flushes
            .with_label_values(&[reason.label()])
            .inc();
        self.invalidate_all();
    }

    fn store_up(&self, up: bool) {
        self.store_up.store(up, Ordering::Relaxed);
        self.metrics.store_up.set(i64::from(up));
    }

    fn feed_state(&self, problem: Option<&str>) {
        let mut current = self.feed_problem.lock();
        // A feed that was followed and is lost is a failed feed call; the
        // state before the first connection is not.
        let was_followed = current.is_none();
        if was_followed && problem.is_some() {
            self.metrics.store_errors.inc(StoreOp::Feed);
        }
        *current = problem.map(str::to_owned);
        self.metrics
            .change_feed_up
            .set(i64::from(problem.is_none()));
    }

    fn usage_state(&self, problem: Option<&str>) {
        *self.usage_problem.lock() = problem.map(str::to_owned);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::keys::Scope;
    use crate::keys::{ApiKey, Env};
    use crate::store::memory::MemoryStore;

    fn cfg() -> CacheConfig {
        CacheConfig {
            capacity: 1000,
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
            negative_capacity: 1000,
            stale_if_error: Duration::from_secs(600),
        }
    }

    fn record(id: &str, key: &ApiKey) -> KeyRecord {
        KeyRecord {
            id: id.into(),
            name: "t".into(),
            account: None,
            env: Env::Live,
            scopes: vec![Scope::parse("domains:read").unwrap()],
            allowed_ips: vec![],
            created_at: Timestamp::now(),
            expires_at: None,
            revoked_at: None,
            hint: key.hint(),
            replaces: None,
            replaced_by: None,
        }
    }

    async fn setup() -> (
        Arc<KeyCache>,
        MemoryStore,
        ApiKey,
        tokio::task::JoinHandle<()>,
    ) {
        let mem = MemoryStore::new();
        let cache = Arc::new(KeyCache::new(
            &cfg(),
            Store::new(mem.clone()),
            Arc::new(Metrics::new()),
        ));
        let watcher = cache.store().watch(cache.clone());
        let key = ApiKey::generate(Env::Live).unwrap();
        cache
            .store()
            .insert(&key.hash(), &record("key_a", &key))
            .await
            .unwrap();
        (cache, mem, key, watcher)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_first_uses_share_one_store_read() {
        let (cache, mem, key, _w) = setup().await;
        let hash = key.hash();
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        mem.set_lookup_gate(Some(gate.clone()));
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let c = cache.clone();
                tokio::spawn(async move { c.get(&hash).await })
            })
            .collect();
        // Wait until the single lookup is parked at the gate, then let it go.
        let deadline = Instant::now() + Duration::from_secs(5);
        while mem.lookup_count() == 0 && Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        gate.add_permits(100);
        for t in tasks {
            assert!(matches!(t.await.unwrap().unwrap(), Lookup::Found(_)));
        }
        assert_eq!(mem.lookup_count(), 1);
    }

    #[tokio::test]
    async fn unknown_keys_are_remembered() {
        let (cache, mem, _key, _w) = setup().await;
        let other = ApiKey::generate(Env::Live).unwrap().hash();
        for _ in 0..20 {
            assert!(matches!(cache.get(&other).await.unwrap(), Lookup::Unknown));
        }
        assert_eq!(mem.lookup_count(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_lookup_never_recaches_a_revoked_record() {
        let (cache, mem, key, _w) = setup().await;
        let hash = key.hash();
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        mem.set_lookup_gate(Some(gate.clone()));
        let c = cache.clone();
        let slow = tokio::spawn(async move { c.get(&hash).await });
        let deadline = Instant::now() + Duration::from_secs(5);
        while mem.lookup_count() == 0 && Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        // The slow lookup has read the live record; now revoke.
        let (_, mut rec) = cache.store().get("key_a").await.unwrap().unwrap();
        rec.revoked_at = Some(Timestamp::now());
        cache.store().replace(&rec).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while cache.metrics.invalidations.get() == 0 && Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        gate.add_permits(100);
        let _ = slow.await.unwrap().unwrap();
        // Whatever the slow request saw, the cache must now hold the revoked record.
        match cache.get(&hash).await.unwrap() {
            Lookup::Found(e) => assert!(e.revoked_ms != i64::MAX),
            Lookup::Unknown => panic!("key vanished"),
        }
    }

    #[tokio::test]
    async fn invalidation_drops_cached_entries() {
        let (cache, _mem, key, _w) = setup().await;
        let hash = key.hash();
        assert!(cache.get_fresh(&hash, Instant::now()).is_none());
        cache.get(&hash).await.unwrap();
        assert!(cache.get_fresh(&hash, Instant::now()).is_some());
        cache.invalidate(&hash);
        assert!(cache.get_fresh(&hash, Instant::now()).is_none());
    }
}
