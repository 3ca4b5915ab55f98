//! HTTP/2 below the client library: frames written and read by hand over a
//! plain TCP connection (prior knowledge), for what no well-behaved client
//! does: resetting streams as fast as it opens them, endless CONTINUATION
//! frames, idling with nothing open, ignoring limits.
//!
//! Header blocks are HPACK literals without indexing and without Huffman
//! coding, which every decoder must accept.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

/// `SETTINGS_MAX_CONCURRENT_STREAMS`.
pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;

/// Error codes (RFC 9113 §7).
pub const CANCEL: u32 = 0x8;
pub const REFUSED_STREAM: u32 = 0x7;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// A GOAWAY's or RST_STREAM's error code.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            GOAWAY => 4,
            RST_STREAM => 0,
            _ => return None,
        };
        let b = self.payload.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A SETTINGS frame's (id, value) pairs.
    pub fn settings(&self) -> Vec<(u16, u32)> {
        self.payload
            .chunks_exact(6)
            .map(|c| {
                (
                    u16::from_be_bytes([c[0], c[1]]),
                    u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                )
            })
            .collect()
    }

    /// The `:status` of a response HEADERS frame, if the server sent it as
    /// one of HPACK's static-table statuses or as a literal.
    pub fn status(&self) -> Option<u16> {
        if self.kind != HEADERS {
            return None;
        }
        let first = *self.payload.first()?;
        // Indexed static entries 8..=14: 200 204 206 304 400 404 500.
        let indexed = [200, 204, 206, 304, 400, 404, 500];
        if first & 0x80 != 0 {
            let i = usize::from(first & 0x7f);
            return (8..=14).contains(&i).then(|| indexed[i - 8]);
        }
        // A literal with the indexed name `:status` (8): 3 ASCII digits.
        let p = &self.payload;
        if matches!(first & 0x0f, 8) || first & 0x3f == 8 {
            let len = usize::from(*p.get(1)? & 0x7f);
            let digits = std::str::from_utf8(p.get(2..2 + len)?).ok()?;
            return digits.parse().ok();
        }
        None
    }
}

/// An HPACK integer with an `n`-bit prefix, the prefix's other bits `flags`.
fn hpack_int(out: &mut Vec<u8>, mut value: usize, n: u32, flags: u8) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

fn hpack_string(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, s.len(), 7, 0);
    out.extend_from_slice(s);
}

/// One header field as an HPACK literal without indexing, new name.
pub fn literal(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.push(0x00);
    hpack_string(out, name.as_bytes());
    hpack_string(out, value);
}

/// A request's header block: the four pseudo-headers, then `fields`.
pub fn request_block(
    method: &str,
    path: &str,
    authority: &str,
    fields: &[(&str, &str)],
) -> Vec<u8> {
    let mut b = Vec::new();
    literal(&mut b, ":method", method.as_bytes());
    literal(&mut b, ":scheme", b"http");
    literal(&mut b, ":path", path.as_bytes());
    literal(&mut b, ":authority", authority.as_bytes());
    for (n, v) in fields {
        literal(&mut b, n, v.as_bytes());
    }
    b
}

pub fn frame_bytes(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    assert!(len < 1 << 24);
    let mut f = Vec::with_capacity(9 + len);
    f.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HTTP/2 connection driven frame by frame.
pub struct H2Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
    /// The server's first SETTINGS frame, once read.
    pub server_settings: Option<Frame>,
    /// Whether to answer the server's SETTINGS and PINGs (a cooperative
    /// peer) or to ignore them.
    pub auto_ack: bool,
}

impl H2Conn {
    /// Connects and sends the preface and an empty SETTINGS frame.
    pub async fn connect(addr: SocketAddr) -> H2Conn {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend(frame_bytes(SETTINGS, 0, 0, &[]));
        stream.write_all(&hello).await.unwrap();
        H2Conn {
            stream,
            buf: Vec::new(),
            server_settings: None,
            auto_ack: true,
        }
    }

    /// Writes raw bytes (several frames at once, for floods). Errors are
    /// returned, not panics: the server may already have closed.
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    pub async fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        self.write(&frame_bytes(kind, flags, stream, payload))
            .await
            .unwrap();
    }

    /// Opens stream `id` with a GET of `path` (END_STREAM: no body).
    pub async fn get(&mut self, id: u32, path: &str, fields: &[(&str, &str)]) {
        let block = request_block("GET", path, "localhost", fields);
        self.send(HEADERS, END_HEADERS | END_STREAM, id, &block)
            .await;
    }

    /// The next frame, answering SETTINGS and PINGs on the way when
    /// `auto_ack`; `None` when the server closed the connection (or reset
    /// it) or nothing came before `deadline`.
    pub async fn next(&mut self, deadline: Duration) -> Option<Frame> {
        let end = tokio::time::Instant::now() + deadline;
        loop {
            if let Some(f) = self.parse() {
                if f.kind == SETTINGS && f.flags & ACK == 0 {
                    if self.server_settings.is_none() {
                        self.server_settings = Some(f.clone());
                    }
                    if self.auto_ack {
                        let _ = self.write(&frame_bytes(SETTINGS, ACK, 0, &[])).await;
                    }
                } else if f.kind == PING && f.flags & ACK == 0 && self.auto_ack {
                    let _ = self.write(&frame_bytes(PING, ACK, 0, &f.payload)).await;
                }
                return Some(f);
            }
            let mut chunk = [0u8; 16384];
            match tokio::time::timeout_at(end, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn parse(&mut self) -> Option<Frame> {
        if self.buf.len() < 9 {
            return None;
        }
        let len = usize::from(self.buf[0]) << 16
            | usize::from(self.buf[1]) << 8
            | usize::from(self.buf[2]);
        if self.buf.len() < 9 + len {
            return None;
        }
        let f = Frame {
            kind: self.buf[3],
            flags: self.buf[4],
            stream: u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]])
                & 0x7fff_ffff,
            payload: self.buf[9..9 + len].to_vec(),
        };
        self.buf.drain(..9 + len);
        Some(f)
    }

    /// Reads frames until the server closes the connection (or `deadline`
    /// passes); returns them all and whether it closed.
    pub async fn drain(&mut self, deadline: Duration) -> (Vec<Frame>, bool) {
        let end = tokio::time::Instant::now() + deadline;
        let mut frames = Vec::new();
        loop {
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return (frames, false);
            }
            match self.next(left).await {
                Some(f) => frames.push(f),
                None => return (frames, tokio::time::Instant::now() < end),
            }
        }
    }

    /// Reads frames until `want` matches one (returned) or the connection
    /// ends or `deadline` passes (`None`).
    pub async fn until(
        &mut self,
        deadline: Duration,
        want: impl Fn(&Frame) -> bool,
    ) -> Option<Frame> {
        let end = tokio::time::Instant::now() + deadline;
        loop {
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            let f = self.next(left).await?;
            if want(&f) {
                return Some(f);
            }
        }
    }
}
