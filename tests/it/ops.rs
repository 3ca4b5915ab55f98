//! Operations: the access log never holds a secret, usage is counted and
//! survives a store outage, and metric series stay bounded. Reloads are in
//! `reload.rs`, the admin key API in `admin_api.rs`.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use osir_gateway::config::AccessLog as AccessLogConfig;
use osir_gateway::keys::Env;
use osir_gateway::manage::KeyService;

use crate::support::client::{bearer, get};
use crate::support::expect::{call, Bench};
use crate::support::gateway::TestGateway;
use crate::support::keys::{bad_checksum, body, create_key, memory_store, redis_store};
use crate::support::redis::RedisServer;
use crate::support::{eventually, eventually_async};

#[tokio::test]
async fn access_log_lines_are_json_and_never_hold_a_key() {
    let store = memory_store();
    let Bench { up: _up, gw, .. } = Bench::build(TestGateway::builder().store(store.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("access.log");
    let log = osir_gateway::pipeline::access_log::AccessLog::open(&AccessLogConfig::File(
        log_path.clone(),
    ))
    .unwrap();
    gw.gw.access_log.store(log.map(Arc::new));

    let (good, rec) = create_key(&store, Env::Live, &["domains:read"], &[]).await;
    let (other, _) = create_key(&store, Env::Test, &["vps:read"], &[]).await;
    let bad = bad_checksum(&good);
    let requests: Vec<(String, Vec<(&str, String)>)> = vec![
        (
            "/v1/domains/a?x=1".into(),
            vec![("authorization", bearer(&good))],
        ),
        (format!("/v1/domains/a?api_key={good}&y=2"), vec![]),
        (
            "/v1/domains/a".into(),
            vec![("authorization", bearer(&other))],
        ),
        (
            "/v1/domains/a".into(),
            vec![("authorization", bearer(&bad))],
        ),
        (
            format!("/v1/domains/a?api_key={other}"),
            vec![("authorization", bearer(&good))],
        ),
        (format!("/nowhere?api_key={good}"), vec![]),
        (format!("/v1/domains/../x?api_key={good}"), vec![]),
    ];
    for (path, headers) in &requests {
        let h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        get(&gw.url(path), &h).await;
    }
    let mut text = String::new();
    assert!(
        eventually(Duration::from_secs(5), || {
            text = std::fs::read_to_string(&log_path).unwrap_or_default();
            text.lines().count() >= requests.len()
        })
        .await,
        "access log has {} lines",
        text.lines().count()
    );
    for secret in [&good, &other, &bad] {
        assert!(
            !text.contains(body(secret)),
            "a key leaked into the access log:\n{text}"
        );
    }
    assert!(!text.to_ascii_lowercase().contains("bearer"));
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first = &lines[0];
    assert_eq!(first["status"], 200);
    assert_eq!(first["reason"], "ok");
    assert_eq!(first["route"], "/v1/domains");
    assert_eq!(first["key_id"], rec.id.as_str());
    assert_eq!(first["env"], "live");
    assert_eq!(first["client_ip"], "127.0.0.1");
    assert_eq!(first["query"], "x=1");
    assert!(first["request_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(first["upstream_ms"].as_f64().is_some());
    assert_eq!(lines[1]["query"], "y=2");
    assert_eq!(lines[2]["reason"], "insufficient_scope");
    assert_eq!(lines[3]["reason"], "invalid_api_key");
    assert_eq!(lines[4]["reason"], "ambiguous_credentials");
    assert_eq!(lines[5]["route"], "none");
    assert_eq!(lines[6]["reason"], "invalid_path");
    assert!(lines[6]["path"].is_null());
}

#[tokio::test]
async fn usage_is_counted_per_key_and_shown() {
    let store = memory_store();
    let Bench { up: _up, gw, .. } = Bench::build(TestGateway::builder().store(store.clone())).await;
    let (key, rec) = create_key(&store, Env::Live, &["domains:read"], &[]).await;
    for _ in 0..7 {
        assert_eq!(call(&gw, &key).await.status, 200);
    }
    gw.gw.flush_usage().await;
    let (_, usage) = KeyService::new(&store).show(&rec.id).await.unwrap();
    assert_eq!(usage.total, 7);
    assert_eq!(usage.daily.values().sum::<u64>(), 7);
    assert_eq!(usage.last_ip, Some("127.0.0.1".parse().unwrap()));
    assert!(usage.last_used_at.is_some());
}

#[tokio::test]
async fn usage_survives_a_store_outage() {
    let mut redis = RedisServer::start();
    let store = redis_store(&redis).await;
    let Bench { up: _up, gw, .. } = Bench::build(TestGateway::builder().store(store.clone())).await;
    let (key, rec) = create_key(&store, Env::Live, &["domains:read"], &[]).await;
    for _ in 0..3 {
        assert_eq!(call(&gw, &key).await.status, 200);
    }
    redis.stop();
    // The flush fails; the counts must be kept, not dropped.
    gw.gw.flush_usage().await;
    redis.restart();
    let flushed = eventually_async(Duration::from_secs(5), || async {
        gw.gw.flush_usage().await;
        store.usage(&rec.id).await.map(|u| u.total).unwrap_or(0) == 3
    })
    .await;
    assert!(flushed, "usage counted during the outage was lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_hostile_requests_add_no_metric_series() {
    let store = memory_store();
    let extra = "[auth]\ntrusted_proxies = [\"127.0.0.1/32\"]\n";
    let Bench { up: _up, gw, .. } =
        Bench::build(TestGateway::builder().extra(extra).store(store.clone())).await;
    let (key, rec) = create_key(&store, Env::Live, &["domains:read"], &[]).await;
    let series = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("osir_gateway_"))
            .count()
    };
    let c = crate::support::client::client();
    // Warm every label combination the run below can produce.
    type Request<'a> = (Method, String, Vec<(&'a str, String)>);
    let warm: Vec<Request> = vec![
        (
            Method::GET,
            "/v1/domains/a".into(),
            vec![("authorization", bearer(&key))],
        ),
        (Method::GET, "/v1/domains/a".into(), vec![]),
        (
            Method::GET,
            "/v1/domains/a".into(),
            vec![("authorization", bearer(&bad_checksum(&key)))],
        ),
        (Method::GET, "/nowhere".into(), vec![]),
        (Method::GET, "/v1/status/%2e%2e".into(), vec![]),
    ];
    for (m, p, h) in &warm {
        let h: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
        crate::support::client::send_with(&c, m.clone(), &gw.url(p), &h, Default::default()).await;
    }
    let before = series(&get(&gw.admin_url("/metrics"), &[]).await.text());
    for i in 0..10_000u32 {
        let r = crate::support::client::random_hex(8);
        let xff = format!("10.{}.{}.{}", i % 250, (i / 250) % 250, i % 7);
        let (path, auth) = match i % 5 {
            0 => (format!("/v1/domains/{r}"), bearer(&key)),
            1 => (format!("/v1/domains/{r}"), String::new()),
            2 => (format!("/v1/domains/{r}"), bearer(&bad_checksum(&key))),
            3 => (format!("/{r}/{i}"), String::new()),
            _ => (format!("/v1/status/{r}/%2e%2e"), String::new()),
        };
        let mut h = vec![("x-forwarded-for", xff.as_str())];
        if !auth.is_empty() {
            h.push(("authorization", auth.as_str()));
        }
        crate::support::client::send_with(&c, Method::GET, &gw.url(&path), &h, Default::default())
            .await;
    }
    let text = get(&gw.admin_url("/metrics"), &[]).await.text();
    assert_eq!(series(&text), before, "new metric series appeared");
    assert!(!text.contains(&rec.id) && !text.contains(body(&key)) && !text.contains("10.1."));
}
