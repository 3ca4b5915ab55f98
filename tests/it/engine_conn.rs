//! The HTTP/1.1 engine's connections (`src/server/h1`), on the wire:
//! pipelined requests are answered in order; bodiless answers (HEAD, 204,
//! 304) carry no body and leave the connection usable; chunked bodies
//! cross in both directions re-framed by the gateway, and a close-delimited
//! upstream answer reaches the client whole; `Connection: close` from the
//! client closes after the answer, and from the upstream keeps that
//! upstream connection out of the pool.

use std::time::Duration;

use crate::engine::DEADLINE;
use crate::support::gateway::TestGateway;
use crate::support::scripted::{Conn, ScriptedUpstream};
use crate::support::upstream::WireUpstream;
use crate::support::wire::RawConn;

/// Answers by target: `HEAD` gets `content-length: 1234` and no body
/// (`transfer-encoding: chunked` for `/chunked`; for `/stray`, a body it
/// should not have); `/stray` gets bytes after its body; `/early` a `103`
/// before its answer;
/// `/204` and `/304` those statuses; `/chunked` a chunked body in three
/// writes, with a trailer; `/eof` a body delimited by closing; `/close`
/// its target with `connection: close` (the script itself keeps reading,
/// so only the gateway can end the connection); anything else its target
/// as the body.
async fn script(mut c: Conn) {
    while let Some(req) = c.request().await {
        let target = req.target.as_str();
        let ok = match (req.method.as_str(), target.rsplit('/').next().unwrap_or("")) {
            ("HEAD", "chunked") => {
                c.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                    .await
            }
            ("HEAD", "stray") => {
                c.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")
                    .await
            }
            ("HEAD", _) => {
                c.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n")
                    .await
            }
            (_, "204") => c.write(b"HTTP/1.1 204 No Content\r\n\r\n").await,
            (_, "304") => {
                c.write(b"HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\n\r\n")
                    .await
            }
            (_, "chunked") => {
                c.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
                    .await
                    && c.write(b"7;ext=1\r\n, world\r\n").await
                    && c.write(b"0\r\nx-trailer: t\r\n\r\n").await
            }
            (_, "eof") => {
                c.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil ")
                    .await;
                c.write(b"the end").await;
                return;
            }
            (_, "stray") => {
                c.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA")
                    .await
            }
            (_, "early") => {
                c.write(b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n")
                    .await
                    && c.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal")
                        .await
            }
            (_, "close") => {
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{target}",
                    target.len()
                );
                c.write(reply.as_bytes()).await
            }
            _ => c.ok(target).await,
        };
        if !ok {
            return;
        }
    }
}

async fn start() -> (ScriptedUpstream, TestGateway) {
    let up = ScriptedUpstream::start(script).await;
    let gw = TestGateway::builder().upstream(&up.url()).start().await;
    (up, gw)
}

fn get(gw: &TestGateway, target: &str, headers: &str) -> Vec<u8> {
    gw.raw_request(&format!("GET {target} HTTP/1.1"), headers, "")
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (up, gw) = start().await;
    let mut all = get(&gw, "/v1/status/1", "");
    all.extend(gw.raw_request(
        "POST /v1/status/2 HTTP/1.1",
        "Content-Length: 5\r\n",
        "hello",
    ));
    all.extend(get(&gw, "/v1/status/3", ""));
    let mut c = RawConn::connect(gw.addr).await;
    assert!(c.send(&all).await);
    for n in 1..=3 {
        let r = c.response(false).await.expect("closed mid-pipeline");
        assert_eq!(r.status, 200, "answer {n}: {}", r.text());
        assert_eq!(r.text(), format!("/v1/status/{n}"), "answers out of order");
    }
    assert!(!c.closed_within(Duration::from_millis(200)).await);
    assert_eq!(
        up.accepted(),
        1,
        "the three went over one upstream connection"
    );
}

#[tokio::test]
async fn bodiless_answers_have_no_body_and_keep_the_connection() {
    let (up, gw) = start().await;
    let mut c = RawConn::connect(gw.addr).await;

    c.send(&gw.raw_request("HEAD /v1/status/h HTTP/1.1", "", ""))
        .await;
    let r = c.response(true).await.expect("closed after HEAD");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some("1234"),
        "HEAD lost the upstream's length"
    );
    assert!(r.header("transfer-encoding").is_none(), "{r:?}");

    // A HEAD whose GET would be chunked: no length is known, so none may
    // be claimed (RFC 9110 §8.6: only the length the GET would have).
    c.send(&gw.raw_request("HEAD /v1/status/chunked HTTP/1.1", "", ""))
        .await;
    let r = c.response(true).await.expect("closed after HEAD");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        None,
        "HEAD of a chunked answer claims a length: {r:?}"
    );

    for (target, status) in [("/v1/status/204", 204), ("/v1/status/304", 304)] {
        c.send(&get(&gw, target, "")).await;
        let r = c
            .response(false)
            .await
            .expect("closed after a bodiless answer");
        assert_eq!(r.status, status, "{target}: {r:?}");
        assert!(r.header("transfer-encoding").is_none(), "{target}: {r:?}");
        if status == 204 {
            assert!(r.header("content-length").is_none(), "204 with a length");
        } else {
            assert_eq!(r.header("etag"), Some("\"v1\""));
        }
    }

    // Any body bytes sent after those would be read as this answer's start.
    c.send(&get(&gw, "/v1/status/after", "")).await;
    let r = c
        .response(false)
        .await
        .expect("closed before the last request");
    assert_eq!(r.text(), "/v1/status/after");
    assert_eq!(
        up.accepted(),
        1,
        "a bodiless answer cost its upstream connection"
    );
}

/// Decodes a chunked body; panics on bad framing.
fn dechunk(mut wire: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = wire.split_once("\r\n").expect("chunk size line");
        let size = usize::from_str_radix(size, 16).expect("plain hex chunk size");
        if size == 0 {
            assert_eq!(rest, "\r\n", "trailers or bytes after the last chunk");
            return out;
        }
        out.push_str(&rest[..size]);
        wire = rest[size..]
            .strip_prefix("\r\n")
            .expect("CRLF after chunk data");
    }
}

#[tokio::test]
async fn a_chunked_request_body_is_reframed_by_the_gateway() {
    let wire = WireUpstream::start().await;
    let gw = TestGateway::builder().upstream(&wire).start().await;
    let req = gw.raw_request(
        "POST /v1/status HTTP/1.1",
        "Transfer-Encoding: chunked\r\n",
        "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n",
    );
    let mut c = RawConn::connect(gw.addr).await;
    c.send(&req).await;
    assert_eq!(c.response(false).await.expect("no answer").status, 200);
    let seen = wire.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let (head, body) = seen[0].split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.contains("\r\ntransfer-encoding: chunked"), "{head}");
    assert!(!head.contains("content-length"), "{head}");
    assert!(
        !body.contains("ext=1"),
        "the client's chunk extension went on: {body:?}"
    );
    assert_eq!(dechunk(body), "hello world");
}

#[tokio::test]
async fn chunked_and_close_delimited_answers_reach_the_client_whole() {
    let (_up, gw) = start().await;
    let mut c = RawConn::connect(gw.addr).await;
    for (target, body) in [
        ("/v1/status/chunked", "hello, world"),
        ("/v1/status/eof", "until the end"),
    ] {
        c.send(&get(&gw, target, "")).await;
        let r = c.response(false).await.expect("closed before the answer");
        assert_eq!(r.status, 200, "{target}");
        assert_eq!(r.text(), body, "{target}: {r:?}");
        assert!(
            r.header("transfer-encoding") == Some("chunked")
                || r.header("content-length").is_some(),
            "{target}: the client cannot tell where the body ends: {r:?}"
        );
        assert!(r.header("x-trailer").is_none(), "{target}: {r:?}");
    }
    // Both were framed for the client, so its connection carries on.
    c.send(&get(&gw, "/v1/status/next", "")).await;
    let r = c
        .response(false)
        .await
        .expect("closed after a streamed answer");
    assert_eq!(r.text(), "/v1/status/next");
}

#[tokio::test]
async fn connection_close_from_the_client_closes_after_the_answer() {
    let (_up, gw) = start().await;
    let mut c = RawConn::connect(gw.addr).await;
    c.send(&get(&gw, "/v1/status/a", "Connection: close\r\n"))
        .await;
    let r = c.response(false).await.expect("closed without an answer");
    assert_eq!(r.text(), "/v1/status/a");
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert!(
        c.closed_within(DEADLINE).await,
        "the connection stayed open"
    );
}

#[tokio::test]
async fn connection_close_from_the_upstream_keeps_that_connection_out_of_the_pool() {
    let (up, gw) = start().await;
    let mut c = RawConn::connect(gw.addr).await;
    for target in ["/v1/status/close", "/v1/status/a", "/v1/status/b"] {
        c.send(&get(&gw, target, "")).await;
        let r = c.response(false).await.expect("client connection closed");
        assert_eq!(r.text(), target);
    }
    assert_eq!(up.accepted(), 2, "the closing connection was reused");
    assert!(
        up.settles_at(1, DEADLINE).await,
        "the gateway did not close the connection the upstream asked to close ({} open)",
        up.open()
    );
}

/// Bytes an upstream sends past the end of an answer (a body after a HEAD
/// answer, more than its Content-Length) belong to no request: the client
/// gets the answer without them and that connection is not reused, so they
/// can never be read as the next request's answer.
#[tokio::test]
async fn bytes_past_an_upstream_answer_retire_its_connection() {
    let (up, gw) = start().await;
    let mut c = RawConn::connect(gw.addr).await;
    for (method, expect) in [("GET", "ok"), ("HEAD", "")] {
        c.send(&gw.raw_request(&format!("{method} /v1/status/stray HTTP/1.1"), "", ""))
            .await;
        let r = c.response(method == "HEAD").await.expect("closed");
        assert_eq!(r.status, 200, "{method}");
        assert_eq!(r.text(), expect, "{method}");
        let accepted = up.accepted();
        c.send(&get(&gw, "/v1/status/next", "")).await;
        let r = c.response(false).await.expect("closed");
        assert_eq!(r.text(), "/v1/status/next", "after {method}: {r:?}");
        assert_eq!(
            up.accepted(),
            accepted + 1,
            "after {method}: the connection with stray bytes was reused"
        );
    }
}

/// An interim `103` from the upstream is not passed on as the answer.
#[tokio::test]
async fn an_upstream_interim_answer_is_skipped() {
    let (_up, gw) = start().await;
    let mut c = RawConn::connect(gw.addr).await;
    c.send(&get(&gw, "/v1/status/early", "")).await;
    let r = c.response(false).await.expect("closed");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "final");
}

/// An HTTP/1.0 client gets an HTTP/1.0 answer: a body of unknown length
/// delimited by closing (1.0 has no chunking), a known one kept alive when
/// it asked for keep-alive.
#[tokio::test]
async fn http10_clients_get_bodies_they_can_frame() {
    let (_up, gw) = start().await;
    let mut c = RawConn::connect(gw.addr).await;
    c.send(&gw.raw_request(
        "GET /v1/status/a HTTP/1.0",
        "Connection: keep-alive\r\n",
        "",
    ))
    .await;
    let r = c.response(false).await.expect("closed");
    assert_eq!(r.text(), "/v1/status/a");
    assert_eq!(r.header("connection"), Some("keep-alive"), "{r:?}");
    c.send(&gw.raw_request(
        "GET /v1/status/chunked HTTP/1.0",
        "Connection: keep-alive\r\n",
        "",
    ))
    .await;
    let r = c.response(false).await.expect("closed");
    assert!(
        r.header("transfer-encoding").is_none(),
        "chunked to HTTP/1.0: {r:?}"
    );
    assert_eq!(r.text(), "hello, world");
    assert!(
        c.closed_within(DEADLINE).await,
        "a close-delimited body not closed"
    );
}

/// Bodies over the engines' coalescing size cross both ways intact, by
/// length and chunked.
#[tokio::test]
async fn large_bodies_cross_both_ways_intact() {
    use crate::support::client::{random_bytes, send, send_chunked};
    let (_up, gw) = TestGateway::builder().start_with_upstream().await;
    let body = random_bytes(3 * 1024 * 1024);
    let r = send(
        http::Method::POST,
        &gw.url("/v1/status/big"),
        &[],
        body.clone(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        r.body == body,
        "the echoed body differs ({} bytes back)",
        r.body.len()
    );
    let chunks: Vec<bytes::Bytes> = body
        .chunks(700 * 1024)
        .map(bytes::Bytes::copy_from_slice)
        .collect();
    let r = send_chunked(http::Method::POST, &gw.url("/v1/status/big"), &[], chunks).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body == body,
        "the echoed chunked body differs ({} bytes back)",
        r.body.len()
    );
}
