//! Listeners: accept connections and hand requests to the pipeline.
//!
//! [`serve`] takes already-bound listeners and a shutdown future, so tests
//! run a real gateway on `127.0.0.1:0` in-process, and `main` decides about
//! sockets and signals. HTTP/1.1 and HTTP/2 (prior knowledge) share a port;
//! HTTP/1.1 runs on the gateway's own engine ([`h1`]); HTTP/2 (ALPN `h2` on
//! the TLS listener, or the HTTP/2 preface on the plain one) on hyper's
//! HTTP/2 server. Both run the same pipeline and share the upstream pools.
//!
//! The plain and the TLS listener share one accept loop (`accept_api`),
//! generic over the step that turns a TCP stream into the stream HTTP runs
//! on: nothing for plain HTTP, the TLS handshake for TLS. That step runs in
//! the connection's own task, never in the accept loop, so a slow handshake
//! cannot hold up accepting; it counts against the connection limit and in
//! `open_connections` like any open connection.
//!
//! The HTTP/1.1 engine keeps its connections' clocks itself (see [`h1`]).
//! Every HTTP/2 connection is driven by [`crate::server::idle::drive_with`],
//! which drops it if no complete request arrives within
//! `server.header_read_timeout`, closes it gracefully (GOAWAY) once no
//! request has been in flight for `server.idle_timeout` or when the server
//! stops, and drops it if it ignores that close.
//!
//! Reloads apply to `[server]` live: each new connection is served with the
//! settings of the config generation serving when it was accepted (timeouts,
//! head size, HTTP/2 limits, `max_connections_per_ip`); `max_connections`
//! is adjusted on every reload (a lower limit takes effect as connections
//! close); `shutdown_grace` is read when shutdown begins. Connections already
//! open keep the settings they started with.

pub mod h1;
pub(crate) mod idle;
mod rewind;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::server::TlsStream;

use crate::admin;
use crate::config::ServerConfig;
use crate::pipeline::{self, ConnInfo};
use crate::server::tls::TlsAcceptor;
use crate::state::Gateway;

/// The sockets a gateway serves on.
pub struct Listeners {
    /// Plain-HTTP API listener (`server.listen`).
    pub http: Option<TcpListener>,
    /// Admin listener (`admin.listen`): metrics, health, key API.
    pub admin: Option<TcpListener>,
    /// TLS API listener (`server.tls.listen`) and the acceptor holding its
    /// certificate; [`serve`] also hands the acceptor to the gateway (before
    /// it reports ready), so a config reload can swap the certificate.
    pub tls: Option<(TcpListener, Arc<TlsAcceptor>)>,
}

/// The HTTP/2 connection builder configured from `[server]`.
pub fn builder(cfg: &ServerConfig) -> http2::Builder<TokioExecutor> {
    let mut b = http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .max_concurrent_streams(cfg.http2.max_concurrent_streams)
        .max_header_list_size(cfg.http2.max_header_list_size)
        .max_pending_accept_reset_streams(cfg.http2.max_pending_resets)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    b
}

/// A stream HTTP can run on, and whether it negotiated HTTP/2.
pub trait Negotiated: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// TLS with ALPN `h2`.
    fn is_h2(&self) -> bool;
}

impl Negotiated for TcpStream {
    fn is_h2(&self) -> bool {
        false
    }
}

impl Negotiated for TlsStream<TcpStream> {
    fn is_h2(&self) -> bool {
        self.get_ref().1.alpn_protocol() == Some(b"h2")
    }
}

/// Serves until `shutdown` completes, then stops accepting, lets open
/// requests finish for up to `server.shutdown_grace`, and returns.
pub async fn serve(gw: Arc<Gateway>, listeners: Listeners, shutdown: impl Future<Output = ()>) {
    let graceful = Arc::new(GracefulShutdown::new());
    let first = gw.snapshot.load_full();
    let limit = Arc::new(Semaphore::new(first.config.server.max_connections));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(follow_connection_limit(
        gw.clone(),
        limit.clone(),
        first.config.server.max_connections,
        stop_rx.clone(),
    )));
    let api = Api {
        gw: gw.clone(),
        builders: Arc::new(Builders {
            current: parking_lot::Mutex::new((
                first.generation,
                Arc::new(builder(&first.config.server)),
            )),
        }),
        graceful: graceful.clone(),
        limit: limit.clone(),
    };
    drop(first);
    if let Some(l) = listeners.http {
        tasks.push(tokio::spawn(accept_api(
            api.clone(),
            l,
            "http",
            |stream| std::future::ready(Ok(stream)),
            stop_rx.clone(),
        )));
    }
    if let Some((l, acceptor)) = listeners.tls {
        tasks.push(tokio::spawn(accept_api(
            api.clone(),
            l,
            "https",
            move |stream| {
                let acceptor = acceptor.clone();
                async move { acceptor.accept(stream).await }
            },
            stop_rx.clone(),
        )));
    }
    drop(api);
    if let Some(l) = listeners.admin {
        tasks.push(tokio::spawn(accept_admin(
            gw.clone(),
            l,
            graceful.clone(),
            stop_rx.clone(),
        )));
    }
    gw.ready.store(true, std::sync::atomic::Ordering::SeqCst);
    shutdown.await;
    gw.ready.store(false, std::sync::atomic::Ordering::SeqCst);
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let graceful = Arc::try_unwrap(graceful).unwrap_or_else(|_| GracefulShutdown::new());
    // Read now, so a reload before the signal applies.
    let grace = gw.snapshot.load().config.server.shutdown_grace;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "shutdown grace period over; closing remaining connections"
        );
    }
    gw.flush_usage().await;
    gw.stop();
}

/// What every API connection shares, whichever listener accepted it.
#[derive(Clone)]
struct Api {
    gw: Arc<Gateway>,
    builders: Arc<Builders>,
    graceful: Arc<GracefulShutdown>,
    limit: Arc<Semaphore>,
}

/// The connection builder of the serving config generation, rebuilt at the
/// first accept after a reload (so `[server]` changes reach new connections
/// without a builder per connection).
struct Builders {
    current: parking_lot::Mutex<(u64, Arc<http2::Builder<TokioExecutor>>)>,
}

impl Builders {
    fn for_snapshot(&self, snap: &crate::state::Snapshot) -> Arc<http2::Builder<TokioExecutor>> {
        let mut current = self.current.lock();
        if current.0 != snap.generation {
            *current = (snap.generation, Arc::new(builder(&snap.config.server)));
        }
        current.1.clone()
    }
}

/// Keeps the connection semaphore at `server.max_connections` across
/// reloads: a higher limit adds permits at once; a lower one takes back the
/// free permits at once and the rest as connections close (a background
/// acquire, then forgotten), so no open connection is cut. The total always
/// converges to the last limit; until it has, the accept loop may still
/// admit the one connection it holds a permit for.
async fn follow_connection_limit(
    gw: Arc<Gateway>,
    limit: Arc<Semaphore>,
    mut current: usize,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut generations = gw.generations();
    loop {
        tokio::select! {
            changed = generations.changed() => if changed.is_err() { return },
            _ = stop.changed() => return,
        }
        let wanted = gw.snapshot.load().config.server.max_connections;
        if wanted > current {
            limit.add_permits(wanted - current);
        } else if wanted < current {
            // Permits nobody holds go at once; the rest as connections close.
            let forgotten = limit.forget_permits(current - wanted);
            let owed = u32::try_from(current - wanted - forgotten).unwrap_or(u32::MAX);
            if owed > 0 {
                let limit = limit.clone();
                tokio::spawn(async move {
                    if let Ok(p) = limit.acquire_many_owned(owed).await {
                        p.forget();
                    }
                });
            }
        }
        if wanted != current {
            tracing::info!(
                from = current,
                to = wanted,
                "server.max_connections changed"
            );
        }
        current = wanted;
    }
}

/// Accepts API connections on `listener` until `stop`; each one runs
/// `handshake` (identity for plain HTTP, TLS for `https`) and is then served
/// by the pipeline with `proto` as its `X-Forwarded-Proto`.
async fn accept_api<H, F, S>(
    api: Api,
    listener: TcpListener,
    proto: &'static str,
    handshake: H,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    H: Fn(TcpStream) -> F,
    F: Future<Output = std::io::Result<S>> + Send + 'static,
    S: Negotiated,
{
    // The metric names the listener (`http`, `tls`); `proto` is the scheme.
    let label = if proto == "https" { "tls" } else { "http" };
    let open = api.gw.metrics.open_connections.with_label_values(&[label]);
    loop {
        // Backpressure: at the connection limit, leave new clients in the
        // kernel's backlog instead of accepting and dropping them.
        let permit = tokio::select! {
            p = api.limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.changed() => return,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        // The serving generation's [server] settings apply to this connection.
        let snap = api.gw.snapshot.load();
        let per_ip_limit = snap.config.server.max_connections_per_ip;
        let Some(slot) = api.gw.per_ip.try_take(peer.ip(), per_ip_limit) else {
            api.gw
                .metrics
                .connections_refused
                .with_label_values(&["per_ip"])
                .inc();
            tracing::debug!(peer = %peer.ip(), limit = per_ip_limit, "connection closed: over server.max_connections_per_ip");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let info = ConnInfo { peer, proto };
        let handshake = handshake(stream);
        // Taken now, before any shutdown can start, so graceful shutdown
        // waits for this connection even while its handshake is running.
        let watcher = api.graceful.watcher();
        let mut stop = stop.clone();
        let gw = api.gw.clone();
        let builder = api.builders.for_snapshot(&snap);
        let timeouts = idle::Timeouts::new(
            snap.config.server.idle_timeout,
            snap.config.server.header_read_timeout,
        );
        let settings = h1::Settings::new(&snap.config.server);
        drop(snap);
        let accepted = tokio::time::Instant::now();
        let open = open.clone();
        open.inc();
        tokio::spawn(async move {
            let stream = tokio::select! {
                biased;
                s = handshake => s,
                _ = stop.changed() => Err(std::io::Error::other("shutting down")),
            };
            match stream {
                Ok(stream) if stream.is_h2() => {
                    serve_h2(gw, stream, info, &builder, timeouts, &mut stop).await;
                }
                Ok(stream) => {
                    let plain = proto == "http";
                    let ended =
                        h1::serve(&gw, stream, info, settings, accepted, &mut stop, plain).await;
                    if let h1::Ended::H2c(stream, read) = ended {
                        let stream = rewind::Rewind::new(stream, read);
                        serve_h2(gw, stream, info, &builder, timeouts, &mut stop).await;
                    }
                }
                // Handshake failures are the client's business (scanners,
                // wrong trust store, timeouts); debug only, nothing secret.
                Err(e) => tracing::debug!(peer = %peer, error = %e, "TLS handshake failed"),
            }
            // Held until now, so a graceful server shutdown waits for this
            // connection.
            drop(watcher);
            open.dec();
            drop(slot);
            drop(permit);
        });
    }
}

/// Serves one HTTP/2 connection with hyper until it ends; idle and
/// stopping connections get GOAWAY (see [`idle`]).
async fn serve_h2<S>(
    gw: Arc<Gateway>,
    stream: S,
    info: ConnInfo,
    builder: &http2::Builder<TokioExecutor>,
    timeouts: idle::Timeouts,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let tracker = idle::Tracker::new();
    let in_flight = tracker.clone();
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let gw = gw.clone();
        let request = in_flight.start();
        async move {
            let (parts, body) = req.into_parts();
            let head = pipeline::Head {
                method: parts.method,
                uri: parts.uri,
                version: parts.version,
                fields: parts.headers,
            };
            // Boxed: the pipeline's state is large, and hyper moves the
            // stream's future several times before it first polls it.
            let mut resp = Box::pin(pipeline::handle(&gw, &head, body, info)).await;
            pipeline::headers_into_map(&mut resp);
            // Unique to each answer: HPACK indexing it would only churn the
            // client's dynamic table (and cost the encoder an insert and an
            // eviction per answer), so it is sent never-indexed.
            if let Some(id) = resp.headers_mut().get_mut(crate::error::X_REQUEST_ID) {
                id.set_sensitive(true);
            }
            Ok::<_, Infallible>(resp.map(|body| request.track(body)))
        }
    });
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let closed = idle::drive_with(conn, &tracker, timeouts, stop, |c| c.graceful_shutdown()).await;
    if let Some(Err(e)) = closed {
        tracing::debug!(error = %e, "HTTP/2 connection ended with an error");
    }
}

async fn accept_admin(
    gw: Arc<Gateway>,
    listener: TcpListener,
    graceful: Arc<GracefulShutdown>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let gw2 = gw.clone();
        let service = service_fn(move |req| {
            let gw = gw2.clone();
            async move { Ok::<_, Infallible>(admin::handle(&gw, req, peer.ip()).await) }
        });
        let conn = graceful.watch(
            b.serve_connection(TokioIo::new(stream), service)
                .into_owned(),
        );
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}
