//! Connection slots held by silence (issue 13, class 5): a connection that
//! has not sent a complete first request head within
//! `server.header_read_timeout` is closed — one that sends nothing, a
//! partial HTTP/1.1 head, a partial HTTP/2 preface, or an HTTP/2 connection
//! that opens no stream — and `server.max_connections_per_ip` caps the
//! connections one peer IP holds, so silence cannot lock other clients out.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::client::{raw_exchange, Reply};
use crate::support::eventually_async;
use crate::support::gateway::{config, TestGateway};
use crate::support::keys::memory_store;
use crate::support::upstream::RecordingUpstream;

async fn start(server: &str) -> (RecordingUpstream, TestGateway) {
    let up = RecordingUpstream::start("up").await;
    let toml = config(&up.url(), None, "").replace(
        "max_body = \"4MiB\"",
        &format!("max_body = \"4MiB\"\n{server}"),
    );
    let gw = TestGateway::start(&toml, memory_store()).await;
    (up, gw)
}

async fn connect_from(addr: SocketAddr, from: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Reads until the server closes the connection (or `deadline` passes);
/// returns whether it closed and what it sent.
async fn until_closed(s: &mut TcpStream, deadline: Duration) -> (bool, Vec<u8>) {
    let end = tokio::time::Instant::now() + deadline;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(end, s.read(&mut buf)).await {
            Err(_) => return (false, out),
            Ok(Ok(0)) | Ok(Err(_)) => return (true, out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

async fn status_status(addr: SocketAddr) -> Reply {
    raw_exchange(
        addr,
        format!("GET /v1/status HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    )
    .await
}

#[tokio::test]
async fn one_ip_cannot_take_every_slot() {
    let (_up, gw) = start("max_connections = 50\nmax_connections_per_ip = 2").await;
    let a = "127.0.0.5";
    let _one = connect_from(gw.addr, a).await;
    let two = connect_from(gw.addr, a).await;
    let gw2 = gw.gw.clone();
    let counted = crate::support::eventually(Duration::from_secs(5), move || {
        gw2.per_ip.open(a.parse().unwrap()) == 2
    })
    .await;
    assert!(counted, "the two connections were never counted");
    // A third from the same IP is closed at once, without an answer.
    let mut three = connect_from(gw.addr, a).await;
    let _ = three
        .write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let (closed, sent) = until_closed(&mut three, Duration::from_secs(5)).await;
    assert!(
        closed && sent.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&sent)
    );
    // Another IP is served.
    assert_eq!(status_status(gw.addr).await.status, 200);
    let mut other = connect_from(gw.addr, "127.0.0.6").await;
    other
        .write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (_, sent) = until_closed(&mut other, Duration::from_secs(5)).await;
    assert!(
        sent.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&sent)
    );
    // Once one of the two closes, the IP may connect again.
    drop(two);
    let ok = eventually_async(Duration::from_secs(5), || async {
        let mut s = connect_from(gw.addr, a).await;
        let _ = s
            .write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        let (_, sent) = until_closed(&mut s, Duration::from_secs(5)).await;
        sent.starts_with(b"HTTP/1.1 200")
    })
    .await;
    assert!(ok, "the freed slot was never reusable");
    let text = String::from_utf8(gw.gw.metrics.render()).unwrap();
    let refused: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("osir_gateway_connections_refused_total{reason=\"per_ip\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(refused >= 1, "{text}");
}
