//! The admin listener from outside (CONTRACT §9, §11; HOSTILE §6): health
//! and readiness, the Prometheus families the contract names, counters
//! labelled by route template and contract reason, label values that stay
//! bounded whatever paths, methods, queries or request ids clients send, and
//! a key API that does not exist until a token is configured.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::Method;

use crate::support::client::{get, random_hex, send};
use crate::support::eventually;
use crate::support::gateway::{config, TestGateway};

async fn metrics(gw: &TestGateway) -> String {
    let r = get(&gw.admin_url("/metrics"), &[]).await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{r:?}"
    );
    r.text()
}

/// Each sample line split into its series (`name{labels}`) and value.
fn samples(text: &str) -> Vec<(&str, f64)> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series, value.parse().unwrap())
        })
        .collect()
}

/// The value of the sample `name` whose labels are exactly `labels` (0 when
/// the series does not exist yet). Labels are given in any order.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    want.sort();
    samples(text)
        .into_iter()
        .find(|(series, _)| {
            let Some(rest) = series.strip_prefix(name) else {
                return false;
            };
            let inner = rest.strip_prefix('{').and_then(|r| r.strip_suffix('}'));
            let mut have: Vec<String> = match inner {
                Some(i) => i
                    .split("\",")
                    .map(|p| p.trim_end_matches('"').to_owned() + "\"")
                    .collect(),
                None if rest.is_empty() => Vec::new(),
                None => return false,
            };
            have.sort();
            have == want
        })
        .map_or(0.0, |(_, v)| v)
}

fn requests(text: &str, route: &str, method: &str, status: &str, reason: &str) -> f64 {
    value(
        text,
        "osir_gateway_requests_total",
        &[
            ("route", route),
            ("method", method),
            ("status", status),
            ("reason", reason),
        ],
    )
}

#[tokio::test]
async fn health_and_readiness_report_the_store() {
    let (_up, gw) = TestGateway::builder().start_with_upstream().await;
    assert!(
        eventually(Duration::from_secs(5), || gw
            .gw
            .ready
            .load(Ordering::SeqCst))
        .await
    );
    let r = get(&gw.admin_url("/healthz"), &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.header("x-request-id").is_some());
    let r = get(&gw.admin_url("/readyz"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["status"], "ready", "{v}");
    assert_eq!(v["store"]["up"], true, "{v}");
    assert_eq!(v["store"]["backend"], "memory", "{v}");
}

#[tokio::test]
async fn every_contract_family_is_exported() {
    let (_up, gw) = TestGateway::builder().start_with_upstream().await;
    assert_eq!(get(&gw.url("/v1/status"), &[]).await.status, 200);
    assert_eq!(get(&gw.url("/nowhere"), &[]).await.status, 404);
    let text = metrics(&gw).await;
    for (family, kind) in [
        ("osir_gateway_requests_total", "counter"),
        ("osir_gateway_request_duration_seconds", "histogram"),
        ("osir_gateway_upstream_duration_seconds", "histogram"),
        ("osir_gateway_key_cache_lookups_total", "counter"),
        ("osir_gateway_store_up", "gauge"),
        ("osir_gateway_store_errors_total", "counter"),
        ("osir_gateway_config_reloads_total", "counter"),
    ] {
        let line = format!("# TYPE {family} {kind}");
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    for result in ["hit", "miss", "negative_hit", "stale"] {
        assert!(
            text.contains(&format!(
                "osir_gateway_key_cache_lookups_total{{result=\"{result}\"}}"
            )),
            "{result}"
        );
    }
    for result in ["success", "failure"] {
        assert!(text.contains(&format!(
            "osir_gateway_config_reloads_total{{result=\"{result}\"}}"
        )));
    }
    assert_eq!(value(&text, "osir_gateway_store_up", &[]), 1.0);
}

#[tokio::test]
async fn requests_are_counted_by_route_template_method_status_and_reason() {
    let (_up, gw) = TestGateway::builder().start_with_upstream().await;
    let before = metrics(&gw).await;
    for p in ["/v1/status", "/v1/status/a", "/v1/status/b?x=1"] {
        assert_eq!(get(&gw.url(p), &[]).await.status, 200);
    }
    get(&gw.url("/nowhere/at/all"), &[])
        .await
        .assert_error(404, "route_not_found");
    get(&gw.url("/v1/domains/x"), &[])
        .await
        .assert_error(401, "missing_api_key");
    get(&gw.url("/v1/status/%2e%2e"), &[])
        .await
        .assert_error(400, "invalid_path");
    let after = metrics(&gw).await;

    let delta = |route, method, status, reason| {
        requests(&after, route, method, status, reason)
            - requests(&before, route, method, status, reason)
    };
    assert_eq!(delta("/v1/status", "GET", "200", "ok"), 3.0, "{after}");
    assert_eq!(
        delta("none", "GET", "404", "route_not_found"),
        1.0,
        "{after}"
    );
    assert_eq!(
        delta("/v1/domains", "GET", "401", "missing_api_key"),
        1.0,
        "{after}"
    );
    assert_eq!(delta("none", "GET", "400", "invalid_path"), 1.0, "{after}");
    let count = |text: &str, name: &str, label: (&str, &str)| value(text, name, &[label]);
    assert_eq!(
        value(
            &after,
            "osir_gateway_request_duration_seconds_count",
            &[("route", "/v1/status"), ("class", "2xx")]
        ),
        3.0
    );
    assert_eq!(
        count(
            &after,
            "osir_gateway_upstream_duration_seconds_count",
            ("upstream", "up")
        ),
        3.0
    );
    assert!(!after.contains("/v1/status/a") && !after.contains("/nowhere"));
}

#[tokio::test]
async fn random_paths_queries_and_ids_add_no_series() {
    let (_up, gw) = TestGateway::builder().start_with_upstream().await;
    // One of each kind first, so every series the flood can touch exists.
    for p in ["/v1/status/x", "/x", "/v1/domains/x", "/v1/status/%2e%2e"] {
        get(&gw.url(p), &[]).await;
    }
    let series = |text: &str| -> BTreeSet<String> {
        samples(text)
            .into_iter()
            .map(|(s, _)| s.to_owned())
            .collect()
    };
    let before = series(&metrics(&gw).await);
    let mut tokens = Vec::new();
    for i in 0..200 {
        let t = random_hex(16);
        let path = match i % 4 {
            0 => format!("/v1/status/{t}?q={t}"),
            1 => format!("/{t}"),
            2 => format!("/v1/domains/{t}"),
            _ => format!("/v1/status/{t}/%2e%2e"),
        };
        let id = format!("id-{t}");
        let r = get(&gw.url(&path), &[("x-request-id", &id)]).await;
        assert_eq!(r.header("x-request-id"), Some(id.as_str()));
        tokens.push(t);
    }
    let text = metrics(&gw).await;
    assert_eq!(series(&text), before, "new series appeared");
    for t in &tokens {
        assert!(!text.contains(t.as_str()), "{t} became a label");
    }
    assert_eq!(requests(&text, "/v1/status", "GET", "200", "ok"), 51.0);
    assert_eq!(
        requests(&text, "none", "GET", "404", "route_not_found"),
        51.0
    );
}

#[tokio::test]
async fn unknown_methods_are_labelled_other() {
    let (up, gw) = TestGateway::builder().start_with_upstream().await;
    let propfind = Method::from_bytes(b"PROPFIND").unwrap();
    let xyzzy = Method::from_bytes(b"XYZZY").unwrap();
    let r = send(propfind.clone(), &gw.url("/v1/status"), &[], Bytes::new()).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.last().method, "PROPFIND");
    send(xyzzy, &gw.url("/nowhere"), &[], Bytes::new())
        .await
        .assert_error(404, "route_not_found");
    // A private route has no scope for it: refused before any key check.
    send(propfind, &gw.url("/v1/domains"), &[], Bytes::new())
        .await
        .assert_error(405, "method_not_allowed");
    let text = metrics(&gw).await;
    assert_eq!(
        requests(&text, "/v1/status", "OTHER", "200", "ok"),
        1.0,
        "{text}"
    );
    assert_eq!(
        requests(&text, "none", "OTHER", "404", "route_not_found"),
        1.0
    );
    assert_eq!(
        requests(&text, "/v1/domains", "OTHER", "405", "method_not_allowed"),
        1.0
    );
    assert!(!text.contains("PROPFIND") && !text.contains("XYZZY"));
}

#[tokio::test]
async fn unknown_admin_paths_are_404_json() {
    let (_up, gw) = TestGateway::builder().start_with_upstream().await;
    for p in ["/nope", "/metrics/x", "/healthz/", "/v1/status", "/keysx"] {
        get(&gw.admin_url(p), &[])
            .await
            .assert_error(404, "route_not_found");
    }
    send(Method::POST, &gw.admin_url("/healthz"), &[], Bytes::new())
        .await
        .assert_error(404, "route_not_found");
}

#[tokio::test]
async fn the_key_api_is_absent_without_a_token() {
    // No token_env at all, and a token_env naming a variable that is unset:
    // both leave the key API off, answering as if it did not exist.
    let (up, plain) = TestGateway::builder().start_with_upstream().await;
    let unset = config(&up.url(), None, "").replace(
        "[admin]\n",
        "[admin]\ntoken_env = \"OSIR_IT_ADMIN_TOKEN_NEVER_SET\"\n",
    );
    let unset = TestGateway::builder().toml(&unset).start().await;
    let auth = [("authorization", "Bearer anything")];
    for gw in [&plain, &unset] {
        for (m, p) in [
            (Method::GET, "/keys"),
            (Method::POST, "/keys"),
            (Method::GET, "/keys/abc"),
            (Method::DELETE, "/keys/abc"),
            (Method::POST, "/keys/abc/rotate"),
        ] {
            for h in [&[][..], &auth[..]] {
                send(m.clone(), &gw.admin_url(p), h, Bytes::from_static(b"{}"))
                    .await
                    .assert_error(404, "route_not_found");
            }
        }
    }
}
