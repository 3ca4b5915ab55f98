//! Hostile input, §6 resource exhaustion over HTTP/2 and the connection limit (see the list in `hostile`).

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::expect::Bench;
use crate::support::gateway::TestGateway;
use crate::support::h2wire::{self, H2Conn};

const DEADLINE: Duration = Duration::from_secs(5);

/// Connects over HTTP/2 and waits for the server's SETTINGS (answered).
async fn h2_ready(gw: &TestGateway) -> H2Conn {
    let mut c = H2Conn::connect(gw.addr).await;
    let settings = c
        .until(DEADLINE, |f| {
            f.kind == h2wire::SETTINGS && f.flags & h2wire::ACK == 0
        })
        .await;
    assert!(settings.is_some(), "no SETTINGS from the server");
    c
}

#[tokio::test]
async fn http2_rapid_reset_is_cut_off() {
    let b = Bench::build(TestGateway::builder()).await;
    let mut c = h2_ready(&b.gw).await;
    let streams = 2000u32;
    let mut burst = Vec::new();
    for i in 0..streams {
        let id = 1 + 2 * i;
        let block = h2wire::request_block("GET", "/v1/status", "localhost", &[]);
        burst.extend(h2wire::frame_bytes(
            h2wire::HEADERS,
            h2wire::END_HEADERS | h2wire::END_STREAM,
            id,
            &block,
        ));
        burst.extend(h2wire::frame_bytes(
            h2wire::RST_STREAM,
            0,
            id,
            &h2wire::CANCEL.to_be_bytes(),
        ));
    }
    // The server may hang up mid-burst.
    let _ = c.write(&burst).await;
    let (frames, closed) = c.drain(DEADLINE).await;
    let goaway = frames.iter().find(|f| f.kind == h2wire::GOAWAY);
    assert_eq!(
        goaway.and_then(|f| f.error_code()),
        Some(h2wire::ENHANCE_YOUR_CALM),
        "no GOAWAY(ENHANCE_YOUR_CALM); closed: {closed}"
    );
    assert!(closed, "the connection stayed open");
    // Almost none of the streams did upstream work.
    let reached = b.up.count();
    println!("rapid reset: {reached} of {streams} streams reached the upstream");
    assert!(
        reached < 100,
        "{reached} of {streams} reset streams reached the upstream"
    );
    // Others are served as before.
    let r = crate::support::client::get(&b.gw.url("/v1/status"), &[]).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn http2_continuation_floods_are_cut_off() {
    let b = Bench::build(TestGateway::builder()).await;
    let mut c = h2_ready(&b.gw).await;
    let block = h2wire::request_block("GET", "/v1/status", "localhost", &[]);
    let mut flood = h2wire::frame_bytes(h2wire::HEADERS, h2wire::END_STREAM, 1, &block);
    for i in 0..1000 {
        let mut field = Vec::new();
        h2wire::literal(&mut field, &format!("x-flood-{i}"), b"1");
        flood.extend(h2wire::frame_bytes(h2wire::CONTINUATION, 0, 1, &field));
    }
    let _ = c.write(&flood).await;
    let (frames, closed) = c.drain(DEADLINE).await;
    let goaway = frames.iter().find(|f| f.kind == h2wire::GOAWAY);
    assert!(
        goaway.is_some() && closed,
        "not cut off: {frames:?}, closed: {closed}"
    );
    assert_eq!(b.up.count(), 0);
}

#[tokio::test]
async fn http2_stream_limit_is_enforced() {
    let b =
        Bench::build(TestGateway::builder().edit(|c| c.server.http2.max_concurrent_streams = 3))
            .await;
    let mut c = h2_ready(&b.gw).await;
    let settings = c.server_settings.clone().unwrap().settings();
    assert!(
        settings.contains(&(h2wire::MAX_CONCURRENT_STREAMS, 3)),
        "{settings:?}"
    );
    // Three slow streams fill the limit; a fourth is refused.
    for id in [1, 3, 5] {
        c.get(id, "/v1/status", &[("x-test-delay-ms", "600")]).await;
    }
    c.get(7, "/v1/status", &[]).await;
    let mut refused = None;
    let mut done = Vec::new();
    let end = Instant::now() + DEADLINE;
    while done.len() < 3 && Instant::now() < end {
        let Some(f) = c.next(DEADLINE).await else {
            break;
        };
        if f.kind == h2wire::RST_STREAM && f.stream == 7 {
            refused = f.error_code();
        }
        if (f.kind == h2wire::DATA || f.kind == h2wire::HEADERS)
            && f.flags & h2wire::END_STREAM != 0
        {
            assert_ne!(f.stream, 7, "the stream over the limit was served");
            done.push(f.stream);
        }
    }
    assert_eq!(refused, Some(h2wire::REFUSED_STREAM));
    done.sort();
    assert_eq!(done, [1, 3, 5]);
    assert_eq!(b.up.count(), 3);
}

#[tokio::test]
async fn connections_over_the_limit_wait_to_be_accepted() {
    let b = Bench::build(TestGateway::builder().edit(|c| c.server.max_connections = 2)).await;
    let req = format!("GET /v1/status HTTP/1.1\r\nHost: {}\r\n\r\n", b.gw.addr);
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(b.gw.addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        open.push(s);
    }
    // A third client is left in the backlog while both stay open...
    let mut third = TcpStream::connect(b.gw.addr).await.unwrap();
    third.write_all(req.as_bytes()).await.unwrap();
    let mut buf = [0u8; 1024];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf)).await;
    assert!(early.is_err(), "served past max_connections: {early:?}");
    assert_eq!(b.up.count(), 2);
    // ... and served as soon as one of them goes.
    drop(open.pop());
    let n = tokio::time::timeout(DEADLINE, third.read(&mut buf))
        .await
        .expect("never accepted after a slot freed")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
}
