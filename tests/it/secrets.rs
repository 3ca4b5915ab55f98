//! No key leaves the gateway (contract §1, HOSTILE §7): the real binary,
//! logging at debug, is sent keys in the header and in the query on allowed,
//! refused and unroutable requests; afterwards no key, whole or as its
//! 32-character body, is found in its stdout or stderr, in `/metrics`, in any
//! answer, in the Redis store, or in anything the upstream received. And an
//! `ApiKey`'s `Debug` and `Display` redact it.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use osir_gateway::keys::{ApiKey, Env};
use osir_gateway::manage::KeyService;

use crate::support::client::{bearer, client, get, send};
use crate::support::keys::{bad_checksum, body, cli_create, memory_store, new_key, CliConfig};
use crate::support::redis::RedisServer;
use crate::support::upstream::RecordingUpstream;
use crate::support::{eventually, eventually_async};

/// The `run` process; killed if the test ends early.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn start_gateway(cfg: &CliConfig, dir: &Path) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_osir-gateway"))
        .arg("-c")
        .arg(&cfg.path)
        .arg("run")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(File::create(dir.join("stdout")).unwrap())
        .stderr(File::create(dir.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    Running(child)
}

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
    let cfg = CliConfig::new(&format!(
        r#"[server]
listen = "127.0.0.1:{api}"
[admin]
listen = "127.0.0.1:{admin}"
[store]
backend = "redis"
url = "{redis}"
[log]
level = "debug"
access = "stdout"
[upstreams.up]
url = "{up}"
[[routes]]
prefix = "/v1/domains"
upstream = "up"
resource = "domains"
[[routes]]
prefix = "/v1/vps"
upstream = "up"
resource = "vps"
"#,
        redis = redis.url(),
        up = up.url(),
    ));
    let mut gateway = start_gateway(&cfg, cfg.dir.path());
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

    let pid = gateway.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let stopped = eventually(Duration::from_secs(10), || {
        matches!(gateway.0.try_wait(), Ok(Some(_)))
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
