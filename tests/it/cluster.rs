//! Redis Cluster: three masters on loopback. Keys made through the store
//! and through the real binary (a `redis+cluster://` config) are found by a
//! gateway on a cluster store; a revoke through another handle reaches it
//! within 1 s (XADD to `{osir}:changes` in a script on the slot's master,
//! read there by the gateway's feed reader); list, show and usage work.

use std::net::TcpListener;
use std::time::Duration;

use osir_gateway::keys::Env;
use osir_gateway::manage::KeyService;
use osir_gateway::store::Store;

use crate::support::expect::Bench;
use crate::support::expect::{call, until_status};
use crate::support::keys::{cli_create, create_key, CliConfig};
use crate::support::redis::RedisCluster;

const TIMEOUT: Duration = Duration::from_millis(500);

async fn cluster_store(url: &str) -> Store {
    Store::new(
        osir_gateway::store::redis::connect(url, TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the cluster: {e}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_store_serves_writes_revocations_and_usage() {
    let cluster = tokio::task::block_in_place(RedisCluster::start);
    let url = cluster.url();

    // The writer's handle; keys land under the one hash tag.
    let writer = cluster_store(&url).await;
    let (hot, hot_rec) = create_key(&writer, Env::Live, &["domains:read"], &[]).await;
    let (doomed, doomed_rec) = create_key(&writer, Env::Live, &["domains:read"], &[]).await;
    let raw = tokio::task::block_in_place(|| {
        (
            cluster.cli(&["SISMEMBER", "{osir}:ids", &hot_rec.id]),
            cluster.cli(&["EXISTS", &format!("{{osir}}:id:{}", hot_rec.id)]),
            cluster.cli(&["EXISTS", "osir:ids"]),
        )
    });
    assert_eq!(
        (raw.0.trim(), raw.1.trim(), raw.2.trim()),
        ("1", "1", "0"),
        "cluster keys are not under the {{osir}} hash tag"
    );

    // The gateway's handle lists a dead seed node first: the cluster client
    // and the watcher both move on to the next one.
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let gw_url = url.replacen(
        "redis+cluster://",
        &format!("redis+cluster://127.0.0.1:{dead_port},"),
        1,
    );
    let gw_store = cluster_store(&gw_url).await;
    let Bench { up: _up, gw, .. } = Bench::start(gw_store, "").await;
    let r = call(&gw, &hot).await;
    assert_eq!(r.status, 200, "a key made through the store: {}", r.text());

    // `keys create` through the real binary with a redis+cluster:// config.
    let cli = CliConfig::redis_store(&url);
    let (from_cli, cli_id) =
        tokio::task::block_in_place(|| cli_create(&cli, "live", &["domains:read"]));
    let r = until_status(&gw, &from_cli, 200, Duration::from_secs(5)).await;
    assert_eq!(r.status, 200, "a key made by `keys create`: {}", r.text());

    // A revoke through another handle reaches the gateway's cache in 1 s.
    assert_eq!(call(&gw, &doomed).await.status, 200);
    let other = cluster_store(&url).await;
    KeyService::new(&other)
        .revoke(&doomed_rec.id)
        .await
        .unwrap();
    let r = until_status(&gw, &doomed, 401, Duration::from_secs(1)).await;
    assert_eq!(
        (r.status.as_u16(), r.code().as_str()),
        (401, "revoked_api_key"),
        "a revoke through another cluster handle did not reach the gateway within 1 s"
    );

    // list and show, through the store and through the binary.
    let listed: Vec<String> = KeyService::new(&other)
        .list()
        .await
        .unwrap()
        .records
        .into_iter()
        .map(|r| r.id)
        .collect();
    for id in [&hot_rec.id, &doomed_rec.id, &cli_id] {
        assert!(listed.contains(id), "{id} missing from {listed:?}");
    }
    let (shown, _) = KeyService::new(&other).show(&doomed_rec.id).await.unwrap();
    assert!(shown.revoked_at.is_some());
    let (list, show) = tokio::task::block_in_place(|| {
        (
            cli.run(&["keys", "list", "--json"]).ok().json(),
            cli.run(&["keys", "show", &cli_id, "--json"]).ok().json(),
        )
    });
    assert_eq!(list.as_array().map(Vec::len), Some(3), "{list}");
    assert_eq!(show["id"].as_str(), Some(cli_id.as_str()), "{show}");

    // Usage: the gateway's flush lands in the cluster and reads back.
    for _ in 0..3 {
        assert_eq!(call(&gw, &hot).await.status, 200);
    }
    gw.gw.flush_usage().await;
    let (_, usage) = KeyService::new(&other).show(&hot_rec.id).await.unwrap();
    assert_eq!(usage.total, 4, "{usage:?}");
    assert!(usage.last_ip.is_some());
    let show = tokio::task::block_in_place(|| {
        cli.run(&["keys", "show", &hot_rec.id, "--json"])
            .ok()
            .json()
    });
    assert_eq!(show["usage"]["total"].as_u64(), Some(4), "{show}");
}
