//! The floor of the benchmark: the least an HTTP/1.1 reverse proxy on
//! tokio does, with none of the gateway's work. It is a yardstick, not a
//! server: `bench/run.sh` measures it beside nginx and the gateway (the
//! `tokio-floor` target) so that a run shows how far below nginx a proxy
//! on this runtime and this kernel can get at all, and how much of the
//! gateway's cost is its own work on top.
//!
//! What it does, per client connection, in the connection's own task: one
//! upstream connection, opened with the client's; `httparse` for the
//! request head and the response head; buffers kept across requests; the
//! request head forwarded as it came; the response (head and a
//! `Content-Length` body) written back in one write. What it leaves out is
//! everything a real proxy must do: request bodies (a request with one
//! closes the connection), chunked responses, header rules, timeouts,
//! limits, errors answered in HTTP. Never put it in front of anything.
//!
//! Run: `cargo run --release --example floor -- LISTEN UPSTREAM`, e.g.
//! `-- 127.0.0.1:18092 127.0.0.1:18081`.
#![allow(missing_docs)]

use std::net::SocketAddr;
use std::process::ExitCode;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Header fields read per head; more closes the connection.
const FIELDS: usize = 64;
/// A head larger than this closes the connection.
const MAX_HEAD: usize = 16 * 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, upstream] = args.as_slice() else {
        eprintln!("usage: floor LISTEN UPSTREAM   (e.g. floor 127.0.0.1:18092 127.0.0.1:18081)");
        return ExitCode::from(2);
    };
    let (listen, upstream) = match (listen.parse::<SocketAddr>(), upstream.parse::<SocketAddr>()) {
        (Ok(l), Ok(u)) => (l, u),
        _ => {
            eprintln!("floor: LISTEN and UPSTREAM must be ip:port addresses");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("floor: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(listen, upstream)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floor: {listen}: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(listen: SocketAddr, upstream: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    loop {
        let (client, _) = listener.accept().await?;
        tokio::spawn(async move {
            // A connection ends at the first thing it does not handle.
            let _ = proxy(client, upstream).await;
        });
    }
}

async fn proxy(mut client: TcpStream, upstream: SocketAddr) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let mut up = TcpStream::connect(upstream).await?;
    up.set_nodelay(true)?;
    let mut request: Vec<u8> = Vec::with_capacity(8 * 1024);
    let mut response: Vec<u8> = Vec::with_capacity(8 * 1024);
    loop {
        let Some(head) = request_head(&mut client, &mut request).await? else {
            return Ok(());
        };
        up.write_all(&request[..head]).await?;
        request.drain(..head);
        let Some(len) = response_len(&mut up, &mut response).await? else {
            return Ok(());
        };
        while response.len() < len {
            if up.read_buf(&mut response).await? == 0 {
                return Ok(());
            }
        }
        client.write_all(&response[..len]).await?;
        response.drain(..len);
    }
}

/// Reads until `buf` starts with a complete request head without a body;
/// its length, or `None` when the connection should end.
async fn request_head(io: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<usize>> {
    read_head(io, buf, |buf| {
        let mut fields = [httparse::EMPTY_HEADER; FIELDS];
        let mut req = httparse::Request::new(&mut fields);
        let httparse::Status::Complete(n) = req.parse(buf)? else {
            return Ok(httparse::Status::Partial);
        };
        let body = req.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("transfer-encoding")
                || h.name.eq_ignore_ascii_case("content-length") && h.value != b"0"
        });
        Ok(httparse::Status::Complete((!body).then_some(n)))
    })
    .await
}

/// Reads until `buf` holds a complete response head; the length of head
/// and `Content-Length` body, or `None` when the connection should end.
async fn response_len(io: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<usize>> {
    read_head(io, buf, |buf| {
        let mut fields = [httparse::EMPTY_HEADER; FIELDS];
        let mut resp = httparse::Response::new(&mut fields);
        let httparse::Status::Complete(n) = resp.parse(buf)? else {
            return Ok(httparse::Status::Partial);
        };
        let len = resp
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok());
        Ok(httparse::Status::Complete(len.map(|len| n + len)))
    })
    .await
}

/// Reads into `buf` until `parse` finds a complete head there (`Complete`)
/// and says what to do with it: `Some(n)` to go on, `None` to end the
/// connection. A malformed head, one over [`MAX_HEAD`], or the peer's
/// end of stream ends it too.
async fn read_head(
    io: &mut TcpStream,
    buf: &mut Vec<u8>,
    parse: impl Fn(&[u8]) -> Result<httparse::Status<Option<usize>>, httparse::Error>,
) -> std::io::Result<Option<usize>> {
    loop {
        match parse(buf) {
            Ok(httparse::Status::Complete(then)) => return Ok(then),
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            _ => return Ok(None),
        }
        if io.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}
