//! Redis ACLs against the change feed (contract §8): each kind of user a
//! deployment may hand the gateway or the `keys` commands either works, or
//! refuses clearly; never healthy-but-deaf. A refused write changed nothing
//! and the CLI says so. The documented minimal ACLs (docs/store.md) are the
//! ones used here.

use std::time::{Duration, Instant};

use http::Method;
use osir_gateway::keys::Env;
use osir_gateway::store::Store;

use crate::support::client::{bearer, get};
use crate::support::expect::outcome;
use crate::support::gateway::{config, TestGateway};
use crate::support::keys::{cli_create, create_key, redis_store, CliConfig};
use crate::support::redis::RedisServer;
use crate::support::upstream::RecordingUpstream;
use crate::support::{eventually, eventually_async};

const WITHIN: Duration = Duration::from_secs(1);

/// The gateway's minimal rules, as docs/store.md gives them.
pub(crate) const GATEWAY_RULES: &[&str] = &[
    "resetkeys",
    "resetchannels",
    "-@all",
    "+ping",
    "+role",
    "+exists",
    "+hgetall",
    "+xread",
    "+xinfo|stream",
    "+evalsha",
    "+eval",
    "+script|load",
    "+hincrby",
    "+hget",
    "+hset",
    "%R~osir:key:*",
    "%R~osir:changes",
    "%R~osir:ids",
    "%RW~osir:usage:*",
];

/// Key management's minimal rules, as docs/store.md gives them.
const KEYS_RULES: &[&str] = &[
    "resetkeys",
    "resetchannels",
    "-@all",
    "+ping",
    "+role",
    "+get",
    "+hgetall",
    "+smembers",
    "+exists",
    "+evalsha",
    "+eval",
    "+script|load",
    "+hset",
    "+hdel",
    "+set",
    "+sadd",
    "+xadd",
    "+xrevrange",
    "%RW~osir:key:*",
    "%RW~osir:id:*",
    "%RW~osir:ids",
    "%RW~osir:changes",
    "%RW~osir:audit",
    "%R~osir:usage:*",
];

/// Makes user `name` (password `<name>-pw`) with `rules`; returns its URL.
pub(crate) fn user(redis: &RedisServer, name: &str, rules: &[&str]) -> String {
    let pw = format!(">{name}-pw");
    let mut args = vec!["ACL", "SETUSER", name, "reset", "on", pw.as_str()];
    args.extend_from_slice(rules);
    assert_eq!(redis.cli(&args).trim(), "OK");
    format!("redis://{name}:{name}-pw@127.0.0.1:{}/0", redis.port)
}

pub(crate) async fn store_at(url: &str) -> Store {
    let s = osir_gateway::store::redis::connect(url, Duration::from_secs(1)).await;
    Store::new(s.unwrap_or_else(|e| panic!("cannot connect: {e}")))
}

async fn gateway(up: &RecordingUpstream, url: &str) -> TestGateway {
    TestGateway::builder()
        .toml(&config(&up.url(), None, ""))
        .store(store_at(url).await)
        .start()
        .await
}

async fn readyz(gw: &TestGateway) -> (u16, serde_json::Value) {
    let r = get(&gw.admin_url("/readyz"), &[]).await;
    (r.status.as_u16(), r.json())
}

async fn status(gw: &TestGateway, key: &str) -> String {
    let auth = bearer(key);
    outcome(gw, Method::GET, "/v1/domains", &[("authorization", &auth)])
        .await
        .1
}

async fn refused_within(gw: &TestGateway, key: &str, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    eventually_async(within, || async {
        status(gw, key).await == "revoked_api_key"
    })
    .await
    .then(|| started.elapsed())
}

/// Everything in the store, to prove a refused write changed nothing.
fn snapshot(redis: &RedisServer) -> String {
    let mut keys: Vec<String> = redis
        .cli(&["--scan"])
        .lines()
        .filter(|l| !l.is_empty() && !l.contains(".probe"))
        .map(str::to_owned)
        .collect();
    keys.sort();
    let mut out = String::new();
    for k in keys {
        let dump = match redis.cli(&["TYPE", &k]).trim() {
            "hash" => redis.cli(&["HGETALL", &k]),
            "string" => redis.cli(&["GET", &k]),
            "set" => redis.cli(&["SMEMBERS", &k]),
            "stream" => redis.cli(&["XRANGE", &k, "-", "+"]),
            other => format!("type {other}"),
        };
        out.push_str(&format!("{k}\n{dump}\n"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_acls_serve_revoke_and_count_usage() {
    let redis = RedisServer::start();
    let up = RecordingUpstream::start("up").await;
    let gw_url = user(&redis, "gw", GATEWAY_RULES);
    let keys_url = user(&redis, "keys", KEYS_RULES);
    let gw = gateway(&up, &gw_url).await;
    gw.wait_store_watched().await;
    let (code, body) = readyz(&gw).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["usage"]["writable"], true, "{body}");

    let cli = CliConfig::redis_store(&keys_url);
    let (key, id) = tokio::task::block_in_place(|| cli_create(&cli, "live", &["domains:read"]));
    assert_eq!(status(&gw, &key).await, "ok");
    tokio::task::block_in_place(|| cli.run(&["keys", "revoke", &id]).ok());
    assert!(
        refused_within(&gw, &key, WITHIN).await.is_some(),
        "a revoke by the key-management user did not reach the gateway user"
    );
    gw.gw.flush_usage().await;
    assert_eq!(gw.gw.metrics.store_errors.get(), 0);
    let shown = tokio::task::block_in_place(|| cli.run(&["keys", "show", &id, "--json"]).ok());
    assert!(
        shown.json()["usage"]["total"].as_u64() >= Some(1),
        "{shown:?}"
    );
}

/// Redis 7's default for new users: no channels. The gateway uses none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_channel_rights_is_served_and_revoked_in_time() {
    let redis = RedisServer::start();
    let up = RecordingUpstream::start("up").await;
    let url = user(&redis, "nochan", &["resetchannels", "~*", "+@all"]);
    let gw = gateway(&up, &url).await;
    gw.wait_store_watched().await;
    assert_eq!(readyz(&gw).await.0, 200);
    let writer = redis_store(&redis).await;
    let (key, rec) = create_key(&writer, Env::Live, &["domains:read"], &[]).await;
    assert_eq!(status(&gw, &key).await, "ok");
    osir_gateway::manage::KeyService::new(&writer)
        .revoke(&rec.id)
        .await
        .unwrap();
    assert!(refused_within(&gw, &key, WITHIN).await.is_some());
}

/// A user that may not read the feed, or the records: not ready, with the
/// command and the rule to add.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_that_cannot_receive_changes_is_not_ready_and_says_why() {
    let redis = RedisServer::start();
    let up = RecordingUpstream::start("up").await;
    for (name, denied, want) in [
        ("nofeed", "-xread", "+xread"),
        ("noinfo", "-xinfo", "+xinfo|stream"),
        ("norecords", "-hgetall", "+hgetall"),
    ] {
        let url = user(&redis, name, &["~*", "+@all", denied]);
        let gw = gateway(&up, &url).await;
        let m = gw.gw.metrics.clone();
        let deaf = crate::support::eventually_async(Duration::from_secs(5), || async {
            let (code, body) = readyz(&gw).await;
            // Before the first connection the reason is "not started yet".
            code == 503
                && body["feed"]["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("ACL SETUSER"))
        })
        .await;
        assert!(deaf, "{name}: {:?}", readyz(&gw).await);
        let (_, body) = readyz(&gw).await;
        let reason = body["feed"]["reason"].as_str().unwrap_or("");
        assert!(
            reason.contains(&format!("ACL SETUSER {name}")) && reason.contains(want),
            "{name}: {reason}"
        );
        assert!(
            !reason.contains(&format!("{name}-pw")),
            "password in {reason}"
        );
        assert_eq!(body["status"], "feed_down");
        assert_eq!(m.change_feed_up.get(), 0, "{name}");
        gw.shutdown().await;
    }
}

/// Read-only: the gateway receives changes (ready) but cannot count usage,
/// and says so; the CLI's writes are refused and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_user_follows_the_feed_and_refuses_writes_cleanly() {
    let redis = RedisServer::start();
    let up = RecordingUpstream::start("up").await;
    let url = user(&redis, "ro", &["~*", "+@read", "+ping"]);
    let gw = gateway(&up, &url).await;
    gw.wait_store_watched().await;
    let (code, body) = readyz(&gw).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["usage"]["writable"], false, "{body}");
    let reason = body["usage"]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("EVALSHA") && reason.contains("ACL SETUSER ro"),
        "{reason}"
    );

    let admin = redis_store(&redis).await;
    let (key, rec) = create_key(&admin, Env::Live, &["domains:read"], &[]).await;
    assert_eq!(status(&gw, &key).await, "ok");
    refused_writes_change_nothing(&redis, &url, &rec.id);
    // And changes by others still reach the read-only gateway.
    osir_gateway::manage::KeyService::new(&admin)
        .revoke(&rec.id)
        .await
        .unwrap();
    assert!(refused_within(&gw, &key, WITHIN).await.is_some());
}

/// May run scripts, may not write: the script's own permission check
/// refuses before the first write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_write_rights_is_refused_before_anything_is_written() {
    let redis = RedisServer::start();
    let url = user(&redis, "nowrite", &["~*", "+@all", "-@write"]);
    let admin = redis_store(&redis).await;
    let (_, rec) = create_key(&admin, Env::Live, &["domains:read"], &[]).await;
    refused_writes_change_nothing(&redis, &url, &rec.id);
}

/// `keys create`, `revoke`, `update` and `rotate` through `url`'s user: each
/// exits 1 with one line saying the store refused and nothing changed,
/// prints no key, and leaves the store as it was.
fn refused_writes_change_nothing(redis: &RedisServer, url: &str, id: &str) {
    let cli = CliConfig::redis_store(url);
    let before = snapshot(redis);
    for args in [
        vec![
            "keys",
            "create",
            "--name",
            "x",
            "--env",
            "live",
            "--scope",
            "domains:read",
        ],
        vec!["keys", "revoke", id],
        vec!["keys", "update", id, "--name", "renamed"],
        vec!["keys", "rotate", id],
    ] {
        let run = tokio::task::block_in_place(|| cli.run(&args));
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        assert!(
            run.stderr.contains("refused") && run.stderr.contains("nothing was changed"),
            "{args:?}: {}",
            run.stderr
        );
        assert!(!run.stdout.contains("osir_"), "a key was printed: {run:?}");
        assert!(!run.stderr.contains("-pw"), "password in {}", run.stderr);
        assert_eq!(snapshot(redis), before, "{args:?} changed the store");
    }
}

/// The real binary: `run` as a user that may not read the feed (its
/// password from `[store] password_env`) does not exit. It starts
/// degraded: `/readyz` answers 503 naming the command and the rule to
/// add, and the log says the same once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_starts_degraded_when_a_right_is_missing() {
    use crate::support::process::{free_port, run_config, GatewayProcess};
    let redis = RedisServer::start();
    let up = RecordingUpstream::start("up").await;
    user(&redis, "deafgw", &["~*", "+@all", "-xread"]);
    let var = crate::redis_password::var_name("ACL_RUN_PW");
    let url = format!("redis://deafgw@127.0.0.1:{}/0", redis.port);
    let (api, admin) = (free_port(), free_port());
    let text = run_config(api, admin, &url, &up.url(), "access = \"off\"", "").replace(
        &format!("url = \"{url}\"\n"),
        &format!("url = \"{url}\"\npassword_env = \"{var}\"\n"),
    );
    let cfg = CliConfig::new(&text);
    let mut gw = GatewayProcess::start_env(&cfg, &[(var.as_str(), "deafgw-pw")]);
    let readyz = format!("http://127.0.0.1:{admin}/readyz");
    let listening = eventually_async(Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", admin))
            .await
            .is_ok()
    })
    .await;
    assert!(listening, "run did not start: {}", gw.stderr());
    let degraded = eventually_async(Duration::from_secs(10), || async {
        let r = get(&readyz, &[]).await;
        r.status == 503 && r.text().contains("ACL SETUSER deafgw")
    })
    .await;
    assert!(degraded, "no 503 naming the rule: {}", gw.stderr());
    let body = get(&readyz, &[]).await.json();
    let reason = body["feed"]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("XREAD") && reason.contains("+xread"),
        "{reason}"
    );
    // The log says so (it may trail /readyz a little), and the process
    // is still serving after that.
    let logged = eventually(Duration::from_secs(5), || {
        let log = gw.stderr();
        log.contains("may not read the change feed: XREAD was refused")
            && log.contains("ACL SETUSER deafgw")
    })
    .await;
    assert!(logged, "{}", gw.stderr());
    assert_eq!(get(&readyz, &[]).await.status, 503);
    assert!(
        matches!(gw.child.try_wait(), Ok(None)),
        "run exited: {}",
        gw.stderr()
    );
    let log = gw.stderr();
    assert!(!log.contains("deafgw-pw") && !reason.contains("deafgw-pw"));
}
