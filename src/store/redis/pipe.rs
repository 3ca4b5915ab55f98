//! The lookup pipe: the request path's one command, HGETALL of a key
//! record, on a connection of the store's own, beside redis-rs's.
//!
//! redis-rs decodes every reply into its generic `Value` with a parser
//! combinator, behind a connection manager, and that was most of a store
//! lookup's cost in the gateway (a third of the instructions of a
//! cache-miss request). This connection speaks only what a lookup needs:
//! it writes `HGETALL <key>` and reads the reply (RESP2: an array of bulk
//! strings, or an error line) straight into a [`HashReply`].
//!
//! What keeps it sound:
//! - **Replies are matched to commands by order only**, so anything that
//!   could break the order ends the connection: a read or write error, the
//!   server closing, a reply of an unexpected shape or over [`MAX_REPLY`],
//!   a reply with no command waiting. Every command still waiting then
//!   fails ([`Failure::Lost`]); none is ever given another's reply. An
//!   error reply (`-WRONGTYPE …`, `-NOPERM …`) is one whole reply and
//!   answers only its own command.
//! - **It is only ever an addition.** It serves one server or a Sentinel
//!   master, over TCP, a Unix socket or TLS (`rediss`, with the store's
//!   roots: `[store] tls_ca` or the built-in ones), not a Cluster. When
//!   there is none (not opened yet, being reopened, or a Cluster store), a
//!   lookup goes through redis-rs as before, and an outage is met by
//!   redis-rs's own reconnection.
//! - **A lookup that times out ends the connection** (it may be half-open),
//!   and the answer is the same 503 a redis-rs timeout gives. A master
//!   that moved (the link's generation) ends it too.
//!
//! One task owns the socket: it takes the commands queued since it last
//! ran (one write for all of them), and hands each reply to its waiter.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::redis::{ConnectionAddr, ConnectionInfo};
use arc_swap::ArcSwapOption;
use bytes::{Buf, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::schema::HashReply;

/// The largest reply taken (a key record is well under a kilobyte).
const MAX_REPLY: usize = 1 << 20;
/// The most fields a reply may hold (a record has about fifteen).
const MAX_FIELDS: usize = 1024;
/// Commands written but not answered, at most; more wait in the queue.
const MAX_IN_FLIGHT: usize = 4096;
/// The connection's name (`CLIENT SETNAME`).
const PIPE_NAME: &str = "osir-gateway-lookup";
/// The least time between two attempts to open the connection.
const REOPEN_EVERY: Duration = Duration::from_millis(500);

/// Why a lookup on the pipe got no record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Failure {
    /// The server answered this command with an error line (its text).
    Reply(String),
    /// The connection ended (why); it answers nothing more.
    Lost(String),
}

/// What a lookup gets back.
type Answer = Result<HashReply, Failure>;

/// One queued command and where its answer goes.
struct Ask {
    command: Vec<u8>,
    reply: oneshot::Sender<Answer>,
}

/// An open pipe. Dropping the last handle ends its task.
pub(super) struct Pipe {
    asks: mpsc::UnboundedSender<Ask>,
    /// The link's generation (master moves) when it was opened.
    generation: u64,
    task: tokio::task::AbortHandle,
}

impl Drop for Pipe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Pipe {
    /// Queues `HGETALL key` and waits for its answer (the caller bounds
    /// the wait). `None`: the pipe's task has ended, nothing was sent.
    pub(super) async fn hgetall(&self, key: &str) -> Option<Answer> {
        let (reply, answer) = oneshot::channel();
        let ask = Ask {
            command: hgetall_command(key),
            reply,
        };
        self.asks.send(ask).ok()?;
        Some(
            answer
                .await
                .unwrap_or_else(|_| Err(Failure::Lost("the lookup connection was closed".into()))),
        )
    }
}

/// The pipe of one store: the open one, if any, when to try again, and
/// the TLS client for a `rediss` server.
pub(super) struct Slot {
    current: ArcSwapOption<Pipe>,
    opening: AtomicBool,
    last_attempt: Mutex<Option<Instant>>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Slot {
    /// No pipe yet; `tls`: the client for a `rediss` server.
    pub(super) fn new(tls: Option<Arc<rustls::ClientConfig>>) -> Slot {
        Slot {
            current: ArcSwapOption::empty(),
            opening: AtomicBool::new(false),
            last_attempt: Mutex::new(None),
            tls,
        }
    }

    /// Opens a pipe to `info`'s server; see [`open`].
    pub(super) async fn open(
        &self,
        info: &ConnectionInfo,
        generation: u64,
    ) -> Result<Pipe, String> {
        open(info, generation, self.tls.as_ref()).await
    }

    /// The pipe to use, if one is open for `generation`.
    pub(super) fn get(&self, generation: u64) -> Option<Arc<Pipe>> {
        let pipe = self.current.load_full()?;
        if pipe.generation != generation || pipe.asks.is_closed() {
            self.drop_pipe(&pipe);
            return None;
        }
        Some(pipe)
    }

    /// Stops using `pipe` (if it is still the current one).
    pub(super) fn drop_pipe(&self, pipe: &Arc<Pipe>) {
        let _ = self
            .current
            .compare_and_swap(&Some(Arc::clone(pipe)), None::<Arc<Pipe>>);
    }

    /// Whether an attempt to open may start now; marks one as started.
    pub(super) fn begin_open(&self) -> bool {
        {
            let mut last = self.last_attempt.lock();
            if last.is_some_and(|t| t.elapsed() < REOPEN_EVERY) {
                return false;
            }
            if self.opening.swap(true, Ordering::AcqRel) {
                return false;
            }
            *last = Some(Instant::now());
        }
        true
    }

    /// Ends an attempt begun by [`Slot::begin_open`], with its pipe.
    pub(super) fn end_open(&self, pipe: Option<Pipe>) {
        if let Some(p) = pipe {
            self.current.store(Some(Arc::new(p)));
        }
        self.opening.store(false, Ordering::Release);
    }
}

/// Whether `info` is a server this pipe can talk to: plain TCP, a Unix
/// socket, or TLS (with certificate checks) when `tls` (a client) is there.
pub(super) fn serves(info: &ConnectionInfo, tls: bool) -> bool {
    match info.addr() {
        ConnectionAddr::Tcp(..) | ConnectionAddr::Unix(_) => true,
        ConnectionAddr::TcpTls { insecure, .. } => tls && !insecure,
        _ => false,
    }
}

/// Connects to `info`'s server (over TLS with `tls` for a `rediss` one),
/// authenticates and selects its db, and starts the pipe's task. The
/// caller bounds the time; the error may hold the server's words, not yet
/// scrubbed of the password.
async fn open(
    info: &ConnectionInfo,
    generation: u64,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<Pipe, String> {
    match info.addr() {
        ConnectionAddr::Tcp(host, port) => {
            let (r, w) = tcp(host, *port).await?.into_split();
            start(r, w, info, generation).await
        }
        #[cfg(unix)]
        ConnectionAddr::Unix(path) => {
            let s = tokio::net::UnixStream::connect(path)
                .await
                .map_err(|e| format!("cannot connect: {e}"))?;
            let (r, w) = s.into_split();
            start(r, w, info, generation).await
        }
        ConnectionAddr::TcpTls {
            host,
            port,
            insecure: false,
            ..
        } => {
            let Some(tls) = tls else {
                return Err("no TLS client for a rediss server".into());
            };
            let name = rustls_pki_types::ServerName::try_from(host.clone())
                .map_err(|e| format!("{host} is not a TLS server name: {e}"))?;
            let s = tokio_rustls::TlsConnector::from(Arc::clone(tls))
                .connect(name, tcp(host, *port).await?)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            let (r, w) = tokio::io::split(s);
            start(r, w, info, generation).await
        }
        _ => Err("not a server the lookup connection serves".into()),
    }
}

/// A TCP connection to `host:port`, without Nagle's delay (lookups are
/// small writes, each waited on).
async fn tcp(host: &str, port: u16) -> Result<tokio::net::TcpStream, String> {
    let s = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    s.set_nodelay(true)
        .map_err(|e| format!("cannot set TCP_NODELAY: {e}"))?;
    Ok(s)
}

/// The handshake on a connected stream (`AUTH`, `SELECT`, `CLIENT
/// SETNAME`), then the pipe's task on it.
async fn start<R, W>(
    mut r: R,
    mut w: W,
    info: &ConnectionInfo,
    generation: u64,
) -> Result<Pipe, String>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let settings = info.redis_settings();
    let mut buf = BytesMut::with_capacity(16 * 1024);
    if let Some(password) = settings.password() {
        let mut auth: Vec<&[u8]> = vec![b"AUTH"];
        if let Some(user) = settings.username() {
            auth.push(user.as_bytes());
        }
        auth.push(password.as_bytes());
        let reply = one_line(&mut r, &mut w, &mut buf, &command(&auth), "AUTH").await?;
        ok(&reply, "AUTH")?;
    }
    if settings.db() != 0 {
        let db = settings.db().to_string();
        let select = command(&[b"SELECT", db.as_bytes()]);
        let reply = one_line(&mut r, &mut w, &mut buf, &select, "SELECT").await?;
        ok(&reply, "SELECT")?;
    }
    // The name shows what the connection is in `CLIENT LIST`. A user the
    // ACL does not allow it still gets the pipe: the refusal is one line.
    let name = command(&[b"CLIENT", b"SETNAME", PIPE_NAME.as_bytes()]);
    one_line(&mut r, &mut w, &mut buf, &name, "CLIENT SETNAME").await?;
    let (asks, queue) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        if let Err(why) = drive(r, w, buf, queue).await {
            tracing::debug!("redis lookup connection ended: {why}");
        }
    });
    Ok(Pipe {
        asks,
        generation,
        task: task.abort_handle(),
    })
}

/// A handshake reply that must be `+OK`.
fn ok(line: &[u8], what: &str) -> Result<(), String> {
    match line {
        b"+OK" => Ok(()),
        l => Err(format!("{what}: {}", String::from_utf8_lossy(l))),
    }
}

/// Sends one handshake command and reads its one-line reply (without the
/// CRLF).
async fn one_line<R, W>(
    r: &mut R,
    w: &mut W,
    buf: &mut BytesMut,
    cmd: &[u8],
    what: &str,
) -> Result<Vec<u8>, String>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    w.write_all(cmd)
        .await
        .map_err(|e| format!("{what}: cannot write: {e}"))?;
    loop {
        if let Some(end) = memchr::memmem::find(buf, b"\r\n") {
            let line = buf.split_to(end + 2);
            return Ok(line[..end].to_vec());
        }
        if buf.len() > 4096 {
            return Err(format!("{what}: an answer that is not a line"));
        }
        match r.read_buf(buf).await {
            Ok(0) => return Err(format!("{what}: the server closed the connection")),
            Ok(_) => {}
            Err(e) => return Err(format!("{what}: cannot read: {e}")),
        }
    }
}

/// The task: writes queued commands, reads replies, answers waiters in
/// order. Returns why it ended, having failed every waiter left.
async fn drive<R, W>(
    mut r: R,
    mut w: W,
    mut rbuf: BytesMut,
    mut queue: mpsc::UnboundedReceiver<Ask>,
) -> Result<(), String>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut waiting: VecDeque<oneshot::Sender<Answer>> = VecDeque::new();
    let mut wbuf: Vec<u8> = Vec::with_capacity(4096);
    let mut written = 0usize;
    let why = loop {
        tokio::select! {
            biased;
            read = r.read_buf(&mut rbuf) => match read {
                Ok(0) => break "the server closed the connection".to_owned(),
                Ok(_) => {
                    if let Err(why) = answer(&mut rbuf, &mut waiting) {
                        break why;
                    }
                }
                Err(e) => break format!("cannot read: {e}"),
            },
            wrote = w.write(&wbuf[written..]), if written < wbuf.len() => match wrote {
                Ok(0) => break "the connection refused more bytes".to_owned(),
                Ok(n) => {
                    written += n;
                    if written == wbuf.len() {
                        wbuf.clear();
                        written = 0;
                    }
                }
                Err(e) => break format!("cannot write: {e}"),
            },
            ask = queue.recv(), if waiting.len() < MAX_IN_FLIGHT => match ask {
                // Every handle is gone: nobody is waiting either.
                None => return Ok(()),
                Some(first) => {
                    let mut next = Some(first);
                    while let Some(ask) = next.take() {
                        wbuf.extend_from_slice(&ask.command);
                        waiting.push_back(ask.reply);
                        if waiting.len() < MAX_IN_FLIGHT {
                            next = queue.try_recv().ok();
                        }
                    }
                }
            },
        }
    };
    for w in waiting.drain(..) {
        let _ = w.send(Err(Failure::Lost(why.clone())));
    }
    // Later asks find the queue closed and go through redis-rs.
    queue.close();
    while let Ok(ask) = queue.try_recv() {
        let _ = ask.reply.send(Err(Failure::Lost(why.clone())));
    }
    Err(why)
}

/// Hands every whole reply at the start of `buf` to its waiter.
fn answer(
    buf: &mut BytesMut,
    waiting: &mut VecDeque<oneshot::Sender<Answer>>,
) -> Result<(), String> {
    loop {
        let Some((reply, used)) = parse(buf)? else {
            if buf.len() > MAX_REPLY {
                return Err(format!("a reply longer than {MAX_REPLY} bytes"));
            }
            return Ok(());
        };
        buf.advance(used);
        let Some(waiter) = waiting.pop_front() else {
            return Err("a reply to no command".into());
        };
        // The waiter may have given up (timed out): the reply is still
        // consumed, so the next one goes to the next waiter.
        let _ = waiter.send(reply);
    }
}

/// The command `HGETALL key` in RESP.
fn hgetall_command(key: &str) -> Vec<u8> {
    command(&[b"HGETALL", key.as_bytes()])
}

/// A command as a RESP array of bulk strings.
fn command(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + parts.iter().map(|p| p.len() + 16).sum::<usize>());
    out.push(b'*');
    out.extend_from_slice(itoa::Buffer::new().format(parts.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for p in parts {
        out.push(b'$');
        out.extend_from_slice(itoa::Buffer::new().format(p.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(p);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// One whole HGETALL reply at the start of `buf` and its length;
/// `Ok(None)`: not all of it has arrived. An error means the bytes are
/// not a reply HGETALL can give, and the connection cannot be trusted.
fn parse(buf: &[u8]) -> Result<Option<(Answer, usize)>, String> {
    let Some((first, mut at)) = line(buf, 0)? else {
        return Ok(None);
    };
    match first.first() {
        Some(b'-') => {
            let text = String::from_utf8_lossy(&first[1..]).into_owned();
            Ok(Some((Err(Failure::Reply(text)), at)))
        }
        Some(b'*') => {
            let n = int(&first[1..]).ok_or("a malformed array length")?;
            if n == -1 {
                return Ok(Some((Ok(HashReply::default()), at)));
            }
            let n = usize::try_from(n).map_err(|_| "a negative array length")?;
            if n > MAX_FIELDS * 2 {
                return Err(format!("a reply of {n} items"));
            }
            if n % 2 != 0 {
                return Err("an odd HGETALL reply".into());
            }
            let mut pairs = Vec::with_capacity(n / 2);
            let mut name: Option<Vec<u8>> = None;
            for _ in 0..n {
                let Some((item, next)) = bulk(buf, at)? else {
                    return Ok(None);
                };
                at = next;
                match name.take() {
                    None => name = Some(item.to_vec()),
                    Some(k) => pairs.push((k, item.to_vec())),
                }
            }
            Ok(Some((Ok(pairs.into_iter().collect()), at)))
        }
        Some(&t) => Err(format!(
            "an unexpected reply to HGETALL (type {:?})",
            char::from(t)
        )),
        None => Err("an empty reply line".into()),
    }
}

/// One bulk string (`$len\r\n…\r\n`) at `at`, and where the next item
/// starts.
fn bulk(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, String> {
    let Some((head, start)) = line(buf, at)? else {
        return Ok(None);
    };
    if head.first() != Some(&b'$') {
        return Err("an HGETALL field that is not a bulk string".into());
    }
    let len = int(&head[1..])
        .and_then(|n| usize::try_from(n).ok())
        .ok_or("a malformed or nil bulk string in an HGETALL reply")?;
    if len > MAX_REPLY {
        return Err(format!("a field of {len} bytes"));
    }
    let end = start + len;
    if buf.len() < end + 2 {
        return Ok(None);
    }
    if &buf[end..end + 2] != b"\r\n" {
        return Err("a bulk string not ended by CRLF".into());
    }
    Ok(Some((&buf[start..end], end + 2)))
}

/// The line at `at` without its CRLF, and where the next one starts.
fn line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, String> {
    let rest = &buf[at..];
    match memchr::memchr(b'\n', rest) {
        None if rest.len() > 4096 => Err("a reply line over 4096 bytes".into()),
        None => Ok(None),
        Some(0) => Err("a bare LF in a reply".into()),
        Some(i) if rest[i - 1] != b'\r' => Err("a bare LF in a reply".into()),
        Some(i) => Ok(Some((&rest[..i - 1], at + i + 1))),
    }
}

/// A RESP integer: an optional `-`, then 1 to 18 digits.
fn int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', d)) => (true, d),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = digits
        .iter()
        .fold(0i64, |v, d| v * 10 + i64::from(d - b'0'));
    Some(if neg { -v } else { v })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn whole(buf: &[u8]) -> (Answer, usize) {
        parse(buf).unwrap().unwrap()
    }

    #[test]
    fn a_reply_is_read_only_when_whole() {
        let r = b"*4\r\n$2\r\nid\r\n$3\r\nk_1\r\n$3\r\nenv\r\n$4\r\nlive\r\n";
        let (answer, used) = whole(r);
        assert_eq!(used, r.len());
        let fields = answer.unwrap();
        assert_eq!(fields.get(b"id"), Some(&b"k_1"[..]));
        assert_eq!(fields.get(b"env"), Some(&b"live"[..]));
        for cut in 0..r.len() {
            assert_eq!(parse(&r[..cut]).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn missing_records_and_error_lines_are_single_replies() {
        let buf = b"*0\r\n-WRONGTYPE Operation against a key\r\n*-1\r\n";
        let (a, n1) = whole(buf);
        assert_eq!(a, Ok(HashReply::default()));
        let (b, n2) = whole(&buf[n1..]);
        assert_eq!(
            b,
            Err(Failure::Reply("WRONGTYPE Operation against a key".into()))
        );
        let (c, n3) = whole(&buf[n1 + n2..]);
        assert_eq!(c, Ok(HashReply::default()));
        assert_eq!(n1 + n2 + n3, buf.len());
    }

    #[test]
    fn replies_of_another_shape_end_the_connection() {
        for bad in [
            &b"+OK\r\n"[..],
            b":1\r\n",
            b"*1\r\n$1\r\na\r\n",
            b"*2\r\n:1\r\n:2\r\n",
            b"*2\r\n$-1\r\n$1\r\na\r\n",
            b"*2\r\n$1\r\nab\r\n$1\r\na\r\n",
            b"*x\r\n",
            b"*-2\r\n",
            b"*2\n",
            b"*99999\r\n",
            b"\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(parse(&[b'*'; 5000]).is_err());
    }

    #[test]
    fn commands_are_resp_arrays() {
        assert_eq!(
            hgetall_command("osir:key:ab"),
            b"*2\r\n$7\r\nHGETALL\r\n$11\r\nosir:key:ab\r\n"
        );
        assert_eq!(int(b"-1"), Some(-1));
        assert_eq!(int(b"12"), Some(12));
        for bad in [&b""[..], b"-", b"+1", b"1 ", b"1234567890123456789"] {
            assert_eq!(int(bad), None);
        }
    }

    /// Replies go to their commands in order, a waiter that gave up still
    /// consumes its reply, and a reply with no command ends the pipe.
    #[test]
    fn answers_follow_the_order_of_the_commands() {
        let mut waiting = VecDeque::new();
        let mut rx = Vec::new();
        for _ in 0..3 {
            let (tx, r) = oneshot::channel();
            waiting.push_back(tx);
            rx.push(r);
        }
        drop(rx.remove(1));
        let mut buf = BytesMut::from(&b"*2\r\n$1\r\na\r\n$1\r\n1\r\n*0\r\n*2\r\n$1\r\nb\r\n$1"[..]);
        answer(&mut buf, &mut waiting).unwrap();
        assert_eq!(waiting.len(), 1);
        let first = rx[0].try_recv().unwrap().unwrap();
        assert_eq!(first.get(b"a"), Some(&b"1"[..]));
        buf.extend_from_slice(b"\r\n2\r\n");
        answer(&mut buf, &mut waiting).unwrap();
        let last = rx[1].try_recv().unwrap().unwrap();
        assert_eq!(last.get(b"b"), Some(&b"2"[..]));
        buf.extend_from_slice(b"*0\r\n");
        assert!(answer(&mut buf, &mut waiting).is_err());
    }

    /// A reply as Redis writes it: a record's fields, an empty hash, or an
    /// error line.
    fn reply_strategy() -> impl proptest::strategy::Strategy<Value = (Vec<u8>, Answer)> {
        use proptest::prelude::*;
        let field = proptest::collection::vec(any::<u8>(), 0..40);
        prop_oneof![
            proptest::collection::vec((field.clone(), field), 0..12).prop_map(|pairs| {
                let mut parts: Vec<&[u8]> = Vec::new();
                for (k, v) in &pairs {
                    parts.push(k);
                    parts.push(v);
                }
                // `command` writes the same framing Redis uses for a
                // flat array of bulk strings.
                let bytes = command(&parts);
                let fields: HashReply = pairs.into_iter().collect();
                (bytes, Ok(fields))
            }),
            "[A-Z]{1,10}( [ -~]{0,30})?".prop_map(|text| {
                (
                    format!("-{text}\r\n").into_bytes(),
                    Err(Failure::Reply(text)),
                )
            }),
        ]
    }

    proptest::proptest! {
        /// Any bytes: no panic, and a reply read is never longer than the
        /// bytes it was read from.
        #[test]
        fn any_bytes_are_read_or_refused(buf in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            if let Ok(Some((_, used))) = parse(&buf) {
                proptest::prop_assert!(used > 0 && used <= buf.len());
            }
        }

        /// Replies cut anywhere into reads: each waiter gets its own
        /// answer, in order, whatever the cuts.
        #[test]
        fn replies_reach_their_waiters_whatever_the_reads(
            replies in proptest::collection::vec(reply_strategy(), 1..8),
            cuts in proptest::collection::vec(1usize..64, 1..40),
        ) {
            let wire: Vec<u8> = replies.iter().flat_map(|(b, _)| b.clone()).collect();
            let mut waiting = VecDeque::new();
            let mut answers = Vec::new();
            for _ in &replies {
                let (tx, rx) = oneshot::channel();
                waiting.push_back(tx);
                answers.push(rx);
            }
            let mut buf = BytesMut::new();
            let mut at = 0;
            let mut cut = cuts.iter().cycle();
            while at < wire.len() {
                let n = (*cut.next().unwrap()).min(wire.len() - at);
                buf.extend_from_slice(&wire[at..at + n]);
                at += n;
                answer(&mut buf, &mut waiting).unwrap();
            }
            proptest::prop_assert!(waiting.is_empty() && buf.is_empty());
            for ((_, want), mut rx) in replies.into_iter().zip(answers) {
                proptest::prop_assert_eq!(rx.try_recv().unwrap(), want);
            }
        }
    }
}
