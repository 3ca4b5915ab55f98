//! Redis killed under concurrent load and brought back: zero wrong answers
//! throughout (no 2xx for an unknown, revoked or expired key; no refusal of
//! a known good key while it is cached), and recovery by itself within a few
//! seconds of the store returning.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use http::Method;
use osir_gateway::keys::{ApiKey, Env};
use osir_gateway::manage::KeyService;
use osir_gateway::store::Store;

use crate::support::client::{bearer, client, send_with};
use crate::support::eventually_async;
use crate::support::expect::Bench;
use crate::support::keys::{create, new_key};
use crate::support::redis::RedisServer;

// A budget high enough that the repeated unknown key never turns into 429s
// for the other keys of this single client IP (the budget has its own test).
const EXTRA: &str =
    "[cache]\nttl = \"200ms\"\nstale_if_error = \"1m\"\n[auth]\nfailed_lookup_budget = 1000000\n";

/// What each kind of key may ever be answered.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Cached before the outage: always 200.
    Good,
    /// Revoked before the outage: always 401 revoked_api_key.
    Revoked,
    /// Expired: always 401 expired_api_key.
    Expired,
    /// Never issued: 401 invalid_api_key, or 503 while the store is down.
    Unknown,
}

fn acceptable(kind: Kind, status: u16, code: &str) -> bool {
    match kind {
        Kind::Good => status == 200,
        Kind::Revoked => status == 401 && code == "revoked_api_key",
        Kind::Expired => status == 401 && code == "expired_api_key",
        Kind::Unknown => {
            (status == 401 && code == "invalid_api_key")
                || (status == 503 && code == "key_store_unavailable")
        }
    }
}

async fn connect(redis: &RedisServer) -> Store {
    Store::new(
        osir_gateway::store::redis::connect(&redis.url(), Duration::from_millis(250))
            .await
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_gives_no_wrong_answer_and_recovers() {
    let mut redis = RedisServer::start();
    let store = connect(&redis).await;
    // The watcher flushes the cache once it has subscribed; let that
    // happen before caching what the outage must be survived with.
    let Bench { up, gw, .. } = Bench::start(store.clone(), EXTRA).await;
    let svc = KeyService::new(&store);
    let (good, _) = create(&store, new_key(Env::Live, &["domains:read"], &[])).await;
    let (revoked, rrec) = create(&store, new_key(Env::Live, &["domains:read"], &[])).await;
    let mut soon = new_key(Env::Live, &["domains:read"], &[]);
    soon.expires_in = Some(Duration::from_millis(1));
    let (expired, _) = create(&store, soon).await;
    let (late, late_rec) = create(&store, new_key(Env::Live, &["domains:read"], &[])).await;
    svc.revoke(&rrec.id).await.unwrap();
    // The data survives the restart (an RDB snapshot, as a restarted
    // primary with persistence would have); the gateway's cache does not.
    assert!(redis.cli(&["SAVE"]).contains("OK"));
    let _ = &late_rec;
    let c = client();
    for k in [&good, &revoked, &expired] {
        send_with(
            &c,
            Method::GET,
            &gw.url("/v1/domains/x"),
            &[("authorization", &bearer(k))],
            Default::default(),
        )
        .await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let wrong: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut load = Vec::new();
    for worker in 0..4 {
        let (stop, wrong, url) = (stop.clone(), wrong.clone(), gw.url("/v1/domains/x"));
        let keys = [
            (Kind::Good, good.clone()),
            (Kind::Revoked, revoked.clone()),
            (Kind::Expired, expired.clone()),
            (
                Kind::Unknown,
                ApiKey::generate(Env::Live)
                    .unwrap()
                    .expose_secret()
                    .to_owned(),
            ),
        ];
        load.push(tokio::spawn(async move {
            let c = client();
            let mut i = worker;
            while !stop.load(Ordering::Relaxed) {
                let (kind, key) = &keys[i % keys.len()];
                i += 1;
                let r = send_with(
                    &c,
                    Method::GET,
                    &url,
                    &[("authorization", &bearer(key))],
                    Default::default(),
                )
                .await;
                let code = if r.status == 200 {
                    String::new()
                } else {
                    r.code()
                };
                if !acceptable(*kind, r.status.as_u16(), &code) {
                    wrong.lock().push(format!("{kind:?}: {} {code}", r.status));
                }
            }
        }));
    }
    let ok_before = up.count();
    redis.stop();
    // An outage long enough to outlive the ttl several times.
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_millis(1500) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    redis.restart();
    let back = Instant::now();
    // Recovery: a key never cached works again, by itself.
    let recovered = eventually_async(Duration::from_secs(10), || async {
        let r = send_with(
            &c,
            Method::GET,
            &gw.url("/v1/domains/x"),
            &[("authorization", &bearer(&late))],
            Default::default(),
        )
        .await;
        if r.status == 200 {
            return true;
        }
        assert!(
            r.status == 503 || r.status == 401,
            "late key answered {}",
            r.status
        );
        false
    })
    .await
    .then(|| back.elapsed());
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    let recovered = recovered.expect("the gateway did not recover within 10 s of Redis returning");
    println!("recovered {recovered:?} after Redis came back");
    let wrong = wrong.lock();
    assert!(
        wrong.is_empty(),
        "{} wrong answers, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert!(
        up.count() > ok_before,
        "the good key kept being served during the outage"
    );
}
