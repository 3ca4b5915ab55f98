//! Serving over TLS: HTTP/1.1 and HTTP/2 by ALPN, and the handshake
//! timeout.

use std::time::Duration;

use http::Version;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::support::upstream::RecordingUpstream;

use super::{start, TestCa, TlsClient, TlsDir};

#[tokio::test]
async fn http1_and_http2_over_tls_forward_as_https() {
    let up = RecordingUpstream::start("up").await;
    let ca = TestCa::new();
    let leaf = ca.leaf();
    let dir = TlsDir::new(&leaf);
    let gw = start(&up, &dir, "10s").await;
    let addr = gw.tls.unwrap();

    let mut c = TlsClient::connect(addr, &ca.connector(&[b"http/1.1"])).await;
    assert_eq!(c.peer_cert, leaf.der);
    let r = c.get("/v1/status?via=h1").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.version, Version::HTTP_11);
    let seen = up.last();
    assert_eq!(seen.target, "/v1/status?via=h1");
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));

    let mut c2 = TlsClient::connect(addr, &ca.connector(&[b"h2", b"http/1.1"])).await;
    let r = c2.get("/v1/status?via=h2").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.version, Version::HTTP_2, "ALPN h2 must give HTTP/2");
    let seen = up.last();
    assert_eq!(seen.target, "/v1/status?via=h2");
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));

    // Both connections count under their own listener label, and stop
    // counting once closed.
    let open = gw.gw.metrics.open_connections.with_label_values(&["tls"]);
    assert_eq!(open.get(), 2);
    drop(c);
    drop(c2);
    let closed = crate::support::eventually(Duration::from_secs(5), || open.get() == 0).await;
    assert!(
        closed,
        "open_connections{{listener=\"tls\"}} stayed at {}",
        open.get()
    );

    // The plain listener still says http.
    let r = crate::support::client::get(&gw.url("/v1/status"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.last().header("x-forwarded-proto"), Some("http"));
}

/// Reads until the server closes the connection (EOF or reset), or
/// `deadline` passes; returns whether it closed.
async fn closed_by_server(stream: &mut TcpStream, deadline: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let end = tokio::time::Instant::now() + deadline;
    loop {
        match tokio::time::timeout_at(end, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn a_silent_client_is_closed_after_the_handshake_timeout() {
    let up = RecordingUpstream::start("up").await;
    let ca = TestCa::new();
    let dir = TlsDir::new(&ca.leaf());
    let gw = start(&up, &dir, "300ms").await;
    let open = gw.gw.metrics.open_connections.with_label_values(&["tls"]);

    let mut silent = TcpStream::connect(gw.tls.unwrap()).await.unwrap();
    assert!(
        closed_by_server(&mut silent, Duration::from_secs(5)).await,
        "a client that never starts its handshake must be closed"
    );
    let released = crate::support::eventually(Duration::from_secs(5), || open.get() == 0).await;
    assert!(released, "the stalled connection is still counted as open");
}

#[tokio::test]
async fn a_stalled_handshake_does_not_hold_up_other_clients() {
    let up = RecordingUpstream::start("up").await;
    let ca = TestCa::new();
    let leaf = ca.leaf();
    let dir = TlsDir::new(&leaf);
    // Long enough that the stalled client is still stalled while the
    // second one is served.
    let gw = start(&up, &dir, "60s").await;
    let addr = gw.tls.unwrap();

    let mut stalled = Vec::new();
    for _ in 0..3 {
        stalled.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut c = TlsClient::connect(addr, &ca.connector(&[b"h2", b"http/1.1"])).await;
    assert_eq!(c.get("/v1/status").await.status, 200);
    assert_eq!(c.peer_cert, leaf.der);
    drop(stalled);
}
