//! A real HTTP client over real sockets (hyper), plus a raw TCP helper for
//! requests no well-behaved client would send.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The contract error code of a gateway-made error.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn h2_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// Sends one request; `headers` are (name, value) pairs, repeated names kept.
pub async fn send_with(
    c: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Reply {
    exchange(c, request(method, url, headers, Full::new(body))).await
}

/// A request with `headers` as (name, value) pairs, repeated names kept.
fn request<B>(method: Method, url: &str, headers: &[(&str, &str)], body: B) -> Request<B> {
    let mut b = Request::builder().method(method).uri(url);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(body).unwrap()
}

/// Sends `req` on `c` (10 s at most) and reads the whole answer.
async fn exchange<B>(c: &Client<HttpConnector, B>, req: Request<B>) -> Reply
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let resp = tokio::time::timeout(Duration::from_secs(10), c.request(req))
        .await
        .expect("request timed out")
        .expect("request failed");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn get(url: &str, headers: &[(&str, &str)]) -> Reply {
    send_with(&client(), Method::GET, url, headers, Bytes::new()).await
}

pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    send_with(&client(), method, url, headers, body.into()).await
}

pub fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// Writes raw bytes, reads until the server closes or `idle` passes with no
/// data, returns what came back.
pub async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(Duration::from_millis(1500), s.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of the first response in a raw reply ("" if none).
pub fn raw_status(reply: &str) -> &str {
    reply.split(' ').nth(1).unwrap_or("")
}

// ---- Raw exchanges, streamed bodies and error-shape checks (paths,
// routing, forwarding, admin tests).

impl Reply {
    /// Asserts a gateway-made error: status, contract code, JSON content
    /// type, the §6 body shape, and a `request_id` equal to `X-Request-Id`.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?} {}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        let v = self.json();
        assert_eq!(v["error"]["code"], code, "{}", self.text());
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{}",
            self.text()
        );
        let rid = self.header("x-request-id").expect("X-Request-Id missing");
        assert!(!rid.is_empty());
        assert_eq!(v["error"]["request_id"], rid, "{}", self.text());
    }
}

/// Parses the first HTTP/1 response in `bytes`; `None` until it is complete
/// (head plus a Content-Length or chunked body). A response without either
/// is complete only at end of stream (`eof`).
pub fn parse_response(bytes: &[u8], eof: bool) -> Option<Reply> {
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&bytes[..head_end]).expect("response head is not UTF-8");
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
    let mut headers = HeaderMap::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (n, v) = line.split_once(':').expect("header line without ':'");
        headers.append(
            http::HeaderName::from_bytes(n.trim().as_bytes()).unwrap(),
            http::HeaderValue::from_str(v.trim()).unwrap(),
        );
    }
    let rest = &bytes[head_end..];
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
    let body = if chunked {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let line_end = rest[at..].windows(2).position(|w| w == b"\r\n")? + at;
            let size_text = std::str::from_utf8(&rest[at..line_end]).unwrap();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                .expect("bad chunk size");
            at = line_end + 2;
            if size == 0 {
                break;
            }
            body.extend_from_slice(rest.get(at..at + size)?);
            at += size + 2;
        }
        Bytes::from(body)
    } else if let Some(len) = headers.get("content-length") {
        let len: usize = len.to_str().unwrap().parse().unwrap();
        Bytes::copy_from_slice(rest.get(..len)?)
    } else if status == 204 || status == 304 || eof {
        Bytes::copy_from_slice(rest)
    } else {
        return None;
    };
    Some(Reply {
        status: StatusCode::from_u16(status).unwrap(),
        headers,
        body,
    })
}

/// Writes raw bytes and reads the first response (without waiting for the
/// connection to close). For requests a well-behaved client cannot send.
pub async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(r) = parse_response(&out, false) {
            return r;
        }
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no complete response: {}", String::from_utf8_lossy(&out)))
            .unwrap_or(0);
        if n == 0 {
            return parse_response(&out, true).unwrap_or_else(|| {
                panic!(
                    "closed without a response: {:?}",
                    String::from_utf8_lossy(&out)
                )
            });
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// A `GET` of a raw request target with a well-formed `Host`, read as one
/// response.
pub async fn raw_get(addr: std::net::SocketAddr, target: &[u8]) -> Reply {
    let mut req = b"GET ".to_vec();
    req.extend_from_slice(target);
    req.extend_from_slice(format!(" HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes());
    raw_exchange(addr, &req).await
}

/// What a raw session got back, and whether the server closed it.
#[derive(Debug)]
pub struct RawSession {
    pub text: String,
    pub closed: bool,
}

impl RawSession {
    /// How many responses (status lines) came back.
    pub fn responses(&self) -> usize {
        self.text.matches("HTTP/1.1 ").count() + self.text.matches("HTTP/1.0 ").count()
    }
}

/// Writes raw bytes and reads until the server closes or 1.5 s pass with
/// no data; reports which.
pub async fn raw_session(addr: std::net::SocketAddr, request: &[u8]) -> RawSession {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The server may close (and reset) before taking all of it.
    let _ = s.write_all(request).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let closed = loop {
        match tokio::time::timeout(Duration::from_millis(1500), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Err(_) => break false,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    };
    RawSession {
        text: String::from_utf8_lossy(&out).into_owned(),
        closed,
    }
}

/// Sends `chunks` as a streamed body of unknown length (HTTP/1.1 chunked).
pub async fn send_chunked(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    chunks: Vec<Bytes>,
) -> Reply {
    let frames = futures_util::stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok::<_, std::io::Error>(http_body::Frame::data(c))),
    );
    let req = request(
        method,
        url,
        headers,
        http_body_util::StreamBody::new(frames),
    );
    let c = Client::builder(TokioExecutor::new()).build_http();
    exchange(&c, req).await
}

/// `n` bytes from the OS's CSPRNG.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    getrandom::getrandom(&mut v).unwrap();
    v
}

/// `n` random lowercase hex digits.
pub fn random_hex(n: usize) -> String {
    random_bytes(n.div_ceil(2))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..n]
        .to_owned()
}

/// GETs `url` until the answer has `status` or `deadline` passes; returns
/// the last answer (so the caller's assertion shows what came instead).
pub async fn get_until(
    url: &str,
    headers: &[(&str, &str)],
    status: u16,
    deadline: Duration,
) -> Reply {
    let end = std::time::Instant::now() + deadline;
    loop {
        let r = get(url, headers).await;
        if r.status == status || std::time::Instant::now() >= end {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
