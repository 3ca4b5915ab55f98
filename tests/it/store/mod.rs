//! The shared stores against the real thing: a redis-server per test, JSON
//! files in temp dirs, several handles standing in for several processes.

use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use osir_gateway::keys::{parse_ip_or_cidr, KeyRecord, Scope, Timestamp, UsageDelta};
use osir_gateway::keys::{ApiKey, Env, KeyHash};
use osir_gateway::store::file::FileStore;
use osir_gateway::store::{InvalidationSink, Store, StoreError};

use crate::support::eventually;
use crate::support::redis::RedisServer;

mod file;
mod redis;
mod redis_outages;
mod redis_pipe;

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

    /// Waits until the store is up: the watcher has subscribed.
    async fn subscribed(&self) {
        self.wait(Duration::from_secs(2), "subscribed", |r| {
            r.last_up() == Some(true)
        })
        .await;
    }

    /// Waits until the watcher follows the feed after its first flush (the
    /// first position is taken with an empty cache: one flush, at start),
    /// and nothing but that flush seen yet.
    async fn first_flush(&self) {
        self.wait(Duration::from_secs(2), "following", |r| {
            r.count(&Seen::All) == 1 && r.last_feed() == Some(true)
        })
        .await;
    }

    /// Polls until `cond` holds; panics with everything seen after `within`.
    async fn wait(&self, within: Duration, what: &str, cond: impl Fn(&Recorder) -> bool) {
        let seen = eventually(within, || cond(self)).await;
        assert!(
            seen,
            "{what}: not seen within {within:?}; saw {:?}",
            self.0.lock()
        );
    }
}

/// A watch on `store` with a new recorder as its sink.
fn watch(store: &Store) -> (Arc<Recorder>, tokio::task::JoinHandle<()>) {
    let sink = Arc::new(Recorder::default());
    let handle = store.watch(sink.clone());
    (sink, handle)
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
        replaces: None,
        replaced_by: None,
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
    Store::new(
        osir_gateway::store::redis::connect(&server.url(), TIMEOUT)
            .await
            .unwrap(),
    )
}

fn is_unavailable(e: &StoreError) -> bool {
    matches!(e, StoreError::Unavailable(_))
}

fn file_store(path: &Path) -> Store {
    Store::new(FileStore::open(path).unwrap())
}

/// Polls until the watcher task has ended.
async fn ended(handle: &tokio::task::JoinHandle<()>, within: Duration) {
    let ended = eventually(within, || handle.is_finished()).await;
    assert!(
        ended,
        "watcher still running {within:?} after its store was dropped"
    );
}

#[tokio::test]
async fn watchers_end_when_their_store_is_dropped() {
    let server = RedisServer::start();
    let store = redis_store(&server).await;
    let (sink, handle) = watch(&store);
    sink.subscribed().await;
    drop(store);
    ended(&handle, Duration::from_secs(3)).await;

    let dir = tempfile::tempdir().unwrap();
    let store = file_store(&dir.path().join("keys.json"));
    let handle = store.watch(Arc::new(Recorder::default()));
    drop(store);
    ended(&handle, Duration::from_secs(1)).await;
}
