//! Operations: the access log never holds a secret, usage is counted and
//! survives a store outage, reloads under load lose nothing, shutdown lets
//! in-flight requests finish, and metric series stay bounded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use osir_gateway::config::AccessLog as AccessLogConfig;
use osir_gateway::keys::api_key::Env;
use osir_gateway::manage::KeyService;

use crate::support::client::{bearer, get, get_until, send};
use crate::support::expect::{call, Bench};
use crate::support::gateway::{config, TestGateway};
use crate::support::keys::{bad_checksum, body, create_key, memory_store, redis_store};
use crate::support::redis::RedisServer;
use crate::support::upstream::RecordingUpstream;
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
async fn hundred_reloads_under_load_lose_no_request() {
    let up = RecordingUpstream::start("up").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let good = config(&up.url(), None, "");
    std::fs::write(&path, &good).unwrap();
    let gw = TestGateway::builder().toml(&good).start().await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed, url) = (
            stop.clone(),
            ok.clone(),
            failed.clone(),
            gw.url("/v1/status/x"),
        );
        load.push(tokio::spawn(async move {
            let c = crate::support::client::client();
            while !stop.load(Ordering::Relaxed) {
                let r = crate::support::client::send_with(
                    &c,
                    Method::GET,
                    &url,
                    &[],
                    Default::default(),
                )
                .await;
                if r.status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let (mut successes, mut failures) = (0, 0);
    for i in 0..100 {
        let text = if i % 5 == 4 {
            format!("{good}\n[[routes]]\nprefix = \"/bad\"\nupstream = \"nowhere\"\n")
        } else {
            // Valid, and different each time (a new max_body).
            good.replace(
                "max_body = \"4MiB\"",
                &format!("max_body = \"{}KiB\"", 4096 + i),
            )
        };
        std::fs::write(&path, text).unwrap();
        match osir_gateway::app::run::reload(&gw.gw, &path) {
            Ok(_) => successes += 1,
            Err(_) => failures += 1,
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    assert_eq!((successes, failures), (80, 20));
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during reloads"
    );
    assert!(ok.load(Ordering::Relaxed) > 0);
    let m = &gw.gw.metrics.config_reloads;
    assert_eq!(m.with_label_values(&["success"]).get(), 80);
    assert_eq!(m.with_label_values(&["failure"]).get(), 20);
    assert_eq!(gw.gw.snapshot.load().generation, 81);
}

#[tokio::test]
async fn a_file_change_is_picked_up_and_a_bad_one_refused() {
    let up = RecordingUpstream::start("up").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let good = config(&up.url(), None, "");
    std::fs::write(&path, &good).unwrap();
    let gw = TestGateway::builder().toml(&good).start().await;
    let watcher = tokio::spawn(osir_gateway::app::watch::watch_config(
        gw.gw.clone(),
        path.clone(),
        good.clone().into_bytes(),
    ));
    assert_eq!(get(&gw.url("/v2/new"), &[]).await.status, 404);

    // Editors' rename-on-save: write elsewhere, rename over the file.
    let added =
        format!("{good}\n[[routes]]\nprefix = \"/v2/new\"\nupstream = \"up\"\npublic = true\n");
    let tmp = dir.path().join(".gateway.toml.swp");
    std::fs::write(&tmp, &added).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    assert!(
        eventually(Duration::from_secs(3), || gw.gw.snapshot.load().generation
            == 2)
        .await
    );
    assert_eq!(get(&gw.url("/v2/new"), &[]).await.status, 200);

    std::fs::write(&path, "this is = not [valid").unwrap();
    let failures = gw.gw.metrics.config_reloads.with_label_values(&["failure"]);
    assert!(eventually(Duration::from_secs(3), || failures.get() == 1).await);
    assert_eq!(gw.gw.snapshot.load().generation, 2);
    assert_eq!(
        get(&gw.url("/v2/new"), &[]).await.status,
        200,
        "the old config must keep serving"
    );
    watcher.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_requests_finish_on_their_generation_and_through_shutdown() {
    let slow = RecordingUpstream::start("slow").await;
    let other = RecordingUpstream::start("other").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let first = config(&slow.url(), None, "").replace("timeout = \"1s\"", "timeout = \"5s\"");
    std::fs::write(&path, &first).unwrap();
    let gw = TestGateway::builder().toml(&first).start().await;

    let url = gw.url("/v1/status/slow");
    let in_flight = tokio::spawn(async move { get(&url, &[("x-test-delay-ms", "700")]).await });
    assert!(eventually(Duration::from_secs(3), || slow.count() == 1).await);
    std::fs::write(&path, config(&other.url(), None, "")).unwrap();
    osir_gateway::app::run::reload(&gw.gw, &path).unwrap();
    // New requests go to the new upstream; the old one finishes where it began.
    assert_eq!(
        get(&gw.url("/v1/status/new"), &[])
            .await
            .header("x-upstream"),
        Some("other")
    );
    let r = in_flight.await.unwrap();
    assert_eq!(
        (r.status.as_u16(), r.header("x-upstream")),
        (200, Some("slow"))
    );

    // Graceful shutdown: a request in flight when the signal comes completes.
    let url = gw.url("/v1/status/last");
    let last = tokio::spawn(async move { get(&url, &[("x-test-delay-ms", "500")]).await });
    assert!(eventually(Duration::from_secs(3), || other.count() == 2).await);
    gw.shutdown().await;
    assert_eq!(last.await.unwrap().status, 200);
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

#[tokio::test]
async fn admin_key_api_end_to_end() {
    let up = RecordingUpstream::start("up").await;
    let store = memory_store();
    let var = format!(
        "OSIR_TEST_ADMIN_{}",
        crate::support::client::random_hex(8).to_uppercase()
    );
    std::env::set_var(&var, "s3cret-admin-token");
    let toml = config(&up.url(), None, "").replace(
        "listen = \"127.0.0.1:2\"",
        &format!("listen = \"127.0.0.1:2\"\ntoken_env = \"{var}\""),
    );
    let gw = TestGateway::builder()
        .toml(&toml)
        .store(store.clone())
        .start()
        .await;
    let auth = "Bearer s3cret-admin-token";
    let json = |v: serde_json::Value| v.to_string();

    // 401 without and with a wrong token.
    let r = send(Method::GET, &gw.admin_url("/keys"), &[], "").await;
    assert_eq!(
        (r.status.as_u16(), r.code().as_str()),
        (401, "unauthorized")
    );
    let r = send(
        Method::GET,
        &gw.admin_url("/keys"),
        &[("authorization", "Bearer nope")],
        "",
    )
    .await;
    assert_eq!(r.status, 401);

    // Create → 201 with the key once.
    let body_ = json(
        serde_json::json!({"name": "dash", "env": "live", "scopes": ["domains:read"], "allowed_ips": ["127.0.0.1"], "account": "acct_9", "expires_in": "30d"}),
    );
    let r = send(
        Method::POST,
        &gw.admin_url("/keys"),
        &[("authorization", auth)],
        body_,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let created = r.json();
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(osir_gateway::keys::api_key::looks_like_key(&key));
    assert_eq!(call(&gw, &key).await.status, 200);

    // List and show never carry a secret.
    let r = send(
        Method::GET,
        &gw.admin_url("/keys"),
        &[("authorization", auth)],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(!r.text().contains(body(&key)));
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    let r = send(
        Method::GET,
        &gw.admin_url(&format!("/keys/{id}")),
        &[("authorization", auth)],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.json()["usage"].is_object());
    assert!(!r.text().contains(body(&key)));
    let r = send(
        Method::GET,
        &gw.admin_url("/keys/key_unknown"),
        &[("authorization", auth)],
        "",
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.code().as_str()),
        (404, "key_not_found")
    );

    // Patch scopes → takes effect at once.
    let patch = json(serde_json::json!({"scopes": ["vps:read"]}));
    let r = send(
        Method::PATCH,
        &gw.admin_url(&format!("/keys/{id}")),
        &[("authorization", auth)],
        patch,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let url = gw.url("/v1/domains/x");
    let r = get_until(
        &url,
        &[("authorization", &bearer(&key))],
        403,
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.code().as_str()),
        (403, "insufficient_scope"),
        "the scope change did not take effect within 1 s"
    );

    // 400s name the field.
    for (body_, field) in [
        (
            serde_json::json!({"name": "x", "scopes": ["domains:list"]}),
            "scopes",
        ),
        (
            serde_json::json!({"name": "x", "scopes": ["domains:read"], "allowed_ips": ["10.0.0.0/33"]}),
            "allowed_ips",
        ),
        (
            serde_json::json!({"name": "x", "scopes": ["domains:read"], "env": "prod"}),
            "env",
        ),
    ] {
        let r = send(
            Method::POST,
            &gw.admin_url("/keys"),
            &[("authorization", auth)],
            json(body_),
        )
        .await;
        assert_eq!(
            (r.status.as_u16(), r.code().as_str()),
            (400, "invalid_request")
        );
        let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(msg.starts_with(&format!("{field}:")), "{msg}");
    }
    let r = send(
        Method::POST,
        &gw.admin_url("/keys"),
        &[("authorization", auth)],
        "{not json",
    )
    .await;
    assert_eq!(r.status, 400);

    // Rotate → 201 new key; delete → 204 and the old key is refused.
    let r = send(
        Method::POST,
        &gw.admin_url(&format!("/keys/{id}/rotate")),
        &[("authorization", auth)],
        json(serde_json::json!({"grace": "1h"})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let new_key = r.json()["key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, key);
    let r = send(
        Method::DELETE,
        &gw.admin_url(&format!("/keys/{id}")),
        &[("authorization", auth)],
        "",
    )
    .await;
    assert_eq!(r.status, 204);
    let url = gw.url("/v1/domains/x");
    let r = get_until(
        &url,
        &[("authorization", &bearer(&key))],
        401,
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.code().as_str()),
        (401, "revoked_api_key"),
        "the revocation did not take effect within 1 s"
    );
    let r = send(
        Method::DELETE,
        &gw.admin_url("/keys/key_unknown"),
        &[("authorization", auth)],
        "",
    )
    .await;
    assert_eq!(r.status, 404);
}
