//! The redis store's lookup connection (`src/store/redis/pipe.rs`): many
//! lookups in flight on it at once each get their own record, an error
//! reply answers only its own lookup, and a killed connection is replaced
//! with no lookup answered wrongly.

use std::time::Duration;

use osir_gateway::keys::{Env, KeyHash, KeyRecord};
use osir_gateway::store::{Store, StoreError};

use crate::support::eventually_async;
use crate::support::redis::RedisServer;

use super::{new_key, record, redis_store};
use crate::feed_acl::{store_at, user, GATEWAY_RULES};

/// The ids of the lookup connections (the name the pipe gives itself).
fn pipe_connections(server: &RedisServer) -> Vec<String> {
    server.client_ids(|l| l.contains(" name=osir-gateway-lookup "))
}

/// Looks `probe` up until a lookup connection shows in `CLIENT LIST`.
async fn wait_for_pipe(server: &RedisServer, store: &Store, probe: &KeyHash) {
    let opened = eventually_async(Duration::from_secs(5), || async {
        store.lookup(probe).await.unwrap();
        !pipe_connections(server).is_empty()
    })
    .await;
    assert!(
        opened,
        "no lookup connection: {}",
        server.cli(&["CLIENT", "LIST"])
    );
}

/// `n` keys with records, and the hash of a key whose redis key holds a
/// string (HGETALL on it is answered `-WRONGTYPE`), in db 0.
async fn keys(
    server: &RedisServer,
    store: &Store,
    n: usize,
) -> (Vec<(KeyHash, KeyRecord)>, KeyHash) {
    keys_in(server, store, n, "0").await
}

/// [`keys`] in `db`.
async fn keys_in(
    server: &RedisServer,
    store: &Store,
    n: usize,
    db: &str,
) -> (Vec<(KeyHash, KeyRecord)>, KeyHash) {
    let mut out = Vec::new();
    for i in 0..n {
        let (k, h) = new_key(Env::Live);
        let r = record(&format!("key_p{i:03}"), &k, 1);
        store.insert(&h, &r).await.unwrap();
        out.push((h, r));
    }
    let (_, wrong) = new_key(Env::Live);
    server.cli(&[
        "-n",
        db,
        "SET",
        &format!("osir:key:{}", wrong.to_hex()),
        "x",
    ]);
    (out, wrong)
}

/// Every lookup of a burst, in flight together: known keys, unknown keys
/// and a wrong-type key interleaved. Each must get exactly its own answer.
async fn burst(store: &Store, keys: &[(KeyHash, KeyRecord)], wrong: &KeyHash) {
    let mut tasks = Vec::new();
    for (i, (h, r)) in keys.iter().enumerate() {
        let (s, h, r) = (store.clone(), *h, r.clone());
        tasks.push(tokio::spawn(async move {
            assert_eq!(s.lookup(&h).await.unwrap(), Some(r), "lookup {i}");
        }));
        if i % 7 == 0 {
            let (store, wrong) = (store.clone(), *wrong);
            tasks.push(tokio::spawn(async move {
                match store.lookup(&wrong).await {
                    Err(StoreError::Corrupt { reason, .. }) => {
                        assert!(reason.contains("wrong type"), "{reason}")
                    }
                    other => panic!("wrong-type key: {other:?}"),
                }
            }));
        }
        if i % 5 == 0 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let (_, unknown) = new_key(Env::Test);
                assert_eq!(store.lookup(&unknown).await.unwrap(), None);
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lookups_on_the_pipe_each_get_their_own_answer() {
    let server = RedisServer::start();
    let store = redis_store(&server).await;
    let (keys, wrong) = keys(&server, &store, 300).await;
    // The first lookup opens the pipe (it is answered by redis-rs).
    wait_for_pipe(&server, &store, &keys[0].0).await;
    for _ in 0..5 {
        burst(&store, &keys, &wrong).await;
    }
    assert_eq!(pipe_connections(&server).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_lookup_connection_is_replaced_and_answers_stay_right() {
    let server = RedisServer::start();
    let store = redis_store(&server).await;
    let (keys, wrong) = keys(&server, &store, 100).await;
    for round in 0..3 {
        wait_for_pipe(&server, &store, &keys[0].0).await;
        let ids = pipe_connections(&server);
        // Killed while a burst is in flight: a lookup may fail (503, as
        // with any dropped connection), but never gets another's answer.
        let killer = {
            let ids = ids.clone();
            let port = server.port;
            tokio::task::spawn_blocking(move || {
                for id in ids {
                    let _ = std::process::Command::new("redis-cli")
                        .args(["-p", &port.to_string(), "CLIENT", "KILL", "ID", &id])
                        .output();
                }
            })
        };
        let mut tasks = Vec::new();
        for (h, r) in keys.iter().cloned() {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                match store.lookup(&h).await {
                    Ok(found) => assert_eq!(found, Some(r)),
                    Err(e) => assert!(matches!(e, StoreError::Unavailable(_)), "{e}"),
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        killer.await.unwrap();
        // A new lookup connection replaces the killed one, and every
        // answer is right again.
        let replaced = eventually_async(Duration::from_secs(5), || async {
            let found = store.lookup(&keys[1].0).await;
            let now = pipe_connections(&server);
            matches!(found, Ok(Some(_)))
                && !now.is_empty()
                && now.iter().all(|id| !ids.contains(id))
        })
        .await;
        assert!(replaced, "round {round}: no new lookup connection");
        burst(&store, &keys, &wrong).await;
    }
}

/// An ACL user with a password, on db 2: the pipe authenticates and
/// selects the db as the command connection does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipe_authenticates_and_selects_the_db() {
    let server = RedisServer::start();
    let url = user(&server, "gw", &["~*", "&*", "+@all"]);
    let store = store_at(&format!("{}/2", url.trim_end_matches("/0"))).await;
    let (keys, wrong) = keys_in(&server, &store, 50, "2").await;
    wait_for_pipe(&server, &store, &keys[0].0).await;
    let list = server.cli(&["CLIENT", "LIST"]);
    let line = list
        .lines()
        .find(|l| l.contains(" name=osir-gateway-lookup "))
        .unwrap();
    assert!(
        line.contains(" user=gw ") && line.contains(" db=2 "),
        "{line}"
    );
    burst(&store, &keys, &wrong).await;
}

/// The gateway's minimal ACL rules (docs/store.md) do not allow `CLIENT
/// SETNAME`: the pipe is still opened (the refusal is counted), and its
/// answers are right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_minimal_gateway_rules_still_get_the_pipe() {
    let server = RedisServer::start();
    let admin = redis_store(&server).await;
    let store = store_at(&user(&server, "gw", GATEWAY_RULES)).await;
    let (keys, wrong) = keys(&server, &admin, 50).await;
    let refused = |server: &RedisServer| {
        server
            .cli(&["INFO", "commandstats"])
            .lines()
            .find_map(|l| l.trim().strip_prefix("cmdstat_client|setname:"))
            .and_then(|rest| {
                rest.split(',')
                    .find_map(|f| f.strip_prefix("rejected_calls="))
            })
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let opened = eventually_async(Duration::from_secs(5), || async {
        store.lookup(&keys[0].0).await.unwrap();
        refused(&server) > 0
    })
    .await;
    assert!(opened, "the pipe never got past AUTH");
    burst(&store, &keys, &wrong).await;
    assert_eq!(refused(&server), 1, "the pipe was reopened");
}

/// A `redis+unix://` store: the pipe talks over the socket too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipe_serves_a_unix_socket() {
    let sockdir = tempfile::tempdir().unwrap();
    let sock = sockdir.path().join("redis.sock");
    let sock_arg = sock.to_str().unwrap();
    let server = RedisServer::start_with(&["--unixsocket", sock_arg, "--unixsocketperm", "700"]);
    let url = format!("redis+unix://{sock_arg}");
    let store = store_at(&url).await;
    let (keys, wrong) = keys(&server, &store, 50).await;
    wait_for_pipe(&server, &store, &keys[0].0).await;
    let list = server.cli(&["CLIENT", "LIST"]);
    assert!(
        list.lines()
            .any(|l| l.contains(" name=osir-gateway-lookup ") && l.contains(" addr=/")),
        "the lookup connection is not on the socket: {list}"
    );
    burst(&store, &keys, &wrong).await;
}

/// A `rediss://` store: the pipe dials TLS with the store's CA (the
/// server's certificate is the test CA's, for 127.0.0.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipe_speaks_tls_with_the_stores_ca() {
    use crate::support::redis::TlsFiles;
    use osir_gateway::store::redis::{connect_with, RedisOptions};
    let tls = TlsFiles::new();
    let server = RedisServer::start_tls(&tls, &[]);
    let options = RedisOptions {
        tls_ca: Some(tls.ca.clone()),
        ..RedisOptions::new(Duration::from_secs(1))
    };
    let store = Store::new(connect_with(&server.url(), &options).await.unwrap());
    let (keys, wrong) = keys(&server, &store, 50).await;
    wait_for_pipe(&server, &store, &keys[0].0).await;
    burst(&store, &keys, &wrong).await;
    assert_eq!(pipe_connections(&server).len(), 1);
}
