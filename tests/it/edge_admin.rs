//! The admin API's token check (issue 13, class 6): two `Authorization`
//! headers are refused (401) whatever their order or content, and a client
//! IP that fails the check `admin.failed_token_budget` times in a minute
//! gets 429 `rate_limited` with `Retry-After` for every key API call, the
//! right token included, while other IPs are unaffected; both are counted.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use crate::support::client::{parse_response, random_hex, Reply};
use crate::support::gateway::{config, TestGateway};
use crate::support::keys::memory_store;
use crate::support::upstream::RecordingUpstream;

const TOKEN: &str = "edge-admin-token-0123456789";

async fn start(budget: u32) -> (RecordingUpstream, TestGateway) {
    let up = RecordingUpstream::start("up").await;
    let var = format!("OSIR_EDGE_ADMIN_{}", random_hex(8).to_uppercase());
    crate::support::set_test_env(&var, TOKEN);
    let toml = config(&up.url(), None, "").replace(
        "listen = \"127.0.0.1:2\"",
        &format!("listen = \"127.0.0.1:2\"\ntoken_env = \"{var}\"\nfailed_token_budget = {budget}"),
    );
    let gw = TestGateway::builder()
        .toml(&toml)
        .store(memory_store())
        .start()
        .await;
    (up, gw)
}

/// `GET /keys` from source address `from`, with these header lines.
async fn call(admin: SocketAddr, from: &str, headers: &[String]) -> Reply {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut s = socket.connect(admin).await.unwrap();
    let mut req = format!("GET /keys HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("no answer")
        .unwrap();
    parse_response(&out, true).expect("no complete response")
}

fn metric(gw: &TestGateway, name: &str) -> u64 {
    let text = String::from_utf8(gw.gw.metrics.render()).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[tokio::test]
async fn two_authorization_headers_are_refused_whatever_they_hold() {
    let (_up, gw) = start(1000).await;
    let good = format!("Authorization: Bearer {TOKEN}");
    let bad = "Authorization: Bearer nope".to_owned();
    let cases: Vec<(&str, Vec<String>, u16)> = vec![
        ("good", vec![good.clone()], 200),
        ("good then bad", vec![good.clone(), bad.clone()], 401),
        ("bad then good", vec![bad.clone(), good.clone()], 401),
        ("good twice", vec![good.clone(), good.clone()], 401),
        (
            "good then empty",
            vec![good.clone(), "Authorization:".into()],
            401,
        ),
        (
            "good then other case",
            vec![good.clone(), format!("AUTHORIZATION: Bearer {TOKEN}")],
            401,
        ),
        (
            "comma list",
            vec![format!("Authorization: Bearer {TOKEN}, Bearer {TOKEN}")],
            401,
        ),
        ("basic", vec![format!("Authorization: Basic {TOKEN}")], 401),
        ("token only", vec![format!("Authorization: {TOKEN}")], 401),
        (
            "prefix of the token",
            vec![format!("Authorization: Bearer {}", &TOKEN[..10])],
            401,
        ),
        (
            "token plus a byte",
            vec![format!("Authorization: Bearer {TOKEN}x")],
            401,
        ),
        ("none", vec![], 401),
        (
            "lower-case scheme",
            vec![format!("authorization: bearer {TOKEN}")],
            200,
        ),
    ];
    for (name, headers, status) in &cases {
        let r = call(gw.admin, "127.0.0.1", headers).await;
        assert_eq!(r.status, *status, "{name}: {}", r.text());
        if *status == 401 {
            r.assert_error(401, "unauthorized");
            assert!(!r.text().contains(TOKEN), "{name}");
        }
    }
    assert_eq!(metric(&gw, "osir_gateway_admin_auth_failures_total"), 11);
}

#[tokio::test]
async fn failed_attempts_are_limited_per_client_ip() {
    let (_up, gw) = start(3).await;
    let good = vec![format!("Authorization: Bearer {TOKEN}")];
    let wrong = vec!["Authorization: Bearer guess".to_owned()];
    // Within the budget, failures are 401 and the right token still works.
    for _ in 0..2 {
        call(gw.admin, "127.0.0.3", &wrong)
            .await
            .assert_error(401, "unauthorized");
    }
    assert_eq!(call(gw.admin, "127.0.0.3", &good).await.status, 200);
    call(gw.admin, "127.0.0.3", &[])
        .await
        .assert_error(401, "unauthorized");
    // Past it, every call from that IP is 429, the right token included.
    for headers in [&wrong, &good, &wrong] {
        let r = call(gw.admin, "127.0.0.3", headers).await;
        r.assert_error(429, "rate_limited");
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
    }
    // Another client IP is not affected.
    assert_eq!(call(gw.admin, "127.0.0.4", &good).await.status, 200);
    call(gw.admin, "127.0.0.4", &wrong)
        .await
        .assert_error(401, "unauthorized");
    // Health and metrics need no token and are never limited.
    let r = call_path(gw.admin, "127.0.0.3", "/healthz").await;
    assert_eq!(r.status, 200);
    assert_eq!(metric(&gw, "osir_gateway_admin_rate_limited_total"), 3);
    assert_eq!(metric(&gw, "osir_gateway_admin_auth_failures_total"), 4);
}

async fn call_path(admin: SocketAddr, from: &str, path: &str) -> Reply {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut s = socket.connect(admin).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("no answer")
        .unwrap();
    parse_response(&out, true).expect("no complete response")
}
