//! HTTP hygiene (issue 14), with real clients over real sockets: HEAD
//! wherever GET works on the admin listener, `Allow` on every 405, and an
//! HTTP/1.1 offer to upgrade to h2c answered as plain HTTP/1.1.

use bytes::Bytes;
use http::Method;

use crate::support::client::{client, h2_client, random_hex, raw_exchange, raw_session, send_with};
use crate::support::gateway::{config, TestGateway};
use crate::support::keys::{create_key, memory_store};
use crate::support::upstream::RecordingUpstream;
use osir_gateway::keys::Env;

const TOKEN: &str = "ops-http-admin-token";

async fn setup() -> (RecordingUpstream, TestGateway, osir_gateway::store::Store) {
    let up = RecordingUpstream::start("up").await;
    let store = memory_store();
    let var = format!("OSIR_TEST_ADMIN_{}", random_hex(8).to_uppercase());
    crate::support::set_test_env(&var, TOKEN);
    let toml = config(&up.url(), None, "").replace(
        "listen = \"127.0.0.1:2\"",
        &format!("listen = \"127.0.0.1:2\"\ntoken_env = \"{var}\""),
    );
    let gw = TestGateway::builder()
        .toml(&toml)
        .store(store.clone())
        .start()
        .await;
    (up, gw, store)
}

#[tokio::test]
async fn head_works_wherever_get_does_on_the_admin_listener() {
    let (_up, gw, store) = setup().await;
    let (_, rec) = create_key(&store, Env::Live, &["domains:read"], &[]).await;
    let auth = format!("Bearer {TOKEN}");
    let c = client();
    let keys = format!("/keys/{}", rec.id);
    for path in ["/healthz", "/readyz", "/metrics", "/keys", keys.as_str()] {
        let h = [("authorization", auth.as_str())];
        let got = send_with(&c, Method::GET, &gw.admin_url(path), &h, Bytes::new()).await;
        let head = send_with(&c, Method::HEAD, &gw.admin_url(path), &h, Bytes::new()).await;
        assert_eq!(head.status, got.status, "{path}");
        assert!(got.status.is_success(), "{path}: {}", got.text());
        assert!(head.body.is_empty(), "{path}: HEAD sent a body");
        assert_eq!(
            head.header("content-type"),
            got.header("content-type"),
            "{path}"
        );
        if path != "/metrics" {
            // The metrics text changes between two scrapes; the rest do not.
            assert_eq!(
                head.header("content-length"),
                Some(got.body.len().to_string().as_str()),
                "{path}"
            );
        }
        assert!(head.header("x-request-id").is_some());
    }
    // On the wire: no body bytes between the HEAD answer and the next one.
    let req = format!(
        "HEAD /healthz HTTP/1.1\r\nHost: {a}\r\n\r\nGET /healthz HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\n\r\n",
        a = gw.admin
    );
    let s = raw_session(gw.admin, req.as_bytes()).await;
    assert_eq!(s.responses(), 2, "{}", s.text);
    let (first, second) = s.text.split_at(s.text.rfind("HTTP/1.1 ").unwrap());
    assert!(
        first.ends_with("\r\n\r\n"),
        "HEAD answer carried a body: {first:?}"
    );
    assert!(second.ends_with("ok\n"), "{second:?}");
    // HEAD of a path that does not exist is a 404 like GET, without a body.
    let r = send_with(&c, Method::HEAD, &gw.admin_url("/nope"), &[], Bytes::new()).await;
    assert_eq!(r.status, 404);
    assert!(r.body.is_empty());
    // Over HTTP/2 too.
    let r = send_with(
        &h2_client(),
        Method::HEAD,
        &gw.admin_url("/healthz"),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
}

fn allow_set(value: Option<&str>) -> Vec<String> {
    let mut v: Vec<String> = value
        .unwrap_or("")
        .split(',')
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn every_405_says_what_is_allowed() {
    let (up, gw, store) = setup().await;
    let (_, rec) = create_key(&store, Env::Live, &["domains:read"], &[]).await;
    let auth = format!("Bearer {TOKEN}");
    let c = client();
    let id_path = format!("/keys/{}", rec.id);
    let rotate = format!("/keys/{}/rotate", rec.id);
    let admin_cases: [(Method, &str, &[&str]); 4] = [
        (Method::PUT, "/keys", &["GET", "HEAD", "POST"]),
        (Method::DELETE, "/keys", &["GET", "HEAD", "POST"]),
        (Method::POST, &id_path, &["DELETE", "GET", "HEAD", "PATCH"]),
        (Method::GET, &rotate, &["POST"]),
    ];
    for (m, p, allowed) in admin_cases {
        let r = send_with(
            &c,
            m.clone(),
            &gw.admin_url(p),
            &[("authorization", &auth)],
            Bytes::new(),
        )
        .await;
        r.assert_error(405, "method_not_allowed");
        assert_eq!(allow_set(r.header("allow")), allowed, "{m} {p}");
        // Each method the answer allows is indeed not a 405 there.
        for a in allowed {
            let m = Method::from_bytes(a.as_bytes()).unwrap();
            let r = send_with(
                &c,
                m,
                &gw.admin_url(p),
                &[("authorization", &auth)],
                Bytes::from_static(b"{}"),
            )
            .await;
            assert_ne!(r.status, 405, "{a} {p} is allowed: {}", r.text());
        }
    }

    let scoped = ["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"];
    // A method without a scope on a private route.
    let propfind = Method::from_bytes(b"PROPFIND").unwrap();
    let r = send_with(&c, propfind, &gw.url("/v1/domains/a"), &[], Bytes::new()).await;
    r.assert_error(405, "method_not_allowed");
    assert_eq!(allow_set(r.header("allow")), scoped);
    // TRACE, OPTIONS * and CONNECT, refused before routing.
    let r = send_with(&c, Method::TRACE, &gw.url("/v1/status"), &[], Bytes::new()).await;
    r.assert_error(405, "method_not_allowed");
    assert_eq!(allow_set(r.header("allow")), scoped);
    for line in ["OPTIONS * HTTP/1.1", "CONNECT example.com:443 HTTP/1.1"] {
        let req = format!("{line}\r\nHost: {}\r\n\r\n", gw.addr);
        let r = raw_exchange(gw.addr, req.as_bytes()).await;
        r.assert_error(405, "method_not_allowed");
        assert_eq!(allow_set(r.header("allow")), scoped, "{line}");
    }
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn an_h2c_upgrade_offer_is_answered_as_http1_and_not_forwarded() {
    let (up, gw, _store) = setup().await;
    // What `curl --http2 http://…` sends, twice on one connection.
    let offer = "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n";
    let req = format!(
        "GET /v1/status/a HTTP/1.1\r\nHost: {a}\r\n{offer}\r\nGET /v1/status/b HTTP/1.1\r\nHost: {a}\r\nUpgrade: H2C\r\nConnection: upgrade, close\r\n\r\n",
        a = gw.addr
    );
    let s = raw_session(gw.addr, req.as_bytes()).await;
    assert_eq!(s.responses(), 2, "{}", s.text);
    assert_eq!(
        s.text.matches("HTTP/1.1 200 OK\r\n").count(),
        2,
        "{}",
        s.text
    );
    assert!(!s.text.contains(" 101 "), "{}", s.text);
    let lower = s.text.to_ascii_lowercase();
    assert!(!lower.contains("upgrade"), "{}", s.text);
    let seen = up.requests();
    assert_eq!(seen.len(), 2);
    for r in &seen {
        for h in ["upgrade", "http2-settings", "connection"] {
            assert!(r.header(h).is_none(), "{h} forwarded: {r:?}");
        }
    }
    assert_eq!(seen[0].target, "/v1/status/a");
    assert_eq!(seen[1].target, "/v1/status/b");

    // Other upgrades, or h2c offered with another protocol, stay refused.
    for upgrade in ["websocket", "h2c, websocket", "h2", ""] {
        let req = format!(
            "GET /v1/status HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: {upgrade}\r\n\r\n",
            gw.addr
        );
        raw_exchange(gw.addr, req.as_bytes())
            .await
            .assert_error(400, "invalid_request");
    }
    // HTTP/1.0 has no upgrade mechanism to decline.
    let req = format!(
        "GET /v1/status HTTP/1.0\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
        gw.addr
    );
    raw_exchange(gw.addr, req.as_bytes())
        .await
        .assert_error(400, "invalid_request");
    assert_eq!(up.count(), 2);
}
