//! The gateway's shared state: the serving config generation and the parts
//! that outlive it (cache, store, metrics).
//!
//! A [`Snapshot`] is immutable: the compiled routes and upstream pools of one
//! config generation. Requests load it once (one atomic load) and use it to
//! the end, so a reload never changes the rules under a request in flight.

pub mod per_ip;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::lookup::cache::KeyCache;
use crate::lookup::usage::UsageRecorder;
use crate::metrics::Metrics;
use crate::pipeline::access_log::AccessLog;
use crate::pipeline::budget::FailedLookups;
use crate::pipeline::request_id::RequestIds;
use crate::pipeline::route::RouteTable;
use crate::pipeline::upstream::Upstream;
use crate::store::Store;
use per_ip::PerIp;

/// The window `admin.failed_token_budget` counts failed admin-token
/// attempts over.
pub const ADMIN_FAILURE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// What a config reload needs of the TLS listener: re-reading its
/// certificate and key from the paths in the new config (the server's
/// acceptor implements it).
pub trait CertificateReload: Send + Sync {
    /// Loads the certificate `cfg` names; on error the old one keeps serving.
    fn reload(&self, cfg: &crate::config::TlsConfig) -> Result<(), String>;
}

/// One config generation, compiled for the request path.
pub struct Snapshot {
    /// The validated config it was built from.
    pub config: Config,
    /// Routes, longest prefix first.
    pub routes: RouteTable,
    /// Upstream pools, indexed like `config.upstreams`; shared with the
    /// previous generation where a reload left an upstream unchanged.
    pub upstreams: Vec<Arc<Upstream>>,
    /// 1 for the first config, +1 per successful reload.
    pub generation: u64,
}

impl Snapshot {
    /// Compiles a validated config. Upstreams whose config is unchanged
    /// from `previous` are carried over with their warm connection pools.
    pub fn new(
        config: Config,
        generation: u64,
        metrics: &Metrics,
        previous: Option<&Snapshot>,
    ) -> Snapshot {
        let upstreams = config
            .upstreams
            .iter()
            .map(|cfg| {
                previous
                    .and_then(|p| p.upstreams.iter().find(|u| u.built_from(cfg)))
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Upstream::new(cfg, metrics)))
            })
            .collect();
        Snapshot {
            routes: RouteTable::new(&config),
            upstreams,
            config,
            generation,
        }
    }
}

/// Everything the listeners share.
pub struct Gateway {
    /// The config the process started with: what runs for the settings
    /// that apply only at start ([`crate::app::reload::restart_needed`]).
    pub started: Config,
    /// The config generation new requests use.
    pub snapshot: ArcSwap<Snapshot>,
    /// Key records in front of the store.
    pub cache: Arc<KeyCache>,
    /// This gateway's metrics registry.
    pub metrics: Arc<Metrics>,
    /// Request-id generator.
    pub request_ids: RequestIds,
    /// The access log, when enabled (`run` opens it from `[log] access`).
    pub access_log: arc_swap::ArcSwapOption<AccessLog>,
    /// Per-client-IP budgets of unknown keys (flood defence).
    pub failed_lookups: FailedLookups,
    /// Per-key usage, flushed to the store in batches.
    pub usage: Arc<UsageRecorder>,
    /// Open API connections per peer IP (`server.max_connections_per_ip`).
    pub per_ip: Arc<PerIp>,
    /// Per-client-IP failed admin-token attempts (`admin.failed_token_budget`).
    pub admin_failures: FailedLookups,
    /// Set once listeners are up; `/readyz` reports it.
    pub ready: AtomicBool,
    generation: AtomicU64,
    /// Announces each applied generation (limits that live outside the
    /// snapshot, such as the connection semaphore, follow it).
    generations: tokio::sync::watch::Sender<u64>,
    /// Background tasks (store watcher, usage flusher), stopped with the gateway.
    tasks: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Gateway {
    /// Builds the gateway and starts the store's invalidation watcher (so it
    /// must be called inside a Tokio runtime).
    pub fn new(config: Config, store: Store, metrics: Arc<Metrics>) -> Arc<Gateway> {
        let cache = Arc::new(KeyCache::new(&config.cache, store, metrics.clone()));
        let watcher = cache.store().watch(cache.clone());
        metrics.config_generation.set(1);
        let failed_lookups = FailedLookups::new(
            config.cache.negative_capacity.max(1),
            config.auth.failed_lookup_window,
        );
        let started = config.clone();
        let gw = Arc::new(Gateway {
            started,
            snapshot: ArcSwap::from_pointee(Snapshot::new(config, 1, &metrics, None)),
            cache,
            metrics,
            request_ids: RequestIds::new(),
            access_log: arc_swap::ArcSwapOption::empty(),
            failed_lookups,
            usage: Arc::new(UsageRecorder::new()),
            per_ip: Arc::new(PerIp::default()),
            admin_failures: FailedLookups::new(10_000, ADMIN_FAILURE_WINDOW),
            ready: AtomicBool::new(false),
            generation: AtomicU64::new(1),
            generations: tokio::sync::watch::channel(1).0,
            tasks: parking_lot::Mutex::new(vec![watcher]),
        });
        let flusher = tokio::spawn(flush_usage(Arc::downgrade(&gw)));
        gw.tasks.lock().push(flusher);
        gw
    }

    /// Writes pending usage now (shutdown, tests).
    pub async fn flush_usage(&self) {
        if let Err(e) = self.usage.flush(self.cache.store()).await {
            self.metrics
                .store_errors
                .inc(crate::metrics::StoreOp::Usage);
            tracing::warn!(error = %e, "usage flush failed; will retry");
        }
    }

    /// Swaps in a new, already validated config for new requests. Listener
    /// addresses and the store cannot change without a restart; the caller
    /// logs that.
    pub fn apply(&self, config: Config) -> u64 {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let previous = self.snapshot.load_full();
        self.snapshot.store(Arc::new(Snapshot::new(
            config,
            generation,
            &self.metrics,
            Some(&previous),
        )));
        self.metrics.config_generation.set(generation as i64);
        self.generations.send_replace(generation);
        generation
    }

    /// A receiver told of every generation applied from now on.
    pub fn generations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generations.subscribe()
    }

    /// Stops background tasks (store watcher, usage flusher).
    pub fn stop(&self) {
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Flushes usage every `usage.flush_interval` (re-read each round, so a
/// reload applies) until the gateway is gone.
async fn flush_usage(gw: std::sync::Weak<Gateway>) {
    loop {
        let Some(interval) = gw
            .upgrade()
            .map(|g| g.snapshot.load().config.usage.flush_interval)
        else {
            return;
        };
        tokio::time::sleep(interval).await;
        let Some(g) = gw.upgrade() else {
            return;
        };
        g.flush_usage().await;
    }
}
