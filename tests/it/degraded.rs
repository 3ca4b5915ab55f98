//! Degraded start (issue 14): `osir-gateway run` (the real binary) with its
//! Redis down starts anyway, serves public routes, answers 503
//! `key_store_unavailable` for keys, says `store.up = false` on `/readyz`
//! and in `osir_gateway_store_up`, and connects by itself once Redis
//! appears. A URL that cannot work still refuses to start.

use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use osir_gateway::keys::{ApiKey, Env};

use crate::support::client::{bearer, get};
use crate::support::eventually_async;
use crate::support::keys::{create_key, redis_store, CliConfig};
use crate::support::redis::RedisServer;
use crate::support::upstream::RecordingUpstream;

/// A `run` process, killed and reaped when dropped.
struct Process {
    child: Child,
    cfg: CliConfig,
    api: u16,
    admin: u16,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Process {
    fn start(redis_url: &str, up: &str) -> Process {
        let (api, admin) = (free_port(), free_port());
        let cfg = CliConfig::new(&format!(
            r#"[server]
listen = "127.0.0.1:{api}"
[admin]
listen = "127.0.0.1:{admin}"
[store]
backend = "redis"
url = "{redis_url}"
timeout = "300ms"
[log]
access = "off"
[upstreams.up]
url = "{up}"
[[routes]]
prefix = "/v1/domains"
upstream = "up"
resource = "domains"
[[routes]]
prefix = "/v1/status"
upstream = "up"
public = true
"#
        ));
        let dir = cfg.dir.path();
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
        Process {
            child,
            cfg,
            api,
            admin,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.cfg.dir.path().join("stderr")).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.api)
    }

    fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin)
    }

    /// `/readyz`'s status and body, once the admin listener is up.
    async fn readyz(&self) -> Option<(u16, serde_json::Value)> {
        tokio::net::TcpStream::connect(("127.0.0.1", self.admin))
            .await
            .ok()?;
        let r = tokio::time::timeout(Duration::from_secs(2), get(&self.admin_url("/readyz"), &[]))
            .await
            .ok()?;
        Some((r.status.as_u16(), r.json()))
    }
}

#[tokio::test]
async fn run_starts_without_its_store_and_connects_when_it_appears() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    redis.stop();
    let up = RecordingUpstream::start("up").await;
    let gw = Process::start(&url, &up.url());

    // It serves: health, readiness (not ready: no change can reach it while
    // the store is down, so 503 with the reason), public routes.
    assert!(
        eventually_async(Duration::from_secs(15), || async {
            gw.readyz().await.is_some()
        })
        .await,
        "the gateway did not start with its store down: {}",
        gw.stderr()
    );
    let (status, body) = gw.readyz().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "feed_down", "{body}");
    assert!(body["feed"]["reason"].is_string(), "{body}");
    assert_eq!(body["store"]["up"], false, "{body}");
    let metrics = get(&gw.admin_url("/metrics"), &[]).await.text();
    assert!(
        metrics.lines().any(|l| l == "osir_gateway_store_up 0"),
        "{metrics}"
    );
    assert_eq!(get(&gw.url("/v1/status"), &[]).await.status, 200);

    // A well-formed key cannot be checked: 503 with Retry-After, never a pass.
    let unknown = ApiKey::generate(Env::Live).unwrap();
    let r = get(
        &gw.url("/v1/domains/x"),
        &[("authorization", &bearer(unknown.expose_secret()))],
    )
    .await;
    r.assert_error(503, "key_store_unavailable");
    assert!(r.header("retry-after").is_some(), "{r:?}");
    let log = gw.stderr();
    assert!(log.contains("key store unreachable at start"), "{log}");

    // Redis appears: the gateway connects by itself and keys work.
    redis.restart();
    let store = redis_store(&redis).await;
    let (key, _) = create_key(&store, Env::Live, &["domains:read"], &[]).await;
    assert!(
        eventually_async(Duration::from_secs(10), || async {
            get(
                &gw.url("/v1/domains/x"),
                &[("authorization", &bearer(&key))],
            )
            .await
            .status
                == 200
        })
        .await,
        "the key never passed after redis came up: {}",
        gw.stderr()
    );
    assert!(
        eventually_async(Duration::from_secs(10), || async {
            matches!(gw.readyz().await, Some((200, v)) if v["store"]["up"] == true)
        })
        .await,
        "readyz never said store up: {}",
        gw.stderr()
    );
}

#[test]
fn a_redis_url_that_cannot_work_still_refuses_to_start() {
    let cfg = CliConfig::new(&crate::support::keys::cli_config(
        "backend = \"redis\"\nurl = \"redis+sentinel://127.0.0.1:1/\"",
        "",
    ));
    let out = Command::new(env!("CARGO_BIN_EXE_osir-gateway"))
        .arg("-c")
        .arg(&cfg.path)
        .arg("run")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("store.url"), "{err}");
}
