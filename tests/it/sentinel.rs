//! Redis Sentinel: a real failover on loopback (primary, replica, three
//! sentinels). Killing the primary under load never costs a cached key an
//! answer; once the sentinels promote the replica, new lookups, writes
//! (through the store and through the real binary) and revocations work
//! again by themselves.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use osir_gateway::keys::Env;
use osir_gateway::manage::KeyService;
use osir_gateway::store::Store;

use crate::support::expect::Bench;
use crate::support::expect::{call, until_status};
use crate::support::keys::{cli_create, create_key, new_key, CliConfig};
use crate::support::redis::{RedisServer, Sentinels};
use crate::support::until_ok;

/// Cached records outlive the whole test: a cached key must never need the
/// store, whatever happens to it.
const EXTRA: &str = "[cache]\nttl = \"60s\"\nstale_if_error = \"1m\"\n";
const LOAD_TASKS: usize = 4;

/// How many clients the new master has on the invalidation channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_primary_killed_under_load_fails_over_without_a_wrong_answer() {
    let mut primary = RedisServer::start();
    let replica = RedisServer::start_replica_of(primary.port);
    replica.wait_in_sync();
    let sentinels = Sentinels::start(primary.port);
    assert_eq!(sentinels.master_port(), Some(primary.port));

    let store = Store::new(
        osir_gateway::store::redis::connect(&sentinels.url(), Duration::from_millis(200))
            .await
            .unwrap_or_else(|e| panic!("cannot connect through the sentinels: {e}")),
    );
    let (hot, _) = create_key(&store, Env::Live, &["domains:read"], &[]).await;
    let (cold, _) = create_key(&store, Env::Live, &["domains:read"], &[]).await;
    let (doomed, doomed_rec) = create_key(&store, Env::Live, &["domains:read"], &[]).await;
    // Everything written so far is on the replica before the primary dies.
    assert_eq!(primary.cli(&["WAIT", "1", "5000"]).trim(), "1");

    let Bench { up: _up, gw, .. } = Bench::start(store.clone(), EXTRA).await;
    assert_eq!(call(&gw, &hot).await.status, 200);

    // Load on the cached key, for the whole failover.
    let gw = Arc::new(gw);
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let wrong = Arc::new(Mutex::new(Vec::<String>::new()));
    let load_deadline = Instant::now() + Duration::from_secs(25);
    let mut tasks = Vec::new();
    for _ in 0..LOAD_TASKS {
        let (gw, stop, served, wrong, hot) = (
            gw.clone(),
            stop.clone(),
            served.clone(),
            wrong.clone(),
            hot.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) && Instant::now() < load_deadline {
                let r = call(&gw, &hot).await;
                served.fetch_add(1, Ordering::SeqCst);
                if r.status != 200 {
                    wrong.lock().push(format!("{} {}", r.status, r.text()));
                }
            }
        }));
    }

    primary.stop();
    let old = primary.port;
    let promoted = crate::support::eventually_async(Duration::from_secs(15), || async {
        tokio::task::block_in_place(|| sentinels.master_port()) != Some(old)
    })
    .await;
    assert!(promoted, "the sentinels did not promote the replica");
    assert_eq!(sentinels.master_port(), Some(replica.port));

    // A key made before the failover and never looked up: replicated, found.
    let r = until_status(&gw, &cold, 200, Duration::from_secs(10)).await;
    assert_eq!(
        r.status,
        200,
        "a replicated key after failover: {}",
        r.text()
    );

    // Writes reach the new master: through the store the gateway shares…
    let fresh = until_ok(
        Duration::from_secs(10),
        "key writes did not recover after failover",
        || async {
            KeyService::new(&store)
                .create(new_key(Env::Live, &["domains:read"], &[]))
                .await
        },
    )
    .await
    .key
    .expose_secret()
    .to_owned();
    let r = until_status(&gw, &fresh, 200, Duration::from_secs(5)).await;
    assert_eq!(r.status, 200, "a key created after failover: {}", r.text());

    // …and through the real binary, configured with the sentinel URL.
    let cli = CliConfig::redis_store(&sentinels.url());
    let (from_cli, _) = tokio::task::block_in_place(|| cli_create(&cli, "live", &["domains:read"]));
    let r = until_status(&gw, &from_cli, 200, Duration::from_secs(5)).await;
    assert_eq!(r.status, 200, "a key made by `keys create`: {}", r.text());

    // Changes flow on the new master: once the gateway reads its feed
    // there, a revoke reaches its cache within 1 s.
    let listening = crate::support::eventually_async(Duration::from_secs(10), || async {
        tokio::task::block_in_place(|| replica.feed_readers()) >= 1
    })
    .await;
    assert!(
        listening,
        "the gateway never read the feed on the new master"
    );
    assert_eq!(
        until_status(&gw, &doomed, 200, Duration::from_secs(5))
            .await
            .status,
        200
    );
    let revoked = Instant::now();
    KeyService::new(&store)
        .revoke(&doomed_rec.id)
        .await
        .unwrap();
    let r = until_status(&gw, &doomed, 401, Duration::from_secs(1)).await;
    println!(
        "Sentinel failover (plain TCP): a revoke on the new master reached the gateway in {:?}",
        revoked.elapsed()
    );
    assert_eq!(
        (r.status.as_u16(), r.code().as_str()),
        (401, "revoked_api_key"),
        "a revoke after failover did not reach the gateway within 1 s"
    );

    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let wrong = wrong.lock();
    assert!(
        wrong.is_empty(),
        "the cached key got {} non-200 answers (of {}), first: {}",
        wrong.len(),
        served.load(Ordering::SeqCst),
        wrong[0]
    );
    assert!(served.load(Ordering::SeqCst) > 0);
}
