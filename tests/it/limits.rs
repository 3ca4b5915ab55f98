//! Connection and head limits (contract §6, HOSTILE §6): idle keep-alive
//! connections are closed after `server.idle_timeout`, over HTTP/1.1 and
//! HTTP/2, but never while a request is in flight; a slowloris client that
//! never finishes its head is cut off after `header_read_timeout`; a head
//! over `max_header_bytes` is answered 431 `headers_too_large` with the JSON
//! body, and one beyond hyper's own buffer gets hyper's bare 431. Nothing
//! refused here reaches the upstream.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use osir_gateway::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::client::{h2_client, parse_response, raw_session, send_with, Reply};
use crate::support::gateway::TestGateway;
use crate::support::h2wire::{self, H2Conn};
use crate::support::upstream::RecordingUpstream;

/// Generous bound for things that should happen within a few hundred ms.
const DEADLINE: Duration = Duration::from_secs(5);
const SHORT: Duration = Duration::from_millis(300);

async fn start(edit: impl FnOnce(&mut Config)) -> (RecordingUpstream, TestGateway) {
    TestGateway::builder()
        .edit(edit)
        .start_with_upstream()
        .await
}

/// A short idle timeout; the header-read timeout far longer, so only the
/// idle timeout can close an idle connection within [`DEADLINE`].
async fn idle_gateway() -> (RecordingUpstream, TestGateway) {
    start(|c| {
        c.server.idle_timeout = SHORT;
        c.server.header_read_timeout = Duration::from_secs(60);
    })
    .await
}

/// One HTTP/1.1 keep-alive connection, one request at a time.
struct H1 {
    s: TcpStream,
    addr: SocketAddr,
}

impl H1 {
    async fn connect(addr: SocketAddr) -> H1 {
        H1 {
            s: TcpStream::connect(addr).await.unwrap(),
            addr,
        }
    }

    /// Sends a GET and reads its response; `None` if the connection closed.
    async fn get(&mut self, path: &str, headers: &str) -> Option<Reply> {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\n{headers}\r\n",
            self.addr
        );
        self.s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(r) = parse_response(&buf, false) {
                return Some(r);
            }
            match tokio::time::timeout(DEADLINE, self.s.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                Err(_) => panic!("no response within {DEADLINE:?}"),
            }
        }
    }

    /// Waits for the server to close the connection; false if it is still
    /// open after `within` (anything the server sends meanwhile is a bug).
    async fn closed_within(&mut self, within: Duration) -> bool {
        let mut chunk = [0u8; 1024];
        match tokio::time::timeout(within, self.s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(n)) => panic!(
                "unexpected bytes on an idle connection: {:?}",
                String::from_utf8_lossy(&chunk[..n])
            ),
            Err(_) => false,
        }
    }
}

#[tokio::test]
async fn idle_http1_keep_alive_is_closed_but_busy_connections_are_not() {
    let (up, gw) = idle_gateway().await;

    // Keep-alive works: requests spaced below the timeout share one
    // connection for several timeouts' worth of time.
    let mut c = H1::connect(gw.addr).await;
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < SHORT * 4 {
        let r = c.get("/v1/status", "").await.expect("closed while in use");
        assert_eq!(r.status, 200, "{}", r.text());
        n += 1;
        tokio::time::sleep(SHORT / 3).await;
    }
    assert!(n >= 4 && up.count() == n);

    // Then, left idle, it is closed.
    assert!(
        c.closed_within(DEADLINE).await,
        "an idle keep-alive connection was not closed"
    );

    // A request in flight for longer than the idle timeout is never cut.
    let mut c = H1::connect(gw.addr).await;
    let slow = format!("x-test-delay-ms: {}\r\n", (SHORT * 2).as_millis());
    let r = c.get("/v1/status", &slow).await.expect("cut mid-request");
    assert_eq!(r.status, 200, "{}", r.text());
    // ... nor marked for closing: the next request goes through at once.
    let r = c
        .get("/v1/status", "")
        .await
        .expect("closed after a slow request");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(c.closed_within(DEADLINE).await);
}

#[tokio::test]
async fn http1_connections_that_never_send_a_request_are_closed() {
    let (_up, gw) = idle_gateway().await;
    let mut c = H1::connect(gw.addr).await;
    assert!(c.closed_within(DEADLINE).await);
}

/// Reads the response to stream `id` (HEADERS, then DATA to END_STREAM).
async fn h2_response(c: &mut H2Conn, id: u32) {
    let end = c
        .until(DEADLINE, |f| {
            f.stream == id
                && f.flags & h2wire::END_STREAM != 0
                && (f.kind == h2wire::DATA || f.kind == h2wire::HEADERS)
        })
        .await;
    assert!(end.is_some(), "no complete response on stream {id}");
}

#[tokio::test]
async fn idle_http2_connections_get_goaway_and_are_closed() {
    let (up, gw) = idle_gateway().await;
    let mut c = H2Conn::connect(gw.addr).await;
    // Streams spaced below the timeout keep it open.
    for id in [1, 3, 5, 7, 9] {
        c.get(id, "/v1/status", &[]).await;
        h2_response(&mut c, id).await;
        tokio::time::sleep(SHORT / 2).await;
    }
    assert_eq!(up.count(), 5);
    // No stream open: GOAWAY, then the connection ends.
    let goaway = c.until(DEADLINE, |f| f.kind == h2wire::GOAWAY).await;
    assert!(goaway.is_some(), "no GOAWAY on an idle HTTP/2 connection");
    let (_, closed) = c.drain(DEADLINE).await;
    assert!(closed, "an idle HTTP/2 connection was not closed");

    // A stream in flight longer than the timeout is not cut.
    let mut c = H2Conn::connect(gw.addr).await;
    let delay = (SHORT * 2).as_millis().to_string();
    c.get(1, "/v1/status", &[("x-test-delay-ms", &delay)]).await;
    let cut = c
        .until(DEADLINE, |f| {
            f.kind == h2wire::GOAWAY || (f.stream == 1 && f.flags & h2wire::END_STREAM != 0)
        })
        .await
        .expect("neither a response nor GOAWAY");
    assert_ne!(cut.kind, h2wire::GOAWAY, "GOAWAY with a stream in flight");
}

#[tokio::test]
async fn http2_peers_that_ignore_goaway_are_dropped() {
    let (_up, gw) = idle_gateway().await;
    let mut c = H2Conn::connect(gw.addr).await;
    // Acknowledges nothing (graceful shutdown waits for a PING ack) and
    // opens nothing.
    c.auto_ack = false;
    let (frames, closed) = c.drain(DEADLINE).await;
    assert!(closed, "still open; saw {frames:?}");
}

#[tokio::test]
async fn slowloris_heads_are_cut_off_after_the_header_read_timeout() {
    let (up, gw) = start(|c| {
        c.server.header_read_timeout = SHORT;
        c.server.idle_timeout = Duration::from_secs(60);
    })
    .await;
    let head = format!(
        "GET /v1/status HTTP/1.1\r\nHost: {}\r\nX-Slow: {}",
        gw.addr,
        "a".repeat(200)
    );
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let started = Instant::now();
    let mut cut = false;
    // One byte every 20 ms: never a complete head within the deadline.
    for b in head.bytes().chain(std::iter::repeat(b'a')) {
        if started.elapsed() > DEADLINE {
            break;
        }
        if s.write_all(&[b]).await.is_err() {
            cut = true;
            break;
        }
        let mut chunk = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(20), s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = true;
                break;
            }
            Ok(Ok(n)) => {
                // hyper sends nothing on a header timeout; a 408 would do too.
                let text = String::from_utf8_lossy(&chunk[..n]).into_owned();
                assert!(text.starts_with("HTTP/1.1 408"), "{text}");
            }
            Err(_) => {}
        }
    }
    assert!(cut, "a client trickling its head was never cut off");
    assert_eq!(up.count(), 0);

    // The same clock runs on an idle HTTP/1.1 keep-alive connection, so it
    // is closed after the smaller of the two timeouts.
    let mut c = H1::connect(gw.addr).await;
    assert_eq!(c.get("/v1/status", "").await.unwrap().status, 200);
    assert!(c.closed_within(DEADLINE).await);
}

#[tokio::test]
async fn slow_http2_header_frames_are_cut_off_by_the_idle_timeout() {
    let (up, gw) = idle_gateway().await;
    let mut c = H2Conn::connect(gw.addr).await;
    let pad = "p".repeat(2000);
    let block = h2wire::request_block("GET", "/v1/status", "localhost", &[("x-pad", &pad)]);
    let frame = h2wire::frame_bytes(
        h2wire::HEADERS,
        h2wire::END_HEADERS | h2wire::END_STREAM,
        1,
        &block,
    );
    // The frame header and a little of the block, then a byte every 20 ms:
    // the frame would take 40 s to arrive.
    c.write(&frame[..20]).await.unwrap();
    let started = Instant::now();
    let mut closed = false;
    for b in &frame[20..] {
        if started.elapsed() > DEADLINE {
            break;
        }
        if c.write(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        if let Some(f) = c.next(Duration::from_millis(20)).await {
            // SETTINGS, its ACK, GOAWAY and PING are fine; a response is not.
            assert!(f.kind != h2wire::HEADERS && f.kind != h2wire::DATA, "{f:?}");
            continue;
        }
        // `next` gives None on a timeout or on close: tell them apart.
        let mut probe = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), c.stream.peek(&mut probe)).await
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "a never-ending HTTP/2 header frame was not cut off");
    assert_eq!(up.count(), 0);
}

/// A raw GET of a public route whose head is exactly `size` bytes.
fn head_of(gw: &TestGateway, size: usize) -> Vec<u8> {
    let start = format!("GET /v1/status HTTP/1.1\r\nHost: {}\r\nX-Pad: ", gw.addr);
    let end = "\r\n\r\n";
    let pad = size - start.len() - end.len();
    format!("{start}{}{end}", "p".repeat(pad)).into_bytes()
}

#[tokio::test]
async fn heads_over_max_header_bytes_are_431_with_the_json_body() {
    let (up, gw) = start(|c| c.server.max_header_bytes = 16 * 1024).await;
    let limit = 16 * 1024;

    let r = crate::support::client::raw_exchange(gw.addr, &head_of(&gw, limit)).await;
    assert_eq!(r.status, 200, "a head of exactly the limit: {}", r.text());
    assert_eq!(up.count(), 1);

    for size in [limit + 1, limit + 100, limit + limit / 4 - 64] {
        let r = crate::support::client::raw_exchange(gw.addr, &head_of(&gw, size)).await;
        r.assert_error(431, "headers_too_large");
    }
    // Many small fields count as much as one big one.
    let mut many = String::new();
    for i in 0..90 {
        many.push_str(&format!("X-Field-{i:02}: {}\r\n", "v".repeat(180)));
    }
    let req = format!("GET /v1/status HTTP/1.1\r\nHost: {}\r\n{many}\r\n", gw.addr);
    assert!(req.len() > limit);
    let r = crate::support::client::raw_exchange(gw.addr, req.as_bytes()).await;
    r.assert_error(431, "headers_too_large");

    // Over HTTP/2 (under its own header-list limit) the same check answers.
    let pad = "p".repeat(limit);
    let r = send_with(
        &h2_client(),
        Method::GET,
        &gw.url("/v1/status"),
        &[("x-pad", &pad)],
        Bytes::new(),
    )
    .await;
    r.assert_error(431, "headers_too_large");
    assert_eq!(up.count(), 1, "an oversized head reached the upstream");
    assert_eq!(
        gw.gw
            .metrics
            .requests
            .with_label_values(&["none", "GET", "431", "headers_too_large"])
            .get(),
        5
    );
}

#[tokio::test]
async fn heads_beyond_hypers_buffer_get_a_bare_431_and_a_closed_connection() {
    let (up, gw) = start(|c| c.server.max_header_bytes = 16 * 1024).await;
    for req in [
        head_of(&gw, 64 * 1024),
        head_of(&gw, 1024 * 1024),
        // More than 100 fields, however small: hyper's parser limit.
        format!(
            "GET /v1/status HTTP/1.1\r\nHost: {}\r\n{}\r\n",
            gw.addr,
            (0..120)
                .map(|i| format!("x-{i}: 1\r\n"))
                .collect::<String>()
        )
        .into_bytes(),
    ] {
        let s = raw_session(gw.addr, &req).await;
        let first = s.text.lines().next().unwrap_or("(nothing)");
        println!("{} bytes: {first}, closed: {}", req.len(), s.closed);
        // The server may reset the connection with the head unread, which
        // can swallow its answer; what it does answer is a 431.
        assert!(
            s.text.is_empty() || s.text.starts_with("HTTP/1.1 431"),
            "{}",
            s.text
        );
        assert!(s.closed, "the connection stayed open");
    }
    assert_eq!(up.count(), 0);
    // And the gateway serves on.
    let r = crate::support::client::raw_exchange(gw.addr, &head_of(&gw, 1024)).await;
    assert_eq!(r.status, 200);
}
