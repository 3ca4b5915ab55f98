//! One raw HTTP/1.1 client connection, read one response at a time with
//! whatever follows kept for the next: for pipelining, `100 Continue`,
//! bodiless answers and connection reuse, which a real client would hide.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::client::Reply;

/// How long a read waits before the test fails.
const DEADLINE: Duration = Duration::from_secs(10);

pub struct RawConn {
    pub s: TcpStream,
    /// Bytes read and not yet part of a returned response.
    buf: Vec<u8>,
    eof: bool,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> RawConn {
        RawConn {
            s: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
            eof: false,
        }
    }

    /// Writes all of `bytes`; false if the server has closed.
    pub async fn send(&mut self, bytes: &[u8]) -> bool {
        self.s.write_all(bytes).await.is_ok()
    }

    /// Reads the next response (`head`: it answers a HEAD, so it has no
    /// body); `None` if the connection ended before a whole one. Panics
    /// if none is complete within 10 s or the bytes are not a response.
    pub async fn response(&mut self, head: bool) -> Option<Reply> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match parse(&self.buf, head, self.eof) {
                Ok(Some((reply, used))) => {
                    self.buf.drain(..used);
                    return Some(reply);
                }
                Ok(None) if self.eof => return None,
                Ok(None) => {}
                Err(e) => panic!("{e}: {:?}", String::from_utf8_lossy(&self.buf)),
            }
            match tokio::time::timeout(DEADLINE, self.s.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => self.eof = true,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => panic!(
                    "no complete response within {DEADLINE:?}: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
    }

    /// Bytes received and not yet taken as a response.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// Waits for the server to close (true), or `within` to pass (false).
    /// Bytes arriving meanwhile are a bug: the test fails naming them.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        assert!(
            self.buf.is_empty(),
            "unexpected bytes: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        if self.eof {
            return true;
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(within, self.s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(n)) => panic!(
                "unexpected bytes: {:?}",
                String::from_utf8_lossy(&chunk[..n])
            ),
            Err(_) => false,
        }
    }
}

/// The first response in `bytes` and how many bytes it took; `None`
/// until it is complete (a body without length or chunking ends at `eof`).
fn parse(bytes: &[u8], head: bool, eof: bool) -> Result<Option<(Reply, usize)>, String> {
    if bytes.len() >= 7 && !bytes.starts_with(b"HTTP/1.") {
        return Err("not an HTTP/1 response".into());
    }
    let Some(head_end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head_end = head_end + 4;
    let text = std::str::from_utf8(&bytes[..head_end]).map_err(|e| e.to_string())?;
    let mut lines = text.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("bad status line")?;
    let mut headers = HeaderMap::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (n, v) = line.split_once(':').ok_or("header line without ':'")?;
        headers.append(
            http::HeaderName::from_bytes(n.trim().as_bytes()).map_err(|e| e.to_string())?,
            http::HeaderValue::from_str(v.trim()).map_err(|e| e.to_string())?,
        );
    }
    let reply = |body: Vec<u8>| Reply {
        status: StatusCode::from_u16(status).unwrap(),
        headers: headers.clone(),
        body: Bytes::from(body),
    };
    let rest = &bytes[head_end..];
    if head || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(Some((reply(Vec::new()), head_end)));
    }
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
    if chunked {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let Some(line_end) = rest[at..].windows(2).position(|w| w == b"\r\n") else {
                return Ok(None);
            };
            let line_end = line_end + at;
            let size_text = std::str::from_utf8(&rest[at..line_end]).map_err(|e| e.to_string())?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| format!("bad chunk size {size_text:?}"))?;
            at = line_end + 2;
            if size == 0 {
                // Trailers, then the blank line.
                loop {
                    let Some(end) = rest[at..].windows(2).position(|w| w == b"\r\n") else {
                        return Ok(None);
                    };
                    at += end + 2;
                    if end == 0 {
                        return Ok(Some((reply(body), head_end + at)));
                    }
                }
            }
            let Some(data) = rest.get(at..at + size) else {
                return Ok(None);
            };
            body.extend_from_slice(data);
            at += size;
            match rest.get(at..at + 2) {
                None => return Ok(None),
                Some(b"\r\n") => at += 2,
                Some(_) => return Err("chunk data not followed by CRLF".into()),
            }
        }
    }
    if let Some(len) = headers.get("content-length") {
        let len: usize = len
            .to_str()
            .ok()
            .and_then(|l| l.parse().ok())
            .ok_or("bad content-length")?;
        return Ok(rest.get(..len).map(|b| (reply(b.to_vec()), head_end + len)));
    }
    Ok(eof.then(|| (reply(rest.to_vec()), bytes.len())))
}
