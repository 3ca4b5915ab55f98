//! Upstream connections, pooled per destination and driven by the request's
//! own task.
//!
//! A request checks a connection out, writes its request on it, reads the
//! response and checks it back in once the exchange ended cleanly: no task
//! per connection, no channel per request. Idle connections are kept LIFO
//! (the warmest is reused first, the coldest ages out), at most
//! `pool_max_idle` of them, each for at most `pool_idle_timeout`; a reaper
//! task, started when the first connection goes idle and gone when none is,
//! closes the expired ones. At most `pool_max` connections are open to one
//! destination, busy or idle; a request that finds them all busy waits up to
//! `pool_wait` for one to come back (handed to it directly, first come first
//! served) and is otherwise refused with a clear error.
//!
//! A connection is checked before reuse: one the upstream closed while it
//! sat idle (or that has unread bytes, which would belong to no request) is
//! dropped, never written to.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use parking_lot::Mutex;
use prometheus::IntCounter;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// TCP keep-alive probes on upstream connections start after this much silence.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// One upstream connection and its buffers, reused across exchanges.
pub(crate) struct Conn {
    pub(super) io: TcpStream,
    /// Bytes read from the upstream and not yet used.
    pub(super) buf: BytesMut,
    /// The request head (and small bodies) being written.
    pub(super) wbuf: Vec<u8>,
    /// The field spans of the last answer's head, reused for the next.
    pub(super) fields: Vec<crate::http1::field::Field>,
    /// Has it carried an exchange before this one?
    pub(super) reused: bool,
    /// The exchange deadline (`timeout`), one timer per connection, reset
    /// for each exchange; made by the first exchange.
    pub(super) timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl Conn {
    /// Is the connection still usable? An idle upstream connection must
    /// have nothing to read: end of stream means the upstream closed it,
    /// and stray bytes belong to no request.
    fn still_open(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

/// Why no connection could be had.
#[derive(Debug)]
pub(crate) enum CheckoutError {
    /// `pool_max` connections busy for all of `pool_wait`.
    Exhausted {
        /// The bound that was hit.
        max: usize,
    },
    /// Connecting failed or timed out.
    Connect(io::Error),
}

/// What a waiting request is given: a connection someone checked in, or
/// the right to open one (someone's connection closed).
enum Grant {
    Conn(Box<Conn>),
    Connect,
}

struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

struct Inner {
    /// LIFO: the last pushed is the warmest.
    idle: Vec<Idle>,
    /// Connections open, busy or idle (or being opened).
    open: usize,
    waiters: VecDeque<oneshot::Sender<Grant>>,
    reaper: bool,
}

/// The pool of one destination (`host:port`).
pub(crate) struct Pool {
    inner: Mutex<Inner>,
    addr: Box<str>,
    max: usize,
    max_idle: usize,
    idle_timeout: Duration,
    connect_timeout: Duration,
    wait: Duration,
    connects: IntCounter,
}

/// Settings of one pool, from `[upstreams.NAME]`.
pub(crate) struct PoolSettings {
    pub(crate) max: usize,
    pub(crate) max_idle: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) wait: Duration,
}

/// A request's place in the waiters' queue. Dropped (the wait ended or
/// was cancelled), it takes no more grants, and the place a grant sent to
/// it but not taken stands for is freed rather than lost with it (a
/// connection handed over in that race is closed, not pooled: a drop may
/// run outside the runtime, where pooling could not start the reaper).
struct Waiter<'p> {
    rx: oneshot::Receiver<Grant>,
    pool: &'p Pool,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.rx.close();
        if let Ok(grant) = self.rx.try_recv() {
            drop(grant);
            self.pool.release();
        }
    }
}

/// A place counted in `open` for a connection being opened; freed if the
/// connect fails or is cancelled (set to `None` once it succeeded).
struct Place<'p>(Option<&'p Pool>);

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if let Some(pool) = self.0 {
            pool.release();
        }
    }
}

/// A checked-out connection. Dropped without [`Lease::check_in`], the
/// connection is closed and its place in the pool freed.
pub(crate) struct Lease {
    /// Boxed: a lease moves with the response body it reads, several
    /// times per answer.
    conn: Option<Box<Conn>>,
    pool: Arc<Pool>,
}

impl Lease {
    pub(super) fn conn(&mut self) -> Option<&mut Conn> {
        self.conn.as_deref_mut()
    }

    /// Returns the connection for reuse: the exchange on it ended cleanly.
    pub(super) fn check_in(mut self) {
        if let Some(mut conn) = self.conn.take() {
            conn.reused = true;
            conn.buf.clear();
            Pool::check_in(&self.pool, conn);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.conn.take().is_some() {
            self.pool.release();
        }
    }
}

impl Pool {
    pub(crate) fn new(addr: &str, settings: PoolSettings, connects: IntCounter) -> Arc<Pool> {
        Arc::new(Pool {
            inner: Mutex::new(Inner {
                idle: Vec::new(),
                open: 0,
                waiters: VecDeque::new(),
                reaper: false,
            }),
            addr: addr.into(),
            max: settings.max.max(1),
            max_idle: settings.max_idle,
            idle_timeout: settings.idle_timeout,
            connect_timeout: settings.connect_timeout,
            wait: settings.wait,
            connects,
        })
    }

    /// A connection: the warmest idle one that is still open, else a new
    /// one if fewer than `pool_max` are open, else the next one checked in
    /// or freed within `pool_wait`.
    /// `now` is the request's clock reading, for the idle ages.
    pub(crate) async fn check_out(self: &Arc<Self>, now: Instant) -> Result<Lease, CheckoutError> {
        let waiting = {
            let mut inner = self.inner.lock();
            let mut stale = Vec::new();
            let mut found = None;
            while let Some(idle) = inner.idle.pop() {
                if now.duration_since(idle.since) < self.idle_timeout && idle.conn.still_open() {
                    found = Some(idle.conn);
                    break;
                }
                inner.open -= 1;
                stale.push(idle.conn);
            }
            if let Some(conn) = found {
                drop(inner);
                drop(stale);
                return Ok(self.lease(conn));
            }
            if inner.open < self.max {
                inner.open += 1;
                None
            } else {
                let (tx, rx) = oneshot::channel();
                inner.waiters.push_back(tx);
                Some(rx)
            }
        };
        // From here on this future may be dropped at any await (an HTTP/2
        // client resets its stream, the upstream timeout runs out): the
        // guards give back what it holds, so no place is lost.
        let grant = match waiting {
            None => Grant::Connect,
            Some(rx) => {
                let mut waiter = Waiter { rx, pool: self };
                match tokio::time::timeout(self.wait, &mut waiter.rx).await {
                    Ok(Ok(grant)) => grant,
                    _ => {
                        // A grant sent just as the wait ended is still ours.
                        waiter.rx.close();
                        match waiter.rx.try_recv() {
                            Ok(grant) => grant,
                            Err(_) => return Err(CheckoutError::Exhausted { max: self.max }),
                        }
                    }
                }
            }
        };
        match grant {
            Grant::Conn(conn) => Ok(self.lease(conn)),
            Grant::Connect => {
                let mut place = Place(Some(self));
                let conn = self.connect().await.map_err(CheckoutError::Connect)?;
                place.0 = None;
                Ok(self.lease(conn))
            }
        }
    }

    fn lease(self: &Arc<Self>, conn: Box<Conn>) -> Lease {
        Lease {
            conn: Some(conn),
            pool: self.clone(),
        }
    }

    async fn connect(&self) -> io::Result<Box<Conn>> {
        let io = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(&*self.addr))
            .await
        {
            Ok(r) => r?,
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connect timed out after {:?}", self.connect_timeout),
                ))
            }
        };
        let _ = io.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
        let _ = socket2::SockRef::from(&io).set_tcp_keepalive(&keepalive);
        self.connects.inc();
        Ok(Box::new(Conn {
            io,
            buf: BytesMut::with_capacity(8 * 1024),
            wbuf: Vec::with_capacity(1024),
            fields: Vec::new(),
            reused: false,
            timer: None,
        }))
    }

    fn check_in(this: &Arc<Self>, mut conn: Box<Conn>) {
        let mut inner = this.inner.lock();
        while let Some(waiter) = inner.waiters.pop_front() {
            match waiter.send(Grant::Conn(conn)) {
                Ok(()) => return,
                Err(Grant::Conn(back)) => conn = back,
                Err(Grant::Connect) => return,
            }
        }
        if inner.idle.len() >= this.max_idle {
            inner.open -= 1;
            drop(inner);
            drop(conn);
            return;
        }
        inner.idle.push(Idle {
            conn,
            since: Instant::now(),
        });
        if !inner.reaper {
            inner.reaper = true;
            tokio::spawn(reap(Arc::downgrade(this), this.idle_timeout));
        }
    }

    /// A connection closed: its place goes to the first waiter, if any.
    fn release(&self) {
        let mut inner = self.inner.lock();
        while let Some(waiter) = inner.waiters.pop_front() {
            if waiter.send(Grant::Connect).is_ok() {
                return;
            }
        }
        inner.open -= 1;
    }

    /// Connections open (busy and idle), for tests and diagnostics.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.inner.lock().open
    }
}

/// Closes idle connections past `idle_timeout`, until none is idle (the
/// next check-in starts a new reaper) or the pool is gone.
async fn reap(pool: Weak<Pool>, idle_timeout: Duration) {
    let tick = (idle_timeout / 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        tokio::time::sleep(tick).await;
        let Some(pool) = pool.upgrade() else { return };
        let mut inner = pool.inner.lock();
        let now = Instant::now();
        let before = inner.idle.len();
        let mut expired = Vec::new();
        let mut i = 0;
        while i < inner.idle.len() {
            if now.duration_since(inner.idle[i].since) >= idle_timeout {
                expired.push(inner.idle.remove(i));
            } else {
                i += 1;
            }
        }
        inner.open -= before - inner.idle.len();
        let done = inner.idle.is_empty();
        if done {
            inner.reaper = false;
        }
        drop(inner);
        drop(expired);
        if done {
            return;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn settings(max: usize, max_idle: usize) -> PoolSettings {
        PoolSettings {
            max,
            max_idle,
            idle_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(1),
            wait: Duration::from_millis(100),
        }
    }

    async fn listener() -> (tokio::net::TcpListener, String) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        (l, addr)
    }

    #[tokio::test]
    async fn at_most_pool_max_are_open_and_a_waiter_gets_the_next_one() {
        let (_l, addr) = listener().await;
        let pool = Pool::new(&addr, settings(2, 2), IntCounter::new("c", "c").unwrap());
        let a = pool.check_out(Instant::now()).await.unwrap();
        let b = pool.check_out(Instant::now()).await.unwrap();
        assert_eq!(pool.open(), 2);
        assert!(matches!(
            pool.check_out(Instant::now()).await,
            Err(CheckoutError::Exhausted { max: 2 })
        ));
        let waiting = tokio::spawn({
            let pool = pool.clone();
            async move {
                pool.check_out(Instant::now())
                    .await
                    .map(|l| l.conn.is_some())
            }
        });
        tokio::task::yield_now().await;
        a.check_in();
        assert!(waiting.await.unwrap().unwrap());
        // The handed-over lease was dropped: its place is free again.
        drop(b);
        assert_eq!(pool.open(), 0);
    }

    /// A request cancelled while it waits (an HTTP/2 client resetting its
    /// stream, the upstream timeout running out) must not take the
    /// connection handed to it, or its place, with it.
    #[tokio::test]
    async fn a_waiter_cancelled_after_its_grant_was_sent_loses_nothing() {
        use futures_util::FutureExt;
        let (_l, addr) = listener().await;
        let pool = Pool::new(&addr, settings(1, 1), IntCounter::new("c", "c").unwrap());
        let a = pool.check_out(Instant::now()).await.unwrap();
        let mut waiting = Box::pin(pool.check_out(Instant::now()));
        assert!(waiting.as_mut().now_or_never().is_none(), "not queued");
        a.check_in(); // handed to the waiter...
        drop(waiting); // ...which is cancelled before it runs again
        assert!(
            pool.check_out(Instant::now()).await.is_ok(),
            "the pool lost its only place ({} open)",
            pool.open()
        );
    }

    /// Likewise for a request cancelled while its connection is opening.
    #[tokio::test]
    async fn a_check_out_cancelled_while_connecting_frees_its_place() {
        use futures_util::FutureExt;
        let (_l, addr) = listener().await;
        let pool = Pool::new(&addr, settings(1, 1), IntCounter::new("c", "c").unwrap());
        let mut connecting = Box::pin(pool.check_out(Instant::now()));
        assert!(
            connecting.as_mut().now_or_never().is_none(),
            "connected at once"
        );
        drop(connecting);
        assert_eq!(pool.open(), 0, "the cancelled connect kept its place");
        assert!(pool.check_out(Instant::now()).await.is_ok());
    }
}
