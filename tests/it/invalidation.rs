//! The change feed at gateway level (contract §8, HOSTILE §8): the
//! revocation-delay histogram measures each timed entry; a change made
//! while the gateway could not read the feed is replayed when it can again,
//! with no flush; and when no entry comes at all (the feed refused for good,
//! or Redis edited by hand), staleness is bounded by `cache.ttl`, never by
//! `stale_if_error`.

use std::time::{Duration, Instant};

use http::Method;
use osir_gateway::keys::Env;
use osir_gateway::keys::Timestamp;
use osir_gateway::manage::KeyService;
use osir_gateway::store::{redis::CHANGE_FEED, Store};

use crate::support::client::{bearer, get};
use crate::support::eventually_async;
use crate::support::expect::outcome;
use crate::support::expect::Bench;
use crate::support::gateway::TestGateway;
use crate::support::keys::{create_key, memory_store, redis_store};
use crate::support::redis::RedisServer;

const GET: Method = Method::GET;
const WITHIN: Duration = Duration::from_secs(1);

/// Uses `key` once (caching it) and asserts it passed.
async fn cache(gw: &TestGateway, key: &str) {
    let r = get(&gw.url("/v1/domains"), &[("authorization", &bearer(key))]).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Polls until the gateway answers `revoked_api_key` for `key`, for up to
/// `within`; returns how long that took.
async fn refused_within(gw: &TestGateway, key: &str, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let auth = bearer(key);
    let h = [("authorization", auth.as_str())];
    eventually_async(within, || async {
        outcome(gw, GET, "/v1/domains", &h).await.1 == "revoked_api_key"
    })
    .await
    .then(|| started.elapsed())
}

/// Whole-cache flushes this gateway made, whatever the reason.
fn flushes(gw: &TestGateway) -> u64 {
    ["trimmed", "reset", "requested", "unreadable"]
        .iter()
        .map(|r| gw.gw.metrics.cache_flushes.with_label_values(&[r]).get())
        .sum()
}

/// A Redis user allowed everything, for writers; the gateways use the
/// default user, whose right to read the feed the tests take away.
async fn writer(redis: &RedisServer) -> Store {
    redis.cli(&[
        "ACL",
        "SETUSER",
        "writer",
        "on",
        ">writer-pw",
        "~*",
        "&*",
        "+@all",
    ]);
    let url = format!("redis://writer:writer-pw@127.0.0.1:{}/0", redis.port);
    let s = osir_gateway::store::redis::connect(&url, Duration::from_secs(1)).await;
    Store::new(s.unwrap())
}

/// Takes the feed away from the gateways (the default user may no longer
/// XREAD), while other commands still work; waits until the gateway says
/// changes cannot reach it.
async fn block_feed(redis: &RedisServer, gw: &TestGateway) {
    redis.cli(&["ACL", "SETUSER", "default", "-xread"]);
    let m = gw.gw.metrics.clone();
    let down =
        crate::support::eventually(Duration::from_secs(5), || m.change_feed_up.get() == 0).await;
    assert!(
        down,
        "the gateway still says it follows a feed it may not read"
    );
}

#[tokio::test]
async fn revocation_delay_is_measured_for_timed_messages_only() {
    let redis = RedisServer::start();
    let writer = redis_store(&redis).await;
    let Bench { up: _up, gw, .. } = Bench::start(redis_store(&redis).await, "").await;
    let delay = gw.gw.metrics.revocation_delay.clone();
    let invalidations = gw.gw.metrics.invalidations.clone();
    assert_eq!(delay.get_sample_count(), 0);

    // A revoke through the key service announces its write time.
    let (key, rec) = create_key(&writer, Env::Live, &["domains:read"], &[]).await;
    cache(&gw, &key).await;
    KeyService::new(&writer).revoke(&rec.id).await.unwrap();
    assert!(refused_within(&gw, &key, WITHIN).await.is_some());
    assert!(crate::support::eventually(WITHIN, || delay.get_sample_count() == 1).await);
    assert!(delay.get_sample_sum() < 1.0, "{}", delay.get_sample_sum());
    let text = get(&gw.admin_url("/metrics"), &[]).await.text();
    assert!(
        text.contains("osir_gateway_revocation_delay_seconds_count 1"),
        "{text}"
    );

    // An entry without a write time (added by hand) invalidates, unmeasured.
    let (key, rec) = create_key(&writer, Env::Live, &["domains:read"], &[]).await;
    cache(&gw, &key).await;
    let (hash, _) = writer.get(&rec.id).await.unwrap().unwrap();
    let hex = hash.to_hex();
    let now = Timestamp::now().0.to_string();
    redis.cli(&["HSET", &format!("osir:key:{hex}"), "revoked_at", &now]);
    let before = invalidations.get();
    redis.cli(&["XADD", CHANGE_FEED, "*", "h", &hex]);
    assert!(refused_within(&gw, &key, WITHIN).await.is_some());
    assert_eq!(invalidations.get(), before + 1);
    assert_eq!(delay.get_sample_count(), 1);

    // A writer clock ahead of ours counts as no delay, not a negative one.
    let (key, rec) = create_key(&writer, Env::Live, &["domains:read"], &[]).await;
    cache(&gw, &key).await;
    let (hash, _) = writer.get(&rec.id).await.unwrap().unwrap();
    let hex = hash.to_hex();
    redis.cli(&["HSET", &format!("osir:key:{hex}"), "revoked_at", &now]);
    let sum = delay.get_sample_sum();
    let ahead = (Timestamp::now().0 + 3_600_000).to_string();
    redis.cli(&["XADD", CHANGE_FEED, "*", "h", &hex, "at", &ahead]);
    assert!(refused_within(&gw, &key, WITHIN).await.is_some());
    assert_eq!(delay.get_sample_count(), 2);
    assert_eq!(delay.get_sample_sum(), sum);
}

#[tokio::test]
async fn revocation_delay_is_measured_on_the_memory_store_too() {
    let store = memory_store();
    let Bench { up: _up, gw, .. } = Bench::start(store.clone(), "").await;
    let (key, rec) = create_key(&store, Env::Live, &["domains:read"], &[]).await;
    cache(&gw, &key).await;
    KeyService::new(&store).revoke(&rec.id).await.unwrap();
    assert!(refused_within(&gw, &key, WITHIN).await.is_some());
    assert_eq!(gw.gw.metrics.revocation_delay.get_sample_count(), 1);
}

/// The feed connection is killed and the key revoked right away, before
/// the gateway has reconnected: it resumes from the last entry it applied,
/// so the revoke is replayed (heard, not made up for by a flush).
#[tokio::test]
async fn a_revoke_while_the_feed_connection_is_killed_is_replayed() {
    let redis = RedisServer::start();
    let writer = redis_store(&redis).await;
    let Bench { up: _up, gw, .. } = Bench::start(redis_store(&redis).await, "").await;
    let (key, rec) = create_key(&writer, Env::Live, &["domains:read"], &[]).await;
    cache(&gw, &key).await;
    let messages = gw.gw.metrics.invalidations.get();
    assert!(crate::support::eventually(WITHIN, || redis.feed_readers() == 1).await);

    assert_eq!(redis.kill_feed_readers(), 1, "no feed reader was killed");
    KeyService::new(&writer).revoke(&rec.id).await.unwrap();
    let took = refused_within(&gw, &key, WITHIN).await;
    println!("killed feed connection: refused after {took:?}");
    assert!(
        took.is_some(),
        "revoked key still served 1 s after the revoke"
    );
    assert!(
        crate::support::eventually(WITHIN, || gw.gw.metrics.invalidations.get() > messages).await,
        "the revoke was not replayed"
    );
    assert_eq!(flushes(&gw), 0, "a reconnect flushed the cache");
}

/// Deterministic version: the gateway may not read the feed until the
/// test lets it, so the revoke surely lands while it is not reading; once
/// it may again, it replays the revoke within 1 s, without a flush.
#[tokio::test]
async fn a_change_made_while_the_feed_is_refused_is_replayed_without_a_flush() {
    let redis = RedisServer::start();
    let writer = writer(&redis).await;
    let Bench { up: _up, gw, .. } = Bench::start(redis_store(&redis).await, "").await;
    let (key, rec) = create_key(&writer, Env::Live, &["domains:read"], &[]).await;
    cache(&gw, &key).await;
    let m = &gw.gw.metrics;
    let (messages, delays) = (m.invalidations.get(), m.revocation_delay.get_sample_count());
    let (hash, _) = writer.get(&rec.id).await.unwrap().unwrap();

    block_feed(&redis, &gw).await;
    // Not ready, and saying why: revocations cannot reach this gateway.
    let r = get(&gw.admin_url("/readyz"), &[]).await;
    assert_eq!(r.status, 503, "{}", r.text());
    let reason = r.json()["feed"]["reason"].as_str().unwrap_or("").to_owned();
    assert!(
        reason.contains("XREAD") && reason.contains("+xread"),
        "{reason}"
    );
    KeyService::new(&writer).revoke(&rec.id).await.unwrap();
    // Nothing reached the gateway, and nothing was flushed. The store still
    // answers, so it is up.
    let held = crate::support::eventually(Duration::from_millis(500), || {
        gw.gw.cache.get_fresh(&hash, Instant::now()).is_none()
    })
    .await;
    assert!(!held, "the cache was flushed while the feed was refused");
    assert_eq!(m.store_up.get(), 1);
    assert_eq!(m.invalidations.get(), messages);

    redis.cli(&["ACL", "SETUSER", "default", "+xread"]);
    assert!(
        refused_within(&gw, &key, WITHIN).await.is_some(),
        "revoked key still served 1 s after the feed was allowed again"
    );
    assert_eq!(
        m.invalidations.get(),
        messages + 1,
        "the revoke was not replayed"
    );
    assert_eq!(m.revocation_delay.get_sample_count(), delays + 1);
    assert_eq!(flushes(&gw), 0, "catching up flushed the cache");
    assert!(crate::support::eventually(WITHIN, || m.change_feed_up.get() == 1).await);
    assert_eq!(get(&gw.admin_url("/readyz"), &[]).await.status, 200);
}

/// The feed refused for good while Redis answers: a revoked key is refused
/// once its cached record is older than `cache.ttl`, not kept for
/// `stale_if_error` as if the store were down.
#[tokio::test]
async fn without_the_feed_staleness_is_bounded_by_ttl() {
    let redis = RedisServer::start();
    let writer = writer(&redis).await;
    let ttl = Duration::from_millis(300);
    let extra = "[cache]\nttl = \"300ms\"\nstale_if_error = \"10m\"\n";
    let Bench { up: _up, gw, .. } = Bench::start(redis_store(&redis).await, extra).await;
    let (key, rec) = create_key(&writer, Env::Live, &["domains:read"], &[]).await;
    cache(&gw, &key).await;

    block_feed(&redis, &gw).await;
    KeyService::new(&writer).revoke(&rec.id).await.unwrap();
    let took = refused_within(&gw, &key, ttl + WITHIN).await;
    assert!(
        took.is_some(),
        "revoked key still served {:?} after the revoke with the feed gone",
        ttl + WITHIN
    );
    assert_eq!(gw.gw.metrics.store_up.get(), 1);
    assert_eq!(
        gw.gw.metrics.change_feed_up.get(),
        0,
        "the feed came back during the test"
    );
}

/// A record changed in Redis by hand (`HSET`), which announces nothing: the
/// change is seen once the cached record is older than `cache.ttl`.
#[tokio::test]
async fn a_silent_edit_is_seen_within_ttl() {
    let redis = RedisServer::start();
    let writer = redis_store(&redis).await;
    let ttl = Duration::from_millis(300);
    let Bench { up: _up, gw, .. } =
        Bench::start(redis_store(&redis).await, "[cache]\nttl = \"300ms\"\n").await;
    let (key, rec) = create_key(&writer, Env::Live, &["domains:read"], &[]).await;
    cache(&gw, &key).await;
    let messages = gw.gw.metrics.invalidations.get();

    let (hash, _) = writer.get(&rec.id).await.unwrap().unwrap();
    let now = Timestamp::now().0.to_string();
    redis.cli(&[
        "HSET",
        &format!("osir:key:{}", hash.to_hex()),
        "revoked_at",
        &now,
    ]);
    assert!(
        refused_within(&gw, &key, ttl + WITHIN).await.is_some(),
        "a silently revoked key was still served after ttl"
    );
    assert_eq!(
        gw.gw.metrics.invalidations.get(),
        messages,
        "HSET announced something"
    );
}
