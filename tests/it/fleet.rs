//! A fleet under load (contract §8): three real gateway processes share one
//! redis-server and one upstream; clients hammer all three with one key
//! while `keys revoke` runs. Every gateway must refuse the key within 1 s
//! of the revoke, and once a gateway has refused it, it never lets it
//! through again. Each gateway's revocation-delay histogram is read from
//! `/metrics` and its quantiles printed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};

use crate::support::client::{bearer, client};
use crate::support::eventually_async;
use crate::support::keys::{cli_create, CliConfig};
use crate::support::process::{free_port, run_config, GatewayProcess};
use crate::support::redis::RedisServer;
use crate::support::upstream::RecordingUpstream;

const GATEWAYS: usize = 3;
const CLIENTS_PER_GATEWAY: usize = 3;
const WITHIN: Duration = Duration::from_secs(1);

/// One `osir-gateway run` process over the shared redis-server.
pub struct Process {
    run: GatewayProcess,
    cfg: CliConfig,
    api: u16,
    admin: u16,
}

impl Process {
    pub fn start(redis: &RedisServer, up: &RecordingUpstream) -> Process {
        let (api, admin) = (free_port(), free_port());
        let cfg = CliConfig::new(&run_config(
            api,
            admin,
            &redis.url(),
            &up.url(),
            "access = \"off\"",
            "",
        ));
        Process {
            run: GatewayProcess::start(&cfg),
            cfg,
            api,
            admin,
        }
    }

    pub fn stderr(&self) -> String {
        self.run.stderr()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.api)
    }

    pub async fn admin_get(&self, path: &str) -> Option<(u16, String)> {
        let req = Request::get(format!("http://127.0.0.1:{}{path}", self.admin))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(2), client().request(req))
            .await
            .ok()?
            .ok()?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// Ready: the store answers and its change feed is followed.
    pub async fn ready(&self) -> bool {
        match self.admin_get("/readyz").await {
            Some((200, body)) => {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                v["store"]["up"] == true
            }
            _ => false,
        }
    }
}

/// One answer seen by a load client.
#[derive(Debug, Clone)]
struct Seen {
    gateway: usize,
    sent: Instant,
    done: Instant,
    status: u16,
    code: String,
}

async fn one(url: &str, auth: &str, c: &crate::support::client::HttpClient) -> (u16, String) {
    let req = Request::builder()
        .method(Method::GET)
        .uri(url)
        .header("authorization", auth)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = match tokio::time::timeout(Duration::from_secs(5), c.request(req)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return (0, format!("request failed: {e}")),
        Err(_) => return (0, "timed out".into()),
    };
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.map(|b| b.to_bytes());
    let code = match (status, body) {
        (200, _) => "ok".to_owned(),
        (_, Ok(b)) => serde_json::from_slice::<serde_json::Value>(&b)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&b).into_owned()),
        (_, Err(e)) => format!("body failed: {e}"),
    };
    (status, code)
}

/// `histogram_quantile` as Prometheus computes it, from the text format:
/// linear interpolation inside the bucket holding the rank.
fn quantile(metrics: &str, family: &str, q: f64) -> Option<f64> {
    let prefix = format!("{family}_bucket{{le=\"");
    let mut buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total == 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            return Some(lower + (le - lower) * (rank - below) / (count - below));
        }
        (lower, below) = (le, count);
    }
    None
}

fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_refuse_a_key_revoked_under_load_within_a_second() {
    let redis = RedisServer::start();
    let up = RecordingUpstream::start("up").await;
    let fleet: Vec<Process> = (0..GATEWAYS).map(|_| Process::start(&redis, &up)).collect();
    for (i, p) in fleet.iter().enumerate() {
        let ready = eventually_async(Duration::from_secs(15), || p.ready()).await;
        assert!(ready, "gateway {i} never became ready:\n{}", p.stderr());
    }
    let (key, id) = cli_create(&fleet[0].cfg, "live", &["domains:read"]);
    let auth = bearer(&key);

    // Load: a few clients per gateway, each on its own connection pool.
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (g, p) in fleet.iter().enumerate() {
        for _ in 0..CLIENTS_PER_GATEWAY {
            let (url, auth, seen, stop) = (
                p.url("/v1/domains/x"),
                auth.clone(),
                seen.clone(),
                stop.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let c = client();
                while !stop.load(Ordering::SeqCst) {
                    let sent = Instant::now();
                    let (status, code) = one(&url, &auth, &c).await;
                    let done = Instant::now();
                    seen.lock().push(Seen {
                        gateway: g,
                        sent,
                        done,
                        status,
                        code,
                    });
                    // Pacing, so three processes and their clients share
                    // the machine with the rest of the suite.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }));
        }
    }
    let passes = |g: usize| {
        seen.lock()
            .iter()
            .filter(|s| s.gateway == g && s.status == 200)
            .count()
    };
    let warm = crate::support::eventually(Duration::from_secs(10), || {
        (0..GATEWAYS).all(|g| passes(g) >= 100)
    })
    .await;
    assert!(warm, "the key never worked on every gateway");

    // Revoke with the real binary, as an operator would.
    let revoke_cfg = fleet[0].cfg.path.clone();
    let revoke_id = id.clone();
    let revoking = Instant::now();
    let run = tokio::task::spawn_blocking(move || {
        crate::support::keys::run_binary(&revoke_cfg, &["keys", "revoke", &revoke_id])
    })
    .await
    .unwrap();
    let revoked = Instant::now();
    assert_eq!(run.code, 0, "keys revoke failed: {run:?}");

    // Keep the load on until every gateway has refused, and a while past
    // the 1 s mark, so "never again" is tested on plenty of requests.
    let refused_by = |g: usize| {
        seen.lock()
            .iter()
            .any(|s| s.gateway == g && s.sent > revoking && s.status == 401)
    };
    let all_refused =
        crate::support::eventually(Duration::from_secs(5), || (0..GATEWAYS).all(refused_by)).await;
    let end = revoked + WITHIN + Duration::from_millis(500);
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    assert!(all_refused, "not every gateway refused the revoked key");

    let seen = seen.lock().clone();
    for s in &seen {
        assert!(
            (s.status, s.code.as_str()) == (200, "ok")
                || (s.status, s.code.as_str()) == (401, "revoked_api_key"),
            "unexpected answer from gateway {}: {s:?}",
            s.gateway
        );
    }
    for g in 0..GATEWAYS {
        let mine: Vec<&Seen> = seen.iter().filter(|s| s.gateway == g).collect();
        let first_refusal = mine
            .iter()
            .filter(|s| s.status == 401)
            .map(|s| s.done)
            .min()
            .unwrap();
        // Never a success for a request sent after the first refusal.
        let later_pass = mine
            .iter()
            .find(|s| s.sent > first_refusal && s.status == 200);
        assert!(
            later_pass.is_none(),
            "gateway {g} let the key through after refusing it: {later_pass:?}"
        );
        // Nothing sent 1 s after the revoke completed passes either.
        let late: Vec<&&Seen> = mine.iter().filter(|s| s.sent > revoked + WITHIN).collect();
        assert!(!late.is_empty(), "gateway {g}: no load after the 1 s mark");
        let late_pass = late.iter().find(|s| s.status == 200);
        assert!(
            late_pass.is_none(),
            "gateway {g} still let the key through 1 s after the revoke: {late_pass:?}"
        );
        let passed = mine.iter().filter(|s| s.status == 200).count();
        println!(
            "gateway {g}: {} requests, {passed} passed; first refusal {:?} after `keys revoke` started \
             ({:?} after it returned)",
            mine.len(),
            first_refusal - revoking,
            first_refusal.saturating_duration_since(revoked),
        );
    }

    // What each gateway measured, from its own /metrics.
    let family = "osir_gateway_revocation_delay_seconds";
    for (g, p) in fleet.iter().enumerate() {
        let (status, text) = p.admin_get("/metrics").await.expect("no /metrics");
        assert_eq!(status, 200);
        let count = sample(&text, &format!("{family}_count")).unwrap_or(0.0);
        let sum = sample(&text, &format!("{family}_sum")).unwrap_or(0.0);
        assert!(count >= 1.0, "gateway {g} measured no revocation:\n{text}");
        let p50 = quantile(&text, family, 0.5).unwrap();
        let p99 = quantile(&text, family, 0.99).unwrap();
        println!(
            "gateway {g}: revocation delay n={count} sum={sum:.4}s p50≈{:.2}ms p99≈{:.2}ms",
            p50 * 1e3,
            p99 * 1e3
        );
        assert!(p99 < 1.0, "gateway {g}: p99 revocation delay {p99}s");
    }
    assert!(up.count() > 0);
}

#[test]
fn quantiles_interpolate_inside_buckets() {
    let text = "x_bucket{le=\"0.001\"} 50\nx_bucket{le=\"0.01\"} 90\n\
                x_bucket{le=\"0.1\"} 100\nx_bucket{le=\"+Inf\"} 100\nx_count 100\n";
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    assert!(close(quantile(text, "x", 0.5).unwrap(), 0.001));
    assert!(close(quantile(text, "x", 0.25).unwrap(), 0.0005));
    assert!(close(quantile(text, "x", 0.7).unwrap(), 0.0055));
    assert!(close(quantile(text, "x", 0.99).unwrap(), 0.091));
    assert_eq!(sample(text, "x_count"), Some(100.0));
    assert_eq!(quantile("x_bucket{le=\"+Inf\"} 0\n", "x", 0.5), None);
}
