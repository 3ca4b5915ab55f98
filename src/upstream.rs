//! Upstream exchanges over pooled HTTP/1.1 connections, driven in the task of
//! the request that uses them.
//!
//! A pooled client that runs every connection as a task of its own (as
//! hyper-util's does) hands each request to that task over a channel, the
//! response head back over another, and every body chunk over a third: three
//! task hand-offs per request, about a fifth of the gateway's own CPU on a
//! cache hit. Here the request that takes a connection from the pool also
//! drives it: [`Upstream::send`] polls the connection while it waits for the
//! response head, and [`ResponseBody`] keeps polling it while the listener
//! streams the body to the client. Nothing else ever polls a connection, so
//! nothing crosses a task boundary.
//!
//! A connection goes back to the pool only when its response was read to the
//! end and hyper says it is ready for another request; anything else (a body
//! the client stopped reading, an error, `Connection: close`) closes it. On
//! the way out of the pool a connection is polled once, which notices an
//! upstream that closed it while idle; a request that could not even be
//! written on a pooled connection is retried once on another. Idle connections
//! older than `pool_idle_timeout` are closed by [`Upstream::reap_idle`], which
//! the gateway calls every second.
//!
//! Bodies stream both ways, never buffered whole; the request body is under
//! the route's limit, so a chunked body over it is cut off and answered 413.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::Uri;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Limited;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use prometheus::{Histogram, IntCounter};
use tokio::net::TcpStream;

use crate::config::{UpstreamConfig, UpstreamUrl};
use crate::error::GatewayError;
use crate::key::Env;
use crate::metrics::Metrics;

/// The body sent upstream: the client's, streamed, under the route's limit.
pub type UpstreamBody = Limited<Incoming>;

/// TCP keep-alive probes on upstream connections start after this much silence.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// One HTTP/1.1 connection: the handle requests go through and the state
/// machine that reads and writes the socket (which must be polled for
/// anything to happen).
struct Conn {
    tx: http1::SendRequest<UpstreamBody>,
    io: http1::Connection<TokioIo<TcpStream>, UpstreamBody>,
}

impl Conn {
    /// Lets the connection make progress; false once it has closed (cleanly
    /// or not), after which it must not be used again.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        Pin::new(&mut self.io).poll(cx).is_pending()
    }

    /// Can it take another request right now?
    fn reusable(&mut self, cx: &mut Context<'_>) -> bool {
        self.drive(cx) && self.tx.is_ready()
    }
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// Idle connections to one destination, most recently used last.
struct Pool {
    idle: Mutex<VecDeque<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Pool {
    /// The most recently used live connection, if any.
    fn take(&self, cx: &mut Context<'_>) -> Option<Conn> {
        loop {
            let idle = self.idle.lock().pop_back()?;
            if idle.since.elapsed() >= self.idle_timeout {
                // The newest is too old, so all are: close them outside the lock.
                let stale = std::mem::take(&mut *self.idle.lock());
                drop(stale);
                return None;
            }
            let mut conn = idle.conn;
            if conn.reusable(cx) {
                return Some(conn);
            }
        }
    }

    /// Keeps a connection whose exchange finished cleanly, if it is ready
    /// for another request and there is room.
    fn finish(&self, mut conn: Conn, cx: &mut Context<'_>) {
        if self.max_idle == 0 || !conn.reusable(cx) {
            return;
        }
        let evicted = {
            let mut idle = self.idle.lock();
            let evicted = if idle.len() >= self.max_idle {
                idle.pop_front()
            } else {
                None
            };
            idle.push_back(Idle {
                conn,
                since: Instant::now(),
            });
            evicted
        };
        drop(evicted);
    }

    fn reap(&self) {
        let now = Instant::now();
        let mut expired = Vec::new();
        {
            let mut idle = self.idle.lock();
            while idle
                .front()
                .is_some_and(|i| now.duration_since(i.since) >= self.idle_timeout)
            {
                expired.extend(idle.pop_front());
            }
        }
        drop(expired);
    }

    fn idle_count(&self) -> usize {
        self.idle.lock().len()
    }
}

/// One destination base (`url` or `test_url`) with its pool.
struct Target {
    /// Host and port to connect to (brackets of an IPv6 literal removed).
    host: Box<str>,
    port: u16,
    base_path: Box<str>,
    /// The `Host` header sent upstream.
    host_header: HeaderValue,
    pool: Arc<Pool>,
}

impl Target {
    fn new(u: &UpstreamUrl, cfg: &UpstreamConfig) -> Target {
        let host = u.authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        Target {
            host: host.into(),
            port: u.authority.port_u16().unwrap_or(80),
            base_path: u.base_path.as_str().into(),
            host_header: HeaderValue::from_str(u.authority.as_str())
                .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
            pool: Arc::new(Pool {
                idle: Mutex::new(VecDeque::new()),
                max_idle: cfg.pool_max_idle,
                idle_timeout: cfg.pool_idle_timeout,
            }),
        }
    }

    /// The origin-form request target: base path, checked path, query.
    fn uri(&self, path: &str, query: Option<&str>) -> Result<Uri, GatewayError> {
        let mut s = String::with_capacity(
            self.base_path.len() + path.len() + query.map_or(0, |q| q.len() + 1),
        );
        s.push_str(&self.base_path);
        s.push_str(path);
        if let Some(q) = query {
            s.push('?');
            s.push_str(q);
        }
        Uri::try_from(s).map_err(|_| {
            GatewayError::InvalidRequest("the request target cannot be forwarded".into())
        })
    }
}

/// Why an exchange failed, before it is mapped to an answer.
enum Failure {
    Connect(String),
    Exchange(hyper::Error),
}

/// A configured upstream: its destinations, pools and metric handles.
pub struct Upstream {
    /// The configured name: metrics label and log field.
    pub name: Box<str>,
    /// The config it was built from; a reload that leaves it unchanged keeps
    /// this upstream, pools and all.
    config: UpstreamConfig,
    live: Target,
    test: Option<Target>,
    duration: Histogram,
    connects: IntCounter,
}

impl Upstream {
    /// Builds the pools for one `[upstreams.NAME]`.
    pub fn new(cfg: &UpstreamConfig, metrics: &Metrics) -> Upstream {
        Upstream {
            name: cfg.name.as_str().into(),
            config: cfg.clone(),
            live: Target::new(&cfg.url, cfg),
            test: cfg.test_url.as_ref().map(|u| Target::new(u, cfg)),
            duration: metrics.upstream_duration.with_label_values(&[&cfg.name]),
            connects: metrics.upstream_connects.with_label_values(&[&cfg.name]),
        }
    }

    /// Was it built from exactly this config?
    pub fn built_from(&self, cfg: &UpstreamConfig) -> bool {
        self.config == *cfg
    }

    /// Closes pooled connections idle for longer than `pool_idle_timeout`.
    pub fn reap_idle(&self) {
        self.live.pool.reap();
        if let Some(t) = &self.test {
            t.pool.reap();
        }
    }

    /// Idle pooled connections (live and test destinations together).
    pub fn idle_connections(&self) -> usize {
        self.live.pool.idle_count() + self.test.as_ref().map_or(0, |t| t.pool.idle_count())
    }

    /// Sends the request and waits for the response head, up to `timeout`.
    /// `env` picks `test_url` for test keys when there is one.
    pub async fn send(
        &self,
        mut req: http::Request<UpstreamBody>,
        path: &str,
        query: Option<&str>,
        env: Option<Env>,
        metrics: &Metrics,
    ) -> Result<http::Response<ResponseBody>, GatewayError> {
        let target = match (env, &self.test) {
            (Some(Env::Test), Some(t)) => t,
            _ => &self.live,
        };
        *req.uri_mut() = target.uri(path, query)?;
        req.headers_mut()
            .insert(header::HOST, target.host_header.clone());
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.config.timeout, self.exchange(target, req)).await;
        let (kind, err) = match outcome {
            Ok(Ok(resp)) => {
                self.duration.observe(started.elapsed().as_secs_f64());
                return Ok(resp);
            }
            Err(_) => ("timeout", GatewayError::UpstreamTimeout),
            Ok(Err(Failure::Exchange(e))) if body_over_limit(&e) => {
                return Err(GatewayError::PayloadTooLarge)
            }
            Ok(Err(Failure::Connect(e))) => {
                tracing::warn!(upstream = %self.name, error = %e, "upstream connect failed");
                ("connect", GatewayError::UpstreamUnavailable)
            }
            Ok(Err(Failure::Exchange(e))) => {
                tracing::warn!(upstream = %self.name, error = %e, "upstream exchange failed");
                ("broken", GatewayError::UpstreamUnavailable)
            }
        };
        metrics
            .upstream_errors
            .with_label_values(&[&self.name, kind])
            .inc();
        Err(err)
    }

    /// One request on a pooled connection (retried once on another if the
    /// pooled one turned out closed before the request was written) or on a
    /// new one.
    async fn exchange(
        &self,
        target: &Target,
        mut req: http::Request<UpstreamBody>,
    ) -> Result<http::Response<ResponseBody>, Failure> {
        loop {
            let pooled = poll_fn(|cx| Poll::Ready(target.pool.take(cx))).await;
            let reused = pooled.is_some();
            let mut conn = match pooled {
                Some(c) => c,
                None => self.connect(target).await?,
            };
            let mut open = true;
            let sent = {
                let mut response = pin!(conn.tx.try_send_request(req));
                poll_fn(|cx| {
                    if open {
                        open = conn.drive(cx);
                    }
                    response.as_mut().poll(cx)
                })
                .await
            };
            match sent {
                Ok(resp) => {
                    let (parts, body) = resp.into_parts();
                    let conn = open.then_some(conn);
                    let body = ResponseBody::new(body, conn, &target.pool).await;
                    return Ok(http::Response::from_parts(parts, body));
                }
                Err(mut e) => match e.take_message() {
                    Some(r) if reused => req = r,
                    _ => return Err(Failure::Exchange(e.into_error())),
                },
            }
        }
    }

    async fn connect(&self, target: &Target) -> Result<Conn, Failure> {
        let addr = (&*target.host, target.port);
        let stream =
            match tokio::time::timeout(self.config.connect_timeout, TcpStream::connect(addr)).await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(Failure::Connect(e.to_string())),
                Err(_) => return Err(Failure::Connect("connect timed out".into())),
            };
        // Best effort: a socket that refuses these options still works.
        let _ = stream.set_nodelay(true);
        let _ = socket2::SockRef::from(&stream)
            .set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE));
        self.connects.inc();
        let (tx, io) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(Failure::Exchange)?;
        Ok(Conn { tx, io })
    }
}

fn body_over_limit(e: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// The upstream's response body, streamed to the client. While it streams it
/// drives the connection it arrives on, and when it has been read to the end
/// it returns that connection to the pool.
pub struct ResponseBody {
    inner: Incoming,
    /// The connection and the pool it goes back to, until the body ends.
    conn: Option<(Conn, Arc<Pool>)>,
}

impl ResponseBody {
    async fn new(inner: Incoming, conn: Option<Conn>, pool: &Arc<Pool>) -> ResponseBody {
        let Some(conn) = conn else {
            return ResponseBody { inner, conn: None };
        };
        if inner.is_end_stream() {
            // No body (HEAD, 204, 304, `Content-Length: 0`): nothing will
            // poll this body, so the connection is finished now.
            let mut conn = Some(conn);
            poll_fn(|cx| {
                if let Some(c) = conn.take() {
                    pool.finish(c, cx);
                }
                Poll::Ready(())
            })
            .await;
            return ResponseBody { inner, conn: None };
        }
        ResponseBody {
            inner,
            conn: Some((conn, pool.clone())),
        }
    }

    fn finish(&mut self, cx: &mut Context<'_>) {
        if let Some((conn, pool)) = self.conn.take() {
            pool.finish(conn, cx);
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Some((conn, _)) = &mut this.conn {
            if !conn.drive(cx) {
                this.conn = None;
            }
        }
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            None => this.finish(cx),
            Some(Ok(_)) if this.inner.is_end_stream() => this.finish(cx),
            Some(Ok(_)) => {}
            Some(Err(_)) => this.conn = None,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("pooled", &self.conn.is_some())
            .finish()
    }
}
