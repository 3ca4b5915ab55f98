//! The upstream client's pool bound (`src/pipeline/upstream/pool.rs`): at
//! most `pool_max` connections are open to a destination however many
//! requests arrive, over HTTP/1.1 and HTTP/2 alike (an HTTP/2 client's
//! streams draw on the same pool); a request that finds them all busy for
//! `pool_wait` gets 502 `upstream_unavailable`, counted as kind `pool`; and
//! only an idempotent bodiless request is retried, once, when a reused
//! connection turns out closed.
//!
//! The upstreams are scripted over raw TCP, so every connection is counted.

use std::time::Duration;

use bytes::Bytes;
use http::Method;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::engine::{answered, upstream_errors};
use crate::support::client::{get, h2_client, send, send_with};
use crate::support::eventually;
use crate::support::gateway::TestGateway;
use crate::support::h2wire::{H2Conn, RST_STREAM};
use crate::support::scripted::{Conn, ScriptedUpstream};

/// Answers every request with its target, after `x-delay-ms`.
async fn slow(mut c: Conn) {
    while let Some(req) = c.request().await {
        if let Some(ms) = req.header("x-delay-ms").and_then(|v| v.parse().ok()) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if !c.ok(&req.target).await {
            return;
        }
    }
}

/// A gateway in front of `up` with `pool_max`, `pool_wait`, and a 10 s
/// upstream timeout (which also bounds waiting for a connection).
async fn gateway(up: &ScriptedUpstream, max: usize, wait: Duration) -> TestGateway {
    TestGateway::builder()
        .upstream(&up.url())
        .edit(move |c| {
            let u = &mut c.upstreams[0];
            u.pool_max = max;
            u.pool_max_idle = max;
            u.pool_wait = wait;
            u.timeout = Duration::from_secs(10);
        })
        .start()
        .await
}

#[tokio::test]
async fn concurrent_requests_share_at_most_pool_max_connections() {
    let up = ScriptedUpstream::start(slow).await;
    let gw = gateway(&up, 2, Duration::from_secs(5)).await;
    let calls = (0..6).map(|i| {
        let url = gw.url(&format!("/v1/status/{i}"));
        async move { (i, get(&url, &[("x-delay-ms", "200")]).await) }
    });
    for (i, r) in futures_util::future::join_all(calls).await {
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(
            r.text(),
            format!("/v1/status/{i}"),
            "another request's answer"
        );
    }
    assert!(
        up.peak() <= 2,
        "{} upstream connections open at once, pool_max is 2",
        up.peak()
    );
    assert!(up.accepted() <= 2, "{} connections opened", up.accepted());
    assert_eq!(upstream_errors(&gw, None), 0.0);
}

#[tokio::test]
async fn requests_that_wait_past_pool_wait_get_502_counted_as_pool() {
    let up = ScriptedUpstream::start(slow).await;
    let gw = gateway(&up, 2, Duration::from_millis(100)).await;
    let calls = (0..6).map(|i| {
        let url = gw.url(&format!("/v1/status/{i}"));
        async move { get(&url, &[("x-delay-ms", "1500")]).await }
    });
    let replies = futures_util::future::join_all(calls).await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    for r in replies.iter().filter(|r| r.status != 200) {
        r.assert_error(502, "upstream_unavailable");
    }
    assert_eq!(ok, 2, "two hold the two connections, four wait in vain");
    assert_eq!(upstream_errors(&gw, Some("pool")), 4.0);
    assert_eq!(answered(&gw, 502, "upstream_unavailable"), 4.0);
    assert!(up.peak() <= 2, "peak {}", up.peak());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_draw_on_the_same_bounded_pool() {
    let up = ScriptedUpstream::start(slow).await;
    let gw = gateway(&up, 4, Duration::from_secs(10)).await;
    let c = h2_client();
    // One warm HTTP/2 connection first, so the 50 are streams on it.
    let r = send_with(
        &c,
        Method::GET,
        &gw.url("/v1/status/warm"),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "/v1/status/warm");
    let calls = (0..50).map(|i| {
        let c = c.clone();
        let url = gw.url(&format!("/v1/status/{i}"));
        async move {
            let r = send_with(&c, Method::GET, &url, &[("x-delay-ms", "50")], Bytes::new()).await;
            (i, r)
        }
    });
    for (i, r) in futures_util::future::join_all(calls).await {
        assert_eq!(r.status, 200, "stream {i}: {}", r.text());
        assert_eq!(
            r.text(),
            format!("/v1/status/{i}"),
            "another stream's answer"
        );
    }
    assert!(
        up.peak() <= 4,
        "{} upstream connections open at once, pool_max is 4",
        up.peak()
    );
    assert!(up.accepted() <= 4, "{} connections opened", up.accepted());
    assert_eq!(upstream_errors(&gw, None), 0.0);
}

/// Answers the first request on each connection; reads the second and
/// closes without answering (an upstream whose keep-alive ran out just as
/// the request arrived).
async fn one_per_connection(mut c: Conn) {
    let Some(first) = c.request().await else {
        return;
    };
    if !c.ok(&first.target).await {
        return;
    }
    let _ = c.request().await;
}

#[tokio::test]
async fn a_reused_connection_closed_unanswered_is_retried_only_for_idempotent_requests() {
    let up = ScriptedUpstream::start(one_per_connection).await;
    let gw = gateway(&up, 8, Duration::from_secs(1)).await;
    let r = get(&gw.url("/v1/status/a"), &[]).await;
    assert_eq!(r.text(), "/v1/status/a");
    assert_eq!(up.accepted(), 1);

    // Sent on the pooled connection, which closes unanswered: retried once
    // on a new connection, which answers.
    let r = get(&gw.url("/v1/status/b"), &[]).await;
    assert_eq!(
        r.status,
        200,
        "the idempotent GET was not retried: {}",
        r.text()
    );
    assert_eq!(r.text(), "/v1/status/b");
    assert_eq!(
        up.accepted(),
        2,
        "the GET was not retried on a new connection"
    );
    assert_eq!(upstream_errors(&gw, None), 0.0);

    // A POST in the same spot is not replayed: 502.
    let r = send(Method::POST, &gw.url("/v1/status/c"), &[], "body").await;
    r.assert_error(502, "upstream_unavailable");
    assert_eq!(up.accepted(), 2, "the POST was retried");
    assert_eq!(upstream_errors(&gw, Some("broken")), 1.0);
}

/// A listener whose accept queue is full, so new connects to it hang
/// (Linux drops their SYNs) until it accepts; and the connections that
/// fill the queue, to keep while it should hang.
async fn hanging_listener() -> (TcpListener, Vec<TcpStream>) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    while let Ok(Ok(s)) =
        tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await
    {
        queued.push(s);
        assert!(queued.len() < 64, "the accept queue never filled");
    }
    (listener, queued)
}

/// Sockets in SYN_SENT to 127.0.0.1:`port` (connects under way), from
/// `/proc/net/tcp`.
fn connecting_to(port: u16) -> usize {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(2) == Some(&want.as_str()) && f.get(3) == Some(&"02")
        })
        .count()
}

/// A gateway whose pool to `addr` has two places, waits 200 ms for one,
/// and connects for up to 5 s; `timeout` bounds each exchange.
async fn two_place_pool(addr: std::net::SocketAddr, timeout: Duration) -> TestGateway {
    TestGateway::builder()
        .upstream(&format!("http://{addr}"))
        .edit(|c| {
            let u = &mut c.upstreams[0];
            u.pool_max = 2;
            u.pool_max_idle = 2;
            u.pool_wait = Duration::from_millis(200);
            u.connect_timeout = Duration::from_secs(5);
            u.timeout = timeout;
        })
        .start()
        .await
}

/// The upstream recovers on `listener`: the pool has both places to
/// offer, so a request gets through.
async fn places_are_back(listener: TcpListener, gw: &TestGateway) {
    let up = ScriptedUpstream::serve(listener, slow);
    let r = get(&gw.url("/v1/status/back"), &[]).await;
    assert_eq!(
        r.status,
        200,
        "{} (kind=pool errors: {})",
        r.text(),
        upstream_errors(gw, Some("pool"))
    );
    assert_eq!(r.text(), "/v1/status/back");
    drop(up);
}

/// Requests cancelled while their connection is opening (here by the
/// upstream timeout, shorter than `connect_timeout`; an HTTP/2 client
/// resetting its stream does the same) give their place in the pool back:
/// the pool does not fill up with connections that never opened.
#[tokio::test]
async fn requests_cancelled_while_connecting_give_their_place_back() {
    let (listener, queued) = hanging_listener().await;
    let addr = listener.local_addr().unwrap();
    let gw = two_place_pool(addr, Duration::from_millis(300)).await;
    for i in 0..3 {
        let r = get(&gw.url(&format!("/v1/status/{i}")), &[]).await;
        assert_eq!(
            r.status,
            504,
            "request {i}: {} (kind=pool errors: {})",
            r.text(),
            upstream_errors(&gw, Some("pool"))
        );
        r.assert_error(504, "upstream_timeout");
    }
    assert_eq!(upstream_errors(&gw, Some("pool")), 0.0);

    places_are_back(listener, &gw).await;
    drop(queued);
}

/// The same over HTTP/2 with the default timeouts: streams the client
/// resets while their upstream connection is opening give their place back.
#[tokio::test]
async fn http2_streams_reset_while_connecting_give_their_place_back() {
    let (listener, queued) = hanging_listener().await;
    let addr = listener.local_addr().unwrap();
    let gw = two_place_pool(addr, Duration::from_secs(10)).await;
    let mut h2 = H2Conn::connect(gw.addr).await;
    for id in [1, 3, 5] {
        h2.get(id, &format!("/v1/status/{id}"), &[]).await;
        let connecting =
            eventually(Duration::from_secs(5), || connecting_to(addr.port()) == 1).await;
        assert!(
            connecting,
            "stream {id}: the gateway never began connecting"
        );
        h2.send(RST_STREAM, 0, id, &8u32.to_be_bytes()).await; // CANCEL
        let dropped = eventually(Duration::from_secs(5), || connecting_to(addr.port()) == 0).await;
        assert!(dropped, "stream {id}: the reset stream's connect went on");
    }

    places_are_back(listener, &gw).await;
    drop(queued);
}
