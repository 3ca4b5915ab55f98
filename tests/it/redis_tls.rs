//! `rediss://` for real: redis-server (and sentinels) serving TLS only,
//! with a CA made in the test (`[store] tls_ca`). Lookups, key writes
//! through the store and the change feed all run over TLS; a revoke
//! reaches a running gateway, also after a Sentinel failover over TLS.
//! The revocation delays are printed (p50/p99/max) for the notes:
//! `cargo test --test it redis_tls -- --nocapture`.

use std::time::{Duration, Instant};

use osir_gateway::keys::Env;
use osir_gateway::manage::KeyService;
use osir_gateway::store::redis::{connect_with, RedisOptions};
use osir_gateway::store::Store;

use crate::support::expect::{call, until_status, Bench};
use crate::support::keys::{cli_create, create_key, new_key, CliConfig};
use crate::support::redis::{RedisCluster, RedisServer, Sentinels, TlsFiles};
use crate::support::{eventually_async, until_ok};

const EXTRA: &str = "[cache]\nttl = \"60s\"\n";
/// Revokes measured per figure.
const ROUNDS: usize = 20;

/// The test CA, and a timeout that leaves a Sentinel look-up over TLS
/// (three sentinels, then the master) room on a loaded machine.
fn options(tls: &TlsFiles) -> RedisOptions {
    RedisOptions {
        tls_ca: Some(tls.ca.clone()),
        ..RedisOptions::new(Duration::from_secs(1))
    }
}

async fn tls_store(url: &str, tls: &TlsFiles) -> Store {
    Store::new(
        connect_with(url, &options(tls))
            .await
            .unwrap_or_else(|e| panic!("cannot connect over TLS: {e}")),
    )
}

/// p50, p99 and max of `delays`, as one line.
pub fn figures(delays: &mut [Duration]) -> String {
    delays.sort();
    let at = |q: f64| delays[((delays.len() as f64 - 1.0) * q).round() as usize];
    format!(
        "n={} p50={:?} p99={:?} max={:?}",
        delays.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    )
}

/// Creates `ROUNDS` keys, lets the gateway cache each, revokes them one by
/// one and measures how long until the gateway refuses each (from the
/// start of the revoke call).
async fn revocation_delays(bench: &Bench, store: &Store) -> Vec<Duration> {
    let mut delays = Vec::new();
    for _ in 0..ROUNDS {
        let (key, rec) = create_key(store, Env::Live, &["domains:read"], &[]).await;
        assert_eq!(
            until_status(&bench.gw, &key, 200, Duration::from_secs(5))
                .await
                .status,
            200
        );
        let start = Instant::now();
        KeyService::new(store).revoke(&rec.id).await.unwrap();
        let r = until_status(&bench.gw, &key, 401, Duration::from_secs(2)).await;
        assert_eq!(
            (r.status.as_u16(), r.code().as_str()),
            (401, "revoked_api_key"),
            "a revoke over TLS did not reach the gateway"
        );
        delays.push(start.elapsed());
    }
    delays
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tls_store_serves_lookups_writes_and_the_change_feed() {
    let tls = TlsFiles::new();
    let redis = RedisServer::start_tls(&tls, &[]);
    let store = tls_store(&redis.url(), &tls).await;
    let bench = Bench::start(store.clone(), EXTRA).await;

    // Lookup and create through the store.
    let (key, _) = create_key(&store, Env::Live, &["domains:read"], &[]).await;
    assert_eq!(call(&bench.gw, &key).await.status, 200);
    // The feed connection is a TLS one too: the server sees it reading.
    let reading = eventually_async(Duration::from_secs(5), || async {
        tokio::task::block_in_place(|| redis.feed_readers()) >= 1
    })
    .await;
    assert!(reading, "no feed reader on the TLS server");

    let mut delays = revocation_delays(&bench, &store).await;
    println!(
        "revocation delay over TLS (revoke call to first 401): {}",
        figures(&mut delays)
    );
    assert!(delays.iter().all(|d| *d < Duration::from_secs(1)));

    // The `keys` commands over TLS, with the CA from the config.
    let cli = CliConfig::new(&crate::support::keys::cli_config(
        &format!(
            "backend = \"redis\"\nurl = \"{}\"\ntls_ca = {:?}",
            redis.url(),
            tls.ca.display().to_string()
        ),
        "",
    ));
    let (from_cli, _) = tokio::task::block_in_place(|| cli_create(&cli, "live", &["domains:read"]));
    assert_eq!(
        until_status(&bench.gw, &from_cli, 200, Duration::from_secs(5))
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_server_is_checked_against_the_configured_ca() {
    let tls = TlsFiles::new();
    let redis = RedisServer::start_tls(&tls, &[]);
    // Without tls_ca the public roots compiled in are used: they do not
    // know the test CA, so the certificate is refused, and the message
    // says so.
    let err = match connect_with(&redis.url(), &RedisOptions::new(Duration::from_secs(1))).await {
        Ok(_) => panic!("a certificate from an unknown CA was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("cannot connect to redis rediss://127.0.0.1")
            && err.to_ascii_lowercase().contains("certificate"),
        "{err}"
    );
    // Another CA's certificate is refused as well.
    let other = TlsFiles::new();
    assert!(connect_with(&redis.url(), &options(&other)).await.is_err());
    // Plain redis:// to a TLS port fails (no answer it can read).
    let plain = redis.url().replacen("rediss://", "redis://", 1);
    assert!(
        connect_with(&plain, &RedisOptions::new(Duration::from_millis(500)))
            .await
            .is_err()
    );
    // A CA file that is not PEM is named at start.
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), "not a certificate").unwrap();
    let opts = RedisOptions {
        tls_ca: Some(bad.path().to_path_buf()),
        ..RedisOptions::new(Duration::from_secs(1))
    };
    let err = match connect_with(&redis.url(), &opts).await {
        Ok(_) => panic!("a CA file without a certificate was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("store.tls_ca") && err.contains("no certificate"),
        "{err}"
    );
    // The right CA works.
    let store = tls_store(&redis.url(), &tls).await;
    let (_, rec) = create_key(&store, Env::Live, &["domains:read"], &[]).await;
    assert!(KeyService::new(&store).revoke(&rec.id).await.is_ok());
}

/// Sentinels, primary and replica all speak TLS only; the store reaches
/// the sentinels and the master over TLS (`rediss+sentinel://`). After
/// the primary is killed and the replica promoted, revokes still reach the
/// gateway; the delays are printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tls_sentinel_failover_keeps_revokes_reaching_the_gateway() {
    let tls = TlsFiles::new();
    let mut primary = RedisServer::start_tls(&tls, &[]);
    let replica = RedisServer::start_tls_replica_of(&tls, primary.port);
    replica.wait_in_sync();
    let sentinels = Sentinels::start_tls(primary.port, &tls);
    assert_eq!(sentinels.master_port(), Some(primary.port));
    let store = tls_store(&sentinels.url(), &tls).await;
    let bench = Bench::start(store.clone(), EXTRA).await;

    let mut before = revocation_delays(&bench, &store).await;
    println!(
        "revocation delay over TLS via Sentinel, before failover: {}",
        figures(&mut before)
    );
    // Keys the gateway has cached, revoked once the replica is promoted.
    let mut doomed = Vec::new();
    for _ in 0..ROUNDS {
        let (key, rec) = create_key(&store, Env::Live, &["domains:read"], &[]).await;
        assert_eq!(call(&bench.gw, &key).await.status, 200);
        doomed.push((key, rec));
    }
    assert_eq!(primary.cli(&["WAIT", "1", "5000"]).trim(), "1");

    let killed = Instant::now();
    primary.stop();
    let old = primary.port;
    let promoted = eventually_async(Duration::from_secs(15), || async {
        tokio::task::block_in_place(|| sentinels.master_port()) != Some(old)
    })
    .await;
    assert!(promoted, "the sentinels did not promote the replica");
    let promoted_after = killed.elapsed();

    // The first revoke after the promotion: from the first try (the
    // store finds the new master by itself) until the gateway refuses it.
    let (first_key, first_rec) = doomed.remove(0);
    let start = Instant::now();
    until_ok(
        Duration::from_secs(10),
        "revokes did not reach the new master",
        || async { KeyService::new(&store).revoke(&first_rec.id).await },
    )
    .await;
    let written = start.elapsed();
    let r = until_status(&bench.gw, &first_key, 401, Duration::from_secs(10)).await;
    assert_eq!(r.status.as_u16(), 401, "{}", r.text());
    let first = start.elapsed();

    let mut after = Vec::new();
    for (key, rec) in doomed {
        let start = Instant::now();
        KeyService::new(&store).revoke(&rec.id).await.unwrap();
        let r = until_status(&bench.gw, &key, 401, Duration::from_secs(2)).await;
        assert_eq!(
            (r.status.as_u16(), r.code().as_str()),
            (401, "revoked_api_key"),
            "a revoke after failover did not reach the gateway"
        );
        after.push(start.elapsed());
    }
    println!(
        "Sentinel failover over TLS: promoted {promoted_after:?} after the kill; first revoke after promotion written after {written:?} (the store finding the new master), refused by the gateway after {first:?}; then {}",
        figures(&mut after)
    );
    assert!(after.iter().all(|d| *d < Duration::from_secs(1)));
    // Writes land on the new master.
    let fresh = KeyService::new(&store)
        .create(new_key(Env::Live, &["domains:read"], &[]))
        .await
        .unwrap();
    let fresh = fresh.key.expose_secret().to_owned();
    assert_eq!(
        until_status(&bench.gw, &fresh, 200, Duration::from_secs(5))
            .await
            .status,
        200
    );
}

/// A three-master Cluster speaking TLS only (`rediss+cluster://`): keys
/// written through the store are found, and a revoke reaches the gateway
/// through the feed read on the slot's master.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tls_cluster_store_serves_lookups_writes_and_revokes() {
    let tls = TlsFiles::new();
    let cluster = tokio::task::block_in_place(|| RedisCluster::start_tls(&tls));
    let store = tls_store(&cluster.url(), &tls).await;
    let bench = Bench::start(store.clone(), EXTRA).await;
    let (key, _) = create_key(&store, Env::Live, &["domains:read"], &[]).await;
    assert_eq!(call(&bench.gw, &key).await.status, 200);
    let ids = tokio::task::block_in_place(|| cluster.cli(&["SCARD", "{osir}:ids"]));
    assert_eq!(ids.trim(), "1");
    let mut delays = revocation_delays(&bench, &store).await;
    println!(
        "revocation delay over TLS on a Cluster: {}",
        figures(&mut delays)
    );
    assert!(delays.iter().all(|d| *d < Duration::from_secs(1)));
}
