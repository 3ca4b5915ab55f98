//! Micro-benchmark of the key decision on a cache hit: the work every
//! authorised request does before forwarding.
//!
//! extract credential → format + checksum → SHA-256 → cache → expiry,
//! revocation → IP → scope; plus the stages around it (path check, route,
//! client IP). Run: `cargo bench --bench decision`.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Method};
use osir_gateway::config::Config;
use osir_gateway::keys::Env;
use osir_gateway::keys::Timestamp;
use osir_gateway::lookup::cache::{KeyCache, Lookup};
use osir_gateway::manage::{parse_ips, parse_scopes, KeyService, NewKey};
use osir_gateway::metrics::Metrics;
use osir_gateway::pipeline::authorize;
use osir_gateway::pipeline::client_ip::client_ip;
use osir_gateway::pipeline::path;
use osir_gateway::pipeline::route::RouteTable;
use osir_gateway::store::{memory::MemoryStore, Store};

const CFG: &str = r#"
[server]
listen = "127.0.0.1:1"
[store]
backend = "file"
path = "unused.json"
[upstreams.up]
url = "http://127.0.0.1:7001"
[[routes]]
prefix = "/v1/domains"
upstream = "up"
resource = "domains"
[[routes]]
prefix = "/v1/vps"
upstream = "up"
resource = "vps"
[[routes]]
prefix = "/v1/billing"
upstream = "up"
resource = "billing"
"#;

fn decision(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cfg = Config::from_toml(CFG, Path::new(".")).unwrap();
    let routes = RouteTable::new(&cfg);
    let store = Store::new(MemoryStore::new());
    let cache = KeyCache::new(&cfg.cache, store.clone(), Arc::new(Metrics::new()));
    let issued = rt
        .block_on(KeyService::new(&store).create(NewKey {
            name: "bench".into(),
            env: Env::Live,
            scopes: parse_scopes(&["domains:read".into(), "vps:*".into()]).unwrap(),
            allowed_ips: parse_ips(&["10.0.0.0/8".into(), "127.0.0.0/8".into()]).unwrap(),
            account: Some("acct_1".into()),
            expires_in: None,
        }))
        .unwrap();
    let hash = issued.key.hash();
    assert!(matches!(
        rt.block_on(cache.get(&hash)).unwrap(),
        Lookup::Found(_)
    ));

    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {}", issued.key.expose_secret())).unwrap(),
    );
    headers.insert(http::header::HOST, HeaderValue::from_static("api.osir.com"));
    let peer: IpAddr = "127.0.0.1".parse().unwrap();
    let route = routes.find("/v1/domains/example.com").unwrap();
    let required = route.required_scope(&Method::GET).unwrap();

    c.bench_function(
        "decision/cache_hit (extract→checksum→sha256→cache→ip→scope)",
        |b| {
            b.iter(|| {
                let key =
                    authorize::parse_credential(black_box(&headers), None, true, true).unwrap();
                let entry = cache.get_fresh(&key.hash(), Instant::now()).unwrap();
                authorize::check_grants(&key, &entry, black_box(peer), required, Timestamp::now())
                    .unwrap();
                black_box(entry);
            })
        },
    );

    c.bench_function(
        "pipeline_front/cache_hit (client ip→path→route→decision)",
        |b| {
            b.iter(|| {
                let ip = client_ip(black_box(peer), &headers, &cfg.auth.trusted_proxies);
                let p = path::check(black_box("/v1/domains/example.com/records")).unwrap();
                let r = routes.find(&p.decoded).unwrap();
                let need = r.required_scope(&Method::GET).unwrap();
                let key = authorize::parse_credential(&headers, None, true, true).unwrap();
                let entry = cache.get_fresh(&key.hash(), Instant::now()).unwrap();
                authorize::check_grants(&key, &entry, ip, need, Timestamp::now()).unwrap();
                black_box(entry);
            })
        },
    );

    // What every forwarded request spends on metrics: the same calls as
    // proxy::handle (route series resolved on first use), upstream::Upstream
    // (a histogram resolved when the upstream is built) and the auth stage.
    let metrics = Metrics::new();
    let series = osir_gateway::metrics::RouteSeries::default();
    let upstream = metrics.upstream_duration.with_label_values(&["up"]);
    c.bench_function("stage/metrics_per_request", |b| {
        b.iter(|| {
            metrics.record_request(
                Some((black_box("/v1/domains"), &series)),
                &http::Method::GET,
                http::StatusCode::OK,
                "ok",
                0.0004,
            );
            upstream.observe(0.0003);
            metrics.auth_duration.observe(0.000001);
        })
    });
    // The same series looked up by label values on every request (as before
    // the route series): the difference is what pre-resolving saves.
    c.bench_function("stage/metrics_per_request_by_label", |b| {
        b.iter(|| {
            metrics
                .requests
                .with_label_values(&[black_box("/v1/domains"), "GET", "200", "ok"])
                .inc();
            metrics
                .request_duration
                .with_label_values(&["/v1/domains", "2xx"])
                .observe(0.0004);
            metrics
                .upstream_duration
                .with_label_values(&["up"])
                .observe(0.0003);
            metrics.auth_duration.observe(0.000001);
        })
    });

    c.bench_function("stage/sha256", |b| {
        b.iter(|| black_box(black_box(&issued.key).hash()))
    });
    c.bench_function("stage/path_check", |b| {
        b.iter(|| black_box(path::check(black_box("/v1/domains/example.com/records")).is_ok()))
    });
}

criterion_group!(benches, decision);
criterion_main!(benches);
