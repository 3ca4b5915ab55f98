//! Connection slots held by silence (issue 13, class 5): a connection that
//! has not sent a complete first request head within
//! `server.header_read_timeout` is closed — one that sends nothing, a
//! partial HTTP/1.1 head, a partial HTTP/2 preface, or an HTTP/2 connection
//! that opens no stream, over plain TCP or after a TLS handshake; an idle
//! HTTP/2 client that ignores GOAWAY is dropped within a bounded grace —
//! and `server.max_connections_per_ip` caps the
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
    let gw = TestGateway::builder()
        .toml(&toml)
        .store(memory_store())
        .start()
        .await;
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

async fn get_status(addr: SocketAddr) -> Reply {
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
    assert_eq!(get_status(gw.addr).await.status, 200);
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

/// How a silent client behaves after connecting.
async fn silent(addr: SocketAddr, what: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let bytes: &[u8] = match what {
        "nothing" => b"",
        "partial HTTP/1.1 request line" => b"GET /v1/sta",
        "partial HTTP/1.1 headers" => b"GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Slow: 1",
        "partial HTTP/2 preface" => b"PRI * HTTP/2.0\r\n\r\nS",
        "HTTP/2 preface, no settings" => b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "HTTP/2 preface and settings, no stream" => {
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"
        }
        "HTTP/2 partial HEADERS frame" => {
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\x20\x01\x05\x00\x00\x00\x01\x82"
        }
        other => panic!("unknown case {other}"),
    };
    s.write_all(bytes).await.unwrap();
    s
}

const SILENT: [&str; 7] = [
    "nothing",
    "partial HTTP/1.1 request line",
    "partial HTTP/1.1 headers",
    "partial HTTP/2 preface",
    "HTTP/2 preface, no settings",
    "HTTP/2 preface and settings, no stream",
    "HTTP/2 partial HEADERS frame",
];

#[tokio::test]
async fn silent_connections_are_closed_at_the_header_read_timeout() {
    // idle_timeout is long, so only header_read_timeout can close them.
    let (_up, gw) = start("header_read_timeout = \"300ms\"\nidle_timeout = \"60s\"").await;
    let mut conns = Vec::new();
    for what in SILENT {
        conns.push((
            what,
            silent(gw.addr, what).await,
            tokio::time::Instant::now(),
        ));
    }
    for (what, mut s, began) in conns {
        let (closed, _) = until_closed(&mut s, Duration::from_secs(5)).await;
        assert!(closed, "{what}: still open after 5 s");
        let took = began.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "{what}: closed only after {took:?}"
        );
    }
}

#[tokio::test]
async fn silent_http2_connections_do_not_lock_out_new_clients() {
    let (_up, gw) = start(
        "header_read_timeout = \"300ms\"\nidle_timeout = \"60s\"\nmax_connections = 50\nmax_connections_per_ip = 50",
    )
    .await;
    // The case: 50 idle HTTP/2 connections, max_connections = 50.
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(silent(gw.addr, "HTTP/2 preface and settings, no stream").await);
    }
    // Every slot is taken by silence; a new client is served once they go.
    let began = tokio::time::Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(5), get_status(gw.addr))
        .await
        .expect("a new client was locked out");
    assert_eq!(r.status, 200);
    assert!(began.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn a_client_ignoring_goaway_is_dropped_within_a_bounded_grace() {
    use crate::support::h2wire::{H2Conn, GOAWAY, HEADERS};
    // After its request the connection idles 1 s, gets GOAWAY, and is
    // dropped header_read_timeout (200 ms) later if it stays: not after
    // another idle_timeout.
    let (_up, gw) = start("header_read_timeout = \"200ms\"\nidle_timeout = \"1s\"").await;
    let mut c = H2Conn::connect(gw.addr).await;
    c.get(1, "/v1/status", &[]).await;
    let began = tokio::time::Instant::now();
    let answer = c.until(Duration::from_secs(5), |f| f.kind == HEADERS).await;
    assert!(answer.is_some(), "no response");
    // From here on, answer no PING: the graceful close never completes.
    c.auto_ack = false;
    let goaway = c.until(Duration::from_secs(5), |f| f.kind == GOAWAY).await;
    assert!(goaway.is_some(), "no GOAWAY");
    // Ignore it: keep the connection open and send nothing.
    let (_, closed) = c.drain(Duration::from_secs(5)).await;
    assert!(closed, "a peer ignoring GOAWAY was never dropped");
    let took = began.elapsed();
    assert!(
        took < Duration::from_millis(1900),
        "dropped only after {took:?}"
    );
}

#[tokio::test]
async fn silent_tls_connections_are_closed_after_their_handshake_too() {
    use std::sync::Arc;

    use rustls::pki_types::ServerName;

    let up = RecordingUpstream::start("up").await;
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let extra = format!(
        "[server.tls]\nlisten = \"127.0.0.1:3\"\ncert = {:?}\nkey = {:?}\n",
        cert_path.display().to_string(),
        key_path.display().to_string()
    );
    let toml = config(&up.url(), None, &extra).replace(
        "max_body = \"4MiB\"",
        "max_body = \"4MiB\"\nheader_read_timeout = \"300ms\"\nidle_timeout = \"60s\"",
    );
    let cfg = crate::support::gateway::parse(&toml);
    let gw = TestGateway::builder()
        .config(cfg)
        .store(memory_store())
        .tls()
        .start()
        .await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    for alpn in [b"http/1.1".to_vec(), b"h2".to_vec()] {
        let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
        tls.alpn_protocols = vec![alpn.clone()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
        let tcp = TcpStream::connect(gw.tls.unwrap()).await.unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let mut s = connector.connect(name, tcp).await.expect("handshake");
        let began = tokio::time::Instant::now();
        if alpn == b"h2" {
            // The preface, then nothing.
            s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                .await
                .unwrap();
        }
        let mut buf = [0u8; 1024];
        let closed = loop {
            match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
                Err(_) => break false,
                Ok(Ok(0)) | Ok(Err(_)) => break true,
                Ok(Ok(_)) => continue,
            }
        };
        let shown = String::from_utf8_lossy(&alpn).into_owned();
        assert!(closed, "{shown}: a silent TLS connection stayed open");
        assert!(
            began.elapsed() < Duration::from_secs(3),
            "{shown}: closed only after {:?}",
            began.elapsed()
        );
    }
}
