//! Upstream exchanges: one pooled HTTP/1.1 client per configured upstream.
//!
//! The pool is hyper-util's: connections are reused after clean exchanges,
//! closed after `pool_idle_timeout`, at most `pool_max_idle` kept per
//! destination, and a request that could not be written on a pooled
//! connection the upstream had closed is retried on a fresh one. A reload
//! that leaves an upstream's config unchanged keeps the [`Upstream`], so its
//! warm connections survive the reload.
//!
//! Driving the connections in the request's own task instead (hyper's
//! `client::conn` with a pool of our own, commit feadb76) was measured and
//! reverted: it saved no user CPU, and because upstream and client writes
//! stopped being batched per scheduler tick the kernel spent more on wake-ups
//! (`bench/README.md`, "What stands in the way").
//!
//! Bodies stream both ways, never buffered whole; the request body is under
//! the route's limit, so a chunked body over it is cut off and answered 413.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::uri::Uri;
use http_body_util::Limited;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus::{Histogram, IntCounter, IntCounterVec};
use tokio::net::TcpStream;

use crate::config::{UpstreamConfig, UpstreamUrl};
use crate::error::{BadRequest, GatewayError, UpstreamFailure};
use crate::keys::Env;
use crate::metrics::Metrics;

/// The body sent upstream: the client's, streamed, under the route's limit.
pub(crate) type UpstreamBody = Limited<Incoming>;

/// The upstream's response body, streamed to the client.
pub(crate) type ResponseBody = Incoming;

/// TCP keep-alive probes on upstream connections start after this much silence.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// One destination base (`url` or `test_url`), pre-split for cheap URI builds.
struct Target {
    /// `host:port`, named in error logs.
    authority: Box<str>,
    /// `http://host:port`, the part before the path.
    origin: Box<str>,
    base_path: Box<str>,
    /// The `Host` header sent upstream.
    host: HeaderValue,
}

impl Target {
    fn new(u: &UpstreamUrl) -> Target {
        Target {
            authority: u.authority.as_str().into(),
            origin: format!("{}://{}", u.scheme, u.authority).into(),
            base_path: u.base_path.as_str().into(),
            host: HeaderValue::from_str(u.authority.as_str())
                .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
        }
    }

    fn uri(&self, path: &str, query: Option<&str>) -> Result<Uri, GatewayError> {
        let mut s = String::with_capacity(
            self.origin.len()
                + self.base_path.len()
                + path.len()
                + query.map_or(0, |q| q.len() + 1),
        );
        s.push_str(&self.origin);
        s.push_str(&self.base_path);
        s.push_str(path);
        if let Some(q) = query {
            s.push('?');
            s.push_str(q);
        }
        Uri::try_from(s).map_err(|_| GatewayError::InvalidRequest(BadRequest::Unforwardable))
    }
}

/// hyper-util's connector, counting the connections it opens
/// (`osir_gateway_upstream_connections_total`, the pool's reuse ratio).
#[derive(Clone)]
struct CountingConnector {
    inner: HttpConnector,
    connects: IntCounter,
}

type ConnectError = Box<dyn std::error::Error + Send + Sync>;
type Connecting = Pin<Box<dyn Future<Output = Result<TokioIo<TcpStream>, ConnectError>> + Send>>;

impl tower_service::Service<Uri> for CountingConnector {
    type Response = TokioIo<TcpStream>;
    type Error = ConnectError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Connecting {
        let connecting = self.inner.call(dst);
        let connects = self.connects.clone();
        Box::pin(async move {
            let io = connecting.await?;
            connects.inc();
            Ok(io)
        })
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
    client: Client<CountingConnector, UpstreamBody>,
    duration: Histogram,
    /// `upstream_errors_total{upstream, kind}`: a series appears with its
    /// first error (errors are off the hot path, so the lookup is fine).
    errors: IntCounterVec,
    /// Failures are logged at most once a second per upstream (a down
    /// upstream fails every request), with the count held back.
    log_throttle: crate::diag::Throttle,
}

impl Upstream {
    /// Builds the pools for one `[upstreams.NAME]`.
    pub fn new(cfg: &UpstreamConfig, metrics: &Metrics) -> Upstream {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(cfg.connect_timeout));
        http.set_nodelay(true);
        http.set_keepalive(Some(TCP_KEEPALIVE));
        let connector = CountingConnector {
            inner: http,
            connects: metrics.upstream_connects.with_label_values(&[&cfg.name]),
        };
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .pool_max_idle_per_host(cfg.pool_max_idle)
            .build(connector);
        Upstream {
            config: cfg.clone(),
            live: Target::new(&cfg.url),
            test: cfg.test_url.as_ref().map(Target::new),
            client,
            duration: metrics.upstream_duration.with_label_values(&[&cfg.name]),
            errors: metrics.upstream_errors.clone(),
            log_throttle: crate::diag::Throttle::new(Duration::from_secs(1)),
        }
    }

    /// Was it built from exactly this config?
    pub fn built_from(&self, cfg: &UpstreamConfig) -> bool {
        self.config == *cfg
    }

    /// Sends the request and waits for the response head, up to `timeout`;
    /// also says how long the exchange took (for the access log). `env`
    /// picks `test_url` for test keys when there is one.
    pub async fn send(
        &self,
        req: http::Request<UpstreamBody>,
        path: &str,
        query: Option<&str>,
        env: Option<Env>,
    ) -> (Result<http::Response<ResponseBody>, GatewayError>, Duration) {
        let started = Instant::now();
        let result = self.exchange(req, path, query, env).await;
        let took = started.elapsed();
        if result.is_ok() {
            self.duration.observe(took.as_secs_f64());
        }
        (result, took)
    }

    async fn exchange(
        &self,
        mut req: http::Request<UpstreamBody>,
        path: &str,
        query: Option<&str>,
        env: Option<Env>,
    ) -> Result<http::Response<ResponseBody>, GatewayError> {
        let target = match (env, &self.test) {
            (Some(Env::Test), Some(t)) => t,
            _ => &self.live,
        };
        *req.uri_mut() = target.uri(path, query)?;
        req.headers_mut().insert(header::HOST, target.host.clone());
        let outcome = tokio::time::timeout(self.config.timeout, self.client.request(req)).await;
        let (kind, err) = match outcome {
            Ok(Ok(resp)) => return Ok(resp),
            Err(_) => {
                self.log_failure(target, "timeout", None);
                ("timeout", GatewayError::UpstreamTimeout)
            }
            Ok(Err(e)) if body_over_limit(&e) => return Err(GatewayError::PayloadTooLarge),
            Ok(Err(e)) if e.is_connect() => {
                self.log_failure(target, "connect", Some(&e));
                let failure = UpstreamFailure::Connect(Arc::new(e));
                ("connect", GatewayError::UpstreamUnavailable(failure))
            }
            Ok(Err(e)) => {
                self.log_failure(target, "broken", Some(&e));
                let failure = UpstreamFailure::Broken(Arc::new(e));
                ("broken", GatewayError::UpstreamUnavailable(failure))
            }
        };
        self.errors
            .with_label_values(&[&self.config.name, kind])
            .inc();
        Err(err)
    }
}

impl Upstream {
    /// One WARN line naming the upstream, the address tried, the whole
    /// error chain and the OS error in it; at most one a second per
    /// upstream, saying how many failures it stands for.
    fn log_failure(
        &self,
        target: &Target,
        kind: &'static str,
        error: Option<&hyper_util::client::legacy::Error>,
    ) {
        let Some(suppressed) = self.log_throttle.admit(Instant::now()) else {
            return;
        };
        let what = match kind {
            "connect" => "upstream connect failed",
            "timeout" => "upstream timed out",
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

fn body_over_limit(e: &hyper_util::client::legacy::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}
