//! A raw TCP upstream run by a script the test writes, for upstream
//! behaviour a well-behaved server would not show: closing without an
//! answer, framing of its own choosing, bodies that never end. It counts
//! connections (accepted, open now, the most open at once) and the body
//! bytes its scripts wrote, so a test sees what the gateway's pool did.
//!
//! ```ignore
//! let up = ScriptedUpstream::start(|mut c: Conn| async move {
//!     while let Some(req) = c.request().await {
//!         c.write(format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{}",
//!             req.target.len(), req.target).as_bytes()).await;
//!     }
//! }).await;
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;

use super::eventually;
use super::upstream::request_len;

#[derive(Default)]
struct Counts {
    accepted: AtomicUsize,
    open: AtomicUsize,
    peak: AtomicUsize,
    written: AtomicU64,
}

/// A listening scripted upstream; each accepted connection runs the script
/// in its own task. Dropped, it stops listening and ends every connection.
pub struct ScriptedUpstream {
    pub addr: SocketAddr,
    counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

/// One accepted connection, handed to the script.
pub struct Conn {
    pub stream: TcpStream,
    /// Bytes read and not yet taken as a request.
    buf: Vec<u8>,
    /// 0 for the first connection accepted, 1 for the next, ...
    pub index: usize,
    counts: Arc<Counts>,
}

/// One request as read off the wire.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub target: String,
    /// The exact bytes: head, framing, body.
    pub wire: Vec<u8>,
}

impl Request {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        let text = String::from_utf8_lossy(&self.wire);
        let head = text.split("\r\n\r\n").next()?.to_owned();
        head.split("\r\n").skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

impl ScriptedUpstream {
    /// Listens on 127.0.0.1:0 and runs `script` for every connection.
    pub async fn start<F, Fut>(script: F) -> ScriptedUpstream
    where
        F: Fn(Conn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        ScriptedUpstream::start_with(None, script).await
    }

    /// [`ScriptedUpstream::start`] with the accepted sockets' send buffer
    /// set to `send_buffer` bytes, so a test that streams into a client that
    /// never reads bounds what the kernel buffers on the way.
    pub async fn start_with<F, Fut>(send_buffer: Option<u32>, script: F) -> ScriptedUpstream
    where
        F: Fn(Conn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let socket = TcpSocket::new_v4().unwrap();
        if let Some(n) = send_buffer {
            socket.set_send_buffer_size(n).unwrap();
        }
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        ScriptedUpstream::serve(socket.listen(1024).unwrap(), script)
    }

    /// Runs `script` for every connection `listener` accepts (one the test
    /// made itself, e.g. to hold connections back first).
    pub fn serve<F, Fut>(listener: tokio::net::TcpListener, script: F) -> ScriptedUpstream
    where
        F: Fn(Conn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let addr = listener.local_addr().unwrap();
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        let task = tokio::spawn(async move {
            // Connection tasks live in the set, so aborting this task (on
            // drop) ends them all.
            let mut conns = JoinSet::new();
            loop {
                let stream = tokio::select! {
                    r = listener.accept() => match r {
                        Ok((s, _)) => s,
                        Err(_) => continue,
                    },
                    Some(_) = conns.join_next(), if !conns.is_empty() => continue,
                };
                let index = c.accepted.fetch_add(1, Ordering::SeqCst);
                let open = c.open.fetch_add(1, Ordering::SeqCst) + 1;
                c.peak.fetch_max(open, Ordering::SeqCst);
                let conn = Conn {
                    stream,
                    buf: Vec::new(),
                    index,
                    counts: c.clone(),
                };
                let run = script(conn);
                let c = c.clone();
                conns.spawn(async move {
                    run.await;
                    c.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        ScriptedUpstream { addr, counts, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.counts.accepted.load(Ordering::SeqCst)
    }

    /// Connections whose script is still running.
    pub fn open(&self) -> usize {
        self.counts.open.load(Ordering::SeqCst)
    }

    /// The most connections open at once so far.
    pub fn peak(&self) -> usize {
        self.counts.peak.load(Ordering::SeqCst)
    }

    /// Bytes written by all scripts with [`Conn::write`].
    pub fn written(&self) -> u64 {
        self.counts.written.load(Ordering::SeqCst)
    }

    /// Waits (up to `within`) until exactly `n` connections are open.
    pub async fn settles_at(&self, n: usize, within: Duration) -> bool {
        eventually(within, || self.open() == n).await
    }
}

impl Drop for ScriptedUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Conn {
    /// Reads the next whole request (framed by Content-Length or chunked);
    /// `None` when the gateway closes the connection first.
    pub async fn request(&mut self) -> Option<Request> {
        let mut chunk = [0u8; 8192];
        let n = loop {
            if let Some(n) = request_len(&self.buf) {
                break n;
            }
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        };
        let wire: Vec<u8> = self.buf.drain(..n).collect();
        let line = String::from_utf8_lossy(&wire[..wire.len().min(2048)]).into_owned();
        let mut parts = line.split(' ');
        let method = parts.next().unwrap_or("").to_owned();
        let target = parts.next().unwrap_or("").to_owned();
        Some(Request {
            method,
            target,
            wire,
        })
    }

    /// Writes all of `bytes`; false once the gateway has gone.
    pub async fn write(&mut self, bytes: &[u8]) -> bool {
        let ok = self.stream.write_all(bytes).await.is_ok();
        if ok {
            self.counts
                .written
                .fetch_add(bytes.len() as u64, Ordering::SeqCst);
        }
        ok
    }

    /// Answers `200` with `body` and its length.
    pub async fn ok(&mut self, body: &str) -> bool {
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        self.write(reply.as_bytes()).await
    }

    /// Waits until the gateway closes its end (reading and discarding).
    pub async fn until_closed(&mut self) {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = self.stream.read(&mut chunk).await {
            if n == 0 {
                return;
            }
        }
    }
}
