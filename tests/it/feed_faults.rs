//! Revocation delay under faults (contract §8, HOSTILE §8): Redis paused
//! (SIGSTOP/SIGCONT), killed and restarted (with its data persisted), and
//! the gateway's connections black-holed by a TCP proxy in the test (bytes
//! dropped, no reset). After each, a revoke is refused within 1 s, the
//! cache was never flushed (the feed resumes from its last id), and a
//! valid cached key from a client that spent its unknown-key budget is
//! still served. Each test prints its delays (p50/p99/max); only the
//! contract's 1 s bound is asserted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;
use osir_gateway::keys::{ApiKey, Env};
use osir_gateway::manage::KeyService;
use osir_gateway::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::client::bearer;
use crate::support::eventually;
use crate::support::expect::outcome;
use crate::support::gateway::{config, TestGateway};
use crate::support::keys::{create_key, redis_store};
use crate::support::redis::RedisServer;
use crate::support::upstream::RecordingUpstream;

const WITHIN: Duration = Duration::from_secs(1);

/// A small unknown-key budget, so one client IP spends it quickly.
const BUDGET: &str = "[auth]\nfailed_lookup_budget = 2\nfailed_lookup_window = \"60s\"\n";

async fn code(gw: &TestGateway, key: &str) -> String {
    let auth = bearer(key);
    outcome(gw, Method::GET, "/v1/domains", &[("authorization", &auth)])
        .await
        .1
}

/// Revokes `id` through `writer` (retrying while the store comes back, up
/// to 10 s) and returns how long until the gateway refuses `key`, from the
/// start of the revoke that landed. Panics past the contract's 1 s.
async fn revoke_and_time(gw: &TestGateway, writer: &Store, key: &str, id: &str) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(10);
    let started = loop {
        let started = Instant::now();
        match KeyService::new(writer).revoke(id).await {
            Ok(_) => break started,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("revoke never landed: {e}"),
        }
    };
    // Taken effect: the cached record is dropped (a lookup then reads the
    // revoked record, or fails if the store cannot be reached: never a
    // stale allow, which needs a cached record).
    let hash = ApiKey::parse(key, true).unwrap().hash();
    while gw.gw.cache.holds(&hash) {
        assert!(
            started.elapsed() < WITHIN,
            "revoked key still cached {WITHIN:?} after the revoke"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = started.elapsed();
    let c = code(gw, key).await;
    assert!(
        c == "revoked_api_key" || c == "key_store_unavailable",
        "a revoked key answered {c}"
    );
    took
}

/// p50, p99 and max of `delays`, printed under `what`.
fn report(what: &str, delays: &mut [Duration]) {
    delays.sort();
    let at = |q: f64| delays[((delays.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "revocation delay, {what} (n={}): p50 {:?}, p99 {:?}, max {:?}",
        delays.len(),
        at(0.5),
        at(0.99),
        delays[delays.len() - 1]
    );
}

fn flushes(gw: &TestGateway) -> u64 {
    ["trimmed", "reset", "requested", "unreadable"]
        .iter()
        .map(|r| gw.gw.metrics.cache_flushes.with_label_values(&[r]).get())
        .sum()
}

/// Spends 127.0.0.1's unknown-key budget: the next unknown key gets 429.
async fn spend_budget(gw: &TestGateway) {
    for _ in 0..2 {
        let k = ApiKey::generate(Env::Live).unwrap();
        assert_eq!(code(gw, k.expose_secret()).await, "invalid_api_key");
    }
    let k = ApiKey::generate(Env::Live).unwrap();
    assert_eq!(code(gw, k.expose_secret()).await, "rate_limited");
}

async fn wait_feed(gw: &TestGateway, up: bool, within: Duration) {
    let m = gw.gw.metrics.clone();
    let want = i64::from(up);
    assert!(
        eventually(within, || m.change_feed_up.get() == want).await,
        "change_feed_up never became {want}"
    );
}

async fn cached_key(gw: &TestGateway, writer: &Store) -> (String, String) {
    let (key, rec) = create_key(writer, Env::Live, &["domains:read"], &[]).await;
    assert_eq!(code(gw, &key).await, "ok");
    (key, rec.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_runs_revoke_well_within_a_second() {
    let redis = RedisServer::start();
    let up = RecordingUpstream::start("up").await;
    let writer = redis_store(&redis).await;
    let gw = TestGateway::builder()
        .toml(&config(&up.url(), None, ""))
        .store(redis_store(&redis).await)
        .start()
        .await;
    gw.wait_store_watched().await;
    let mut delays = Vec::new();
    for _ in 0..40 {
        let (key, id) = cached_key(&gw, &writer).await;
        delays.push(revoke_and_time(&gw, &writer, &key, &id).await);
    }
    report("normal", &mut delays);
    assert_eq!(flushes(&gw), 0);
    // As an operator reads it.
    let text = crate::support::client::get(&gw.admin_url("/metrics"), &[])
        .await
        .text();
    for reason in ["trimmed", "reset", "requested", "unreadable"] {
        let line = format!("osir_gateway_key_cache_flushes_total{{reason=\"{reason}\"}} 0");
        assert!(text.contains(&line), "{line} not in\n{text}");
    }
    assert!(text.contains("osir_gateway_change_feed_up 1"), "{text}");
}

/// Revokes three cached keys, each right after `fault` then `heal` hit the
/// store (once the gateway noticed the fault): every revoke is refused
/// within a second, a valid cached key from a client whose unknown-key
/// budget is spent is served throughout, and nothing is flushed.
async fn revokes_survive(
    mut redis: RedisServer,
    what: &str,
    fault: impl Fn(&mut RedisServer),
    heal: impl Fn(&mut RedisServer),
) {
    let up = RecordingUpstream::start("up").await;
    let writer = redis_store(&redis).await;
    let gw = TestGateway::builder()
        .toml(&config(&up.url(), None, BUDGET))
        .store(redis_store(&redis).await)
        .start()
        .await;
    gw.wait_store_watched().await;
    let (valid, _) = cached_key(&gw, &writer).await;
    // Cached before the budget is spent: a first use after it would be 429.
    let mut doomed = Vec::new();
    for _ in 0..3 {
        doomed.push(cached_key(&gw, &writer).await);
    }
    spend_budget(&gw).await;
    let mut delays = Vec::new();
    for (key, id) in &doomed {
        fault(&mut redis);
        // The fault is noticed (a silent connection: the read's deadline passes).
        wait_feed(&gw, false, Duration::from_secs(3)).await;
        assert_eq!(code(&gw, &valid).await, "ok");
        heal(&mut redis);
        delays.push(revoke_and_time(&gw, &writer, key, id).await);
        assert_eq!(
            code(&gw, &valid).await,
            "ok",
            "a valid cached key after: {what}"
        );
        wait_feed(&gw, true, Duration::from_secs(3)).await;
    }
    report(what, &mut delays);
    assert_eq!(flushes(&gw), 0, "{what}: the cache was flushed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_loses_no_revoke_and_flushes_nothing() {
    revokes_survive(
        RedisServer::start(),
        "Redis paused (SIGSTOP) until the gateway noticed, revoke right after SIGCONT",
        |r| r.pause(),
        |r| r.resume(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_and_restarted_redis_loses_no_revoke_and_flushes_nothing() {
    revokes_survive(
        RedisServer::start_persistent(),
        "Redis killed (SIGKILL) and restarted from its AOF",
        RedisServer::stop,
        RedisServer::restart,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_feed_connection_is_replaced_within_a_second() {
    let redis = RedisServer::start();
    let proxy = BlackHole::start(redis.port).await;
    let up = RecordingUpstream::start("up").await;
    let writer = redis_store(&redis).await;
    let url = format!("redis://127.0.0.1:{}/0", proxy.port);
    let store = osir_gateway::store::redis::connect(&url, Duration::from_secs(1))
        .await
        .unwrap();
    let gw = TestGateway::builder()
        .toml(&config(&up.url(), None, BUDGET))
        .store(Store::new(store))
        .start()
        .await;
    gw.wait_store_watched().await;
    let (valid, _) = cached_key(&gw, &writer).await;
    // Cached up front: once black-holed, the command connection only comes
    // back after its rebuild, and these tests are about the feed.
    let mut doomed = Vec::new();
    for _ in 0..5 {
        doomed.push(cached_key(&gw, &writer).await);
    }
    spend_budget(&gw).await;
    let mut delays = Vec::new();
    for (key, id) in &doomed {
        let before = gw
            .gw
            .metrics
            .store_errors
            .get_op(osir_gateway::metrics::StoreOp::Feed);
        proxy.black_hole_existing();
        delays.push(revoke_and_time(&gw, &writer, key, id).await);
        assert_eq!(
            code(&gw, &valid).await,
            "ok",
            "a valid cached key after a black hole"
        );
        // The silent connection was noticed and counted, not merely lucky.
        let m = gw.gw.metrics.clone();
        assert!(
            eventually(Duration::from_secs(2), || {
                m.store_errors.get_op(osir_gateway::metrics::StoreOp::Feed) > before
            })
            .await
        );
        wait_feed(&gw, true, Duration::from_secs(3)).await;
    }
    report("feed connection black-holed (no reset)", &mut delays);
    assert_eq!(
        flushes(&gw),
        0,
        "replacing a silent connection flushed the cache"
    );
    assert!(proxy.connections() > 5, "the proxy never saw a reconnect");
}

/// A TCP proxy to `127.0.0.1:<target>` that can silently black-hole every
/// connection open so far: their bytes are read and dropped both ways, no
/// FIN, no RST, like a dead NAT entry. Later connections pass.
struct BlackHole {
    port: u16,
    cutoff: Arc<AtomicU64>,
    next: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl BlackHole {
    async fn start(target: u16) -> BlackHole {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cutoff = Arc::new(AtomicU64::new(0));
        let next = Arc::new(AtomicU64::new(0));
        let (c, n) = (cutoff.clone(), next.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let id = n.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, id, c.clone()));
                tokio::spawn(pump(sr, cw, id, c.clone()));
            }
        });
        BlackHole {
            port,
            cutoff,
            next,
            task,
        }
    }

    fn black_hole_existing(&self) {
        self.cutoff
            .store(self.next.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    fn connections(&self) -> u64 {
        self.next.load(Ordering::SeqCst)
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    id: u64,
    cutoff: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if id < cutoff.load(Ordering::SeqCst) {
            continue; // swallowed
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
