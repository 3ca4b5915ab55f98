//! The invalidation channel at gateway level (contract §8, HOSTILE §8): the
//! revocation-delay histogram measures each timed announcement; a message
//! lost while the subscriber was away is made up for by the flush on
//! resubscribe; and when no message comes at all (the channel gone for good,
//! or Redis edited by hand), staleness is bounded by `cache.ttl`, never by
//! `stale_if_error`.

use std::time::{Duration, Instant};

use http::Method;
use osir_gateway::keys::Env;
use osir_gateway::keys::Timestamp;
use osir_gateway::manage::KeyService;
use osir_gateway::store::{redis::INVALIDATE_CHANNEL, Store};

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

fn subscribers(redis: &RedisServer) -> u64 {
    let out = redis.cli(&["PUBSUB", "NUMSUB", INVALIDATE_CHANNEL]);
    out.lines()
        .nth(1)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// A Redis user allowed everything, channels included, for writers; the
/// gateways use the default user, whose channel rights the tests take away.
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

/// Takes the channel away from the gateways (the default user): Redis drops
/// their subscriptions and refuses new ones, while commands still work.
async fn block_channel(redis: &RedisServer) {
    redis.cli(&["ACL", "SETUSER", "default", "resetchannels"]);
    let gone = crate::support::eventually(Duration::from_secs(5), || subscribers(redis) == 0).await;
    assert!(gone, "the gateway's subscription survived the ACL change");
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

    // The old bare-hash form still invalidates, unmeasured.
    let (key, rec) = create_key(&writer, Env::Live, &["domains:read"], &[]).await;
    cache(&gw, &key).await;
    let (hash, _) = writer.get(&rec.id).await.unwrap().unwrap();
    let hex = hash.to_hex();
    let now = Timestamp::now().0.to_string();
    redis.cli(&["HSET", &format!("osir:key:{hex}"), "revoked_at", &now]);
    let before = invalidations.get();
    redis.cli(&["PUBLISH", INVALIDATE_CHANNEL, &hex]);
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
    redis.cli(&["PUBLISH", INVALIDATE_CHANNEL, &format!("{hex} {ahead}")]);
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

/// The subscriber is killed, and the key revoked right away, while the
/// gateway has not yet resubscribed: if the message is lost, the flush on
/// resubscribe still refuses the key within 1 s.
#[tokio::test]
async fn a_revoke_while_the_subscriber_is_killed_is_seen() {
    let redis = RedisServer::start();
    let writer = redis_store(&redis).await;
    let Bench { up: _up, gw, .. } = Bench::start(redis_store(&redis).await, "").await;
    let (key, rec) = create_key(&writer, Env::Live, &["domains:read"], &[]).await;
    cache(&gw, &key).await;
    let messages = gw.gw.metrics.invalidations.get();

    let killed = redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert_eq!(killed.trim(), "1", "no subscriber was killed");
    KeyService::new(&writer).revoke(&rec.id).await.unwrap();
    let took = refused_within(&gw, &key, WITHIN).await;
    let heard = gw.gw.metrics.invalidations.get() > messages;
    println!(
        "killed subscriber: refused after {took:?}; the revoke message was {}",
        if heard {
            "heard"
        } else {
            "lost (the resubscribe flush did it)"
        }
    );
    assert!(
        took.is_some(),
        "revoked key still served 1 s after the revoke"
    );
}

/// Deterministic version: the gateway cannot resubscribe until the test
/// lets it, so the revoke's message is surely lost; once the gateway is
/// back on the channel it refuses the key within 1 s.
#[tokio::test]
async fn a_message_lost_while_unsubscribed_is_made_up_for_on_resubscribe() {
    let redis = RedisServer::start();
    let writer = writer(&redis).await;
    let Bench { up: _up, gw, .. } = Bench::start(redis_store(&redis).await, "").await;
    let (key, rec) = create_key(&writer, Env::Live, &["domains:read"], &[]).await;
    cache(&gw, &key).await;
    let m = &gw.gw.metrics;
    let (messages, delays) = (m.invalidations.get(), m.revocation_delay.get_sample_count());

    let (hash, _) = writer.get(&rec.id).await.unwrap().unwrap();

    block_channel(&redis).await;
    KeyService::new(&writer).revoke(&rec.id).await.unwrap();
    // The message went nowhere, and nothing was flushed: the gateway knows
    // it is not subscribed (a refused SUBSCRIBE is not taken for one). The
    // store still answers, so it is up.
    let held = crate::support::eventually(Duration::from_millis(500), || {
        gw.gw.cache.get_fresh(&hash).is_none()
    })
    .await;
    assert!(!held, "the cache was flushed while no subscription existed");
    assert_eq!(m.store_up.get(), 1);
    assert_eq!(m.invalidations.get(), messages);
    assert_eq!(m.revocation_delay.get_sample_count(), delays);

    redis.cli(&["ACL", "SETUSER", "default", "allchannels"]);
    let back =
        crate::support::eventually(Duration::from_secs(10), || subscribers(&redis) == 1).await;
    assert!(back, "the gateway never resubscribed");
    assert!(
        refused_within(&gw, &key, WITHIN).await.is_some(),
        "revoked key still served 1 s after resubscribing"
    );
    assert_eq!(
        m.invalidations.get(),
        messages,
        "the lost message came back?"
    );
}

/// The channel gone for good while Redis answers: a revoked key is refused
/// once its cached record is older than `cache.ttl`, not kept for
/// `stale_if_error` as if the store were down.
#[tokio::test]
async fn without_the_channel_staleness_is_bounded_by_ttl() {
    let redis = RedisServer::start();
    let writer = writer(&redis).await;
    let ttl = Duration::from_millis(300);
    let extra = "[cache]\nttl = \"300ms\"\nstale_if_error = \"10m\"\n";
    let Bench { up: _up, gw, .. } = Bench::start(redis_store(&redis).await, extra).await;
    let (key, rec) = create_key(&writer, Env::Live, &["domains:read"], &[]).await;
    cache(&gw, &key).await;

    block_channel(&redis).await;
    KeyService::new(&writer).revoke(&rec.id).await.unwrap();
    let took = refused_within(&gw, &key, ttl + WITHIN).await;
    assert!(
        took.is_some(),
        "revoked key still served {:?} after the revoke with the channel gone",
        ttl + WITHIN
    );
    assert_eq!(gw.gw.metrics.store_up.get(), 1);
    assert_eq!(
        subscribers(&redis),
        0,
        "the channel came back during the test"
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
