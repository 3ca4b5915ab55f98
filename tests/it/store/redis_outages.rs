//! The redis store when its server fails: down, hung, a killed subscriber, a
//! refused connection.

use std::time::{Duration, Instant};

use osir_gateway::keys::Env;
use osir_gateway::keys::{KeyRecord, Timestamp};
use osir_gateway::store::redis;

use crate::support::redis::RedisServer;
use crate::support::until_ok;

use super::{is_unavailable, new_key, record, redis_store, watch, Seen, TIMEOUT};

#[tokio::test]
async fn redis_outage_is_unavailable_then_recovers_and_flushes() {
    let mut server = RedisServer::start();
    let store = redis_store(&server).await;
    let (sink, handle) = watch(&store);
    sink.subscribed().await;
    let (k, h) = new_key(Env::Live);
    store.insert(&h, &record("key_out", &k, 1)).await.unwrap();

    server.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let err = store.lookup(&h).await.unwrap_err();
        assert!(is_unavailable(&err), "{err}");
        assert!(err.to_string().contains("127.0.0.1"), "{err}");
        assert!(
            started.elapsed() < TIMEOUT * 2,
            "took {:?}",
            started.elapsed()
        );
    }
    sink.wait(Duration::from_secs(3), "store down", |r| {
        r.last_up() == Some(false)
    })
    .await;
    let flushes = sink.count(&Seen::All);

    server.restart();
    let found = until_ok(
        Duration::from_secs(5),
        "store did not come back",
        || async {
            let r = store.lookup(&h).await;
            if let Err(e) = &r {
                assert!(is_unavailable(e), "{e}");
            }
            r
        },
    )
    .await;
    // Nothing was persisted: the record is gone, the store answers.
    assert_eq!(found, None);
    // The restarted server lost everything, its feed included: the feed is
    // not the one this watcher read, so that (and only that) flushes.
    sink.wait(
        Duration::from_secs(5),
        "flush after the feed was lost",
        |r| r.count(&Seen::All) > flushes && r.last_up() == Some(true),
    )
    .await;
    store.insert(&h, &record("key_out", &k, 1)).await.unwrap();
    assert!(store.lookup(&h).await.unwrap().is_some());
    handle.abort();
}

#[tokio::test]
async fn redis_hung_server_times_out_then_recovers() {
    let server = RedisServer::start();
    let store = redis_store(&server).await;
    let (sink, handle) = watch(&store);
    sink.subscribed().await;
    let (k, h) = new_key(Env::Live);
    let r = record("key_hung", &k, 1);
    store.insert(&h, &r).await.unwrap();

    server.pause();
    for _ in 0..2 {
        let started = Instant::now();
        let err = store.lookup(&h).await.unwrap_err();
        assert!(
            is_unavailable(&err) && err.to_string().contains("timed out"),
            "{err}"
        );
        assert!(
            started.elapsed() < TIMEOUT + Duration::from_millis(200),
            "took {:?}",
            started.elapsed()
        );
    }
    sink.wait(Duration::from_secs(3), "store down", |r| {
        r.last_up() == Some(false)
    })
    .await;
    let flushes = sink.count(&Seen::All);

    server.resume();
    let found = until_ok(Duration::from_secs(5), "store did not come back", || {
        store.lookup(&h)
    })
    .await;
    assert_eq!(found, Some(r));
    // The feed resumes where it was: a pause loses nothing, so nothing is
    // flushed (this used to flush on resubscribing).
    sink.wait(Duration::from_secs(5), "feed back after the pause", |r| {
        r.last_feed() == Some(true) && r.last_up() == Some(true)
    })
    .await;
    assert_eq!(sink.count(&Seen::All), flushes, "a pause flushed the cache");
    handle.abort();
}

#[tokio::test]
async fn redis_killed_feed_connection_resumes_without_a_flush() {
    let server = RedisServer::start();
    let store = redis_store(&server).await;
    let (sink, handle) = watch(&store);
    sink.first_flush().await;
    let seen = sink.count(&Seen::Feed(true));
    assert!(
        crate::support::eventually(Duration::from_secs(2), || server.feed_readers() == 1).await,
        "no connection reads the feed"
    );

    assert_eq!(server.kill_feed_readers(), 1);
    sink.wait(Duration::from_secs(2), "feed reconnected", |r| {
        r.count(&Seen::Feed(true)) > seen
    })
    .await;
    // Resumed, not flushed (this used to flush on resubscribing).
    assert_eq!(sink.count(&Seen::All), 1);

    // And the new connection carries changes.
    let (k, h) = new_key(Env::Live);
    store.insert(&h, &record("key_k", &k, 1)).await.unwrap();
    store
        .replace(&KeyRecord {
            revoked_at: Some(Timestamp(9)),
            ..record("key_k", &k, 1)
        })
        .await
        .unwrap();
    sink.wait(Duration::from_secs(1), "invalidate after reconnect", |r| {
        r.count(&Seen::One(h)) >= 1
    })
    .await;
    handle.abort();
}

#[tokio::test]
async fn redis_connect_failure_hides_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://admin:hunter2@127.0.0.1:{port}/0");
    let err = match redis::connect(&url, TIMEOUT).await {
        Err(e) => e,
        Ok(_) => panic!("connected to a closed port"),
    };
    let msg = err.to_string();
    assert!(is_unavailable(&err), "{msg}");
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(!msg.contains("hunter2") && !msg.contains("admin"), "{msg}");

    for url in [
        "redis://admin:hunter2@127.0.0.1:1/x",
        "redis+sentinel://admin:hunter2@h:26379/m",
    ] {
        let msg = match redis::connect(url, TIMEOUT).await {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted {url}"),
        };
        assert!(!msg.contains("hunter2") && !msg.contains("admin"), "{msg}");
    }
}
