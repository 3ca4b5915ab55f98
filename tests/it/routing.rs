//! Routing and request shape from outside (CONTRACT §3): prefixes match on
//! segment boundaries, the longest wins, matching is case-sensitive, the
//! query passes through byte for byte; CONNECT and `OPTIONS *` are 405,
//! Upgrade is 400, an absolute-form target naming another authority is 400,
//! and the upstream always sees its own `Host`, never the client's.

use bytes::Bytes;
use http::Method;

use crate::support::client::{
    get, h2_client, raw_exchange, raw_get, raw_session, send_with, Reply,
};
use crate::support::gateway::TestGateway;
use crate::support::upstream::RecordingUpstream;

/// One raw request with the given request line and extra header lines.
async fn raw(gw: &TestGateway, request_line: &str, headers: &str) -> Reply {
    raw_exchange(gw.addr, &gw.raw_request(request_line, headers, "")).await
}

#[tokio::test]
async fn prefixes_match_on_segment_boundaries() {
    let (up, gw) = TestGateway::builder().start_with_upstream().await;
    for p in ["/v1/status", "/v1/status/x", "/v1/status/x/y"] {
        assert_eq!(get(&gw.url(p), &[]).await.status, 200, "{p}");
        assert_eq!(up.last().target, p);
    }
    for p in ["/v1/domains", "/v1/domains/x"] {
        get(&gw.url(p), &[])
            .await
            .assert_error(401, "missing_api_key");
    }
    for p in [
        "/v1/statusx",
        "/v1/status-x",
        "/v1/domainsx",
        "/v1/domain",
        "/v1",
        "/",
        "/v2/status",
    ] {
        get(&gw.url(p), &[])
            .await
            .assert_error(404, "route_not_found");
    }
    assert_eq!(up.count(), 3);
}

#[tokio::test]
async fn longest_prefix_wins() {
    let up = RecordingUpstream::start("up").await;
    let deep = RecordingUpstream::start("deep").await;
    let extra = format!(
        "[upstreams.deep]\nurl = \"{}\"\n[[routes]]\nprefix = \"/v1/status/deep\"\nupstream = \"deep\"\npublic = true\n",
        deep.url()
    );
    let gw = TestGateway::builder()
        .upstream(&up)
        .extra(&extra)
        .start()
        .await;
    for (p, want) in [
        ("/v1/status/deep", "deep"),
        ("/v1/status/deep/x", "deep"),
        ("/v1/status/deep/", "deep"),
        ("/v1/status/deeper", "up"),
        ("/v1/status/dee", "up"),
        ("/v1/status", "up"),
    ] {
        let r = get(&gw.url(p), &[]).await;
        assert_eq!(r.status, 200, "{p}");
        assert_eq!(r.header("x-upstream"), Some(want), "{p}");
    }
    let deep_targets: Vec<String> = deep.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(
        deep_targets,
        ["/v1/status/deep", "/v1/status/deep/x", "/v1/status/deep/"]
    );
    assert_eq!(up.count(), 3);
}

#[tokio::test]
async fn routing_is_case_sensitive() {
    let (up, gw) = TestGateway::builder().start_with_upstream().await;
    for p in [
        "/V1/status",
        "/v1/Status",
        "/v1/STATUS",
        "/v1/Domains/x",
        // Decoded, this is /v1/Status: still not a route.
        "/v1/%53tatus",
    ] {
        get(&gw.url(p), &[])
            .await
            .assert_error(404, "route_not_found");
    }
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn a_trailing_slash_stays_on_the_route_and_is_forwarded() {
    let (up, gw) = TestGateway::builder().start_with_upstream().await;
    assert_eq!(get(&gw.url("/v1/status/"), &[]).await.status, 200);
    assert_eq!(up.last().target, "/v1/status/");
    get(&gw.url("/v1/domains/"), &[])
        .await
        .assert_error(401, "missing_api_key");
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn the_query_is_forwarded_byte_for_byte() {
    let (up, gw) = TestGateway::builder().start_with_upstream().await;
    for target in [
        "/v1/status?b=2&a=1&a=%20&&x",
        "/v1/status/x?q=%2e%2e/..;&y=%41%zz&=&z",
        "/v1/status?api_keyx=1&x_api_key=2",
    ] {
        let r = raw_get(gw.addr, target.as_bytes()).await;
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        assert_eq!(up.last().target, target);
    }
    // A credential in the query never travels, even on a public route;
    // the rest keeps its bytes and order.
    let r = raw_get(gw.addr, b"/v1/status?b=2&api_key=osir_test_x&a=%20&&x").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().target, "/v1/status?b=2&a=%20&&x");
    assert_eq!(up.count(), 4);
}

#[tokio::test]
async fn connect_is_405() {
    let (up, gw) = TestGateway::builder().start_with_upstream().await;
    let tunnel_to_upstream = format!("CONNECT {} HTTP/1.1", up.addr);
    for line in [
        "CONNECT example.com:443 HTTP/1.1",
        tunnel_to_upstream.as_str(),
    ] {
        raw(&gw, line, "")
            .await
            .assert_error(405, "method_not_allowed");
    }
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn options_star_and_trace_are_405_but_options_on_a_path_is_forwarded() {
    let (up, gw) = TestGateway::builder().start_with_upstream().await;
    raw(&gw, "OPTIONS * HTTP/1.1", "")
        .await
        .assert_error(405, "method_not_allowed");
    raw(&gw, "TRACE /v1/status HTTP/1.1", "")
        .await
        .assert_error(405, "method_not_allowed");
    assert_eq!(up.count(), 0);
    let r = raw(&gw, "OPTIONS /v1/status HTTP/1.1", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().method, "OPTIONS");
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn upgrade_requests_are_refused() {
    let (up, gw) = TestGateway::builder().start_with_upstream().await;
    for headers in [
        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        // (An offer of h2c alone is ignored instead: tests/it/ops_http.rs.)
        "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c, websocket\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n",
        // An Upgrade header without Connection: upgrade is no better.
        "Upgrade: websocket\r\n",
    ] {
        raw(&gw, "GET /v1/status HTTP/1.1", headers)
            .await
            .assert_error(400, "invalid_request");
    }
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn absolute_form_naming_another_authority_is_refused() {
    let (up, gw) = TestGateway::builder().start_with_upstream().await;
    let port = gw.addr.port();
    let targets = [
        "http://evil.example/v1/status".to_owned(),
        format!("http://{}/v1/status", up.addr),
        format!("http://127.0.0.1:{}/v1/status", port.wrapping_add(1)),
        format!("http://localhost:{port}/v1/status"),
    ];
    for t in &targets {
        raw(&gw, &format!("GET {t} HTTP/1.1"), "")
            .await
            .assert_error(400, "invalid_request");
    }
    // HTTP/2 carries the authority in `:authority`; a different Host is
    // refused the same way.
    let r = send_with(
        &h2_client(),
        Method::GET,
        &gw.url("/v1/status"),
        &[("host", "evil.example")],
        Bytes::new(),
    )
    .await;
    r.assert_error(400, "invalid_request");
    // The right authority does not excuse a bad path.
    let line = format!("GET http://{}/v1/status/%2e%2e/billing HTTP/1.1", gw.addr);
    raw(&gw, &line, "").await.assert_error(400, "invalid_path");
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn absolute_form_naming_the_gateway_is_accepted() {
    let (up, gw) = TestGateway::builder().start_with_upstream().await;
    let line = format!("GET http://{}/v1/status/x?y=1 HTTP/1.1", gw.addr);
    let r = raw(&gw, &line, "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.target, "/v1/status/x?y=1");
    assert_eq!(seen.header("host"), Some(up.addr.to_string().as_str()));
}

#[tokio::test]
async fn the_upstream_sees_its_own_host_never_the_clients() {
    let (up, gw) = TestGateway::builder().start_with_upstream().await;
    let req =
        b"GET /v1/status HTTP/1.1\r\nHost: evil.example\r\nX-Forwarded-Host: evil.example\r\n\r\n";
    let r = raw_exchange(gw.addr, req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.header("host"), Some(up.addr.to_string().as_str()));
    assert!(seen.headers.get("x-forwarded-host").is_none());
    assert_eq!(seen.headers.get_all("host").iter().count(), 1);

    // HTTP/1.0 without any Host: the upstream still gets its own.
    let s = raw_session(gw.addr, b"GET /v1/status/old HTTP/1.0\r\n\r\n").await;
    assert!(s.text.starts_with("HTTP/1.0 200"), "{}", s.text);
    let seen = up.last();
    assert_eq!(seen.target, "/v1/status/old");
    assert_eq!(seen.header("host"), Some(up.addr.to_string().as_str()));

    // Two Host headers leave the authority ambiguous: refused.
    let two = b"GET /v1/status HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n";
    raw_exchange(gw.addr, two)
        .await
        .assert_error(400, "invalid_request");
    assert_eq!(up.count(), 2);
}
