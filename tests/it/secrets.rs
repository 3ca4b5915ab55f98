//! No key leaves the gateway (contract §1, HOSTILE §7): the real binary,
//! logging at debug, is sent keys in the header and in the query on allowed,
//! refused and unroutable requests; afterwards no key, whole or as its
//! 32-character body, is found in its stdout or stderr, in `/metrics`, in any
//! answer, in the Redis store, or in anything the upstream received. And an
//! `ApiKey`'s `Debug` and `Display` redact it.

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use osir_gateway::keys::{ApiKey, Env};
use osir_gateway::manage::KeyService;

use crate::support::client::{bearer, client, get, send};
use crate::support::keys::{bad_checksum, body, cli_create, memory_store, new_key, CliConfig};
use crate::support::process::{free_port, run_config, GatewayProcess};
use crate::support::redis::RedisServer;
use crate::support::upstream::RecordingUpstream;
use crate::support::{eventually, eventually_async};

async fn ready(url: &str) -> bool {
    let req = Request::get(url).body(Full::new(Bytes::new())).unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(2), client().request(req)).await;
    matches!(answer, Ok(Ok(r)) if r.status() == 200)
}

/// Every key and value in the Redis database, as text.
fn redis_dump(redis: &RedisServer) -> String {
    let mut out = String::new();
    for key in redis.cli(&["--scan"]).lines().filter(|k| !k.is_empty()) {
        let kind = redis.cli(&["TYPE", key]);
        let value = match kind.trim() {
            "hash" => redis.cli(&["HGETALL", key]),
            "string" => redis.cli(&["GET", key]),
            "set" => redis.cli(&["SMEMBERS", key]),
            // The audit trail: checked for secrets like everything else.
            "stream" => redis.cli(&["XRANGE", key, "-", "+"]),
            other => panic!("unexpected redis type {other} for {key}"),
        };
        out.push_str(&format!("{key}\n{value}\n"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_in_logs_metrics_answers_store_or_upstream() {
    let redis = RedisServer::start();
    let up = RecordingUpstream::start("up").await;
    let (api, admin) = (free_port(), free_port());
    let cfg = CliConfig::new(&run_config(
        api,
        admin,
        &redis.url(),
        &up.url(),
        "level = \"debug\"\naccess = \"stdout\"",
        "[[routes]]\nprefix = \"/v1/vps\"\nupstream = \"up\"\nresource = \"vps\"\n",
    ));
    let mut gateway = GatewayProcess::start(&cfg);
    let readyz = format!("http://127.0.0.1:{admin}/readyz");
    assert!(
        eventually_async(Duration::from_secs(10), || ready(&readyz)).await,
        "the gateway never became ready"
    );

    let (live, live_id) = cli_create(&cfg, "live", &["domains:read"]);
    let (test, _) = cli_create(&cfg, "test", &["domains:read"]);
    let (revoked, revoked_id) = cli_create(&cfg, "live", &["domains:read"]);
    cfg.run(&["keys", "revoke", &revoked_id]).ok();
    let unknown = ApiKey::generate(Env::Live)
        .unwrap()
        .expose_secret()
        .to_owned();
    let bad = bad_checksum(&live);
    let keys = [&live, &test, &revoked, &unknown, &bad];

    let base = format!("http://127.0.0.1:{api}");
    let mut seen = String::new();
    let mut statuses = Vec::new();
    for key in keys {
        let auth = bearer(key);
        let basic = format!("Basic {key}");
        let cases: [(&str, Vec<(&str, &str)>); 10] = [
            ("/v1/domains/a?x=1", vec![("authorization", &auth)]),
            (&format!("/v1/domains/a?api_key={key}&x=1"), vec![]),
            ("/v1/vps/1", vec![("authorization", &auth)]),
            (&format!("/v1/vps/1?api_key={key}"), vec![]),
            (
                &format!("/v1/domains?api_key={key}"),
                vec![("authorization", &auth)],
            ),
            (
                "/v1/domains",
                vec![("authorization", &auth), ("authorization", &auth)],
            ),
            (&format!("/v1/domains?api_key={key}&api_key={key}"), vec![]),
            (
                &format!("/nowhere?api_key={key}"),
                vec![("authorization", &auth)],
            ),
            (&format!("/v1/domains/%2e%2e/x?api_key={key}"), vec![]),
            ("/v1/domains", vec![("authorization", &basic)]),
        ];
        for (path, headers) in cases.iter() {
            let r = send(Method::GET, &format!("{base}{path}"), headers, Bytes::new()).await;
            statuses.push(r.status.as_u16());
            seen.push_str(&format!("{:?}\n{}\n", r.headers, r.text()));
        }
    }
    // Every kind of answer was exercised.
    for status in [200, 400, 401, 403, 404] {
        assert!(statuses.contains(&status), "no {status} among {statuses:?}");
    }
    let metrics = get(&format!("http://127.0.0.1:{admin}/metrics"), &[]).await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.text().contains("osir_gateway_requests_total"));

    let pid = gateway.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let stopped = eventually(Duration::from_secs(10), || {
        matches!(gateway.child.try_wait(), Ok(Some(_)))
    })
    .await;
    assert!(stopped, "the gateway did not stop on SIGTERM");
    let stdout = std::fs::read_to_string(cfg.dir.path().join("stdout")).unwrap();
    let stderr = std::fs::read_to_string(cfg.dir.path().join("stderr")).unwrap();
    assert!(
        stderr.contains("serving"),
        "the gateway logged nothing: {stderr}"
    );
    // The access log saw the requests (so its silence about keys means something).
    for reason in [
        "\"ok\"",
        "invalid_api_key",
        "revoked_api_key",
        "insufficient_scope",
    ] {
        assert!(
            stdout.contains(reason),
            "no {reason} in the access log: {stdout}"
        );
    }

    // Its two allowed requests were flushed to the store on shutdown.
    let shown = cfg.run(&["keys", "show", &live_id, "--json"]).ok();
    assert_eq!(shown.json()["usage"]["total"], 2, "{shown:?}");

    let dump = redis_dump(&redis);
    for stored in [&live, &test, &revoked] {
        let hash = ApiKey::parse(stored, true).unwrap().hash().to_hex();
        assert!(dump.contains(&hash), "the dump misses a record: {dump}");
    }
    let upstream: String = up
        .requests()
        .iter()
        .map(|r| {
            format!(
                "{} {}\n{:?}\n{}\n",
                r.method,
                r.target,
                r.headers,
                String::from_utf8_lossy(&r.body)
            )
        })
        .collect();
    assert!(up.count() >= 4, "too few requests were allowed: {upstream}");

    for (place, text) in [
        ("stdout", &stdout),
        ("stderr", &stderr),
        ("/metrics", &metrics.text()),
        ("answers", &seen),
        ("redis", &dump),
        ("upstream", &upstream),
    ] {
        for key in keys {
            assert!(
                !text.contains(body(key)),
                "a key appears in {place}:\n{text}"
            );
        }
    }
}

#[tokio::test]
async fn api_keys_redact_themselves() {
    let store = memory_store();
    let issued = KeyService::new(&store)
        .create(new_key(Env::Live, &["*"], &[]))
        .await
        .unwrap();
    let secret = issued.key.expose_secret().to_owned();
    let parsed = ApiKey::parse(&secret, true).unwrap();
    for shown in [
        format!("{parsed:?}"),
        format!("{parsed}"),
        format!("{issued:?}"),
        format!("{:?}", issued.record),
    ] {
        assert!(!shown.contains(body(&secret)), "{shown}");
        assert!(
            shown.contains(&secret[38..]),
            "the hint should stay: {shown}"
        );
    }
}

/// `[store] password_env`: the real binary, logging at debug, reads the
/// Redis password from its environment; through a Redis outage and back,
/// the password is never in its stdout or stderr, `/readyz`, `/metrics`,
/// the `keys` commands' output, or `check`'s. Without the variable, the
/// commands refuse to start, naming the variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_password_from_the_environment_is_never_shown() {
    const PASSWORD: &str = "env-secret-redis-pw-5d7e21";
    let mut redis = RedisServer::start_with(&["--requirepass", PASSWORD]);
    let up = RecordingUpstream::start("up").await;
    let (api, admin) = (free_port(), free_port());
    let var = crate::redis_password::var_name("SECRETS_PW");
    let url = redis.url();
    let text = run_config(
        api,
        admin,
        &url,
        &up.url(),
        "level = \"debug\"\naccess = \"stdout\"",
        "",
    )
    .replace(
        &format!("url = \"{url}\"\n"),
        &format!("url = \"{url}\"\npassword_env = \"{var}\"\ntimeout = \"200ms\"\n"),
    );
    let cfg = CliConfig::new(&text);
    let env = [(var.as_str(), PASSWORD)];
    let mut seen = String::new();

    // Without the variable: refused at start, the variable named.
    let refused = cfg.run(&["keys", "list"]);
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(refused.stderr.contains(&var), "{refused:?}");
    seen.push_str(&format!("{refused:?}\n"));
    let check = cfg.run(&["check"]);
    assert_eq!(check.code, 0, "check reads no environment: {check:?}");
    seen.push_str(&format!("{check:?}\n"));

    let mut gateway = GatewayProcess::start_env(&cfg, &env);
    let readyz = format!("http://127.0.0.1:{admin}/readyz");
    assert!(
        eventually_async(Duration::from_secs(10), || ready(&readyz)).await,
        "the gateway never became ready: {}",
        gateway.stderr()
    );
    let created = cfg
        .run_env(
            &[
                "keys",
                "create",
                "--name",
                "n",
                "--env",
                "live",
                "--scope",
                "domains:read",
                "--json",
            ],
            &env,
        )
        .ok();
    seen.push_str(&format!("{created:?}\n"));
    let key = created.json()["key"].as_str().unwrap().to_owned();
    let r = get(
        &format!("http://127.0.0.1:{api}/v1/domains"),
        &[("authorization", &bearer(&key))],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // An outage: the reasons /readyz and the log give must not quote it.
    redis.stop();
    let down = eventually_async(Duration::from_secs(10), || async {
        get(&readyz, &[]).await.status == 503
    })
    .await;
    assert!(down, "/readyz stayed 200 with redis down");
    seen.push_str(&get(&readyz, &[]).await.text());
    seen.push_str(
        &get(&format!("http://127.0.0.1:{admin}/metrics"), &[])
            .await
            .text(),
    );
    redis.restart();
    assert!(
        eventually_async(Duration::from_secs(10), || ready(&readyz)).await,
        "the gateway did not recover: {}",
        gateway.stderr()
    );
    seen.push_str(&get(&readyz, &[]).await.text());
    seen.push_str(
        &get(&format!("http://127.0.0.1:{admin}/metrics"), &[])
            .await
            .text(),
    );

    let _ = gateway.child.kill();
    let _ = gateway.child.wait();
    let stdout = std::fs::read_to_string(cfg.dir.path().join("stdout")).unwrap();
    let stderr = std::fs::read_to_string(cfg.dir.path().join("stderr")).unwrap();
    assert!(
        stderr.contains("serving"),
        "the gateway logged nothing: {stderr}"
    );
    for (place, text) in [("stdout", &stdout), ("stderr", &stderr), ("answers", &seen)] {
        assert!(
            !text.contains(PASSWORD),
            "the redis password appears in {place}:\n{text}"
        );
    }
}
