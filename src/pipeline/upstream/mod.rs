//! Upstream exchanges: the gateway's own HTTP/1.1 client, one pool per
//! configured destination ([`pool`]), shared by both engines (an HTTP/2
//! client's streams draw on the same bounded pool as HTTP/1.1 requests).
//!
//! An exchange runs in the request's own task: check a connection out,
//! write the request head (built here, straight from the checked path, the
//! configured base and the prepared header map) and stream the body, read
//! the response head with `httparse`, and hand back the body, which streams
//! from the connection and returns it to the pool when it ends cleanly
//! ([`body`]). The framing sent upstream is the gateway's own: the length
//! it parsed (or chunked when the length is not known), never the client's
//! spelling; `Expect` is answered by the gateway and not forwarded.
//!
//! `timeout` bounds the whole exchange up to the complete response head:
//! waiting for a connection (also bounded by `pool_wait`), opening one
//! (also bounded by `connect_timeout`), sending the request and the
//! upstream's answer. Once a connection is had, the clock is the
//! connection's own timer, reset per exchange; the wait before it arms a
//! timer only when it has to wait. A request body that is malformed or ends early is
//! the client's error (400), never counted as an upstream failure. An
//! idempotent request without a body is retried once, on another
//! connection, when a reused connection turns out to have been closed by
//! the upstream before it answered (the race every keep-alive pool has);
//! nothing else is retried.
//!
//! A reload that leaves an upstream's config unchanged keeps the
//! [`Upstream`], so its warm connections survive the reload.

mod body;
pub(crate) mod pool;

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use http::{Method, StatusCode};
use http_body::Body;
use prometheus::{Histogram, IntCounterVec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{UpstreamConfig, UpstreamUrl};
use crate::error::{BadRequest, GatewayError, Source, UpstreamFailure};
use crate::http1::field::Known;
use crate::http1::response::{self, ResponseHead};
use crate::keys::Env;
use crate::metrics::Metrics;
use crate::pipeline::head::{Fields, Head};
use crate::pipeline::rewrite::{ClientFields, GatewayFields};
pub(crate) use body::ResponseBody;
use pool::{CheckoutError, Lease, Pool, PoolSettings};

/// The largest response head read from an upstream.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Data frames up to this size are copied next to the head (or the previous
/// frame) and sent in one write; larger ones are written as they are.
const COALESCE: usize = 16 * 1024;

/// One destination base (`url` or `test_url`) and its pool.
struct Target {
    /// `host:port`, named in error logs and connected to.
    authority: Box<str>,
    base_path: Box<str>,
    pool: Arc<Pool>,
}

impl Target {
    fn new(u: &UpstreamUrl, cfg: &UpstreamConfig, metrics: &Metrics) -> Target {
        let settings = PoolSettings {
            max: cfg.pool_max,
            max_idle: cfg.pool_max_idle,
            idle_timeout: cfg.pool_idle_timeout,
            connect_timeout: cfg.connect_timeout,
            wait: cfg.pool_wait,
        };
        let connects = metrics.upstream_connects.with_label_values(&[&cfg.name]);
        Target {
            authority: u.authority.as_str().into(),
            base_path: u.base_path.as_str().into(),
            pool: Pool::new(u.authority.as_str(), settings, connects),
        }
    }
}

/// A configured upstream: its destinations, pools and metric handles.
pub struct Upstream {
    /// The config it was built from (its name is the metrics label and log
    /// field); a reload that leaves it unchanged keeps this upstream, pools
    /// and all.
    config: UpstreamConfig,
    live: Target,
    test: Option<Target>,
    duration: Histogram,
    /// `upstream_errors_total{upstream, kind}`: a series appears with its
    /// first error (errors are off the hot path, so the lookup is fine).
    errors: IntCounterVec,
    /// Failures are logged at most once a second per upstream (a down
    /// upstream fails every request), with the count held back.
    log_throttle: crate::diag::Throttle,
}

/// How one attempt at an exchange failed.
enum Failed {
    /// The client's body was malformed or ended early.
    ClientBody(Source),
    /// The client's body went past the route's limit.
    TooLarge,
    /// The upstream closed a reused connection before any byte of an
    /// answer: safe to retry an idempotent, bodiless request.
    Stale(io::Error),
    /// The connection broke or the upstream's answer was unusable.
    Broken(Source),
}

/// What the request carries, as written upstream.
#[derive(Clone, Copy)]
enum Framing {
    None,
    Length(u64),
    Chunked,
}

impl Upstream {
    /// Builds the pools for one `[upstreams.NAME]`.
    pub fn new(cfg: &UpstreamConfig, metrics: &Metrics) -> Upstream {
        Upstream {
            config: cfg.clone(),
            live: Target::new(&cfg.url, cfg, metrics),
            test: cfg.test_url.as_ref().map(|u| Target::new(u, cfg, metrics)),
            duration: metrics.upstream_duration.with_label_values(&[&cfg.name]),
            errors: metrics.upstream_errors.clone(),
            log_throttle: crate::diag::Throttle::new(Duration::from_secs(1)),
        }
    }

    /// Was it built from exactly this config?
    pub fn built_from(&self, cfg: &UpstreamConfig) -> bool {
        self.config == *cfg
    }

    /// Sends the request and waits for the response head, up to `timeout`
    /// counted from `started`; the caller times the exchange with
    /// [`Upstream::finished`] (for the metrics and the access log). `env`
    /// picks `test_url` for test keys when there is one. `head` carries the
    /// method and the client's headers (hygiene is applied as they are
    /// written); `fwd` has the checked path, the forwarded query and the
    /// gateway's own fields.
    ///
    /// One future per exchange, not a timing wrapper around it: each level
    /// of nesting moves the whole state of the one below it.
    pub(crate) async fn send<F: Fields, B>(
        &self,
        head: &Head<F>,
        mut body: B,
        max_body: u64,
        fwd: &Forward<'_>,
        env: Option<Env>,
        started: Instant,
    ) -> Result<http::Response<ResponseBody>, GatewayError>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let target = match (env, &self.test) {
            (Some(Env::Test), Some(t)) => t,
            _ => &self.live,
        };
        let framing = match body.size_hint().exact() {
            Some(0) if body.is_end_stream() && !expects_body(&head.method) => Framing::None,
            Some(n) => Framing::Length(n),
            None => Framing::Chunked,
        };
        if let Framing::Length(n) = framing {
            if n > max_body {
                return Err(GatewayError::PayloadTooLarge);
            }
        }
        let replayable = matches!(framing, Framing::None) && is_idempotent(&head.method);
        let head_request = head.method == Method::HEAD;
        let mut retried = false;
        loop {
            // `timeout` bounds the whole exchange, waiting for a connection
            // and connecting included (a check-out that is ready at once
            // never arms this timer).
            let deadline = tokio::time::Instant::from_std(started) + self.config.timeout;
            // In a block of its own, so the check-out's state is not kept
            // beside the round trip's (it would widen every future above).
            let checked_out = {
                let mut checking_out = std::pin::pin!(target.pool.check_out(started));
                let now = poll_fn(|cx| Poll::Ready(checking_out.as_mut().poll(cx))).await;
                match now {
                    Poll::Ready(r) => r,
                    Poll::Pending => tokio::time::timeout_at(deadline, checking_out)
                        .await
                        .map_err(|_| self.failure(target, "timeout", None))?,
                }
            };
            let mut lease = match checked_out {
                Ok(lease) => lease,
                Err(CheckoutError::Exhausted { max }) => {
                    let why = format!("all {max} connections (pool_max) busy");
                    return Err(self.failure(
                        target,
                        "pool",
                        Some(Arc::new(io::Error::other(why))),
                    ));
                }
                Err(CheckoutError::Connect(e)) => {
                    return Err(self.failure(target, "connect", Some(Arc::new(e))));
                }
            };
            // The rest of it on the connection's own timer.
            let mut timer = match lease.conn().and_then(|c| c.timer.take()) {
                Some(mut t) => {
                    t.as_mut().reset(deadline);
                    t
                }
                None => Box::pin(tokio::time::sleep_until(deadline)),
            };
            let attempt = tokio::select! {
                biased;
                r = round_trip(
                    &mut lease,
                    target,
                    head,
                    &mut body,
                    framing,
                    max_body,
                    fwd,
                    head_request,
                ) => Some(r),
                () = timer.as_mut() => None,
            };
            if let Some(conn) = lease.conn() {
                conn.timer = Some(timer);
            }
            let Some(attempt) = attempt else {
                return Err(self.failure(target, "timeout", None));
            };
            match attempt {
                Ok(parsed) => {
                    return build_response(lease, parsed)
                        .map_err(|e| self.failure(target, "broken", Some(e)))
                }
                Err(Failed::Stale(_)) if replayable && !retried => {
                    retried = true;
                    continue;
                }
                Err(Failed::Stale(e)) => {
                    return Err(self.failure(target, "broken", Some(Arc::new(e))));
                }
                Err(Failed::Broken(e)) => return Err(self.failure(target, "broken", Some(e))),
                Err(Failed::TooLarge) => return Err(GatewayError::PayloadTooLarge),
                Err(Failed::ClientBody(e)) => {
                    tracing::debug!(error = %crate::diag::chain(&*e), "request body unreadable");
                    return Err(GatewayError::InvalidRequest(BadRequest::Body));
                }
            }
        }
    }

    /// Times a finished exchange: `started` as given to [`Upstream::send`],
    /// `ended` when its answer head was in.
    pub(crate) fn finished(&self, ok: bool, started: Instant, ended: Instant) {
        if ok {
            self.duration
                .observe(ended.saturating_duration_since(started).as_secs_f64());
        }
    }

    /// Counts and logs an upstream failure and makes its answer.
    fn failure(&self, target: &Target, kind: &'static str, error: Option<Source>) -> GatewayError {
        self.errors
            .with_label_values(&[&self.config.name, kind])
            .inc();
        self.log_failure(target, kind, error.as_deref());
        let failure = match (kind, error) {
            ("timeout", _) | (_, None) => return GatewayError::UpstreamTimeout,
            ("connect", Some(e)) => UpstreamFailure::Connect(e),
            ("pool", Some(e)) => UpstreamFailure::Exhausted(e),
            (_, Some(e)) => UpstreamFailure::Broken(e),
        };
        GatewayError::UpstreamUnavailable(failure)
    }

    /// One WARN line naming the upstream, the address tried, the whole
    /// error chain and the OS error in it; at most one a second per
    /// upstream, saying how many failures it stands for.
    fn log_failure(
        &self,
        target: &Target,
        kind: &'static str,
        error: Option<&(dyn std::error::Error + Send + Sync + 'static)>,
    ) {
        let Some(suppressed) = self.log_throttle.admit(Instant::now()) else {
            return;
        };
        let what = match kind {
            "connect" => "upstream connect failed",
            "timeout" => "upstream timed out",
            "pool" => "upstream connection pool exhausted",
            _ => "upstream exchange failed",
        };
        let error_text = error.map_or_else(
            || format!("no response head within {:?}", self.config.timeout),
            |e| crate::diag::chain(e),
        );
        let os_error = error.and_then(|e| crate::diag::os_error(e));
        tracing::warn!(
            upstream = %self.config.name,
            address = %target.authority,
            kind,
            error = %error_text,
            os_error = os_error.as_deref().unwrap_or("none"),
            suppressed,
            "{what}"
        );
    }
}

/// Methods whose requests carry a body, so an empty one is sent as
/// `Content-Length: 0` rather than no framing at all.
fn expects_body(m: &Method) -> bool {
    matches!(*m, Method::POST | Method::PUT | Method::PATCH)
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}

/// Writes the request and reads the response head.
#[allow(clippy::too_many_arguments)]
async fn round_trip<F: Fields, B>(
    lease: &mut Lease,
    target: &Target,
    head: &Head<F>,
    body: &mut B,
    framing: Framing,
    max_body: u64,
    fwd: &Forward<'_>,
    head_request: bool,
) -> Result<ResponseHead, Failed>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let Some(conn) = lease.conn() else {
        return Err(Failed::Broken(Arc::new(io::Error::other("no connection"))));
    };
    let reused = conn.reused;
    // A write or read error before the answer began, on a connection that
    // served before: the upstream closed it while it was idle.
    let lost = |e: io::Error| {
        if reused {
            Failed::Stale(e)
        } else {
            Failed::Broken(Arc::new(e))
        }
    };
    conn.wbuf.clear();
    write_head(&mut conn.wbuf, target, head, fwd, framing);
    let mut sent: u64 = 0;
    if !matches!(framing, Framing::None) {
        loop {
            // Take what is ready now into the same write; wait (after
            // sending what is buffered) only when nothing is.
            let now = poll_fn(|cx| {
                Poll::Ready(match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Ready(f) => Some(f),
                    Poll::Pending => None,
                })
            })
            .await;
            let frame = match now {
                Some(f) => f,
                None => {
                    if !conn.wbuf.is_empty() {
                        conn.io.write_all(&conn.wbuf).await.map_err(lost)?;
                        conn.wbuf.clear();
                    }
                    poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
                }
            };
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| Failed::ClientBody(Arc::new(e)))?;
            let Ok(mut data) = frame.into_data() else {
                continue; // trailers are not forwarded
            };
            sent += data.len() as u64;
            if sent > max_body {
                return Err(Failed::TooLarge);
            }
            if data.is_empty() {
                continue;
            }
            if let Framing::Chunked = framing {
                write_hex(&mut conn.wbuf, data.len());
                conn.wbuf.extend_from_slice(b"\r\n");
            }
            if conn.wbuf.len() + data.len() <= COALESCE {
                conn.wbuf.extend_from_slice(&data);
            } else {
                conn.io.write_all(&conn.wbuf).await.map_err(lost)?;
                conn.wbuf.clear();
                while data.has_remaining() {
                    let n = conn.io.write(&data).await.map_err(lost)?;
                    if n == 0 {
                        return Err(lost(io::ErrorKind::WriteZero.into()));
                    }
                    data.advance(n);
                }
            }
            if let Framing::Chunked = framing {
                conn.wbuf.extend_from_slice(b"\r\n");
            }
        }
        match framing {
            Framing::Length(n) if sent != n => {
                let why = format!("the body ended after {sent} of {n} bytes");
                return Err(Failed::ClientBody(Arc::new(io::Error::other(why))));
            }
            Framing::Chunked => conn.wbuf.extend_from_slice(b"0\r\n\r\n"),
            _ => {}
        }
    }
    if !conn.wbuf.is_empty() {
        conn.io.write_all(&conn.wbuf).await.map_err(lost)?;
        conn.wbuf.clear();
    }
    // The response head; 1xx interim answers are skipped.
    let mut answered = false;
    loop {
        if !conn.buf.is_empty() {
            answered = true;
            match response::parse_reusing(&conn.buf, head_request, std::mem::take(&mut conn.fields))
            {
                Ok(Some(h)) if (100..200).contains(&h.status) => {
                    conn.buf.advance(h.len);
                    continue;
                }
                Ok(Some(h)) => return Ok(h),
                Ok(None) => {}
                Err(e) => return Err(Failed::Broken(Arc::new(e))),
            }
            if conn.buf.len() > MAX_RESPONSE_HEAD {
                let why = format!("response head over {MAX_RESPONSE_HEAD} bytes");
                return Err(Failed::Broken(Arc::new(io::Error::other(why))));
            }
        }
        conn.buf.reserve(8 * 1024);
        match conn.io.read_buf(&mut conn.buf).await {
            Ok(0) if !answered => {
                let e = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the upstream closed the connection before answering",
                );
                return Err(lost(e));
            }
            Ok(0) => {
                let e = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the upstream closed the connection in the response head",
                );
                return Err(Failed::Broken(Arc::new(e)));
            }
            Ok(_) => {}
            Err(e) if !answered => return Err(lost(e)),
            Err(e) => return Err(Failed::Broken(Arc::new(e))),
        }
    }
}

/// What goes to the upstream besides the client's method, kept fields
/// and body.
pub(crate) struct Forward<'a> {
    /// The checked path, as the client sent it.
    pub(crate) path: &'a str,
    /// The query, without `api_key`.
    pub(crate) query: Option<&'a str>,
    pub(crate) fields: GatewayFields<'a>,
}

/// `METHOD base+path?query HTTP/1.1`, `host`, the client's fields that
/// hygiene keeps (minus its framing), the gateway's own fields, the
/// gateway's framing, the blank line.
fn write_head<F: Fields>(
    out: &mut Vec<u8>,
    target: &Target,
    head: &Head<F>,
    fwd: &Forward<'_>,
    framing: Framing,
) {
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.base_path.as_bytes());
    out.extend_from_slice(fwd.path.as_bytes());
    if let Some(q) = fwd.query {
        out.push(b'?');
        out.extend_from_slice(q.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(target.authority.as_bytes());
    out.extend_from_slice(b"\r\n");
    let keep = ClientFields::of(&head.fields);
    for (known, name, value) in head.fields.each_known() {
        // The gateway writes its own host and framing.
        let own = matches!(known, Known::Host | Known::Expect | Known::ContentLength);
        if own || !keep.keeps(known, name) {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    fwd.fields.write(out);
    match framing {
        Framing::None => {}
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// A chunk size in lower-case hex.
pub(crate) fn write_hex(out: &mut Vec<u8>, n: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// The response for the client: the status from the parsed head, its
/// forwardable fields kept as read (see [`body::RawHead`]), the body
/// streaming from the connection.
fn build_response(
    mut lease: Lease,
    parsed: ResponseHead,
) -> Result<http::Response<ResponseBody>, Source> {
    let Some(conn) = lease.conn() else {
        return Err(Arc::new(io::Error::other("no connection")));
    };
    let raw = conn.buf.split_to(parsed.len).freeze();
    let status = StatusCode::from_u16(parsed.status).map_err(|e| Arc::new(e) as Source)?;
    let mut fields = parsed.headers;
    crate::pipeline::rewrite::keep_forwardable_response_fields(&raw, &mut fields);
    let body = ResponseBody::new(
        lease,
        parsed.framing,
        parsed.keep_alive,
        body::RawHead::new(raw, fields, parsed.length),
    );
    let mut resp = http::Response::new(body);
    *resp.status_mut() = status;
    Ok(resp)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn chunk_sizes_are_lower_hex() {
        for (n, want) in [(0, "0"), (9, "9"), (255, "ff"), (65536, "10000")] {
            let mut out = Vec::new();
            super::write_hex(&mut out, n);
            assert_eq!(out, want.as_bytes());
        }
    }
}
