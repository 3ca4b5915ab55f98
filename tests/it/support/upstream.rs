//! A recording upstream on hyper: keeps every request it received (method,
//! target, headers, body) so tests can assert what the gateway forwarded.
//!
//! Behaviour is steered by request headers, which the gateway forwards
//! untouched: `x-test-delay-ms: N` waits before answering (504 tests),
//! `x-test-hop: 1` adds hop-by-hop response headers (hygiene tests). A body
//! is echoed back, streamed, so both directions are exercised.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query exactly as received.
    pub target: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub struct RecordingUpstream {
    pub addr: SocketAddr,
    pub name: &'static str,
    seen: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RecordingUpstream {
    pub async fn start(name: &'static str) -> RecordingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let seen2 = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let seen = seen2.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let seen = seen.clone();
                        async move { Ok::<_, Infallible>(answer(name, seen, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        RecordingUpstream { addr, name, seen, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// The last request, panicking if none arrived.
    pub fn last(&self) -> Recorded {
        self.requests().pop().expect("the upstream received no request")
    }

    /// Stops listening (connections refused afterwards).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for RecordingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(name: &'static str, seen: Arc<Mutex<Vec<Recorded>>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let delay = parts
        .headers
        .get("x-test-delay-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let hop = parts.headers.contains_key("x-test-hop");
    seen.lock().unwrap().push(Recorded {
        method: parts.method.to_string(),
        target: parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    if let Some(ms) = delay {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let out = if body.is_empty() { Bytes::from_static(b"ok") } else { body };
    let mut resp = Response::new(Full::new(out));
    resp.headers_mut().insert("x-upstream", name.parse().unwrap());
    if hop {
        let h = resp.headers_mut();
        h.insert("connection", "x-secret-resp".parse().unwrap());
        h.insert("x-secret-resp", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("proxy-authenticate", "Basic".parse().unwrap());
    }
    resp
}

/// An `http://` URL on 127.0.0.1 where nothing listens (connections are
/// refused): a port the OS just handed out and that was closed again.
pub fn closed_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}
