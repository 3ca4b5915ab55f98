//! The gateway's own HTTP/1.1 engine (`src/server/h1`), on the wire: every
//! framing it refuses is the contract's JSON error with `X-Request-Id`,
//! counted in `osir_gateway_requests_total`, never forwarded, and the
//! connection closed after; a request body that is malformed or ends early
//! is the client's error (400), never a 502 nor an upstream error; and
//! `Expect: 100-continue` is answered only for a request being forwarded.
//! Connection handling is in `engine_conn`, the upstream pool in
//! `engine_pool`, slow clients in `engine_slow`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;

use crate::support::eventually;
use crate::support::gateway::TestGateway;
use crate::support::scripted::{Conn, ScriptedUpstream};
use crate::support::wire::RawConn;

pub(crate) const DEADLINE: Duration = Duration::from_secs(5);

/// The sum of every sample of metric `name` whose labels include all of
/// `labels` (each `key="value"`); 0 when there is none.
pub(crate) fn metric_sum(gw: &TestGateway, name: &str, labels: &[&str]) -> f64 {
    let text = String::from_utf8(gw.gw.metrics.render()).unwrap();
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix('{')?;
            let (set, value) = rest.rsplit_once("} ")?;
            let set: Vec<&str> = set.split(',').collect();
            labels
                .iter()
                .all(|want| set.contains(want))
                .then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}

/// `osir_gateway_requests_total` answered `status` with `reason`.
pub(crate) fn answered(gw: &TestGateway, status: u16, reason: &str) -> f64 {
    let status = format!("status=\"{status}\"");
    let reason = format!("reason=\"{reason}\"");
    metric_sum(gw, "osir_gateway_requests_total", &[&status, &reason])
}

/// `osir_gateway_upstream_errors_total`, all kinds (or one).
pub(crate) fn upstream_errors(gw: &TestGateway, kind: Option<&str>) -> f64 {
    let kind = kind.map(|k| format!("kind=\"{k}\""));
    let labels: Vec<&str> = kind.iter().map(String::as_str).collect();
    metric_sum(gw, "osir_gateway_upstream_errors_total", &labels)
}

/// Each request is refused with `(status, code)`, as JSON with a request
/// id, counted once, and the connection is closed after the answer.
#[tokio::test]
async fn every_framing_refusal_is_a_counted_json_error_and_closes() {
    let (up, gw) = TestGateway::builder()
        .edit(|c| c.server.max_header_bytes = 4096)
        .start_with_upstream()
        .await;
    let host = format!("Host: {}\r\n", gw.addr);
    let post = |framing: &str, body: &str| {
        format!("POST /v1/status HTTP/1.1\r\n{host}{framing}\r\n{body}")
    };
    let many_fields: String = (0..101).map(|i| format!("X-F{i}: v\r\n")).collect();
    // Never completed, a little over max_header_bytes * 1.25 (5120).
    let big_head = format!(
        "GET /v1/status HTTP/1.1\r\n{host}X-Big: {}\r\n",
        "a".repeat(5200)
    );
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "bad request line",
            format!("GET /v1/status HTTP/1.1 extra\r\n{host}\r\n"),
            400,
            "invalid_request",
        ),
        (
            "bad header line",
            format!("GET /v1/status HTTP/1.1\r\n{host}Bad Name: x\r\n\r\n"),
            400,
            "invalid_request",
        ),
        (
            "Content-Length: +5",
            post("Content-Length: +5\r\n", "hello"),
            400,
            "invalid_request",
        ),
        (
            "Content-Length: 005",
            post("Content-Length: 005\r\n", "hello"),
            400,
            "invalid_request",
        ),
        (
            "two Content-Lengths",
            post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"),
            400,
            "invalid_request",
        ),
        (
            "Content-Length with Transfer-Encoding",
            post(
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            400,
            "invalid_request",
        ),
        (
            "Transfer-Encoding: gzip, chunked",
            post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"),
            400,
            "invalid_request",
        ),
        (
            "Transfer-Encoding: xchunked",
            post("Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"),
            400,
            "invalid_request",
        ),
        (
            "obs-fold",
            format!("GET /v1/status HTTP/1.1\r\n{host}X-A: one\r\n two\r\n\r\n"),
            400,
            "invalid_request",
        ),
        (
            "bare LF",
            format!("GET /v1/status HTTP/1.1\n{}\n\n", host.trim_end()),
            400,
            "invalid_request",
        ),
        (
            "chunk size of 17 hex digits",
            post(
                "Transfer-Encoding: chunked\r\n",
                "10000000000000000\r\nx\r\n0\r\n\r\n",
            ),
            400,
            "invalid_request",
        ),
        (
            "HTTP/1.1 without Host",
            "GET /v1/status HTTP/1.1\r\n\r\n".to_owned(),
            400,
            "invalid_request",
        ),
        (
            "absolute-form ftp",
            format!("GET ftp://x/v1/status HTTP/1.1\r\n{host}\r\n"),
            400,
            "invalid_request",
        ),
        (
            "101 header fields",
            format!("GET /v1/status HTTP/1.1\r\n{host}{many_fields}\r\n"),
            431,
            "headers_too_large",
        ),
        (
            "head over max_header_bytes * 1.25",
            big_head,
            431,
            "headers_too_large",
        ),
    ];
    for (what, req, status, code) in cases {
        let before = answered(&gw, status, code);
        let mut c = RawConn::connect(gw.addr).await;
        assert!(c.send(req.as_bytes()).await, "{what}: could not send");
        let r = c
            .response(false)
            .await
            .unwrap_or_else(|| panic!("{what}: closed without an answer"));
        assert_eq!(r.status, status, "{what}: {r:?} {}", r.text());
        r.assert_error(status, code);
        assert!(
            c.closed_within(DEADLINE).await,
            "{what}: the connection stayed open after the refusal"
        );
        let counted = eventually(DEADLINE, || answered(&gw, status, code) == before + 1.0).await;
        assert!(
            counted,
            "{what}: counted {} times in osir_gateway_requests_total",
            answered(&gw, status, code) - before
        );
    }
    assert_eq!(
        up.count(),
        0,
        "refused requests reached the upstream: {:?}",
        up.requests()
    );
}

/// An upstream that counts the bytes it reads (and never answers), so a
/// test can wait until the gateway has begun forwarding a request.
async fn counting_upstream() -> (ScriptedUpstream, Arc<AtomicUsize>) {
    let read = Arc::new(AtomicUsize::new(0));
    let r = read.clone();
    let up = ScriptedUpstream::start(move |mut c: Conn| {
        let r = r.clone();
        async move {
            use tokio::io::AsyncReadExt;
            let mut chunk = [0u8; 4096];
            while let Ok(n) = c.stream.read(&mut chunk).await {
                if n == 0 {
                    return;
                }
                r.fetch_add(n, Ordering::SeqCst);
            }
        }
    })
    .await;
    (up, read)
}

/// A request body that is malformed, or ends before its declared length
/// (after forwarding began), is answered 400 `invalid_request`, or the
/// connection closed, but never 502, and no upstream error is counted.
#[tokio::test]
async fn a_bad_or_truncated_request_body_is_the_clients_error() {
    let (up, read) = counting_upstream().await;
    let gw = TestGateway::builder()
        .upstream(&up.url())
        .edit(|c| c.upstreams[0].timeout = Duration::from_secs(10))
        .start()
        .await;

    // A bad chunk size after a good chunk.
    let req = gw.raw_request(
        "POST /v1/status HTTP/1.1",
        "Transfer-Encoding: chunked\r\n",
        "5\r\nhello\r\nzz\r\nmore\r\n0\r\n\r\n",
    );
    let mut c = RawConn::connect(gw.addr).await;
    c.send(&req).await;
    if let Some(r) = c.response(false).await {
        r.assert_error(400, "invalid_request");
        assert!(
            c.closed_within(DEADLINE).await,
            "left open after a bad body"
        );
    }

    // Content-Length: 100, ten bytes, then the client half-closes, once
    // the upstream has received the head and those ten bytes.
    let req = gw.raw_request(
        "POST /v1/status HTTP/1.1",
        "Content-Length: 100\r\n",
        "0123456789",
    );
    let before = read.load(Ordering::SeqCst);
    let mut c = RawConn::connect(gw.addr).await;
    c.send(&req).await;
    let forwarded = eventually(DEADLINE, || {
        read.load(Ordering::SeqCst) >= before + req.len()
    })
    .await;
    assert!(forwarded, "the gateway never began forwarding the body");
    c.s.shutdown().await.unwrap();
    if let Some(r) = c.response(false).await {
        r.assert_error(400, "invalid_request");
        assert!(
            c.closed_within(DEADLINE).await,
            "left open after a short body"
        );
    }

    assert_eq!(answered(&gw, 502, "upstream_unavailable"), 0.0);
    assert_eq!(
        upstream_errors(&gw, None),
        0.0,
        "a client's bad body was counted as an upstream error"
    );
}

/// `100 Continue` comes only for a request that is forwarded, before its
/// final answer; a request refused before forwarding gets its refusal
/// with no `100` first.
#[tokio::test]
async fn expect_100_continue_is_answered_only_when_forwarding() {
    let (up, gw) = TestGateway::builder().start_with_upstream().await;

    let mut c = RawConn::connect(gw.addr).await;
    let head = gw.raw_request(
        "POST /v1/status HTTP/1.1",
        "Content-Length: 5\r\nExpect: 100-continue\r\n",
        "",
    );
    c.send(&head).await;
    let interim = c.response(false).await.expect("closed before 100 Continue");
    assert_eq!(interim.status, 100, "{interim:?}");
    assert!(c.pending().is_empty(), "more than the 100 before the body");
    c.send(b"hello").await;
    let r = c.response(false).await.expect("closed before the answer");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "hello", "the upstream did not get the body");
    assert_eq!(up.count(), 1);
    assert!(up.last().header("expect").is_none(), "Expect was forwarded");

    // No key on a keyed route: 401, and no invitation to send the body.
    let mut c = RawConn::connect(gw.addr).await;
    let head = gw.raw_request(
        "POST /v1/domains HTTP/1.1",
        "Content-Length: 5\r\nExpect: 100-continue\r\n",
        "",
    );
    c.send(&head).await;
    let r = c.response(false).await.expect("closed without an answer");
    r.assert_error(401, "missing_api_key");
    assert!(
        !c.pending().starts_with(b"HTTP/1.1 100"),
        "a 100 Continue after the refusal"
    );
    assert_eq!(up.count(), 1, "the refused request was forwarded");

    // Over the route's body limit by its Content-Length: 413, no 100.
    let mut c = RawConn::connect(gw.addr).await;
    let head = gw.raw_request(
        "POST /v1/small HTTP/1.1",
        "Content-Length: 2000\r\nExpect: 100-continue\r\n",
        "",
    );
    c.send(&head).await;
    let r = c.response(false).await.expect("closed without an answer");
    r.assert_error(413, "payload_too_large");
    assert_eq!(up.count(), 1, "the refused request was forwarded");

    // An HTTP/1.0 client's expectation is ignored (RFC 9110 §10.1.1): no
    // 100 (a 1.0 client cannot read one), just the answer.
    let mut c = RawConn::connect(gw.addr).await;
    let req = gw.raw_request(
        "POST /v1/status HTTP/1.0",
        "Content-Length: 5\r\nExpect: 100-continue\r\n",
        "hello",
    );
    c.send(&req).await;
    let r = c.response(false).await.expect("closed without an answer");
    assert_eq!(r.status, 200, "a 100 Continue to an HTTP/1.0 client: {r:?}");
    assert_eq!(r.text(), "hello");
}
