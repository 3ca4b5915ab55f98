//! The gateway's own HTTP/1.1 engine: one loop per connection, on
//! `httparse` heads ([`crate::http1`]) and buffers reused across requests.
//!
//! Per request: read the head into the connection's buffer and parse it in
//! place (strictly: every framing the parser refuses is answered with the
//! contract's JSON 400 or 431 and `X-Request-Id`, counted like any other
//! answer, and the connection closed); hand the pipeline the method, the
//! target and the fields where they were parsed (spans of the head's
//! bytes: no header map is built); run the pipeline with the body read
//! straight from this connection ([`body`]); write the answer's head and
//! stream its body with the framing the gateway chose (the length when
//! known, else chunked; none for HEAD, 1xx, 204 and 304). Pipelined requests
//! are read from the same buffer and so answered in order.
//!
//! A connection carries another request only if both sides allow it
//! (`Connection: close` from either, HTTP/1.0 without keep-alive) and the
//! request body was read to its end; otherwise it is closed after the
//! answer, so an unread body is never parsed as a request.
//!
//! Timers are the connection's, one `Sleep` reset as the connection moves
//! between phases (and only when a read or write would wait): the first
//! head must be complete `header_read_timeout` after accept; between
//! requests a connection may idle for `idle_timeout`, and once a head has
//! begun it has `header_read_timeout` to complete; each body read waits at
//! most `idle_timeout`; each response write at most `send_timeout`, so a
//! client that stops reading is disconnected. Response bodies are read from
//! the upstream only as fast as the client takes them, so what a slow
//! reader pins is one buffer, not the response.
//!
//! On a plain listener a connection that opens with the HTTP/2 preface is
//! handed back to the caller ([`Ended::H2c`]) for hyper's HTTP/2 server.

mod body;

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header;
use http::{Method, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

use crate::config::ServerConfig;
use crate::error::{BadRequest, GatewayError, PathError};
use crate::http1::field::Known;
use crate::http1::head::{self, BodyFraming, RequestHead};
use crate::http1::{date, Framing};
use crate::pipeline::{self, Body, ConnInfo};
use crate::state::Gateway;
use body::BodyState;
pub use body::{RequestBody, RequestBodyError};

/// The HTTP/2 connection preface (RFC 9113 §3.4).
pub(crate) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Bytes asked of the socket per head read.
const READ: usize = 8 * 1024;

/// Response body frames up to this size go out in the same write as the
/// head (or as the chunk framing around them).
const COALESCE: usize = 16 * 1024;

/// The `[server]` settings one connection runs with (those of the config
/// generation that accepted it).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    header_read_timeout: Duration,
    idle_timeout: Duration,
    send_timeout: Duration,
    /// The most bytes a head may take before it is refused 431: a quarter
    /// over `max_header_bytes`, so heads a little over the limit reach the
    /// pipeline's own size check, which counts them as written.
    max_head: usize,
}

impl Settings {
    /// How long a connection may wait for a complete head, from accept or
    /// from the end of the previous answer: an idle connection is one
    /// without a complete head, so both clocks run and the earlier wins.
    fn head_deadline(&self) -> Duration {
        self.idle_timeout.min(self.header_read_timeout)
    }

    pub(crate) fn new(cfg: &ServerConfig) -> Settings {
        Settings {
            header_read_timeout: cfg.header_read_timeout,
            idle_timeout: cfg.idle_timeout,
            send_timeout: cfg.send_timeout,
            max_head: cfg
                .max_header_bytes
                .saturating_add(cfg.max_header_bytes / 4),
        }
    }
}

/// How a connection ended.
pub(crate) enum Ended<S> {
    /// Closed (or to be dropped).
    Closed,
    /// It opened with the HTTP/2 preface: serve it as HTTP/2, replaying
    /// these bytes first.
    H2c(S, Bytes),
}

/// One client connection and everything reused across its requests.
pub(crate) struct Conn<S> {
    io: S,
    /// Bytes read and not yet used: the head being read, then body bytes
    /// and any pipelined request.
    rbuf: BytesMut,
    /// The response head (and small bodies) being written.
    wbuf: Vec<u8>,
    body: BodyState,
    /// `Some(bytes written)` while a `100 Continue` is owed.
    continue_sent: Option<usize>,
    /// The body could not be read (malformed, truncated, stalled).
    failed: bool,
    timer: Pin<Box<Sleep>>,
    body_timer_armed: bool,
    idle_timeout: Duration,
    /// The field spans of the last head, handed back to the parser.
    spans: Vec<head::Field>,
}

/// Serves HTTP/1.1 on `io` until the connection ends, the client or a
/// timer closes it, or `stop` fires between requests.
pub(crate) async fn serve<S>(
    gw: &Gateway,
    io: S,
    info: ConnInfo,
    settings: Settings,
    accepted: Instant,
    stop: &mut tokio::sync::watch::Receiver<bool>,
    h2c: bool,
) -> Ended<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut c = Conn {
        io,
        rbuf: BytesMut::with_capacity(READ),
        wbuf: Vec::with_capacity(1024),
        body: BodyState::Done,
        continue_sent: None,
        failed: false,
        timer: Box::pin(tokio::time::sleep_until(
            accepted + settings.head_deadline(),
        )),
        body_timer_armed: false,
        idle_timeout: settings.idle_timeout,
        spans: Vec::new(),
    };
    let mut first = true;
    // One wait for the stop signal per connection, polled whenever the
    // connection waits for a head (not one made and dropped per wait).
    let mut stopping: Pin<Box<dyn Future<Output = ()> + Send>> = {
        let mut rx = stop.clone();
        Box::pin(async move {
            let _ = rx.changed().await;
        })
    };
    loop {
        let mut head = match read_head(&mut c, gw, settings, stop, &mut stopping, first, h2c).await
        {
            Read::Head(h) => h,
            Read::Closed => return Ended::Closed,
            Read::H2c => {
                let bytes = c.rbuf.split().freeze();
                return Ended::H2c(c.io, bytes);
            }
        };
        first = false;
        let raw = c.rbuf.split_to(head.len).freeze();
        let head_request = head.method.of(&raw) == b"HEAD";
        let http10 = head.minor_version == 0;
        let parts = request_line(&head, &raw);
        let parts = match parts {
            Ok(p) => p,
            Err(f) => {
                let e = GatewayError::InvalidRequest(BadRequest::Framing(f));
                // Refusals are rare: boxed, so their state does not widen
                // the connection's future.
                Box::pin(refuse(&mut c, gw, settings, e, None)).await;
                return Ended::Closed;
            }
        };
        c.body = match head.body {
            BodyFraming::Empty => BodyState::Done,
            BodyFraming::Length(n) => BodyState::Length(n),
            BodyFraming::Chunked => BodyState::Chunked(Default::default()),
        };
        // An HTTP/1.0 client's expectation is ignored (RFC 9110 §10.1.1).
        c.continue_sent =
            (head.expect_continue && !http10 && !matches!(c.body, BodyState::Done)).then_some(0);
        c.failed = false;
        c.body_timer_armed = false;
        // The stages read the fields where they were parsed: no header
        // map is built for them.
        let req = pipeline::Head {
            method: parts.0,
            uri: parts.1,
            version: if http10 {
                Version::HTTP_10
            } else {
                Version::HTTP_11
            },
            fields: pipeline::RawFields::new(&raw, &head.headers, head.known),
        };
        let resp = pipeline::handle(gw, &req, RequestBody { conn: &mut c }, info).await;
        drop(req);
        c.spans = std::mem::take(&mut head.headers);
        // A body left unread is skipped if it is all here already; else
        // the connection ends with this answer.
        if let BodyState::Length(left) = c.body {
            if left as usize <= c.rbuf.len() && !c.failed {
                let _ = c.rbuf.split_to(left as usize);
                c.body = BodyState::Done;
            }
        }
        let body_done = matches!(c.body, BodyState::Done) && !c.failed;
        let keep_alive = head.keep_alive && body_done && !*stop.borrow();
        match respond(&mut c, resp, head_request, http10, keep_alive, settings).await {
            Ok(true) if keep_alive => {}
            Ok(_) => {
                let _ = shutdown(&mut c, settings).await;
                return Ended::Closed;
            }
            Err(e) => {
                tracing::debug!(peer = %info.peer, error = %e, "connection ended while answering");
                return Ended::Closed;
            }
        }
    }
}

enum Read {
    Head(RequestHead),
    Closed,
    H2c,
}

/// Reads until a complete head is buffered.
async fn read_head<S>(
    c: &mut Conn<S>,
    gw: &Gateway,
    settings: Settings,
    stop: &tokio::sync::watch::Receiver<bool>,
    stopping: &mut Pin<Box<dyn Future<Output = ()> + Send>>,
    first: bool,
    h2c: bool,
) -> Read
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The first head's deadline was set at accept.
    // The first head's deadline was set at accept; later ones are set
    // when the first read would wait.
    let mut armed = first;
    loop {
        if !c.rbuf.is_empty() {
            if first
                && h2c
                && c.rbuf
                    .starts_with(&H2_PREFACE[..c.rbuf.len().min(H2_PREFACE.len())])
            {
                if c.rbuf.len() >= H2_PREFACE.len() {
                    return Read::H2c;
                }
            } else {
                match head::parse_reusing(&c.rbuf, std::mem::take(&mut c.spans)) {
                    Ok(Some(h)) => return Read::Head(h),
                    Ok(None) if c.rbuf.len() > settings.max_head => {
                        Box::pin(refuse(c, gw, settings, GatewayError::HeadersTooLarge, None))
                            .await;
                        return Read::Closed;
                    }
                    Ok(None) => {}
                    Err(Framing::TooManyHeaders) => {
                        Box::pin(refuse(c, gw, settings, GatewayError::HeadersTooLarge, None))
                            .await;
                        return Read::Closed;
                    }
                    Err(f) => {
                        let method = method_of(&c.rbuf);
                        let e = match raw_path_error(&c.rbuf) {
                            Some(p) => GatewayError::InvalidPath(p),
                            None => GatewayError::InvalidRequest(BadRequest::Framing(f)),
                        };
                        Box::pin(refuse(c, gw, settings, e, method.as_ref())).await;
                        return Read::Closed;
                    }
                }
            }
        }
        let idle = c.rbuf.is_empty() && !first;
        if c.rbuf.capacity() - c.rbuf.len() < READ / 2 {
            c.rbuf.reserve(READ);
        }
        // Try without a timer first: on a busy connection the bytes are
        // usually there already.
        let ready = poll_fn(|cx| {
            Poll::Ready(
                match tokio_util::io::poll_read_buf(Pin::new(&mut c.io), cx, &mut c.rbuf) {
                    Poll::Ready(r) => Some(r),
                    Poll::Pending => None,
                },
            )
        })
        .await;
        let read = match ready {
            Some(r) => r,
            None => {
                if idle && *stop.borrow() {
                    return Read::Closed;
                }
                if !armed {
                    // Moved only when it would fire noticeably early: an
                    // idle deadline a little early is harmless, and most
                    // waits then set no timer at all.
                    let limit = settings.head_deadline();
                    let at = Instant::now() + limit;
                    if c.timer.deadline() + limit / 8 < at || c.timer.deadline() > at {
                        c.timer.as_mut().reset(at);
                    }
                    armed = true;
                }
                tokio::select! {
                    biased;
                    r = tokio_util::io::read_buf(&mut c.io, &mut c.rbuf) => r,
                    () = c.timer.as_mut() => return Read::Closed,
                    () = stopping.as_mut(), if idle || first && c.rbuf.is_empty() => return Read::Closed,
                }
            }
        };
        match read {
            Ok(0) | Err(_) => return Read::Closed,
            Ok(_) => {}
        }
    }
}

/// A request line refused for a raw control or non-ASCII byte in its
/// target is a bad path (contract: raw controls and invalid UTF-8 in a
/// path are `invalid_path`), whatever else the parser objected to.
fn raw_path_error(buf: &[u8]) -> Option<PathError> {
    let line = &buf[..buf.iter().position(|b| *b == b'\n')?];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let start = line.iter().position(|b| *b == b' ')? + 1;
    let end = start + line[start..].iter().rposition(|b| *b == b' ')?;
    let target = &line[start..end];
    if !target.starts_with(b"/") {
        return None;
    }
    if target.iter().any(|b| *b >= 0x80) {
        Some(PathError::NotUtf8)
    } else if target.iter().any(|b| *b < 0x20 || *b == 0x7f) {
        Some(PathError::Control)
    } else {
        None
    }
}

/// The method token at the start of a refused head, for the metrics label.
fn method_of(buf: &[u8]) -> Option<Method> {
    let end = buf.iter().position(|b| *b == b' ')?;
    Method::from_bytes(&buf[..end]).ok()
}

/// Method and target of a parsed head (the target shares `raw`). The
/// fields stay where they were parsed: `httparse` admits exactly the name
/// and value bytes `http::HeaderName` and `HeaderValue` do.
fn request_line(h: &RequestHead, raw: &Bytes) -> Result<(Method, Uri), Framing> {
    let method = Method::from_bytes(h.method.of(raw)).map_err(|_| Framing::RequestLine)?;
    let uri = Uri::from_maybe_shared(raw.slice(h.target.start..h.target.end))
        .map_err(|_| Framing::Target)?;
    Ok((method, uri))
}

/// Answers a request the engine could not read, then the connection closes.
async fn refuse<S>(
    c: &mut Conn<S>,
    gw: &Gateway,
    settings: Settings,
    e: GatewayError,
    method: Option<&Method>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let rid = gw.request_ids.for_request(None);
    let mut refusal = e.refusal(rid.to_str().unwrap_or(""));
    refusal.set_request_id(rid);
    let resp = pipeline::refused(refusal);
    let other = Method::from_bytes(b"OTHER").ok();
    if let Some(m) = method.or(other.as_ref()) {
        gw.metrics
            .record_request(None, m, resp.status(), e.code(), 0.0);
    }
    tracing::debug!(error = %e, "request refused before parsing");
    if respond(c, resp, false, false, false, settings)
        .await
        .is_ok()
    {
        let _ = shutdown(c, settings).await;
    }
}

/// Writes the answer. `Ok(true)`: it was written whole and the body
/// ended cleanly, so the connection may carry another request.
async fn respond<S>(
    c: &mut Conn<S>,
    resp: Response<Body>,
    head_request: bool,
    http10: bool,
    keep_alive: bool,
    settings: Settings,
) -> io::Result<bool>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (parts, mut body) = resp.into_parts();
    let status = parts.status;
    let no_body = head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let length = body.size_hint().exact();
    // Close-delimited only for an HTTP/1.0 client of a body of unknown length.
    let close_delimited = !no_body && length.is_none() && http10;
    let keep_alive = keep_alive && !close_delimited;
    let chunked = !no_body && length.is_none() && !http10;
    let w = &mut c.wbuf;
    w.clear();
    w.extend_from_slice(if http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
    w.extend_from_slice(status.as_str().as_bytes());
    w.push(b' ');
    w.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    w.extend_from_slice(b"\r\n");
    let mut has_date = false;
    let mut has_length = false;
    // A refusal's few fields, straight from the refusal.
    if let http_body_util::Either::Right(refusal) = &body {
        refusal.each_field(|name, value| {
            w.extend_from_slice(name.as_bytes());
            w.extend_from_slice(b": ");
            w.extend_from_slice(value);
            w.extend_from_slice(b"\r\n");
        });
    }
    // An upstream's fields, straight from its head (already cleaned of
    // hop-by-hop ones); those the gateway sets itself are skipped here.
    if let http_body_util::Either::Left(up) = &mut body {
        if let Some(head) = up.take_raw_head() {
            let own_id = head.request_id();
            if let Some(id) = own_id {
                w.extend_from_slice(b"x-request-id: ");
                w.extend_from_slice(id.as_bytes());
                w.extend_from_slice(b"\r\n");
            }
            for (known, name, value) in head.fields() {
                match known {
                    Known::XRequestId if own_id.is_some() => continue,
                    Known::ContentLength => {
                        if !no_body || status == StatusCode::NO_CONTENT || status.is_informational()
                        {
                            continue;
                        }
                        has_length = true;
                    }
                    Known::Date => has_date = true,
                    _ if !parts.headers.is_empty()
                        && parts
                            .headers
                            .keys()
                            .any(|own| own.as_str().as_bytes().eq_ignore_ascii_case(name)) =>
                    {
                        continue
                    }
                    _ => {}
                }
                w.extend_from_slice(name);
                w.extend_from_slice(b": ");
                w.extend_from_slice(value);
                w.extend_from_slice(b"\r\n");
            }
            up.recycle_fields(head.into_fields());
        }
    }
    for (name, value) in &parts.headers {
        if *name == header::CONTENT_LENGTH {
            // A bodiless answer keeps the length it names (HEAD, 304);
            // others get the length the gateway knows.
            if !no_body || status == StatusCode::NO_CONTENT || status.is_informational() {
                continue;
            }
            has_length = true;
        } else if *name == header::TRANSFER_ENCODING || *name == header::CONNECTION {
            continue;
        } else if *name == header::DATE {
            has_date = true;
        }
        w.extend_from_slice(name.as_str().as_bytes());
        w.extend_from_slice(b": ");
        w.extend_from_slice(value.as_bytes());
        w.extend_from_slice(b"\r\n");
    }
    if !has_date {
        w.extend_from_slice(b"date: ");
        date::append(w);
        w.extend_from_slice(b"\r\n");
    }
    match length {
        // A HEAD answer claims only a length it was given or knows: an
        // upstream's HEAD body is always empty, which says nothing about
        // the GET's length (RFC 9110 §8.6).
        Some(n) if !no_body || (head_request && !has_length && n > 0) => {
            w.extend_from_slice(b"content-length: ");
            w.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            w.extend_from_slice(b"\r\n");
        }
        _ if chunked => w.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        _ => {}
    }
    if !keep_alive {
        w.extend_from_slice(b"connection: close\r\n");
    } else if http10 {
        w.extend_from_slice(b"connection: keep-alive\r\n");
    }
    w.extend_from_slice(b"\r\n");
    if no_body {
        write_all(&mut c.io, &mut c.timer, &c.wbuf, settings.send_timeout).await?;
        flush(&mut c.io, &mut c.timer, settings.send_timeout).await?;
        return Ok(true);
    }
    let mut clean = true;
    loop {
        // Whatever the body has ready now joins the buffered bytes; when it
        // has nothing, send what is buffered and wait.
        let now = poll_fn(|cx| {
            Poll::Ready(match Pin::new(&mut body).poll_frame(cx) {
                Poll::Ready(f) => Some(f),
                Poll::Pending => None,
            })
        })
        .await;
        let frame = match now {
            Some(f) => f,
            None => {
                if !c.wbuf.is_empty() {
                    write_all(&mut c.io, &mut c.timer, &c.wbuf, settings.send_timeout).await?;
                    c.wbuf.clear();
                }
                flush(&mut c.io, &mut c.timer, settings.send_timeout).await?;
                poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            }
        };
        let data = match frame {
            None => break,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(d) => d,
                Err(_) => continue,
            },
            Some(Err(e)) => {
                // The upstream broke mid-body: the client must see a
                // truncated answer, never a complete-looking one.
                tracing::debug!(error = %e, "response body failed");
                clean = false;
                break;
            }
        };
        if data.is_empty() {
            continue;
        }
        if chunked {
            crate::pipeline::upstream::write_hex(&mut c.wbuf, data.len());
            c.wbuf.extend_from_slice(b"\r\n");
        }
        if c.wbuf.len() + data.len() <= COALESCE {
            c.wbuf.extend_from_slice(&data);
        } else {
            write_all(&mut c.io, &mut c.timer, &c.wbuf, settings.send_timeout).await?;
            c.wbuf.clear();
            write_all(&mut c.io, &mut c.timer, &data, settings.send_timeout).await?;
        }
        if chunked {
            c.wbuf.extend_from_slice(b"\r\n");
        }
    }
    if !clean {
        if !c.wbuf.is_empty() {
            write_all(&mut c.io, &mut c.timer, &c.wbuf, settings.send_timeout).await?;
        }
        return Ok(false);
    }
    if chunked {
        c.wbuf.extend_from_slice(b"0\r\n\r\n");
    }
    if !c.wbuf.is_empty() {
        write_all(&mut c.io, &mut c.timer, &c.wbuf, settings.send_timeout).await?;
        c.wbuf.clear();
    }
    flush(&mut c.io, &mut c.timer, settings.send_timeout).await?;
    Ok(!close_delimited)
}

/// Closes the write side (TLS: with `close_notify`), bounded by `send_timeout`.
async fn shutdown<S>(c: &mut Conn<S>, settings: Settings) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let io = &mut c.io;
    match tokio::time::timeout(
        settings.send_timeout,
        poll_fn(|cx| Pin::new(&mut *io).poll_shutdown(cx)),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the client accepted no bytes for server.send_timeout",
    )
}

/// Writes all of `buf`; the timer is set only when the client's window is
/// full, and fires after `limit` without progress.
async fn write_all<S: AsyncWrite + Unpin>(
    io: &mut S,
    timer: &mut Pin<Box<Sleep>>,
    mut buf: &[u8],
    limit: Duration,
) -> io::Result<()> {
    let mut armed = false;
    poll_fn(|cx| {
        while !buf.is_empty() {
            match Pin::new(&mut *io).poll_write(cx, buf) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    buf = &buf[n..];
                    armed = false;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    if !armed {
                        timer.as_mut().reset(Instant::now() + limit);
                        armed = true;
                    }
                    if timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(timed_out()));
                    }
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Ok(()))
    })
    .await
}

/// Flushes (TLS buffers), bounded like [`write_all`].
async fn flush<S: AsyncWrite + Unpin>(
    io: &mut S,
    timer: &mut Pin<Box<Sleep>>,
    limit: Duration,
) -> io::Result<()> {
    let mut armed = false;
    poll_fn(|cx| match Pin::new(&mut *io).poll_flush(cx) {
        Poll::Ready(r) => Poll::Ready(r),
        Poll::Pending => {
            if !armed {
                timer.as_mut().reset(Instant::now() + limit);
                armed = true;
            }
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(timed_out()));
            }
            Poll::Pending
        }
    })
    .await
}
