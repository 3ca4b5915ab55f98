//! What crosses the gateway (CONTRACT §6, §7; HOSTILE §4, §5): client
//! headers that could forge identity or forwarding data, and hop-by-hop
//! headers, never reach the upstream (nor the upstream's hop-by-hop headers
//! the client); bodies stream intact both ways under the route's limit;
//! upstream failures are 502/504; request ids are kept or replaced and
//! appear on every response; HTTP/2 works. Framing attacks are in
//! `smuggling.rs`.

use bytes::Bytes;
use http::Method;

use crate::support::client::{
    get, h2_client, random_bytes, raw_exchange, send, send_chunked, send_with,
};
use crate::support::gateway::TestGateway;
use crate::support::upstream::ClosedPort;

#[tokio::test]
async fn forged_forwarding_identity_and_hop_by_hop_headers_are_dropped() {
    let (up, gw) = TestGateway::builder().start_with_upstream().await;
    let headers = "X-Osir-Key-Id: forged\r\nX-Osir-Anything: x\r\nX-Osir-Env: live\r\n\
        X-Osir-Key_Id: forged\r\nX_Forwarded_For: 6.6.6.6\r\nX-Custom_Thing: 1\r\n\
        X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil.example\r\n\
        X-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\nForwarded: for=6.6.6.6\r\n\
        X-Real-IP: 6.6.6.6\r\nProxy-Authorization: Basic eDp5\r\nProxy-Connection: keep-alive\r\n\
        TE: trailers\r\nKeep-Alive: timeout=5\r\nTrailer: X-T\r\n\
        Authorization: Bearer osir_test_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\
        X-Kept: yes\r\n";
    let r = raw_exchange(
        gw.addr,
        &gw.raw_request("GET /v1/status HTTP/1.1", headers, ""),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    let names: Vec<&str> = seen.headers.keys().map(|n| n.as_str()).collect();
    for n in &names {
        assert!(!n.starts_with("x-osir-"), "{n} forwarded: {names:?}");
        assert!(!n.contains('_'), "{n} forwarded: {names:?}");
    }
    for n in [
        "x-forwarded-host",
        "x-forwarded-port",
        "forwarded",
        "x-real-ip",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "keep-alive",
        "trailer",
        "authorization",
    ] {
        assert!(!names.contains(&n), "{n} forwarded: {names:?}");
    }
    // The gateway's own, from the real peer, replacing the client's.
    let xff: Vec<_> = seen.headers.get_all("x-forwarded-for").iter().collect();
    assert_eq!(xff, ["127.0.0.1"]);
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-request-id"), r.header("x-request-id"));
    assert_eq!(seen.header("x-kept"), Some("yes"));
}

#[tokio::test]
async fn connection_removes_what_it_names_but_not_the_gateways_own_headers() {
    let (up, gw) = TestGateway::builder().start_with_upstream().await;
    let headers = "Connection: X-Osir-Key-Id, X-Custom, x-forwarded-for\r\n\
        Connection: X-Forwarded-Proto, x-request-id, X-Custom2\r\n\
        X-Custom: 1\r\nX-Custom2: 2\r\nX-Other: 3\r\nX-Request-Id: rid-conn-1\r\n";
    let r = raw_exchange(
        gw.addr,
        &gw.raw_request("GET /v1/status HTTP/1.1", headers, ""),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert!(seen.headers.get("x-custom").is_none());
    assert!(seen.headers.get("x-custom2").is_none());
    assert!(seen.headers.get("connection").is_none());
    assert_eq!(seen.header("x-other"), Some("3"));
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-request-id"), Some("rid-conn-1"));
    assert_eq!(r.header("x-request-id"), Some("rid-conn-1"));
}

#[tokio::test]
async fn client_x_forwarded_for_from_an_untrusted_peer_is_replaced() {
    let (up, gw) = TestGateway::builder().start_with_upstream().await;
    let r = get(
        &gw.url("/v1/status"),
        &[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "5.6.7.8, 9.9.9.9"),
            ("x-real-ip", "1.2.3.4"),
            ("forwarded", "for=1.2.3.4;proto=https"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = up.last();
    let xff: Vec<_> = seen.headers.get_all("x-forwarded-for").iter().collect();
    assert_eq!(xff, ["127.0.0.1"]);
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert!(seen.headers.get("x-real-ip").is_none());
    assert!(seen.headers.get("forwarded").is_none());
}

#[tokio::test]
async fn hop_by_hop_response_headers_never_reach_the_client() {
    let (up, gw) = TestGateway::builder().start_with_upstream().await;
    let req = gw.raw_request("GET /v1/status HTTP/1.1", "x-test-hop: 1\r\n", "");
    let r = raw_exchange(gw.addr, &req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-upstream"), Some("up"));
    assert!(r.headers.get("x-secret-resp").is_none(), "{r:?}");
    assert!(r.headers.get("keep-alive").is_none(), "{r:?}");
    assert!(r.headers.get("proxy-authenticate").is_none(), "{r:?}");
    for v in r.headers.get_all("connection") {
        assert!(!v.to_str().unwrap().contains("x-secret-resp"), "{r:?}");
    }
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn large_bodies_stream_intact_both_ways() {
    let (up, gw) = TestGateway::builder().start_with_upstream().await;
    let body = Bytes::from(random_bytes(3 * 1024 * 1024));
    let r = send(Method::POST, &gw.url("/v1/status"), &[], body.clone()).await;
    assert_eq!(r.status, 200);
    assert!(up.last().body == body, "request body changed on the way");
    assert!(r.body == body, "response body changed on the way");
}

#[tokio::test]
async fn chunked_request_bodies_arrive_intact() {
    let (up, gw) = TestGateway::builder().start_with_upstream().await;
    let chunks: Vec<Bytes> = (1..=64)
        .map(|i| Bytes::from(random_bytes(i * 97)))
        .collect();
    let whole: Vec<u8> = chunks.concat();
    let r = send_chunked(Method::PUT, &gw.url("/v1/status/up"), &[], chunks).await;
    assert_eq!(r.status, 200);
    assert!(up.last().body == whole, "request body changed on the way");
    assert!(r.body == whole, "response body changed on the way");
    // The same, framed by hand.
    let req = gw.raw_request(
        "POST /v1/status HTTP/1.1",
        "Transfer-Encoding: chunked\r\n",
        "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n",
    );
    let r = raw_exchange(gw.addr, &req).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.last().body, "hello world");
    assert_eq!(r.body, "hello world");
}

#[tokio::test]
async fn bodies_over_the_route_limit_are_413() {
    let (up, gw) = TestGateway::builder().start_with_upstream().await;
    let url = gw.url("/v1/small");
    for n in [2000, 1025] {
        send(Method::POST, &url, &[], random_bytes(n))
            .await
            .assert_error(413, "payload_too_large");
    }
    assert_eq!(up.count(), 0, "a declared oversize body was forwarded");
    // Refused on the declaration alone: before the body has even arrived.
    let head = format!(
        "POST /v1/small HTTP/1.1\r\nHost: {}\r\nContent-Length: 2000\r\n\r\n{}",
        gw.addr,
        "x".repeat(500)
    );
    raw_exchange(gw.addr, head.as_bytes())
        .await
        .assert_error(413, "payload_too_large");
    assert_eq!(up.count(), 0, "a declared oversize body was forwarded");

    // Chunked: the size is only known while streaming; the upstream may see
    // the start of it, never more than the limit.
    let chunks: Vec<Bytes> = (0..20).map(|_| Bytes::from(random_bytes(100))).collect();
    send_chunked(Method::POST, &url, &[], chunks)
        .await
        .assert_error(413, "payload_too_large");
    assert!(up.requests().iter().all(|r| r.body.len() <= 1024));

    // Exactly the limit passes, both ways of framing it.
    let body = random_bytes(1024);
    let r = send(Method::POST, &url, &[], body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().body, body);
    let chunks = vec![
        Bytes::from(body[..512].to_vec()),
        Bytes::from(body[512..].to_vec()),
    ];
    let r = send_chunked(Method::POST, &url, &[], chunks).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().body, body);
}

#[tokio::test]
async fn an_unreachable_upstream_is_502() {
    let closed = ClosedPort::new();
    let gw = TestGateway::builder().upstream(&closed).start().await;
    get(&gw.url("/v1/status"), &[])
        .await
        .assert_error(502, "upstream_unavailable");
}

#[tokio::test]
async fn a_slow_upstream_is_504() {
    let (up, gw) = TestGateway::builder().start_with_upstream().await;
    get(&gw.url("/v1/status"), &[("x-test-delay-ms", "3000")])
        .await
        .assert_error(504, "upstream_timeout");
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn valid_request_ids_are_kept_and_invalid_ones_replaced() {
    let (up, gw) = TestGateway::builder().start_with_upstream().await;
    let long_ok = "a".repeat(128);
    for id in ["abc-123._X", long_ok.as_str()] {
        let r = get(&gw.url("/v1/status"), &[("x-request-id", id)]).await;
        assert_eq!(r.header("x-request-id"), Some(id));
        assert_eq!(up.last().header("x-request-id"), Some(id));
    }
    let too_long = "a".repeat(129);
    for bad in [too_long.as_str(), "a b", "a/b", "", "abc\"", "x:y"] {
        let r = get(&gw.url("/v1/status"), &[("x-request-id", bad)]).await;
        let got = r.header("x-request-id").unwrap().to_owned();
        assert_ne!(got, bad);
        assert!(
            (1..=128).contains(&got.len())
                && got
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c)),
            "{got:?}"
        );
        assert_eq!(up.last().header("x-request-id"), Some(got.as_str()));
    }
}

#[tokio::test]
async fn every_answer_carries_a_request_id_matching_its_body() {
    let (up, gw) = TestGateway::builder().start_with_upstream().await;
    let mut ids = Vec::new();
    let mut check = |r: crate::support::client::Reply, status: u16, code: &str| {
        r.assert_error(status, code);
        ids.push(r.header("x-request-id").unwrap().to_owned());
    };
    check(
        get(&gw.url("/v1/status/%2e%2e"), &[]).await,
        400,
        "invalid_path",
    );
    check(
        get(&gw.url("/v1/domains"), &[]).await,
        401,
        "missing_api_key",
    );
    check(get(&gw.url("/nowhere"), &[]).await, 404, "route_not_found");
    let connect = format!("CONNECT {} HTTP/1.1\r\nHost: {}\r\n\r\n", up.addr, up.addr);
    check(
        raw_exchange(gw.addr, connect.as_bytes()).await,
        405,
        "method_not_allowed",
    );
    let big = send(Method::POST, &gw.url("/v1/small"), &[], random_bytes(2000)).await;
    check(big, 413, "payload_too_large");
    let slow = get(&gw.url("/v1/status"), &[("x-test-delay-ms", "3000")]).await;
    check(slow, 504, "upstream_timeout");
    let closed = ClosedPort::new();
    let down = TestGateway::builder().upstream(&closed).start().await;
    check(
        get(&down.url("/v1/status"), &[]).await,
        502,
        "upstream_unavailable",
    );
    let ok = get(&gw.url("/v1/status"), &[]).await;
    ids.push(
        ok.header("x-request-id")
            .expect("200 without X-Request-Id")
            .to_owned(),
    );
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "request ids repeat: {ids:?}");
}

#[tokio::test]
async fn http2_prior_knowledge_is_served() {
    let (up, gw) = TestGateway::builder().start_with_upstream().await;
    let c = h2_client();
    let r = send_with(
        &c,
        Method::GET,
        &gw.url("/v1/status?h=2"),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "ok");
    assert!(r.header("x-request-id").is_some());
    let seen = up.last();
    assert_eq!(seen.target, "/v1/status?h=2");
    assert_eq!(seen.header("host"), Some(up.addr.to_string().as_str()));
    let body = Bytes::from(random_bytes(256 * 1024));
    let r = send_with(&c, Method::POST, &gw.url("/v1/status"), &[], body.clone()).await;
    assert_eq!(r.status, 200);
    assert!(r.body == body && up.last().body == body);
    // The gateway's own answers carry their fields over HTTP/2 too (the
    // HTTP/1.1 engine writes them without a header map; this one needs it).
    let seen = up.count();
    let r = send_with(&c, Method::GET, &gw.url("/v1/domains"), &[], Bytes::new()).await;
    assert_eq!(
        (r.status.as_u16(), r.code().as_str()),
        (401, "missing_api_key")
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"osir\""));
    let id = r.header("x-request-id").expect("x-request-id on a refusal");
    assert!(
        r.text().contains(&format!("\"request_id\":\"{id}\"")),
        "{}",
        r.text()
    );
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
    assert_eq!(up.count(), seen, "a refusal reached the upstream");
    // Request ids are sent never-indexed (HPACK): each answer on the one
    // connection still carries its own, the one the upstream was given.
    let mut ids = Vec::new();
    for _ in 0..5 {
        let r = send_with(&c, Method::GET, &gw.url("/v1/status"), &[], Bytes::new()).await;
        assert_eq!(r.status, 200);
        let id = r.header("x-request-id").expect("x-request-id").to_owned();
        assert_eq!(up.last().header("x-request-id"), Some(id.as_str()));
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "request ids repeat over HTTP/2: {ids:?}");
}
