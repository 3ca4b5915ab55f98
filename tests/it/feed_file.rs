//! The file store's own change feed: a counter in the file, bumped by every
//! record write (not by usage), beside the watcher's whole-content diff
//! that tells the cache about every record that differs however many file
//! events were missed.

use std::time::Duration;

use http::Method;
use osir_gateway::keys::{Env, UsageDelta};
use osir_gateway::manage::KeyService;
use osir_gateway::store::{file::FileStore, Store};

use crate::support::client::bearer;
use crate::support::expect::outcome;
use crate::support::gateway::{config, TestGateway};
use crate::support::keys::create_key;
use crate::support::upstream::RecordingUpstream;

fn counter(path: &std::path::Path) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["changes"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_writes_count_and_every_change_reaches_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let writer = Store::new(FileStore::open(&path).unwrap());
    let up = RecordingUpstream::start("up").await;
    let gw = TestGateway::builder()
        .toml(&config(&up.url(), None, ""))
        .store(Store::new(FileStore::open(&path).unwrap()))
        .start()
        .await;
    gw.wait_store_watched().await;
    let (key, rec) = create_key(&writer, Env::Live, &["domains:read"], &[]).await;
    assert_eq!(counter(&path), 1);
    let auth = bearer(&key);
    let h = [("authorization", auth.as_str())];
    let ok = crate::support::eventually_async(Duration::from_secs(2), || async {
        outcome(&gw, Method::GET, "/v1/domains", &h).await.1 == "ok"
    })
    .await;
    assert!(ok, "the new key never reached the gateway");

    // Usage is no record change: the counter stays.
    writer
        .add_usage(&[UsageDelta {
            id: rec.id.clone(),
            last_used_at: osir_gateway::keys::Timestamp::now(),
            last_ip: "192.0.2.1".parse().unwrap(),
            daily: [("2026-01-01".to_owned(), 1)].into_iter().collect(),
        }])
        .await
        .unwrap();
    assert_eq!(counter(&path), 1);

    KeyService::new(&writer).revoke(&rec.id).await.unwrap();
    assert_eq!(counter(&path), 2);
    let refused = crate::support::eventually_async(Duration::from_secs(1), || async {
        outcome(&gw, Method::GET, "/v1/domains", &h).await.1 == "revoked_api_key"
    })
    .await;
    assert!(refused, "revoked key still served 1 s after the revoke");
    let flushes: u64 = ["trimmed", "reset", "requested", "unreadable"]
        .iter()
        .map(|r| gw.gw.metrics.cache_flushes.with_label_values(&[r]).get())
        .sum();
    assert_eq!(flushes, 0);
}
