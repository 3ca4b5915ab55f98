//! The gateway's shared state: the serving config generation and the parts
//! that outlive it (cache, store, metrics).
//!
//! A [`Snapshot`] is immutable: the compiled routes and upstream pools of one
//! config generation. Requests load it once (one atomic load) and use it to
//! the end, so a reload never changes the rules under a request in flight.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::cache::KeyCache;
use crate::config::Config;
use crate::forward::Upstream;
use crate::metrics::Metrics;
use crate::request_id::RequestIds;
use crate::route::RouteTable;
use crate::store::Store;

/// One config generation, compiled for the request path.
pub struct Snapshot {
    /// The validated config it was built from.
    pub config: Config,
    /// Routes, longest prefix first.
    pub routes: RouteTable,
    /// Upstream pools, indexed like `config.upstreams`.
    pub upstreams: Vec<Upstream>,
    /// 1 for the first config, +1 per successful reload.
    pub generation: u64,
}

impl Snapshot {
    /// Compiles a validated config.
    pub fn new(config: Config, generation: u64) -> Snapshot {
        Snapshot {
            routes: RouteTable::new(&config),
            upstreams: config.upstreams.iter().map(Upstream::new).collect(),
            config,
            generation,
        }
    }
}

/// Everything the listeners share.
pub struct Gateway {
    /// The config generation new requests use.
    pub snapshot: ArcSwap<Snapshot>,
    /// Key records in front of the store.
    pub cache: Arc<KeyCache>,
    /// This gateway's metrics registry.
    pub metrics: Arc<Metrics>,
    /// Request-id generator.
    pub request_ids: RequestIds,
    /// Set once listeners are up; `/readyz` reports it.
    pub ready: AtomicBool,
    generation: AtomicU64,
    watcher: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Gateway {
    /// Builds the gateway and starts the store's invalidation watcher (so it
    /// must be called inside a Tokio runtime).
    pub fn new(config: Config, store: Store, metrics: Arc<Metrics>) -> Arc<Gateway> {
        let cache = Arc::new(KeyCache::new(&config.cache, store, metrics.clone()));
        let watcher = cache.store().watch(cache.clone());
        metrics.config_generation.set(1);
        Arc::new(Gateway {
            snapshot: ArcSwap::from_pointee(Snapshot::new(config, 1)),
            cache,
            metrics,
            request_ids: RequestIds::new(),
            ready: AtomicBool::new(false),
            generation: AtomicU64::new(1),
            watcher: parking_lot::Mutex::new(Some(watcher)),
        })
    }

    /// Swaps in a new, already validated config for new requests. Listener
    /// addresses and the store cannot change without a restart; the caller
    /// logs that.
    pub fn apply(&self, config: Config) -> u64 {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.snapshot
            .store(Arc::new(Snapshot::new(config, generation)));
        self.metrics.config_generation.set(generation as i64);
        generation
    }

    /// Stops background tasks (the store watcher).
    pub fn stop(&self) {
        if let Some(w) = self.watcher.lock().take() {
            w.abort();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}
