//! Clients that stop reading (`src/server/h1`, `server.send_timeout`): the
//! engine reads an upstream body only as fast as the client takes it, so a
//! client that never reads pins a buffer, not the response; one that
//! accepts no bytes for `send_timeout` is disconnected (and its upstream
//! connection with it) while the gateway keeps serving others. The memory
//! figure is taken on the real binary, from `/proc/<pid>/status`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::engine::DEADLINE;
use crate::support::client::{client, get};
use crate::support::eventually;
use crate::support::eventually_async;
use crate::support::gateway::TestGateway;
use crate::support::keys::CliConfig;
use crate::support::process::{free_port, GatewayProcess};
use crate::support::scripted::{Conn, ScriptedUpstream};
use crate::support::wire::RawConn;

const BODY: usize = 64 * 1024 * 1024;

/// `/v1/status/stream` answers with a 64 MiB body, written as fast as the
/// gateway takes it until it goes (counted in `streams` once the head is
/// out); anything else gets its target.
fn streaming(
    streams: Arc<AtomicUsize>,
) -> impl Fn(Conn) -> futures_util::future::BoxFuture<'static, ()> {
    move |mut c: Conn| {
        let streams = streams.clone();
        Box::pin(async move {
            while let Some(req) = c.request().await {
                if !req.target.ends_with("/stream") {
                    if !c.ok(&req.target).await {
                        return;
                    }
                    continue;
                }
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {BODY}\r\n\r\n");
                if !c.write(head.as_bytes()).await {
                    return;
                }
                streams.fetch_add(1, Ordering::SeqCst);
                let data = vec![b'x'; 64 * 1024];
                let mut sent = 0;
                while sent < BODY && c.write(&data).await {
                    sent += data.len();
                }
                return;
            }
        })
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_after_send_timeout() {
    let streams = Arc::new(AtomicUsize::new(0));
    let up = ScriptedUpstream::start(streaming(streams.clone())).await;
    let gw = TestGateway::builder()
        .upstream(&up.url())
        .edit(|c| c.server.send_timeout = Duration::from_millis(200))
        .start()
        .await;
    let mut c = RawConn::connect(gw.addr).await;
    c.send(&gw.raw_request("GET /v1/status/stream HTTP/1.1", "", ""))
        .await;
    assert!(
        eventually(DEADLINE, || streams.load(Ordering::SeqCst) == 1).await,
        "the upstream never began streaming"
    );
    // The client reads nothing: once the socket is full the gateway gives
    // up, and drops the upstream connection with the response.
    let started = Instant::now();
    assert!(
        up.settles_at(0, Duration::from_secs(10)).await,
        "the gateway kept streaming to a client that reads nothing"
    );
    println!(
        "send_timeout 200ms: upstream connection closed {:?} after streaming began, {} KiB pushed",
        started.elapsed(),
        up.written() / 1024
    );
    assert!(
        (up.written() as usize) < BODY,
        "the whole body went through"
    );

    // The client's connection is closed too (after what was in flight).
    let mut buf = vec![0u8; 256 * 1024];
    let closed = tokio::time::timeout(DEADLINE, async {
        loop {
            match c.s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the client's connection stayed open");

    let r = get(&gw.url("/v1/status/after"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "/v1/status/after");
}

fn binary_config(api: u16, admin: u16, up: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:{api}"
send_timeout = "120s"
[admin]
listen = "127.0.0.1:{admin}"
[store]
backend = "file"
path = "keys.json"
[log]
access = "off"
[upstreams.up]
url = "{up}"
timeout = "10s"
[[routes]]
prefix = "/v1/status"
upstream = "up"
public = true
"#
    )
}

/// The resident set of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("no VmRSS in /proc/<pid>/status")
}

/// A client connection with a small receive buffer, so what the kernel
/// holds for a client that never reads stays small and the figure is the
/// gateway's own.
async fn small_client(addr: std::net::SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.set_recv_buffer_size(16 * 1024).unwrap();
    s.connect(addr).await.unwrap()
}

const CLIENTS: usize = 200;
const PER_CLIENT_KIB: u64 = 256;

/// 200 clients each ask for 64 MiB and read nothing. Once the upstream has
/// pushed all the sockets take (its write rate stalls), the real binary's
/// RSS has grown by at most 256 KiB per client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_readers_pin_at_most_256_kib_each_in_the_real_binary() {
    let test_started = Instant::now();
    let streams = Arc::new(AtomicUsize::new(0));
    let up = ScriptedUpstream::start_with(Some(64 * 1024), streaming(streams.clone())).await;
    let (api, admin) = (free_port(), free_port());
    let cfg = CliConfig::new(&binary_config(api, admin, &up.url()));
    std::fs::write(cfg.keys_file(), "").unwrap();
    let process = GatewayProcess::start(&cfg);
    let ready_url = format!("http://127.0.0.1:{admin}/readyz");
    let ready = eventually_async(Duration::from_secs(10), || {
        let url = ready_url.clone();
        async move {
            let req = http::Request::get(url)
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            matches!(
                tokio::time::timeout(Duration::from_secs(1), client().request(req)).await,
                Ok(Ok(r)) if r.status() == 200
            )
        }
    })
    .await;
    assert!(
        ready,
        "the gateway never became ready:\n{}",
        process.stderr()
    );
    let api_addr: std::net::SocketAddr = format!("127.0.0.1:{api}").parse().unwrap();
    for i in 0..20 {
        let r = get(&format!("http://{api_addr}/v1/status/warm-{i}"), &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let pid = process.child.id();
    let before = rss_kib(pid);

    let mut clients = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let mut s = small_client(api_addr).await;
        let req = format!("GET /v1/status/stream HTTP/1.1\r\nHost: {api_addr}\r\nX-N: {i}\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        clients.push(s);
    }
    let all_streaming = eventually(Duration::from_secs(10), || {
        streams.load(Ordering::SeqCst) == CLIENTS
    })
    .await;
    assert!(
        all_streaming,
        "{} of {CLIENTS} streams began:\n{}",
        streams.load(Ordering::SeqCst),
        process.stderr()
    );
    // Wait for the upstream's writes to stall: no progress for 500 ms.
    let stall_deadline = Instant::now() + Duration::from_secs(15);
    let mut last = up.written();
    let mut still = 0;
    while still < 2 {
        assert!(
            Instant::now() < stall_deadline,
            "the upstream never stopped writing ({} MiB): the gateway reads ahead of its clients",
            up.written() >> 20
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = up.written();
        still = if now == last { still + 1 } else { 0 };
        last = now;
    }
    let after = rss_kib(pid);
    let growth = after.saturating_sub(before);
    let bound = CLIENTS as u64 * PER_CLIENT_KIB;
    println!(
        "slow readers: {CLIENTS} clients x 64 MiB asked, none read; RSS before {before} KiB, \
         after {after} KiB, growth {growth} KiB ({} KiB per client; bound {bound} KiB = \
         {CLIENTS} x {PER_CLIENT_KIB} KiB); upstream pushed {} KiB in all ({} KiB per stream) \
         before stalling; {:?} from start",
        growth / CLIENTS as u64,
        up.written() / 1024,
        up.written() / 1024 / CLIENTS as u64,
        test_started.elapsed(),
    );
    assert!(
        growth <= bound,
        "RSS grew {growth} KiB for {CLIENTS} slow readers, more than {bound} KiB"
    );

    drop(clients);
    drop(process);
    assert!(
        up.settles_at(0, DEADLINE).await,
        "{} upstream connections outlived the gateway",
        up.open()
    );
    assert!(test_started.elapsed() < Duration::from_secs(30));
}
