//! The redis store against a real redis-server: records, lookups, conflicts, the
//! change channel, corrupt data, what is stored, usage batches.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use osir_gateway::keys::Env;
use osir_gateway::keys::{KeyRecord, KeyUsage, Timestamp};
use osir_gateway::store::StoreError;

use crate::support::redis::RedisServer;

use super::{delta, full_record, new_key, record, redis_store, watch, Recorder, Seen};

#[tokio::test]
async fn redis_roundtrip() {
    let server = RedisServer::start();
    let store = redis_store(&server).await;
    let (k1, h1) = new_key(Env::Live);
    let (k2, h2) = new_key(Env::Test);
    let r1 = full_record("key_one", &k1, 1_700_000_000_123);
    let r2 = record("key_two", &k2, 1_600_000_000_000);
    store.insert(&h1, &r1).await.unwrap();
    store.insert(&h2, &r2).await.unwrap();

    assert_eq!(store.lookup(&h1).await.unwrap(), Some(r1.clone()));
    assert_eq!(store.lookup(&h2).await.unwrap(), Some(r2.clone()));
    assert_eq!(store.lookup(&new_key(Env::Live).1).await.unwrap(), None);
    assert_eq!(store.get("key_one").await.unwrap(), Some((h1, r1.clone())));
    assert_eq!(store.get("key_nope").await.unwrap(), None);
    // Sorted by creation time.
    assert_eq!(store.list().await.unwrap(), vec![r2.clone(), r1.clone()]);

    // Dangling ids (no index; an index to no record) are skipped, not fatal.
    server.cli(&["SADD", "osir:ids", "key_gone", "key_half"]);
    let nowhere = new_key(Env::Live).1.to_hex();
    server.cli(&["SET", "osir:id:key_half", &nowhere]);
    assert_eq!(store.list().await.unwrap(), vec![r2, r1]);
    assert_eq!(store.get("key_half").await.unwrap(), None);
}

#[tokio::test]
async fn redis_lookup_is_one_hgetall() {
    let server = RedisServer::start();
    let store = redis_store(&server).await;
    let (k, h) = new_key(Env::Live);
    store.insert(&h, &record("key_a", &k, 1)).await.unwrap();
    let before = server.command_count("hgetall");
    store.lookup(&h).await.unwrap().unwrap();
    store.lookup(&new_key(Env::Live).1).await.unwrap();
    assert_eq!(server.command_count("hgetall") - before, 2);
}

#[tokio::test]
async fn redis_duplicates_conflict_and_write_nothing() {
    let server = RedisServer::start();
    let store = redis_store(&server).await;
    let (k1, h1) = new_key(Env::Live);
    let (k2, h2) = new_key(Env::Live);
    store.insert(&h1, &record("key_a", &k1, 1)).await.unwrap();

    let same_id = store
        .insert(&h2, &record("key_a", &k2, 2))
        .await
        .unwrap_err();
    assert!(
        matches!(&same_id, StoreError::Conflict(m) if m.contains("key_a")),
        "{same_id}"
    );
    assert_eq!(store.lookup(&h2).await.unwrap(), None);

    let same_hash = store
        .insert(&h1, &record("key_b", &k1, 3))
        .await
        .unwrap_err();
    assert!(matches!(same_hash, StoreError::Conflict(_)), "{same_hash}");
    assert_eq!(store.get("key_b").await.unwrap(), None);
    assert_eq!(store.list().await.unwrap().len(), 1);
}

#[tokio::test]
async fn redis_replace_of_unknown_id_conflicts() {
    let server = RedisServer::start();
    let store = redis_store(&server).await;
    let (k, _) = new_key(Env::Live);
    let err = store
        .replace(&record("key_ghost", &k, 1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict(m) if m.contains("no key with id key_ghost")),
        "{err}"
    );
    assert_eq!(server.cli(&["DBSIZE"]).trim(), "0");
}

#[tokio::test]
async fn redis_replace_reaches_every_watching_gateway() {
    let server = RedisServer::start();
    let writer = redis_store(&server).await;
    let gateways = [redis_store(&server).await, redis_store(&server).await];
    let sinks: Vec<Arc<Recorder>> = gateways.iter().map(|_| Arc::default()).collect();
    let handles: Vec<_> = gateways
        .iter()
        .zip(&sinks)
        .map(|(g, s)| g.watch(s.clone()))
        .collect();
    for s in &sinks {
        s.subscribed().await;
    }

    let (k, h) = new_key(Env::Live);
    let original = full_record("key_rev", &k, 1_700_000_000_000);
    writer.insert(&h, &original).await.unwrap();
    let revoked = KeyRecord {
        name: "renamed".into(),
        account: None,
        expires_at: None,
        revoked_at: Some(Timestamp(1_700_000_999_000)),
        ..original
    };
    let started = Instant::now();
    writer.replace(&revoked).await.unwrap();
    for s in &sinks {
        s.wait(Duration::from_secs(1), "invalidate(hash)", |r| {
            r.count(&Seen::One(h)) >= 1
        })
        .await;
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    // Optional fields the new record lacks are gone, not left over.
    for g in &gateways {
        assert_eq!(g.lookup(&h).await.unwrap(), Some(revoked.clone()));
    }
    for h in handles {
        h.abort();
    }
}

#[tokio::test]
async fn redis_feed_entries_of_every_kind() {
    let server = RedisServer::start();
    let store = redis_store(&server).await;
    let (sink, handle) = watch(&store);
    sink.first_flush().await;

    let (_, h) = new_key(Env::Test);
    server.cli(&["XADD", "osir:changes", "*", "h", &h.to_hex()]);
    sink.wait(Duration::from_secs(1), "hash entry", |r| {
        r.count(&Seen::One(h)) == 1
    })
    .await;
    server.cli(&["XADD", "osir:changes", "*", "h", "*"]);
    sink.wait(Duration::from_secs(1), "flush entry", |r| {
        r.count(&Seen::All) == 2
    })
    .await;
    server.cli(&["XADD", "osir:changes", "*", "h", "not-a-hash"]);
    sink.wait(Duration::from_secs(1), "garbage flushes", |r| {
        r.count(&Seen::All) == 3
    })
    .await;
    handle.abort();
}

#[tokio::test]
async fn redis_corrupt_records_are_named_not_panics() {
    let server = RedisServer::start();
    let store = redis_store(&server).await;
    let (k, h) = new_key(Env::Live);
    store.insert(&h, &record("key_bad", &k, 1)).await.unwrap();
    let hex = h.to_hex();
    let redis_key = format!("osir:key:{hex}");

    let expect_corrupt = |e: StoreError, what: &str, field: &str| match e {
        StoreError::Corrupt { what: w, reason } => {
            assert_eq!(w, what);
            assert!(reason.starts_with(field), "{reason}");
        }
        other => panic!("expected Corrupt, got {other}"),
    };

    server.cli(&["HSET", &redis_key, "env", "prod"]);
    expect_corrupt(store.lookup(&h).await.unwrap_err(), &hex[..12], "env:");
    expect_corrupt(store.get("key_bad").await.unwrap_err(), "key_bad", "env:");
    expect_corrupt(store.list().await.unwrap_err(), "key_bad", "env:");

    server.cli(&[
        "HSET",
        &redis_key,
        "env",
        "live",
        "allowed_ips",
        "10.0.0.0/8 nonsense",
    ]);
    expect_corrupt(
        store.lookup(&h).await.unwrap_err(),
        &hex[..12],
        "allowed_ips:",
    );

    server.cli(&[
        "HSET",
        &redis_key,
        "allowed_ips",
        "",
        "scopes",
        "domains:list",
    ]);
    expect_corrupt(store.lookup(&h).await.unwrap_err(), &hex[..12], "scopes:");

    server.cli(&[
        "HSET",
        &redis_key,
        "scopes",
        "domains:read",
        "revoked_at",
        "soon",
    ]);
    expect_corrupt(
        store.lookup(&h).await.unwrap_err(),
        &hex[..12],
        "revoked_at:",
    );

    server.cli(&["HDEL", &redis_key, "revoked_at", "created_at"]);
    expect_corrupt(
        store.lookup(&h).await.unwrap_err(),
        &hex[..12],
        "created_at: missing",
    );

    // A record of the wrong Redis type, and an index pointing at garbage.
    let (_, h2) = new_key(Env::Live);
    server.cli(&["SET", &format!("osir:key:{}", h2.to_hex()), "oops"]);
    expect_corrupt(
        store.lookup(&h2).await.unwrap_err(),
        &h2.to_hex()[..12],
        "HGETALL",
    );
    server.cli(&["SET", "osir:id:key_odd", "not-hex"]);
    expect_corrupt(
        store.get("key_odd").await.unwrap_err(),
        "key_odd",
        "osir:id:key_odd",
    );

    // Usage counters are checked too.
    server.cli(&["HSET", "osir:usage:key_bad", "total", "-3"]);
    let err = store.usage("key_bad").await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { reason, .. } if reason.starts_with("total:")),
        "{err}"
    );
}

#[tokio::test]
async fn redis_never_holds_the_key_text() {
    let server = RedisServer::start();
    let store = redis_store(&server).await;
    let (key, hash) = new_key(Env::Live);
    let r = full_record("key_secret", &key, 1_700_000_000_000);
    store.insert(&hash, &r).await.unwrap();
    store
        .replace(&KeyRecord {
            name: "renamed".into(),
            ..r
        })
        .await
        .unwrap();
    store
        .add_usage(&[delta("key_secret", &[("2026-01-01", 1)], 5, "192.0.2.1")])
        .await
        .unwrap();

    let body = &key.expose_secret()[10..];
    assert_eq!(body.len(), 32);
    let mut everything = String::new();
    for k in server.cli(&["--scan"]).lines().filter(|l| !l.is_empty()) {
        let dump = match server.cli(&["TYPE", k]).trim() {
            "hash" => server.cli(&["HGETALL", k]),
            "string" => server.cli(&["GET", k]),
            "set" => server.cli(&["SMEMBERS", k]),
            "stream" => server.cli(&["XRANGE", k, "-", "+"]),
            other => panic!("unexpected type {other} for {k}"),
        };
        everything.push_str(k);
        everything.push('\n');
        everything.push_str(&dump);
    }
    // The scan did see the data, only not the key.
    assert!(everything.contains(&hash.to_hex()) && everything.contains("key_secret"));
    assert!(
        !everything.contains(body),
        "the key's body is stored in redis"
    );
}

#[tokio::test]
async fn redis_usage_batches_add_up_in_one_round_trip() {
    let server = RedisServer::start();
    let store = redis_store(&server).await;
    assert_eq!(store.usage("key_u").await.unwrap(), KeyUsage::default());
    // Loads the script, so the next batch is exactly one EVALSHA.
    store
        .add_usage(&[delta("key_warm", &[("2026-01-01", 1)], 1, "192.0.2.9")])
        .await
        .unwrap();
    store.add_usage(&[]).await.unwrap();

    let before = server.command_count("evalsha");
    store
        .add_usage(&[
            delta(
                "key_u",
                &[("2026-01-01", 3), ("2026-01-02", 2)],
                2_000,
                "192.0.2.1",
            ),
            // Older than the previous delta: counts, but does not move last use back.
            delta("key_u", &[("2026-01-02", 5)], 1_000, "192.0.2.2"),
            delta("key_v", &[("2026-01-02", 1)], 3_000, "2001:db8::1"),
        ])
        .await
        .unwrap();
    assert_eq!(server.command_count("evalsha") - before, 1);

    let u = store.usage("key_u").await.unwrap();
    assert_eq!(u.total, 10);
    assert_eq!(
        u.daily,
        BTreeMap::from([("2026-01-01".to_owned(), 3), ("2026-01-02".to_owned(), 7)])
    );
    assert_eq!(u.last_used_at, Some(Timestamp(2_000)));
    assert_eq!(u.last_ip, Some("192.0.2.1".parse::<IpAddr>().unwrap()));

    store
        .add_usage(&[delta("key_v", &[("2026-01-03", 4)], 4_000, "192.0.2.3")])
        .await
        .unwrap();
    let v = store.usage("key_v").await.unwrap();
    assert_eq!((v.total, v.daily.len()), (5, 2));
    assert_eq!(v.last_used_at, Some(Timestamp(4_000)));
    assert_eq!(v.last_ip, Some("192.0.2.3".parse::<IpAddr>().unwrap()));
}
