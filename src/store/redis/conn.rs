//! The connection to Redis: one [`Link`] owns what the store talks to (the
//! [`Target`]: a server, a Sentinel master set or a Cluster), the client
//! for the server commands go to now, the command connection, and the
//! generation that moves when the master does. It opens the first
//! connection, bounds every round trip by the timeout and turns its failure
//! into a [`StoreError`], replaces a half-open connection, follows a
//! Sentinel master, opens the feed reader's own connection, and keeps the
//! lookup pipe (`pipe.rs`) open on the server commands go to. Commands
//! never touch a connection except through here.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{
    AsyncConnectionConfig, Client, Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value,
};
use parking_lot::{Mutex, RwLock};

use super::pipe::{self, Failure, Slot};
use super::schema::HashReply;
use super::sentinel::Sentinel;
use super::url::scrub;
use crate::store::StoreError;

/// The least time between two master look-ups a failing command starts, so
/// a burst of failing lookups asks the sentinels once, not once each.
const KICK_EVERY: Duration = Duration::from_millis(200);

/// A server, a Sentinel master set, or a Cluster, ready to dial.
// One per store, built once and never moved: a box would buy nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum Target {
    /// `redis://`, `rediss://`, `redis+unix://`: one fixed server.
    Single(Client),
    /// `redis+sentinel://`, `rediss+sentinel://`: the master the sentinels name.
    Sentinel(Sentinel),
    /// `redis+cluster://`, `rediss+cluster://`.
    Cluster {
        /// Commands.
        client: ClusterClient,
        /// The feed reader's: a reply timeout that outlasts a blocking read.
        feed: ClusterClient,
    },
}

/// A command connection: one server (plain or Sentinel), or a Cluster.
/// Both reconnect by themselves; clones share the connection.
// Not boxed: the large variant is the common one, and every command clones
// the connection, so a box would cost an allocation per lookup.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    /// One plain connection that never reconnects by itself: the change
    /// feed's, replaced as a whole when it fails or goes silent.
    Plain(MultiplexedConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Plain(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Plain(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::Plain(c) => c.get_db(),
        }
    }
}

/// Everything about reaching Redis, for one store.
pub(super) struct Link {
    target: Target,
    /// The server commands go to: fixed for one server, the current master
    /// with Sentinel (swapped together with `conn` when it moves), `None`
    /// for a Cluster.
    client: RwLock<Option<Client>>,
    /// Swapped as a whole only when the connection is found half-open or
    /// the master moved.
    conn: RwLock<Conn>,
    /// Bumped whenever the master moves, so the feed reader reconnects there.
    generation: AtomicU64,
    /// One master look-up at a time.
    refreshing: tokio::sync::Mutex<()>,
    /// When a failing command last started a master look-up.
    last_kick: Mutex<Option<Instant>>,
    config: ConnectionManagerConfig,
    /// The bound on every round trip.
    pub(super) timeout: Duration,
    /// The URL without userinfo: the only form that appears in messages.
    pub(super) shown_url: String,
    /// Scrubbed from any driver message that might echo it.
    password: Option<String>,
    /// The ACL user, for permission messages (`None`: `default`).
    pub(super) username: Option<String>,
    /// The lookup pipe (see `pipe.rs`), when the server is one it serves.
    pipe: Option<Slot>,
}

impl Link {
    /// Makes the first connection to `target` (with Sentinel: asks for the
    /// master first), within `timeout` for each step.
    pub(super) async fn open(
        target: Target,
        shown_url: String,
        password: Option<String>,
        username: Option<String>,
        tls: Option<Arc<rustls::ClientConfig>>,
        timeout: Duration,
    ) -> Result<Arc<Link>, StoreError> {
        // One connection attempt per reconnect (no retries inside redis-rs,
        // whose backoff starts at seconds): a command waiting on a reconnect
        // must not outwait the timeout, and the next command or the
        // watcher's liveness check retries soon enough.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(0);
        let fail = |why: String| {
            StoreError::Unavailable(format!("cannot connect to redis {shown_url}: {why}"))
        };
        let client = match &target {
            Target::Single(c) => Some(c.clone()),
            Target::Sentinel(s) => Some(
                s.master(timeout)
                    .await
                    .map_err(|e| fail(scrub(&e, password.as_deref())))?,
            ),
            Target::Cluster { .. } => None,
        };
        let first = tokio::time::timeout(timeout, open_conn(&target, client.as_ref(), &config));
        let conn = match first.await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(fail(scrub(&e.to_string(), password.as_deref()))),
            Err(_) => return Err(fail(format!("timed out after {timeout:?}"))),
        };
        // Plain TCP, a Unix socket, or TLS with the pipe's client (fixed by
        // the URL's scheme, for a Sentinel master too): lookups may take
        // the pipe.
        let pipe = client
            .as_ref()
            .filter(|c| pipe::serves(c.get_connection_info(), tls.is_some()))
            .map(|_| Slot::new(tls));
        Ok(Arc::new(Link {
            pipe,
            target,
            client: RwLock::new(client),
            conn: RwLock::new(conn),
            generation: AtomicU64::new(0),
            refreshing: tokio::sync::Mutex::new(()),
            last_kick: Mutex::new(None),
            config,
            timeout,
            shown_url,
            password,
            username,
        }))
    }

    /// The command connection (a cheap clone).
    pub(super) fn conn(&self) -> Conn {
        self.conn.read().clone()
    }

    /// How many times the master has moved since the store connected.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub(super) fn is_sentinel(&self) -> bool {
        matches!(self.target, Target::Sentinel(_))
    }

    pub(super) fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster { .. })
    }

    /// A driver error as text, without the password.
    pub(super) fn scrubbed(&self, e: &RedisError) -> String {
        scrub(&e.to_string(), self.password.as_deref())
    }

    /// Runs one round trip under the timeout. `subject` names the record for
    /// a `Corrupt` answer (a key of the wrong type).
    pub(super) async fn run<T>(
        self: &Arc<Self>,
        op: &str,
        subject: &str,
        fut: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if let Some(refused) = self.refused(op, subject, e.code(), &self.scrubbed(&e)) {
                    return Err(refused);
                }
                if lost_master(&e) {
                    self.kick_refresh();
                }
                Err(self.unavailable(op, &e))
            }
            Err(_) => {
                self.kick_refresh();
                Err(self.timed_out(op))
            }
        }
    }

    /// What an error reply means when it is about the command, not the
    /// connection: a key of the wrong type (`Corrupt`, naming `subject`) or
    /// a right the ACL refuses (`Denied`). `code` is the reply's first
    /// word, `text` the whole reply, already scrubbed. `None`: neither.
    fn refused(
        &self,
        op: &str,
        subject: &str,
        code: Option<&str>,
        text: &str,
    ) -> Option<StoreError> {
        if code == Some("WRONGTYPE") {
            return Some(StoreError::Corrupt {
                what: subject.to_owned(),
                reason: format!("{op}: a redis key has the wrong type"),
            });
        }
        if code == Some("NOPERM") || text.contains("NOPERM") {
            return Some(StoreError::Denied(format!(
                "redis {}: {op}: {text}; see the ACL rules in docs/store.md",
                self.shown_url
            )));
        }
        None
    }

    /// A round trip that outlasted the timeout.
    fn timed_out(&self, op: &str) -> StoreError {
        StoreError::Unavailable(format!(
            "redis {}: {op} timed out after {:?}",
            self.shown_url, self.timeout
        ))
    }

    pub(super) fn unavailable(&self, op: &str, e: &RedisError) -> StoreError {
        StoreError::Unavailable(format!(
            "redis {}: {op}: {}",
            self.shown_url,
            self.scrubbed(e)
        ))
    }

    /// `HGETALL key` on the lookup pipe. `None`: there is no pipe now (one
    /// is being opened, or this server is not one it serves): use redis-rs.
    /// Errors are those [`Link::run`] gives for the same failures.
    pub(super) async fn pipe_hgetall(
        self: &Arc<Self>,
        key: &str,
        subject: &str,
    ) -> Option<Result<HashReply, StoreError>> {
        let slot = self.pipe.as_ref()?;
        let Some(p) = slot.get(self.generation()) else {
            self.reopen_pipe(slot);
            return None;
        };
        // The connection is no use any more: drop it, and with Sentinel
        // check the master.
        let lost = |e: StoreError| {
            slot.drop_pipe(&p);
            self.kick_refresh();
            Some(Err(e))
        };
        match tokio::time::timeout(self.timeout, p.hgetall(key)).await {
            Ok(Some(Ok(fields))) => Some(Ok(fields)),
            Ok(Some(Err(Failure::Reply(text)))) => {
                let text = scrub(&text, self.password.as_deref());
                let code = text.split(' ').next();
                match self.refused("HGETALL", subject, code, &text) {
                    Some(refused) => Some(Err(refused)),
                    None => lost(StoreError::Unavailable(format!(
                        "redis {}: HGETALL: {text}",
                        self.shown_url
                    ))),
                }
            }
            Ok(Some(Err(Failure::Lost(why)))) => lost(StoreError::Unavailable(format!(
                "redis {}: HGETALL: {}",
                self.shown_url,
                scrub(&why, self.password.as_deref())
            ))),
            // Its task ended before the command was queued: nothing sent.
            Ok(None) => {
                slot.drop_pipe(&p);
                self.reopen_pipe(slot);
                None
            }
            Err(_) => lost(self.timed_out("HGETALL")),
        }
    }

    /// Opens a lookup pipe to the server commands go to now, in the
    /// background, unless one is being opened or the last try was recent.
    fn reopen_pipe(self: &Arc<Self>, slot: &Slot) {
        if !slot.begin_open() {
            return;
        }
        // The generation first: a master that moves after it was read
        // gives the pipe a stale generation, so it is dropped at once,
        // never a current one for the old master.
        let generation = self.generation();
        let info = self
            .client
            .read()
            .as_ref()
            .map(|c| c.get_connection_info().clone());
        let link = Arc::clone(self);
        tokio::spawn(async move {
            let Some(slot) = link.pipe.as_ref() else {
                return;
            };
            let opened = match info {
                None => Err("no server to connect to".to_owned()),
                Some(info) => tokio::time::timeout(link.timeout, slot.open(&info, generation))
                    .await
                    .unwrap_or_else(|_| Err(format!("timed out after {:?}", link.timeout))),
            };
            let pipe = match opened {
                Ok(p) => Some(p),
                Err(why) => {
                    tracing::debug!(
                        url = %link.shown_url,
                        "cannot open the redis lookup connection (lookups use the command connection): {}",
                        scrub(&why, link.password.as_deref())
                    );
                    None
                }
            };
            slot.end_open(pipe);
        });
    }

    /// With Sentinel, a command that could not reach the master (or reached
    /// a demoted one) starts a look-up of the master in the background, at
    /// most once per [`KICK_EVERY`]; the watcher also looks every second.
    pub(super) fn kick_refresh(self: &Arc<Self>) {
        if !self.is_sentinel() {
            return;
        }
        {
            let mut last = self.last_kick.lock();
            if last.is_some_and(|t| t.elapsed() < KICK_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let link = Arc::clone(self);
        tokio::spawn(async move { link.refresh(false).await });
    }

    /// With Sentinel: asks for the master again and, if it moved (or
    /// `rebuild` asks for a fresh connection anyway), points every new
    /// command at it. Without: `rebuild` replaces the command connection
    /// (redis-rs treats a timeout as the server's slowness and keeps a
    /// half-open socket forever). Failures are logged; the next failure
    /// tries again.
    pub(super) async fn refresh(&self, rebuild: bool) {
        let Target::Sentinel(sentinel) = &self.target else {
            if rebuild {
                self.rebuild_connection().await;
            }
            return;
        };
        let _one = self.refreshing.lock().await;
        let client = match sentinel.master(self.timeout).await {
            Ok(client) => client,
            Err(e) => {
                tracing::debug!(
                    url = %self.shown_url,
                    "cannot find the redis master through the sentinels: {}",
                    scrub(&e, self.password.as_deref())
                );
                return;
            }
        };
        let addr = client.get_connection_info().addr().to_string();
        let moved = self
            .client
            .read()
            .as_ref()
            .is_none_or(|c| c.get_connection_info().addr().to_string() != addr);
        if !moved && !rebuild {
            return;
        }
        let fresh = tokio::time::timeout(
            self.timeout,
            open_conn(&self.target, Some(&client), &self.config),
        )
        .await;
        if let Ok(Ok(conn)) = fresh {
            *self.client.write() = Some(client);
            *self.conn.write() = conn;
            if moved {
                self.generation.fetch_add(1, Ordering::SeqCst);
                tracing::warn!(url = %self.shown_url, master = %addr, "the redis master moved; following it");
            } else {
                tracing::warn!(url = %self.shown_url, "replaced an unresponsive redis connection");
            }
        }
    }

    /// Replaces a command connection that only times out.
    async fn rebuild_connection(&self) {
        let client = self.client.read().clone();
        let fresh = tokio::time::timeout(
            self.timeout,
            open_conn(&self.target, client.as_ref(), &self.config),
        )
        .await;
        if let Ok(Ok(conn)) = fresh {
            tracing::warn!(url = %self.shown_url, "replaced an unresponsive redis connection");
            *self.conn.write() = conn;
        }
    }

    /// A connection of the feed's own (a blocking read would stall every
    /// other command on a shared one), to the server commands go to now;
    /// replies may take up to `deadline`.
    pub(super) async fn open_feed(&self, deadline: Duration) -> Result<Conn, String> {
        let attempt = async {
            match &self.target {
                Target::Cluster { feed, .. } => {
                    feed.get_async_connection().await.map(Conn::Cluster)
                }
                _ => {
                    let Some(client) = self.client.read().clone() else {
                        return Err(RedisError::from((
                            ::redis::ErrorKind::InvalidClientConfig,
                            "no server to read the feed from",
                        )));
                    };
                    let config = AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(self.timeout))
                        .set_response_timeout(Some(deadline));
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                        .map(Conn::Plain)
                }
            }
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(format!("cannot connect: {}", self.scrubbed(&e))),
            Err(_) => Err(format!(
                "cannot connect: timed out after {:?}",
                self.timeout
            )),
        }
    }
}

/// A command connection: to the cluster if there is one, else to `client`.
async fn open_conn(
    target: &Target,
    client: Option<&Client>,
    config: &ConnectionManagerConfig,
) -> RedisResult<Conn> {
    match (target, client) {
        (Target::Cluster { client, .. }, _) => {
            client.get_async_connection().await.map(Conn::Cluster)
        }
        (_, Some(client)) => ConnectionManager::new_with_config(client.clone(), config.clone())
            .await
            .map(Conn::Single),
        (_, None) => Err(RedisError::from((
            ::redis::ErrorKind::InvalidClientConfig,
            "no server to connect to",
        ))),
    }
}

/// Whether a command error means the master may have moved: the connection
/// failed, or the server refused a write as a replica.
fn lost_master(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.code() == Some("READONLY")
        || e.to_string().contains("READONLY")
}
