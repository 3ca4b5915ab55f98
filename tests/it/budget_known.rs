//! The unknown-key budget never hits known keys, and counts IPv6 clients
//! per prefix (HOSTILE §6 and §8): a feed trimmed past a gateway flushes its
//! cache once, and the records it then re-reads are not charged to (nor
//! refused by) a budget the client has spent; random keys from one /64
//! share one budget.

use std::time::Duration;

use http::Method;
use osir_gateway::keys::{ApiKey, Env};
use osir_gateway::manage::KeyService;
use osir_gateway::store::Store;

use crate::support::client::bearer;
use crate::support::eventually;
use crate::support::expect::outcome;
use crate::support::gateway::{config, TestGateway};
use crate::support::keys::{create_key, memory_store, redis_store};
use crate::support::redis::RedisServer;
use crate::support::upstream::RecordingUpstream;

const WITHIN: Duration = Duration::from_secs(1);

async fn code_from(gw: &TestGateway, key: &str, xff: Option<&str>) -> String {
    let auth = bearer(key);
    let mut h = vec![("authorization", auth.as_str())];
    if let Some(ip) = xff {
        h.push(("x-forwarded-for", ip));
    }
    outcome(gw, Method::GET, "/v1/domains", &h).await.1
}

fn random_key() -> String {
    ApiKey::generate(Env::Live)
        .unwrap()
        .expose_secret()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trimmed_feed_flushes_once_and_known_keys_skip_the_spent_budget() {
    let redis = RedisServer::start();
    let up = RecordingUpstream::start("up").await;
    redis.cli(&[
        "ACL",
        "SETUSER",
        "writer",
        "on",
        ">writer-pw",
        "~*",
        "+@all",
    ]);
    let url = format!("redis://writer:writer-pw@127.0.0.1:{}/0", redis.port);
    let writer = Store::new(
        osir_gateway::store::redis::connect(&url, Duration::from_secs(1))
            .await
            .unwrap(),
    );
    let extra = "[auth]\nfailed_lookup_budget = 2\nfailed_lookup_window = \"60s\"\n";
    let gw = TestGateway::builder()
        .toml(&config(&up.url(), None, extra))
        .store(redis_store(&redis).await)
        .start()
        .await;
    gw.wait_store_watched().await;
    let (valid, _) = create_key(&writer, Env::Live, &["domains:read"], &[]).await;
    let (doomed, rec) = create_key(&writer, Env::Live, &["domains:read"], &[]).await;
    assert_eq!(code_from(&gw, &valid, None).await, "ok");
    assert_eq!(code_from(&gw, &doomed, None).await, "ok");
    for _ in 0..2 {
        assert_eq!(code_from(&gw, &random_key(), None).await, "invalid_api_key");
    }
    assert_eq!(code_from(&gw, &random_key(), None).await, "rate_limited");

    // The gateway may not read the feed; meanwhile a revoke lands and the
    // feed is trimmed past the gateway's position.
    redis.cli(&["ACL", "SETUSER", "default", "-xread"]);
    let m = gw.gw.metrics.clone();
    assert!(eventually(Duration::from_secs(5), || m.change_feed_up.get() == 0).await);
    KeyService::new(&writer).revoke(&rec.id).await.unwrap();
    redis.cli(&["XTRIM", "osir:changes", "MAXLEN", "0"]);
    let trimmed = m.cache_flushes.with_label_values(&["trimmed"]);
    assert_eq!(trimmed.get(), 0);

    redis.cli(&["ACL", "SETUSER", "default", "+xread"]);
    assert!(
        eventually(WITHIN, || trimmed.get() == 1).await,
        "no flush after the feed was trimmed past the gateway"
    );
    // Both records are re-read: the revoke is seen, and neither key is
    // taken for a guess although the budget is spent.
    assert_eq!(code_from(&gw, &doomed, None).await, "revoked_api_key");
    assert_eq!(code_from(&gw, &valid, None).await, "ok");
    assert_eq!(code_from(&gw, &random_key(), None).await, "rate_limited");
    let total: u64 = ["trimmed", "reset", "requested", "unreadable"]
        .iter()
        .map(|r| m.cache_flushes.with_label_values(&[r]).get())
        .sum();
    assert_eq!(total, 1, "one flush, for the trim");
}

#[tokio::test]
async fn a_flushed_cache_never_turns_valid_keys_into_429s() {
    let up = RecordingUpstream::start("up").await;
    let extra = "[auth]\nfailed_lookup_budget = 1\nfailed_lookup_window = \"60s\"\n";
    let store = memory_store();
    let gw = TestGateway::builder()
        .toml(&config(&up.url(), None, extra))
        .store(store.clone())
        .start()
        .await;
    gw.wait_store_watched().await;
    let mut keys = Vec::new();
    for _ in 0..5 {
        keys.push(
            create_key(&store, Env::Live, &["domains:read"], &[])
                .await
                .0,
        );
    }
    for k in &keys {
        assert_eq!(code_from(&gw, k, None).await, "ok");
    }
    assert_eq!(code_from(&gw, &random_key(), None).await, "invalid_api_key");
    assert_eq!(code_from(&gw, &random_key(), None).await, "rate_limited");
    osir_gateway::store::InvalidationSink::invalidate_all(&*gw.gw.cache);
    for k in &keys {
        assert_eq!(
            code_from(&gw, k, None).await,
            "ok",
            "a known key after a flush"
        );
    }
}

#[tokio::test]
async fn ipv6_clients_share_a_budget_per_64_and_ipv4_per_address() {
    let up = RecordingUpstream::start("up").await;
    let extra = "[auth]\ntrusted_proxies = [\"127.0.0.1\"]\nfailed_lookup_budget = 3\nfailed_lookup_window = \"60s\"\n";
    let gw = TestGateway::builder()
        .toml(&config(&up.url(), None, extra))
        .store(memory_store())
        .start()
        .await;
    gw.wait_store_watched().await;
    // Three random keys, each from another address of one /64.
    for i in 1..=3 {
        let ip = format!("2001:db8:aa:bb:{i:x}:{i:x}:{i:x}:{i:x}");
        assert_eq!(
            code_from(&gw, &random_key(), Some(&ip)).await,
            "invalid_api_key"
        );
    }
    // A fourth address of the same /64 finds the budget spent…
    assert_eq!(
        code_from(&gw, &random_key(), Some("2001:db8:aa:bb:ffff::9")).await,
        "rate_limited"
    );
    // …another /64 does not, and neither does an IPv4 client.
    assert_eq!(
        code_from(&gw, &random_key(), Some("2001:db8:aa:bc::1")).await,
        "invalid_api_key"
    );
    assert_eq!(
        code_from(&gw, &random_key(), Some("192.0.2.1")).await,
        "invalid_api_key"
    );
}

#[test]
fn the_ipv6_prefix_is_configurable_and_bounded() {
    let up = "http://127.0.0.1:9";
    let ok = crate::support::gateway::parse(&config(
        up,
        None,
        "[auth]\nfailed_lookup_ipv6_prefix = 48\n",
    ));
    assert_eq!(ok.auth.failed_lookup_ipv6_prefix, 48);
    let default = crate::support::gateway::parse(&config(up, None, ""));
    assert_eq!(default.auth.failed_lookup_ipv6_prefix, 64);
    for bad in ["0", "129", "-1"] {
        let text = config(
            up,
            None,
            &format!("[auth]\nfailed_lookup_ipv6_prefix = {bad}\n"),
        );
        let err = osir_gateway::config::Config::from_toml(&text, std::path::Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("auth.failed_lookup_ipv6_prefix"),
            "{bad}: {err}"
        );
    }
}
