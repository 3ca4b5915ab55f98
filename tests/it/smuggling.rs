//! Request smuggling and framing (HOSTILE §5), over raw TCP: conflicting or
//! odd framing is refused (400) or answered once and the connection closed,
//! and the body of a request the gateway refuses unread is never parsed as a
//! second request. In every case the upstream receives nothing smuggled:
//! each attack hides `GET /v1/status/smuggled`, a public route that would be
//! forwarded if it were ever read as a request. On the upstream side, the
//! wire shows framing the gateway built itself: one framing header, no
//! client trailers.

use crate::support::client::{raw_exchange, raw_session};
use crate::support::gateway::TestGateway;
use crate::support::upstream::{RecordingUpstream, WireUpstream};

const SMUGGLED: &str = "GET /v1/status/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

fn nothing_smuggled(up: &RecordingUpstream) {
    let targets: Vec<String> = up.requests().into_iter().map(|r| r.target).collect();
    assert!(
        targets.iter().all(|t| !t.contains("smuggled")),
        "smuggled: {targets:?}"
    );
}

/// Content-Length with Transfer-Encoding: the engine refuses the request
/// (400) and closes the connection, so what follows is never read as a
/// request.
#[tokio::test]
async fn content_length_with_transfer_encoding_cannot_smuggle() {
    let (up, gw) = TestGateway::builder().start_with_upstream().await;
    for framing in [
        "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
    ] {
        let body = format!("0\r\n\r\n{SMUGGLED}");
        let req = gw.raw_request("POST /v1/status HTTP/1.1", framing, &body);
        let s = raw_session(gw.addr, &req).await;
        assert!(s.responses() <= 1, "{}", s.text);
        assert!(
            s.text.starts_with("HTTP/1.1 400") || s.closed,
            "neither refused nor closed: {}",
            s.text
        );
    }
    nothing_smuggled(&up);
    for r in up.requests() {
        assert!(
            !(r.headers.contains_key("content-length")
                && r.headers.contains_key("transfer-encoding")),
            "both framings forwarded: {:?}",
            r.headers
        );
    }
}

#[tokio::test]
async fn ambiguous_framing_is_refused() {
    let (up, gw) = TestGateway::builder().start_with_upstream().await;
    for framing in [
        "Content-Length: 5\r\nContent-Length: 50\r\n",
        "Content-Length: 5, 50\r\n",
        "Transfer-Encoding: xchunked\r\n",
        "Transfer-Encoding: chunked, identity\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
    ] {
        let body = format!("0\r\n\r\n{SMUGGLED}");
        let req = gw.raw_request("POST /v1/status HTTP/1.1", framing, &body);
        let s = raw_session(gw.addr, &req).await;
        assert!(
            s.text.starts_with("HTTP/1.1 400"),
            "{framing:?}: {}",
            s.text
        );
        assert_eq!(s.responses(), 1, "{framing:?}: {}", s.text);
    }
    assert_eq!(up.count(), 0);
}

/// The body of a request the gateway refuses without reading it must not
/// be parsed as the next request on the connection.
#[tokio::test]
async fn the_body_of_a_refused_request_is_not_a_second_request() {
    let (up, gw) = TestGateway::builder().start_with_upstream().await;
    let cl = format!("Content-Length: {}\r\n", SMUGGLED.len());
    let chunked_body = format!("{:x}\r\n{SMUGGLED}\r\n0\r\n\r\n", SMUGGLED.len());
    let cases = [
        (
            "GET /v1/domains HTTP/1.1",
            cl.clone(),
            SMUGGLED.to_owned(),
            "401",
        ),
        (
            "POST /v1/domains HTTP/1.1",
            "Transfer-Encoding: chunked\r\n".to_owned(),
            chunked_body,
            "401",
        ),
        (
            "POST /nowhere HTTP/1.1",
            cl.clone(),
            SMUGGLED.to_owned(),
            "404",
        ),
        (
            "POST /v1/status/%2e%2e HTTP/1.1",
            cl,
            SMUGGLED.to_owned(),
            "400",
        ),
        (
            "POST /v1/small HTTP/1.1",
            "Content-Length: 2000\r\n".to_owned(),
            SMUGGLED.to_owned(),
            "413",
        ),
    ];
    // Each session waits for the connection to go idle: run them together.
    let sessions = cases.iter().map(|(line, framing, body, _)| {
        let req = gw.raw_request(line, framing, body);
        async move { raw_session(gw.addr, &req).await }
    });
    let sessions = futures_util::future::join_all(sessions).await;
    for ((line, _, _, status), s) in cases.iter().zip(sessions) {
        assert!(
            s.text.starts_with(&format!("HTTP/1.1 {status}")),
            "{line}: {}",
            s.text
        );
        assert_eq!(s.responses(), 1, "{line}: {}", s.text);
    }
    assert_eq!(up.count(), 0);
}

/// The request on the upstream's wire carries exactly one framing header
/// of the gateway's making, and no trailer from the client (trailers could
/// otherwise carry an `X-Osir-*` past the header hygiene).
#[tokio::test]
async fn the_upstream_sees_only_framing_the_gateway_built() {
    let wire = WireUpstream::start().await;
    let gw = TestGateway::builder().upstream(&wire).start().await;
    let trailers = gw.raw_request(
        "POST /v1/status HTTP/1.1",
        "Transfer-Encoding: chunked\r\nTrailer: X-Osir-Key-Id\r\nTE: trailers\r\n",
        "5\r\nhello\r\n0\r\nX-Osir-Key-Id: forged\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
    );
    assert_eq!(raw_exchange(gw.addr, &trailers).await.status, 200);
    let both = gw.raw_request(
        "POST /v1/status HTTP/1.1",
        "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
        &format!("5\r\nhello\r\n0\r\n\r\n{SMUGGLED}"),
    );
    // Content-Length with Transfer-Encoding is refused outright (never
    // forwarded either way), with the JSON error.
    raw_exchange(gw.addr, &both)
        .await
        .assert_error(400, "invalid_request");
    let plain = gw.raw_request("POST /v1/status HTTP/1.1", "Content-Length: 5\r\n", "hello");
    assert_eq!(raw_exchange(gw.addr, &plain).await.status, 200);

    let seen = wire.requests();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    for req in &seen {
        let lower = req.to_ascii_lowercase();
        let lines: Vec<&str> = lower.split("\r\n").collect();
        let framing = lines
            .iter()
            .filter(|l| l.starts_with("content-length:") || l.starts_with("transfer-encoding:"))
            .count();
        assert_eq!(framing, 1, "{req}");
        for bad in ["forged", "6.6.6.6", "smuggled", "\r\ntrailer:", "\r\nte:"] {
            assert!(!lower.contains(bad), "{bad:?} on the wire: {req}");
        }
        assert!(lower.contains("hello"), "{req}");
    }
    assert!(seen[1]
        .to_ascii_lowercase()
        .contains("\r\ncontent-length: 5\r\n"));
}
