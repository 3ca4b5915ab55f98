//! Idle connections: closing keep-alive connections nobody uses
//! (`server.idle_timeout`).
//!
//! A connection is idle while no request is in flight on it: none is being
//! served and no response body is still being sent. Bytes alone do not count
//! as use: HTTP/2 PINGs (ours every 30 s, or a client's) would otherwise keep
//! an empty connection open forever. A request is in flight from the moment
//! its head has been read until its response body has been sent or dropped,
//! so a slow upstream or a long download is never cut, however long it takes.
//!
//! When a connection has been idle for `idle_timeout`, it is asked to close
//! gracefully: HTTP/1.1 closes at once (nothing is in flight), HTTP/2 sends
//! GOAWAY so the client knows no stream was lost. A peer that does not finish
//! the HTTP/2 goodbye within the close grace (the smaller of `idle_timeout`
//! and `header_read_timeout`), while still sending no request, is dropped.
//! The same graceful close runs when the server stops.
//!
//! Before its first request a connection is held to `header_read_timeout`
//! ([`Timeouts::first_request`]): one that has not delivered a complete
//! request head by then — it sent nothing, a partial HTTP/1.1 head, a
//! partial HTTP/2 preface, or an HTTP/2 preface and settings but no stream
//! — is dropped, so silent connections cannot hold slots for
//! `idle_timeout`.
//!
//! Two other limits apply alongside (see `server`): a client that starts a
//! request head must finish it within `header_read_timeout`, and for HTTP/1.1
//! hyper starts that clock as soon as a keep-alive connection turns idle, so
//! an HTTP/1.1 connection is in fact closed after the smaller of the two.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

/// In-flight requests of one connection, and when the last one ended.
#[derive(Clone, Debug)]
pub(crate) struct Tracker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Requests whose head was read and whose response is not yet sent.
    in_flight: AtomicUsize,
    /// When the connection last had nothing in flight, in ms since `born`.
    idle_since_ms: AtomicU64,
    /// Whether any request has started (its head was read).
    served: AtomicBool,
    born: Instant,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker::new()
    }
}

impl Tracker {
    /// A tracker for a connection that starts now, idle.
    pub(crate) fn new() -> Tracker {
        Tracker {
            inner: Arc::new(Inner {
                in_flight: AtomicUsize::new(0),
                idle_since_ms: AtomicU64::new(0),
                served: AtomicBool::new(false),
                born: Instant::now(),
            }),
        }
    }

    /// Marks a request in flight until the returned guard is dropped (move
    /// it into the response body with [`InFlight::track`]).
    pub(crate) fn start(&self) -> InFlight {
        self.inner.in_flight.fetch_add(1, Ordering::SeqCst);
        self.inner.served.store(true, Ordering::SeqCst);
        InFlight {
            inner: self.inner.clone(),
        }
    }

    /// Whether a request has ever started on this connection.
    pub(crate) fn served(&self) -> bool {
        self.inner.served.load(Ordering::SeqCst)
    }

    /// Requests in flight now.
    pub(crate) fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    /// When the connection turned idle, or `None` while a request is in flight.
    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight() > 0 {
            return None;
        }
        let ms = self.inner.idle_since_ms.load(Ordering::SeqCst);
        let since = self.inner.born + Duration::from_millis(ms);
        // A request may have started between the two loads.
        (self.in_flight() == 0).then_some(since)
    }
}

/// One request in flight; dropping it ends the request for idleness.
#[derive(Debug)]
pub(crate) struct InFlight {
    inner: Arc<Inner>,
}

impl InFlight {
    /// Wraps a response body so the request stays in flight until the body
    /// has been sent (or dropped).
    pub(crate) fn track<B>(self, body: B) -> Tracked<B> {
        Tracked {
            body,
            _in_flight: self,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let ms = self.inner.born.elapsed().as_millis();
        // Stamp first, then leave: whoever sees zero in flight sees the stamp.
        self.inner
            .idle_since_ms
            .fetch_max(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::SeqCst);
        self.inner.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its request in flight until it is done.
#[derive(Debug)]
pub(crate) struct Tracked<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The clocks [`drive_with`] keeps for one connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    /// Nothing in flight this long: ask the connection to close.
    pub idle: Duration,
    /// No request head this long after the connection began: drop it.
    pub first_request: Option<Duration>,
    /// Asked to close and still idle this long later: drop it.
    pub close_grace: Duration,
}

impl Timeouts {
    /// The server's clocks: `idle_timeout`, and `header_read_timeout` for
    /// the first request and (capped by `idle_timeout`) the close grace.
    pub(crate) fn new(idle_timeout: Duration, header_read_timeout: Duration) -> Timeouts {
        Timeouts {
            idle: idle_timeout,
            first_request: Some(header_read_timeout),
            close_grace: idle_timeout.min(header_read_timeout),
        }
    }
}

/// Drives a connection until it ends, closing it gracefully (with `close`,
/// which calls the connection's `graceful_shutdown`) once it has been idle
/// for `idle_timeout` or when `stop` fires. Returns `None` when the
/// connection had to be dropped because it did not finish closing within
/// another `idle_timeout` while still idle. (The unit tests' shorthand for
/// [`drive_with`] without a first-request clock.)
#[cfg(test)]
pub(crate) async fn drive<C, F>(
    conn: C,
    tracker: &Tracker,
    idle_timeout: Duration,
    stop: &mut tokio::sync::watch::Receiver<bool>,
    close: F,
) -> Option<C::Output>
where
    C: Future,
    F: FnMut(Pin<&mut C>),
{
    let timeouts = Timeouts {
        idle: idle_timeout,
        first_request: None,
        close_grace: idle_timeout,
    };
    drive_with(conn, tracker, timeouts, stop, close).await
}

/// Drives a connection with every clock of [`Timeouts`]: also drops a connection
/// that has started no request within `first_request`, and one that has
/// not closed `close_grace` after being asked while still idle. Returns
/// `None` when the connection was dropped.
pub(crate) async fn drive_with<C, F>(
    conn: C,
    tracker: &Tracker,
    timeouts: Timeouts,
    stop: &mut tokio::sync::watch::Receiver<bool>,
    mut close: F,
) -> Option<C::Output>
where
    C: Future,
    F: FnMut(Pin<&mut C>),
{
    let idle_timeout = timeouts.idle;
    let first_deadline = timeouts.first_request.map(|d| tracker.inner.born + d);
    let mut conn = std::pin::pin!(conn);
    // When the graceful close was asked for.
    let mut closing: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let mut wake = match (closing, tracker.idle_since()) {
            (None, Some(since)) => since + idle_timeout,
            (Some(asked), Some(since)) => asked.max(since) + timeouts.close_grace,
            // Busy: nothing can happen before a full timeout from now.
            (_, None) => now + idle_timeout,
        };
        if let Some(first) = first_deadline.filter(|_| !tracker.served()) {
            wake = wake.min(first);
        }
        tokio::select! {
            out = conn.as_mut() => return Some(out),
            _ = stop.changed(), if closing.is_none() => {
                closing = Some(Instant::now());
                close(conn.as_mut());
            }
            () = tokio::time::sleep_until(wake) => {
                if first_deadline.is_some_and(|first| !tracker.served() && Instant::now() >= first) {
                    tracing::debug!("no complete request head within header_read_timeout; dropping the connection");
                    return None;
                }
                let idle_for = tracker.idle_since().map(|since| Instant::now() - since);
                match (closing, idle_for) {
                    (None, Some(d)) if d >= idle_timeout => {
                        tracing::debug!(?idle_timeout, "closing an idle connection");
                        closing = Some(Instant::now());
                        close(conn.as_mut());
                    }
                    (Some(asked), Some(d)) if d >= timeouts.close_grace && asked.elapsed() >= timeouts.close_grace => {
                        tracing::debug!("an idle connection did not close when asked; dropping it");
                        return None;
                    }
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    const SHORT: Duration = Duration::from_millis(50);
    const DEADLINE: Duration = Duration::from_secs(5);

    /// A stand-in connection: ends once `closed` is set.
    async fn until(closed: Arc<AtomicBool>) {
        while !closed.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn an_idle_connection_is_asked_to_close() {
        let tracker = Tracker::new();
        let (_tx, mut stop) = tokio::sync::watch::channel(false);
        let closed = Arc::new(AtomicBool::new(false));
        let c = closed.clone();
        let run = drive(
            until(closed.clone()),
            &tracker,
            SHORT,
            &mut stop,
            move |_| c.store(true, Ordering::SeqCst),
        );
        let out = tokio::time::timeout(DEADLINE, run).await.unwrap();
        assert!(out.is_some());
    }

    #[tokio::test]
    async fn never_while_a_request_is_in_flight() {
        let tracker = Tracker::new();
        let (_tx, mut stop) = tokio::sync::watch::channel(false);
        let closed = Arc::new(AtomicBool::new(false));
        let busy_when_closed = Arc::new(AtomicBool::new(false));
        let t = tracker.clone();
        let c = closed.clone();
        // Three requests, each in flight for six idle timeouts, back to back.
        let conn = async move {
            for _ in 0..3 {
                let req = t.start().track(());
                tokio::time::sleep(SHORT * 6).await;
                drop(req);
            }
            until(c).await;
        };
        let (c, b, t) = (closed.clone(), busy_when_closed.clone(), tracker.clone());
        let run = drive(conn, &tracker, SHORT, &mut stop, move |_| {
            b.store(t.in_flight() > 0, Ordering::SeqCst);
            c.store(true, Ordering::SeqCst);
        });
        tokio::time::timeout(DEADLINE, run).await.unwrap().unwrap();
        assert!(!busy_when_closed.load(Ordering::SeqCst));
        assert_eq!(tracker.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_peer_that_ignores_the_close_is_dropped() {
        let tracker = Tracker::new();
        let (_tx, mut stop) = tokio::sync::watch::channel(false);
        let run = drive(
            std::future::pending::<()>(),
            &tracker,
            SHORT,
            &mut stop,
            |_| {},
        );
        let out = tokio::time::timeout(DEADLINE, run).await.unwrap();
        assert!(out.is_none());
    }

    #[tokio::test]
    async fn stop_asks_even_while_busy() {
        let tracker = Tracker::new();
        let (tx, mut stop) = tokio::sync::watch::channel(false);
        let _busy = tracker.start();
        let closed = Arc::new(AtomicBool::new(false));
        let c = closed.clone();
        tx.send(true).unwrap();
        let run = drive(
            until(closed.clone()),
            &tracker,
            Duration::from_secs(3600),
            &mut stop,
            move |_| c.store(true, Ordering::SeqCst),
        );
        tokio::time::timeout(DEADLINE, run).await.unwrap().unwrap();
    }
}
