//! Revocation, updates and expiry against real stores (contract §8,
//! HOSTILE §6 and §8): a revoke or update through a shared Redis reaches
//! every gateway within 1 s even where the key is cached; concurrent first
//! uses cost one store read; unknown keys are remembered and bad-checksum
//! keys never reach the store; expiry is exact even for cached records; and
//! the file backend carries keys made and revoked by the real binary.

use std::time::Duration;

use http::Method;
use osir_gateway::keys::Timestamp;
use osir_gateway::keys::{ApiKey, Env};
use osir_gateway::manage::{parse_scopes, Changes, KeyService};
use osir_gateway::store::{file::FileStore, Store};

use crate::support::client::{bearer, send};
use crate::support::expect::Bench;
use crate::support::expect::{allowed, outcome, refused};
use crate::support::gateway::TestGateway;
use crate::support::keys::{
    bad_checksum, cli_create, create, create_key, new_key, redis_store, CliConfig,
};
use crate::support::redis::RedisServer;
use crate::support::upstream::RecordingUpstream;
use crate::support::{eventually, eventually_async};

const GET: Method = Method::GET;
const WITHIN: Duration = Duration::from_secs(1);

/// Two gateways, each with its own connection to one redis-server, both
/// holding the key in their caches; returns them with the writer's store.
async fn two_cached_gateways(
    redis: &RedisServer,
    up: &RecordingUpstream,
    key: &str,
) -> [TestGateway; 2] {
    let gateway = || async {
        TestGateway::builder()
            .upstream(up)
            .store(redis_store(redis).await)
            .watched()
            .start()
            .await
    };
    let gws = [gateway().await, gateway().await];
    let auth = bearer(key);
    for gw in &gws {
        allowed(gw, up, GET, "/v1/domains", &[("authorization", &auth)]).await;
    }
    // Cached: more requests cost no store read.
    let reads = redis.command_count("hgetall");
    for gw in &gws {
        allowed(gw, up, GET, "/v1/domains", &[("authorization", &auth)]).await;
    }
    assert_eq!(
        redis.command_count("hgetall"),
        reads,
        "the key was not cached"
    );
    gws
}

/// Polls until every gateway answers `code` for the key, within 1 s.
async fn all_answer(gws: &[TestGateway], key: &str, code: &str) -> bool {
    let auth = bearer(key);
    let h = [("authorization", auth.as_str())];
    eventually_async(WITHIN, || async {
        for gw in gws {
            if outcome(gw, GET, "/v1/domains", &h).await.1 != code {
                return false;
            }
        }
        true
    })
    .await
}

#[tokio::test]
async fn revoke_reaches_every_gateway_within_a_second() {
    let redis = RedisServer::start();
    let up = RecordingUpstream::start("up").await;
    let writer = redis_store(&redis).await;
    let (key, rec) = create_key(&writer, Env::Live, &["domains:read"], &[]).await;
    let gws = two_cached_gateways(&redis, &up, &key).await;
    KeyService::new(&writer).revoke(&rec.id).await.unwrap();
    assert!(
        all_answer(&gws, &key, "revoked_api_key").await,
        "revocation not seen everywhere within 1 s"
    );
    for gw in &gws {
        refused(
            gw,
            &[&up],
            GET,
            "/v1/domains",
            &[("authorization", &bearer(&key))],
            401,
            "revoked_api_key",
        )
        .await;
    }
}

#[tokio::test]
async fn update_reaches_every_gateway_within_a_second() {
    let redis = RedisServer::start();
    let up = RecordingUpstream::start("up").await;
    let writer = redis_store(&redis).await;
    let (key, rec) = create_key(&writer, Env::Live, &["domains:read", "vps:read"], &[]).await;
    let gws = two_cached_gateways(&redis, &up, &key).await;
    let scopes = Some(parse_scopes(&["vps:read".into()]).unwrap());
    KeyService::new(&writer)
        .update(
            &rec.id,
            Changes {
                scopes,
                ..Changes::default()
            },
        )
        .await
        .unwrap();
    assert!(
        all_answer(&gws, &key, "insufficient_scope").await,
        "update not seen everywhere within 1 s"
    );
    for gw in &gws {
        allowed(gw, &up, GET, "/v1/vps", &[("authorization", &bearer(&key))]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_uses_cost_one_store_read() {
    let redis = RedisServer::start();
    let writer = redis_store(&redis).await;
    let (key, _) = create_key(&writer, Env::Live, &["domains:read"], &[]).await;
    // A long store timeout: the lookup waits out the pause below.
    let store = osir_gateway::store::redis::connect(&redis.url(), Duration::from_secs(20))
        .await
        .unwrap();
    let Bench { up, gw, .. } = Bench::start(Store::new(store), "").await;
    let before = redis.command_count("hgetall");
    let misses = || {
        gw.gw
            .metrics
            .cache_lookups
            .with_label_values(&["miss"])
            .get()
    };
    assert_eq!(misses(), 0);

    // Hold Redis still so every request is waiting on the first lookup.
    redis.pause();
    let auth = bearer(&key);
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let (url, auth) = (gw.url("/v1/domains"), auth.clone());
            tokio::spawn(async move {
                send(GET, &url, &[("authorization", &auth)], "")
                    .await
                    .status
            })
        })
        .collect();
    let all_waiting = eventually(Duration::from_secs(10), || misses() == 40).await;
    redis.resume();
    assert!(
        all_waiting,
        "only {} of 40 requests reached the cache",
        misses()
    );
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(
        redis.command_count("hgetall") - before,
        1,
        "40 first uses, store reads:"
    );
    assert_eq!(up.count(), 40);
}

#[tokio::test]
async fn unknown_and_invented_keys_spare_the_store() {
    let redis = RedisServer::start();
    let Bench { up, gw, .. } = Bench::start(redis_store(&redis).await, "").await;
    let unknown = bearer(ApiKey::generate(Env::Live).unwrap().expose_secret());
    let before = redis.command_count("hgetall");
    for _ in 0..20 {
        refused(
            &gw,
            &[&up],
            GET,
            "/v1/domains",
            &[("authorization", &unknown)],
            401,
            "invalid_api_key",
        )
        .await;
    }
    let reads = redis.command_count("hgetall") - before;
    assert!(
        reads <= 1,
        "20 uses of one unknown key cost {reads} store reads"
    );

    let before = redis.command_count("hgetall");
    for i in 0..50 {
        let key = ApiKey::generate(if i % 2 == 0 { Env::Live } else { Env::Test }).unwrap();
        let auth = bearer(&bad_checksum(key.expose_secret()));
        refused(
            &gw,
            &[&up],
            GET,
            "/v1/domains",
            &[("authorization", &auth)],
            401,
            "invalid_api_key",
        )
        .await;
    }
    assert_eq!(
        redis.command_count("hgetall"),
        before,
        "bad-checksum keys reached the store"
    );
}

#[tokio::test]
async fn expiry_is_exact_even_while_cached() {
    let redis = RedisServer::start();
    let store = redis_store(&redis).await;
    let Bench { up, gw, .. } = Bench::start(store.clone(), "").await;
    let mut new = new_key(Env::Live, &["domains:read"], &[]);
    new.expires_in = Some(Duration::from_millis(1500));
    let (key, rec) = create(&store, new).await;
    let expires_at = rec.expires_at.unwrap();
    let auth = bearer(&key);
    let h = [("authorization", auth.as_str())];
    allowed(&gw, &up, GET, "/v1/domains", &h).await;
    let reads = redis.command_count("hgetall");

    let (gw, h) = (&gw, &h);
    let expired = eventually_async(Duration::from_secs(5), move || async move {
        let sent = Timestamp::now();
        let (status, code) = outcome(gw, GET, "/v1/domains", h).await;
        let answered = Timestamp::now();
        if code == "ok" {
            assert!(sent < expires_at, "the key worked after it expired");
            return false;
        }
        assert_eq!((status, code.as_str()), (401, "expired_api_key"));
        assert!(answered >= expires_at, "the key expired early");
        true
    })
    .await;
    assert!(expired, "the key never expired");
    assert_eq!(
        redis.command_count("hgetall"),
        reads,
        "expiry needed a store read: not decided from the cache"
    );
}

#[tokio::test]
async fn file_store_with_keys_from_the_binary() {
    let cfg = CliConfig::file_store();
    let (key, id) = cli_create(&cfg, "live", &["domains:read"]);
    let store = Store::new(FileStore::open(&cfg.keys_file()).unwrap());
    let Bench { up, gw, .. } = Bench::start(store, "").await;
    let seen = allowed(
        &gw,
        &up,
        GET,
        "/v1/domains",
        &[("authorization", &bearer(&key))],
    )
    .await;
    assert_eq!(seen.header("x-osir-key-id"), Some(id.as_str()));
    // `keys show` reports that use once the gateway has flushed it.
    gw.gw.flush_usage().await;
    let shown = cfg.run(&["keys", "show", &id, "--json"]).ok().json();
    let usage = &shown["usage"];
    assert_eq!(usage["total"], 1, "{shown}");
    assert_eq!(usage["last_ip"], "127.0.0.1", "{shown}");
    assert!(usage["last_used_at"].is_string(), "{shown}");

    // A key made while the gateway runs is picked up from the file.
    let (later, _) = cli_create(&cfg, "test", &["domains:read"]);
    let later_h = [("authorization", bearer(&later))];
    let h: Vec<(&str, &str)> = later_h.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let ok = eventually_async(WITHIN, || async {
        outcome(&gw, GET, "/v1/domains", &h).await.1 == "ok"
    })
    .await;
    assert!(ok, "a key added to the file was not accepted within 1 s");

    cfg.run(&["keys", "revoke", &id]).ok();
    assert!(
        all_answer(std::slice::from_ref(&gw), &key, "revoked_api_key").await,
        "file revoke not applied within 1 s"
    );
    refused(
        &gw,
        &[&up],
        GET,
        "/v1/domains",
        &[("authorization", &bearer(&key))],
        401,
        "revoked_api_key",
    )
    .await;
}
