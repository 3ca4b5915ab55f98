//! Flood defence: random well-formed keys with valid checksums cost at most
//! `failed_lookup_budget` store reads per client IP per window; past it the
//! IP gets 429 `rate_limited` with `Retry-After`, while keys already cached
//! keep working and the positive cache keeps its hot keys.

use osir_gateway::keys::{ApiKey, Env};
use osir_gateway::store::{memory::MemoryStore, Store};

use crate::support::expect::{call, Bench};
use crate::support::gateway::TestGateway;
use crate::support::keys::create_key;

#[tokio::test]
async fn random_keys_exhaust_a_budget_and_spare_the_store() {
    let mem = MemoryStore::new();
    let store = Store::new(mem.clone());
    let extra = "[auth]\nfailed_lookup_budget = 5\nfailed_lookup_window = \"60s\"\n";
    let Bench { up, gw, .. } =
        Bench::build(TestGateway::builder().extra(extra).store(store.clone())).await;
    let (hot, _) = create_key(&store, Env::Live, &["domains:read"], &[]).await;
    let (cold, _) = create_key(&store, Env::Live, &["domains:read"], &[]).await;
    assert_eq!(call(&gw, &hot).await.status, 200);
    let reads_before = mem.lookup_count();

    for i in 0..200 {
        let invented = ApiKey::generate(Env::Live).unwrap();
        let r = call(&gw, invented.expose_secret()).await;
        if i < 5 {
            assert_eq!(
                (r.status.as_u16(), r.code().as_str()),
                (401, "invalid_api_key"),
                "request {i}"
            );
        } else {
            assert_eq!(
                (r.status.as_u16(), r.code().as_str()),
                (429, "rate_limited"),
                "request {i}"
            );
            let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
            assert!((1..=60).contains(&retry));
        }
    }
    assert_eq!(
        mem.lookup_count() - reads_before,
        5,
        "the flood reached the store"
    );
    // The hot key is still cached and served; an uncached key from the
    // flooding IP waits for its window like any other lookup.
    assert_eq!(call(&gw, &hot).await.status, 200);
    assert_eq!(call(&gw, &cold).await.status, 429);
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn a_cached_key_past_its_ttl_is_refreshed_despite_a_spent_budget() {
    let mem = MemoryStore::new();
    let store = Store::new(mem.clone());
    let extra = "[cache]\nttl = \"100ms\"\n[auth]\nfailed_lookup_budget = 2\nfailed_lookup_window = \"60s\"\n";
    let Bench { up: _up, gw, .. } =
        Bench::build(TestGateway::builder().extra(extra).store(store.clone())).await;
    let (hot, _) = create_key(&store, Env::Live, &["domains:read"], &[]).await;
    assert_eq!(call(&gw, &hot).await.status, 200);
    let cached_at = std::time::Instant::now();
    for _ in 0..3 {
        let invented = ApiKey::generate(Env::Live).unwrap();
        call(&gw, invented.expose_secret()).await;
    }
    let invented = ApiKey::generate(Env::Live).unwrap();
    let r = call(&gw, invented.expose_secret()).await;
    assert_eq!(r.status, 429, "the budget should be spent");
    // Past ttl the hot key needs a refresh from the store; it is a known
    // key, so the spent budget must not refuse it.
    while cached_at.elapsed() < std::time::Duration::from_millis(200) {
        tokio::task::yield_now().await;
    }
    let reads = mem.lookup_count();
    let r = call(&gw, &hot).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        mem.lookup_count(),
        reads + 1,
        "the record was refreshed from the store"
    );
}
