//! Store outages (contract §8): cached keys keep working past `ttl` up to
//! `stale_if_error`, any other key gets 503 with `Retry-After`, a revoked
//! key stays refused, a store error is never cached as "unknown" and never
//! allows, and the gateway recovers by itself when the store returns.

use std::time::{Duration, Instant};

use osir_gateway::keys::{ApiKey, Env};
use osir_gateway::manage::KeyService;
use osir_gateway::store::Store;

use crate::support::expect::Bench;
use crate::support::expect::{call, until_status};
use crate::support::keys::create_key;
use crate::support::redis::RedisServer;
use crate::support::until_ok;

const EXTRA: &str = "[cache]\nttl = \"150ms\"\nstale_if_error = \"1m\"\n";

async fn fast_store(redis: &RedisServer) -> Store {
    Store::new(
        osir_gateway::store::redis::connect(&redis.url(), Duration::from_millis(200))
            .await
            .unwrap(),
    )
}

/// Waits until `ttl` has surely passed since the records were cached: the
/// behaviour under test only exists after it.
async fn past_ttl(since: Instant) {
    while since.elapsed() < Duration::from_millis(300) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_store_serves_cached_keys_and_refuses_the_rest() {
    let redis = RedisServer::start();
    let store = fast_store(&redis).await;
    // The watcher flushes the cache once it has subscribed; let that
    // happen before caching what the outage must be survived with.
    let Bench { up, gw, .. } = Bench::start(store.clone(), EXTRA).await;
    let (good, _) = create_key(&store, Env::Live, &["domains:read"], &[]).await;
    let (revoked, rrec) = create_key(&store, Env::Live, &["domains:read"], &[]).await;
    let (uncached, _) = create_key(&store, Env::Live, &["domains:read"], &[]).await;
    assert_eq!(call(&gw, &good).await.status, 200);
    assert_eq!(call(&gw, &revoked).await.status, 200);
    KeyService::new(&store).revoke(&rrec.id).await.unwrap();
    assert_eq!(
        until_status(&gw, &revoked, 401, Duration::from_secs(1))
            .await
            .code(),
        "revoked_api_key"
    );
    // Cache the revoked record too, then freeze Redis.
    let cached_at = Instant::now();
    redis.pause();
    past_ttl(cached_at).await;

    let forwarded = up.count();
    for _ in 0..3 {
        let r = call(&gw, &good).await;
        assert_eq!(
            r.status,
            200,
            "a cached key must keep working: {}",
            r.text()
        );
        let r = call(&gw, &revoked).await;
        assert_eq!(
            (r.status.as_u16(), r.code().as_str()),
            (401, "revoked_api_key")
        );
        let r = call(&gw, &uncached).await;
        assert_eq!(
            (r.status.as_u16(), r.code().as_str()),
            (503, "key_store_unavailable")
        );
        assert!(r
            .header("retry-after")
            .is_some_and(|v| v.parse::<u64>().is_ok()));
        let unknown = ApiKey::generate(Env::Live).unwrap();
        let r = call(&gw, unknown.expose_secret()).await;
        assert_eq!(
            r.status, 503,
            "an unknown key during an outage is 503, never 2xx or cached"
        );
    }
    assert_eq!(
        up.count(),
        forwarded + 3,
        "only the cached good key reached the upstream"
    );
    let m = &gw.gw.metrics;
    assert!(m.cache_lookups.with_label_values(&["stale"]).get() > 0);
    assert!(m.store_errors.get() > 0);

    // The store returns: the uncached key works again, by itself.
    redis.resume();
    let r = until_status(&gw, &uncached, 200, Duration::from_secs(5)).await;
    assert_eq!(
        r.status,
        200,
        "no recovery after the store returned: {}",
        r.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_store_is_survived_and_recovered_from() {
    let mut redis = RedisServer::start();
    let store = fast_store(&redis).await;
    // The watcher flushes the cache once it has subscribed; let that
    // happen before caching what the outage must be survived with.
    let Bench { up: _up, gw, .. } = Bench::start(store.clone(), EXTRA).await;
    let (good, _) = create_key(&store, Env::Live, &["domains:read"], &[]).await;
    assert_eq!(call(&gw, &good).await.status, 200);
    let cached_at = Instant::now();
    redis.stop();
    past_ttl(cached_at).await;
    assert_eq!(call(&gw, &good).await.status, 200);
    let unknown = ApiKey::generate(Env::Live).unwrap();
    assert_eq!(call(&gw, unknown.expose_secret()).await.status, 503);
    let store_up = gw.gw.metrics.store_up.clone();
    assert!(crate::support::eventually(Duration::from_secs(5), || store_up.get() == 0).await);

    // Back, empty (no persistence): the gateway resynchronises by itself; a
    // key made now works, and the old key, gone from the store, is refused.
    redis.restart();
    assert!(crate::support::eventually(Duration::from_secs(5), || store_up.get() == 1).await);
    // The first command on the store's own connection may still see the
    // failed reconnect of the outage; writes succeed again within moments.
    let fresh = until_ok(
        Duration::from_secs(5),
        "key writes did not recover",
        || async {
            let new = crate::support::keys::new_key(Env::Live, &["domains:read"], &[]);
            KeyService::new(&store).create(new).await
        },
    )
    .await
    .key
    .expose_secret()
    .to_owned();
    let r = until_status(&gw, &fresh, 200, Duration::from_secs(5)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = until_status(&gw, &good, 401, Duration::from_secs(5)).await;
    assert_eq!(r.code(), "invalid_api_key");
}
