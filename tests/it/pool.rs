//! Upstream connection pooling (`src/upstream.rs`): connections are reused
//! after clean exchanges and only then; a connection the upstream closed, or
//! whose response the client abandoned, is never reused (so no response can
//! reach the wrong request); idle connections close after
//! `pool_idle_timeout`; at most `pool_max_idle` stay open; a reload that
//! leaves an upstream unchanged keeps its pool.
//!
//! The upstream here is raw TCP so the test sees every connection: it counts
//! accepted and still-open connections, and answers each request with its
//! own target as the body, so a response given to the wrong request shows.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::client::{get, send};
use crate::support::eventually;
use crate::support::gateway::{config, parse, TestGateway};

/// Answers by path: `/v1/status/close` answers, then closes the connection
/// (as an upstream whose keep-alive timer fired would); `/v1/status/stream`
/// sends a 64 MiB body slowly, until the reader goes; `/v1/status/empty`
/// answers 204; `HEAD` gets a head with `content-length: 2`; anything else
/// gets 200 with the request target as the body (after `x-delay-ms`).
struct ScriptedUpstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedUpstream {
    async fn start() -> ScriptedUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (a, o) = (accepted.clone(), open.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                o.fetch_add(1, Ordering::SeqCst);
                let o = o.clone();
                tokio::spawn(async move {
                    serve(stream).await;
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        ScriptedUpstream {
            addr,
            accepted,
            open,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Waits (up to 5 s) until exactly `n` connections are open.
    async fn settles_at(&self, n: usize) -> bool {
        eventually(Duration::from_secs(5), || self.open() == n).await
    }
}

impl Drop for ScriptedUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut s: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Requests here have no body: the head is the request.
        let end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let mut line = head.split(' ');
        let method = line.next().unwrap_or("").to_owned();
        let target = line.next().unwrap_or("").to_owned();
        let delay = head
            .lines()
            .find_map(|l| l.strip_prefix("x-delay-ms: "))
            .and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(ms) = delay {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let ok = match (method.as_str(), target.as_str()) {
            ("HEAD", _) => write(&mut s, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n").await,
            (_, "/v1/status/empty") => write(&mut s, b"HTTP/1.1 204 No Content\r\n\r\n").await,
            (_, "/v1/status/stream") => {
                let head = b"HTTP/1.1 200 OK\r\ncontent-length: 67108864\r\n\r\n";
                if !write(&mut s, head).await {
                    return;
                }
                let data = vec![b'x'; 16 * 1024];
                while write(&mut s, &data).await {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                return;
            }
            _ => {
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{target}",
                    target.len()
                );
                write(&mut s, reply.as_bytes()).await
            }
        };
        if !ok || target == "/v1/status/close" {
            return;
        }
    }
}

async fn write(s: &mut TcpStream, bytes: &[u8]) -> bool {
    s.write_all(bytes).await.is_ok()
}

/// The shared test config with `upstream_extra` added to `[upstreams.up]`.
fn pool_config(up: &ScriptedUpstream, upstream_extra: &str) -> String {
    config(&up.url(), None, "").replace(
        "timeout = \"1s\"\n",
        &format!("timeout = \"1s\"\n{upstream_extra}\n"),
    )
}

async fn start(up: &ScriptedUpstream, upstream_extra: &str) -> TestGateway {
    TestGateway::builder()
        .toml(&pool_config(up, upstream_extra))
        .start()
        .await
}

/// GETs `target` through the gateway and checks the answer is this request's.
async fn get_own(gw: &TestGateway, target: &str) {
    let r = get(&gw.url(target), &[]).await;
    assert_eq!(r.status, 200, "{target}: {}", r.text());
    assert_eq!(r.text(), target, "the answer to another request came back");
}

fn metric(gw: &TestGateway, line_start: &str) -> Option<f64> {
    let text = String::from_utf8(gw.gw.metrics.render()).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn sequential_requests_share_one_upstream_connection() {
    let up = ScriptedUpstream::start().await;
    let gw = start(&up, "").await;
    for i in 0..20 {
        get_own(&gw, &format!("/v1/status/{i}")).await;
    }
    assert_eq!(
        up.accepted(),
        1,
        "each request should reuse the pooled connection"
    );
    assert_eq!(
        metric(
            &gw,
            "osir_gateway_upstream_connections_total{upstream=\"up\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn bodiless_answers_return_their_connection() {
    let up = ScriptedUpstream::start().await;
    let gw = start(&up, "").await;
    for _ in 0..3 {
        let r = send(http::Method::HEAD, &gw.url("/v1/status/h"), &[], "").await;
        assert_eq!(r.status, 200);
        assert!(r.body.is_empty());
        let r = get(&gw.url("/v1/status/empty"), &[]).await;
        assert_eq!(r.status, 204);
        get_own(&gw, "/v1/status/after").await;
    }
    assert_eq!(up.accepted(), 1);
}

#[tokio::test]
async fn a_connection_the_upstream_closed_is_not_reused() {
    let up = ScriptedUpstream::start().await;
    let gw = start(&up, "").await;
    for i in 0..10 {
        get_own(&gw, "/v1/status/close").await;
        get_own(&gw, &format!("/v1/status/{i}")).await;
    }
    // Every close forces a new connection; nothing failed on the way.
    assert!(up.accepted() >= 10, "accepted {}", up.accepted());
    assert_eq!(
        metric(
            &gw,
            "osir_gateway_upstream_errors_total{kind=\"broken\",upstream=\"up\"}"
        ),
        None
    );
}

#[tokio::test]
async fn an_abandoned_response_closes_its_connection_and_never_leaks_into_the_next() {
    let up = ScriptedUpstream::start().await;
    let gw = start(&up, "").await;
    get_own(&gw, "/v1/status/warm").await;
    // A client reads part of a long body, then goes away.
    let mut c = TcpStream::connect(gw.addr).await.unwrap();
    let req = format!(
        "GET /v1/status/stream HTTP/1.1\r\nHost: {}\r\n\r\n",
        gw.addr
    );
    c.write_all(req.as_bytes()).await.unwrap();
    let mut got = 0;
    let mut buf = [0u8; 8192];
    while got < 64 * 1024 {
        let n = c.read(&mut buf).await.unwrap();
        assert!(n > 0, "the stream ended early");
        got += n;
    }
    drop(c);
    // The half-read connection is closed upstream, not pooled.
    assert!(
        up.settles_at(1).await,
        "the abandoned upstream connection stayed open ({} open)",
        up.open()
    );
    for i in 0..5 {
        get_own(&gw, &format!("/v1/status/next-{i}")).await;
    }
    assert_eq!(up.accepted(), 2, "the warm connection serves the rest");
}

#[tokio::test]
async fn idle_connections_close_after_the_pool_idle_timeout() {
    let up = ScriptedUpstream::start().await;
    let gw = start(&up, "pool_idle_timeout = \"1s\"").await;
    get_own(&gw, "/v1/status/a").await;
    assert_eq!(up.open(), 1);
    assert!(
        up.settles_at(0).await,
        "the idle connection was never closed"
    );
    get_own(&gw, "/v1/status/b").await;
    assert_eq!(up.accepted(), 2);
}

#[tokio::test]
async fn at_most_pool_max_idle_connections_stay_open() {
    let up = ScriptedUpstream::start().await;
    let gw = start(&up, "pool_max_idle = 2").await;
    let url = gw.url("/v1/status/slow");
    let slow: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url, &[("x-delay-ms", "200")]).await })
        })
        .collect();
    for r in slow {
        assert_eq!(r.await.unwrap().status, 200);
    }
    assert_eq!(
        up.accepted(),
        6,
        "six concurrent requests need six connections"
    );
    assert!(
        up.settles_at(2).await,
        "{} connections open, max idle is 2",
        up.open()
    );
    for i in 0..5 {
        get_own(&gw, &format!("/v1/status/{i}")).await;
    }
    assert_eq!(up.accepted(), 6);
}

#[tokio::test]
async fn pool_max_idle_zero_closes_every_connection() {
    let up = ScriptedUpstream::start().await;
    let gw = start(&up, "pool_max_idle = 0").await;
    for i in 0..3 {
        get_own(&gw, &format!("/v1/status/{i}")).await;
    }
    assert_eq!(up.accepted(), 3);
    assert!(
        up.settles_at(0).await,
        "{} connections stayed open with pool_max_idle = 0",
        up.open()
    );
}

#[tokio::test]
async fn a_reload_keeps_the_pools_of_unchanged_upstreams_only() {
    let up = ScriptedUpstream::start().await;
    let gw = start(&up, "").await;
    get_own(&gw, "/v1/status/a").await;
    // Routes change, the upstream does not: the warm connection is kept.
    let routes_only =
        pool_config(&up, "") + "[[routes]]\nprefix = \"/v2\"\nupstream = \"up\"\npublic = true\n";
    gw.gw.apply(parse(&routes_only));
    get_own(&gw, "/v1/status/b").await;
    get_own(&gw, "/v2/c").await;
    assert_eq!(up.accepted(), 1);
    // The upstream's settings change: a new pool, and the old one closes.
    gw.gw.apply(parse(&pool_config(&up, "pool_max_idle = 8")));
    get_own(&gw, "/v1/status/d").await;
    assert_eq!(up.accepted(), 2);
    assert!(
        up.settles_at(1).await,
        "the replaced pool's connection stayed open"
    );
}
