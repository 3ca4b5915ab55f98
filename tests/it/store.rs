//! The shared stores against the real thing: a redis-server per test, JSON
//! files in temp dirs, several handles standing in for several processes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use osir_gateway::keys::{parse_ip_or_cidr, KeyRecord, KeyUsage, Scope, Timestamp, UsageDelta};
use osir_gateway::keys::{ApiKey, Env, KeyHash};
use osir_gateway::store::file::FileStore;
use osir_gateway::store::{redis, InvalidationSink, Store, StoreError};

use crate::support::redis::RedisServer;

const TIMEOUT: Duration = Duration::from_millis(300);

/// What a store told its sink, in order.
#[derive(Clone, Debug, PartialEq)]
enum Seen {
    One(KeyHash),
    All,
    Up(bool),
    Feed(bool),
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Seen>>);

impl InvalidationSink for Recorder {
    fn invalidate(&self, hash: &KeyHash) {
        self.0.lock().push(Seen::One(*hash));
    }
    fn invalidate_all(&self) {
        self.0.lock().push(Seen::All);
    }
    fn store_up(&self, up: bool) {
        self.0.lock().push(Seen::Up(up));
    }
    fn feed_state(&self, problem: Option<&str>) {
        self.0.lock().push(Seen::Feed(problem.is_none()));
    }
}

impl Recorder {
    fn count(&self, what: &Seen) -> usize {
        self.0.lock().iter().filter(|s| *s == what).count()
    }

    fn last_feed(&self) -> Option<bool> {
        self.0.lock().iter().rev().find_map(|s| match s {
            Seen::Feed(up) => Some(*up),
            _ => None,
        })
    }

    fn last_up(&self) -> Option<bool> {
        self.0.lock().iter().rev().find_map(|s| match s {
            Seen::Up(up) => Some(*up),
            _ => None,
        })
    }

    /// Polls until `cond` holds; panics with everything seen after `within`.
    async fn wait(&self, within: Duration, what: &str, cond: impl Fn(&Recorder) -> bool) {
        let deadline = Instant::now() + within;
        while !cond(self) {
            assert!(
                Instant::now() < deadline,
                "{what}: not seen within {within:?}; saw {:?}",
                self.0.lock()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn new_key(env: Env) -> (ApiKey, KeyHash) {
    let key = ApiKey::generate(env).unwrap();
    let hash = key.hash();
    (key, hash)
}

fn record(id: &str, key: &ApiKey, created_ms: i64) -> KeyRecord {
    KeyRecord {
        id: id.to_owned(),
        name: format!("{id} key"),
        account: None,
        env: key.env(),
        scopes: vec![Scope::parse("domains:read").unwrap()],
        allowed_ips: vec![],
        created_at: Timestamp(created_ms),
        expires_at: None,
        revoked_at: None,
        hint: key.hint(),
    }
}

/// A record using every optional field.
fn full_record(id: &str, key: &ApiKey, created_ms: i64) -> KeyRecord {
    KeyRecord {
        account: Some("acct_42".into()),
        scopes: vec![
            Scope::parse("domains:read").unwrap(),
            Scope::parse("vps:*").unwrap(),
            Scope::parse("*").unwrap(),
        ],
        allowed_ips: vec![
            parse_ip_or_cidr("10.0.0.0/8").unwrap(),
            parse_ip_or_cidr("2001:db8::/32").unwrap(),
            parse_ip_or_cidr("192.0.2.7").unwrap(),
        ],
        expires_at: Some(Timestamp(created_ms + 86_400_000)),
        revoked_at: Some(Timestamp(created_ms + 1_234)),
        ..record(id, key, created_ms)
    }
}

fn delta(id: &str, days: &[(&str, u64)], at: i64, ip: &str) -> UsageDelta {
    UsageDelta {
        id: id.to_owned(),
        daily: days.iter().map(|(d, n)| ((*d).to_owned(), *n)).collect(),
        last_used_at: Timestamp(at),
        last_ip: ip.parse().unwrap(),
    }
}

async fn redis_store(server: &RedisServer) -> Store {
    Store::new(redis::connect(&server.url(), TIMEOUT).await.unwrap())
}

fn is_unavailable(e: &StoreError) -> bool {
    matches!(e, StoreError::Unavailable(_))
}

// ---------------------------------------------------------------- redis

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
        s.wait(Duration::from_secs(2), "subscribed", |r| {
            r.last_up() == Some(true)
        })
        .await;
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
    let sink = Arc::new(Recorder::default());
    let handle = store.watch(sink.clone());
    // The first position is taken with an empty cache: one flush, at start.
    sink.wait(Duration::from_secs(2), "following", |r| {
        r.count(&Seen::All) == 1 && r.last_feed() == Some(true)
    })
    .await;

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
async fn redis_outage_is_unavailable_then_recovers_and_flushes() {
    let mut server = RedisServer::start();
    let store = redis_store(&server).await;
    let sink = Arc::new(Recorder::default());
    let handle = store.watch(sink.clone());
    sink.wait(Duration::from_secs(2), "subscribed", |r| {
        r.last_up() == Some(true)
    })
    .await;
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
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match store.lookup(&h).await {
            // Nothing was persisted: the record is gone, the store answers.
            Ok(found) => {
                assert_eq!(found, None);
                break;
            }
            Err(e) => {
                assert!(is_unavailable(&e), "{e}");
                assert!(Instant::now() < deadline, "store did not come back: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
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
    let sink = Arc::new(Recorder::default());
    let handle = store.watch(sink.clone());
    sink.wait(Duration::from_secs(2), "subscribed", |r| {
        r.last_up() == Some(true)
    })
    .await;
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
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match store.lookup(&h).await {
            Ok(found) => {
                assert_eq!(found, Some(r));
                break;
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "store did not come back: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
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
    let sink = Arc::new(Recorder::default());
    let handle = store.watch(sink.clone());
    sink.wait(Duration::from_secs(2), "following", |r| {
        r.count(&Seen::All) == 1 && r.last_feed() == Some(true)
    })
    .await;
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

// ----------------------------------------------------------------- file

fn file_store(path: &Path) -> Store {
    Store::new(FileStore::open(path).unwrap())
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn file_roundtrip_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let store = file_store(&path);
    assert!(store.list().await.unwrap().is_empty());
    assert!(
        !path.exists(),
        "a missing file is created on the first write only"
    );

    let (k1, h1) = new_key(Env::Live);
    let (k2, h2) = new_key(Env::Test);
    let r1 = full_record("key_one", &k1, 1_700_000_000_123);
    let r2 = record("key_two", &k2, 1_600_000_000_000);
    store.insert(&h1, &r1).await.unwrap();
    store.insert(&h2, &r2).await.unwrap();
    let dup = store
        .insert(&h2, &record("key_three", &k2, 1))
        .await
        .unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)), "{dup}");
    let unknown = store
        .replace(&record("key_ghost", &k1, 1))
        .await
        .unwrap_err();
    assert!(
        matches!(&unknown, StoreError::Conflict(m) if m.contains("key_ghost")),
        "{unknown}"
    );
    let r2b = KeyRecord {
        revoked_at: Some(Timestamp(1_650_000_000_000)),
        ..r2
    };
    store.replace(&r2b).await.unwrap();
    store
        .add_usage(&[delta("key_one", &[("2026-01-01", 2)], 7_000, "192.0.2.1")])
        .await
        .unwrap();

    for s in [&store, &file_store(&path)] {
        assert_eq!(s.lookup(&h1).await.unwrap(), Some(r1.clone()));
        assert_eq!(s.get("key_two").await.unwrap(), Some((h2, r2b.clone())));
        assert_eq!(s.list().await.unwrap(), vec![r2b.clone(), r1.clone()]);
        let u = s.usage("key_one").await.unwrap();
        assert_eq!((u.total, u.last_used_at), (2, Some(Timestamp(7_000))));
    }

    let text = std::fs::read_to_string(&path).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["keys"][1]["hash"], h1.to_hex());
    assert_eq!(doc["keys"][1]["id"], "key_one");
    for k in [&k1, &k2] {
        assert!(
            !text.contains(&k.expose_secret()[10..]),
            "the key's body is in the file"
        );
    }
}

#[test]
fn file_handles_in_several_processes_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (a, b) = (file_store(&path), file_store(&path));
    let mut first = None;
    for i in 0..10 {
        for (name, s) in [("a", &a), ("b", &b)] {
            let (k, h) = new_key(Env::Test);
            let r = record(&format!("key_{name}{i}"), &k, i);
            first.get_or_insert((k.clone(), r.id.clone()));
            rt.block_on(s.insert(&h, &r)).unwrap();
        }
    }
    // b never saw key_a0 in memory; the write still finds it on disk.
    let (k, id) = first.unwrap();
    let err = rt
        .block_on(b.insert(&new_key(Env::Test).1, &record(&id, &k, 0)))
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");

    // Threads with their own handles, writing at the same time.
    std::thread::scope(|scope| {
        for t in 0..4 {
            let path = path.clone();
            scope.spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                let s = file_store(&path);
                for i in 0..10 {
                    let (k, h) = new_key(Env::Live);
                    rt.block_on(s.insert(&h, &record(&format!("key_t{t}_{i}"), &k, 100 + i)))
                        .unwrap();
                    let d = delta("key_shared", &[("2026-01-01", 1)], i, "192.0.2.1");
                    rt.block_on(s.add_usage(&[d])).unwrap();
                }
            });
        }
    });
    let fresh = file_store(&path);
    assert_eq!(rt.block_on(fresh.list()).unwrap().len(), 60);
    assert_eq!(rt.block_on(fresh.usage("key_shared")).unwrap().total, 40);
    assert_eq!(
        dir_names(dir.path()),
        ["keys.json", "keys.json.lock"],
        "no temp file left behind"
    );
}

#[tokio::test]
async fn file_watcher_sees_another_process_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let gateway = file_store(&path);
    let cli = file_store(&path);
    let sink = Arc::new(Recorder::default());
    let handle = gateway.watch(sink.clone());
    assert_eq!(sink.last_up(), Some(true));

    let (k, h) = new_key(Env::Live);
    let r = record("key_w", &k, 1);
    cli.insert(&h, &r).await.unwrap();
    sink.wait(Duration::from_secs(1), "new key announced", |s| {
        s.count(&Seen::One(h)) == 1
    })
    .await;
    assert_eq!(gateway.lookup(&h).await.unwrap(), Some(r.clone()));

    let revoked = KeyRecord {
        revoked_at: Some(Timestamp(2)),
        ..r
    };
    let started = Instant::now();
    cli.replace(&revoked).await.unwrap();
    sink.wait(Duration::from_secs(1), "revocation announced", |s| {
        s.count(&Seen::One(h)) == 2
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(gateway.lookup(&h).await.unwrap(), Some(revoked.clone()));

    // A usage flush changes no record: it is picked up but flushes nothing.
    cli.add_usage(&[delta("key_w", &[("2026-01-01", 3)], 5, "192.0.2.1")])
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(1);
    while gateway.usage("key_w").await.unwrap().total != 3 {
        assert!(Instant::now() < deadline, "usage not reloaded");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(sink.count(&Seen::One(h)), 2);
    assert_eq!(sink.count(&Seen::All), 0);

    // A broken edit is ignored: the last good keys stay in force...
    std::fs::write(&path, b"{ half an edit").unwrap();
    let until = Instant::now() + Duration::from_millis(700);
    while Instant::now() < until {
        assert_eq!(gateway.lookup(&h).await.unwrap(), Some(revoked.clone()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...and writers refuse to build on a file they cannot read.
    let err = cli.replace(&revoked).await.unwrap_err();
    assert!(err.to_string().contains("keys.json"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"{ half an edit");

    // A deleted file is an empty store: its keys stop working.
    std::fs::remove_file(&path).unwrap();
    sink.wait(
        Duration::from_secs(1),
        "deleted file empties the store",
        |s| s.count(&Seen::One(h)) == 3,
    )
    .await;
    // Writes by the gateway's own process reach its sink too.
    let (k2, h2) = new_key(Env::Live);
    gateway
        .insert(&h2, &record("key_self", &k2, 3))
        .await
        .unwrap();
    sink.wait(Duration::from_secs(1), "own write announced", |s| {
        s.count(&Seen::One(h2)) == 1
    })
    .await;
    handle.abort();
}

#[test]
fn file_corrupt_or_unreadable_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    std::fs::write(&path, "{\"version\": 1,\n  \"keys\": [ {] }\n").unwrap();
    let err = FileStore::open(&path).err().expect("corrupt file accepted");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("line 2 column"), "{msg}");

    std::fs::write(&path, r#"{"version": 7, "keys": []}"#).unwrap();
    let msg = FileStore::open(&path)
        .err()
        .expect("future version accepted")
        .to_string();
    assert!(msg.contains("version 7"), "{msg}");

    let (k, h) = new_key(Env::Live);
    let mut entry = serde_json::to_value(record("key_x", &k, 1)).unwrap();
    entry["hash"] = h.to_hex().into();
    entry["revokd_at"] = "2026-01-01T00:00:00Z".into();
    let doc = serde_json::json!({"version": 1, "keys": [entry]});
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    let msg = FileStore::open(&path)
        .err()
        .expect("misspelt field accepted")
        .to_string();
    assert!(
        msg.contains("revokd_at") && msg.contains("keys.json"),
        "{msg}"
    );

    let a_dir = dir.path().join("a-directory");
    std::fs::create_dir(&a_dir).unwrap();
    let msg = FileStore::open(&a_dir)
        .err()
        .expect("directory accepted")
        .to_string();
    assert!(msg.contains("a-directory"), "{msg}");
}

/// Polls until the watcher task has ended.
async fn ended(handle: &tokio::task::JoinHandle<()>, within: Duration) {
    let deadline = Instant::now() + within;
    while !handle.is_finished() {
        assert!(
            Instant::now() < deadline,
            "watcher still running {within:?} after its store was dropped"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn watchers_end_when_their_store_is_dropped() {
    let server = RedisServer::start();
    let store = redis_store(&server).await;
    let sink = Arc::new(Recorder::default());
    let handle = store.watch(sink.clone());
    sink.wait(Duration::from_secs(2), "subscribed", |r| {
        r.last_up() == Some(true)
    })
    .await;
    drop(store);
    ended(&handle, Duration::from_secs(3)).await;

    let dir = tempfile::tempdir().unwrap();
    let store = file_store(&dir.path().join("keys.json"));
    let handle = store.watch(Arc::new(Recorder::default()));
    drop(store);
    ended(&handle, Duration::from_secs(1)).await;
}
