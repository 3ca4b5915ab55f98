//! The command connection: one enum over a single-server connection
//! (plain or Sentinel) and a cluster connection, how it is first opened,
//! how every round trip is bounded by the timeout and its failure turned
//! into a [`StoreError`], and how a half-open connection is replaced.
//! Commands never touch a connection except through here.

use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Client, Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Script, Value};
use parking_lot::{Mutex, RwLock};

use super::schema::Schema;
use super::scripts::{INSERT_LUA, REPLACE_LUA, USAGE_LUA};
use super::url::{scrub, SentinelUrl};
use super::{Inner, RedisStore};
use crate::store::StoreError;

/// The command connection: one server (plain or Sentinel), or a Cluster.
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

/// A `redis+cluster://` store's cluster clients.
pub(super) struct Cluster {
    pub(super) client: ClusterClient,
    /// The feed reader's client: like `client`, with a response timeout
    /// that outlasts a blocking read.
    pub(super) feed: ClusterClient,
}

/// A command connection: to the cluster if there is one, else to `client`.
pub(super) async fn open_conn(
    client: &Client,
    cluster: Option<&Cluster>,
    config: &ConnectionManagerConfig,
) -> RedisResult<Conn> {
    match cluster {
        Some(c) => c.client.get_async_connection().await.map(Conn::Cluster),
        None => ConnectionManager::new_with_config(client.clone(), config.clone())
            .await
            .map(Conn::Single),
    }
}

pub(super) async fn finish_connect(
    client: Client,
    sentinel: Option<SentinelUrl>,
    cluster: Option<Cluster>,
    shown_url: String,
    timeout: Duration,
    feed_max_len: u64,
) -> Result<RedisStore, StoreError> {
    let password = client.get_connection_info().redis.password.clone();
    // One connection attempt per reconnect (no retries inside redis-rs, whose
    // backoff starts at seconds): a command waiting on a reconnect must not
    // outwait the timeout, and the next command or the watcher's liveness
    // check retries soon enough.
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(timeout)
        .set_response_timeout(timeout)
        .set_number_of_retries(0);
    let inner_msg = |e: &dyn std::fmt::Display| scrub(&e.to_string(), password.as_deref());
    let conn =
        match tokio::time::timeout(timeout, open_conn(&client, cluster.as_ref(), &config)).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                return Err(StoreError::Unavailable(format!(
                    "cannot connect to redis {shown_url}: {}",
                    inner_msg(&e)
                )))
            }
            Err(_) => {
                return Err(StoreError::Unavailable(format!(
                    "cannot connect to redis {shown_url}: timed out after {timeout:?}"
                )))
            }
        };
    Ok(RedisStore {
        inner: Arc::new(Inner {
            client: RwLock::new(client),
            conn: RwLock::new(conn),
            sentinel,
            schema: if cluster.is_some() {
                Schema::CLUSTER
            } else {
                Schema::PLAIN
            },
            cluster,
            generation: AtomicU64::new(0),
            refreshing: tokio::sync::Mutex::new(()),
            last_kick: Mutex::new(None),
            config,
            timeout,
            shown_url,
            password,
            insert: Script::new(INSERT_LUA),
            replace: Script::new(REPLACE_LUA),
            usage: Script::new(USAGE_LUA),
            feed_max_len,
        }),
    })
}

impl RedisStore {
    pub(super) fn conn(&self) -> Conn {
        self.inner.conn.read().clone()
    }

    /// Runs one round trip under the timeout. `subject` names the record for
    /// a `Corrupt` answer (a key of the wrong type).
    pub(super) async fn run<T>(
        &self,
        op: &str,
        subject: &str,
        fut: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.inner.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if e.code() == Some("WRONGTYPE") => Err(StoreError::Corrupt {
                what: subject.to_owned(),
                reason: format!("{op}: a redis key has the wrong type"),
            }),
            Ok(Err(e)) if e.code() == Some("NOPERM") || e.to_string().contains("NOPERM") => {
                Err(StoreError::Denied(format!(
                    "redis {}: {op}: {}; see the ACL rules in docs/store.md",
                    self.inner.shown_url,
                    scrub(&e.to_string(), self.inner.password.as_deref())
                )))
            }
            Ok(Err(e)) => {
                if lost_master(&e) {
                    self.kick_refresh();
                }
                Err(self.unavailable(op, &e))
            }
            Err(_) => {
                self.kick_refresh();
                Err(StoreError::Unavailable(format!(
                    "redis {}: {op} timed out after {:?}",
                    self.inner.shown_url, self.inner.timeout
                )))
            }
        }
    }

    pub(super) fn unavailable(&self, op: &str, e: &RedisError) -> StoreError {
        StoreError::Unavailable(format!(
            "redis {}: {op}: {}",
            self.inner.shown_url,
            scrub(&e.to_string(), self.inner.password.as_deref())
        ))
    }

    /// Replaces a command connection that only times out: redis-rs treats a
    /// timeout as the server's slowness and keeps a half-open socket forever.
    pub(super) async fn rebuild_connection(&self) {
        let client = self.inner.client.read().clone();
        let fresh = tokio::time::timeout(
            self.inner.timeout,
            open_conn(&client, self.inner.cluster.as_ref(), &self.inner.config),
        )
        .await;
        if let Ok(Ok(conn)) = fresh {
            tracing::warn!(url = %self.inner.shown_url, "replaced an unresponsive redis connection");
            *self.inner.conn.write() = conn;
        }
    }
}

/// Whether a command error means the master may have moved: the connection
/// failed, or the server refused a write as a replica.
pub(super) fn lost_master(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.code() == Some("READONLY")
        || e.to_string().contains("READONLY")
}
