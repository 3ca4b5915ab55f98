//! Shared Redis store: one source of truth for every gateway in a fleet.
//!
//! Layout (also in `docs/store.md`):
//! - `osir:key:<sha256 hex>`: HASH, the record (fields below).
//! - `osir:id:<id>`: STRING, the hash hex: the id index.
//! - `osir:ids`: SET of ids, for `list`.
//! - `osir:usage:<id>`: HASH, `total`, `last_used_at`, `last_ip`, `d:YYYY-MM-DD`.
//! - channel `osir:invalidate`: `<hash hex> <unix ms>` when a record is
//!   replaced (revoked, updated; the write time feeds the revocation-delay
//!   metric), the bare hash hex when one is added, or `*`. Hashes starting
//!   with 16 zero digits are subscription probes (see `RedisStore::confirm`).
//!
//! With a `redis+sentinel://` URL the server is the master the sentinels
//! name, looked up again (and every connection moved) when it stops
//! answering or is demoted; see [`connect`].
//!
//! With a `redis+cluster://` URL every key above is put under one hash tag
//! (`{osir}:key:<hash>`, `{osir}:id:<id>`, `{osir}:ids`, `{osir}:usage:<id>`)
//! so each script's keys share a slot: the cluster gives failover through
//! replicas, not sharding. Commands go through the cluster client; the
//! watcher subscribes on any one node (a cluster broadcasts PUBLISH).
//!
//! Writes are Lua scripts, so a record, its index and its announcement change
//! together or not at all, and a check ("is this id free?") cannot race the
//! write it guards. Every round trip is bounded by the configured timeout and
//! any failure is [`StoreError::Unavailable`]: the caller decides what an
//! outage means, the store never guesses. Nothing read from Redis is trusted:
//! a bad field is [`StoreError::Corrupt`] naming the record and the field.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ::redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, PubSubSink, PubSubStream,
};
use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{
    Client, Cmd, ConnectionAddr, ConnectionInfo, Pipeline, ProtocolVersion, RedisConnectionInfo,
    RedisError, RedisFuture, RedisResult, Script, Value,
};
use futures_util::StreamExt;
use parking_lot::{Mutex, RwLock};

use super::{InvalidationSink, StoreError};
use crate::key::{Env, KeyHash};
use crate::record::{
    parse_ip_or_cidr, valid_key_id, KeyRecord, KeyUsage, Scope, Timestamp, UsageDelta,
};

/// The pub/sub channel every writer announces changes on and every gateway
/// listens to; a message is a record's hash hex, optionally followed by a
/// space and the write time in Unix milliseconds, or `*` for "flush all".
pub const INVALIDATE_CHANNEL: &str = "osir:invalidate";
/// How a subscription probe starts: 64 zero bits, which no SHA-256 of a key
/// will ever start with, followed by random hex (see `RedisStore::confirm`).
const PROBE_PREFIX: &str = "0000000000000000";

/// The names of the schema's keys. A store uses [`Schema::PLAIN`], or
/// [`Schema::CLUSTER`] with a Cluster, where every key a script touches must
/// hash to one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Schema {
    /// Prefix of a record: `<key><sha256 hex>`.
    key: &'static str,
    /// Prefix of the id index: `<id><id>`.
    id: &'static str,
    /// The set of ids.
    ids: &'static str,
    /// Prefix of a usage hash: `<usage><id>`.
    usage: &'static str,
}

impl Schema {
    const PLAIN: Schema = Schema {
        key: "osir:key:",
        id: "osir:id:",
        ids: "osir:ids",
        usage: "osir:usage:",
    };
    /// Everything under the hash tag `{osir}`: one slot.
    const CLUSTER: Schema = Schema {
        key: "{osir}:key:",
        id: "{osir}:id:",
        ids: "{osir}:ids",
        usage: "{osir}:usage:",
    };
}

/// How often the watcher proves both connections are alive.
const LIVENESS_EVERY: Duration = Duration::from_secs(1);
/// Consecutive command timeouts after which the command connection is
/// presumed half-open and replaced (timeouts alone never make redis-rs
/// reconnect).
const REBUILD_AFTER_TIMEOUTS: u32 = 3;
/// The least time between two master look-ups a failing command starts, so
/// a burst of failing lookups asks the sentinels once, not once each.
const KICK_EVERY: Duration = Duration::from_millis(200);
/// The port a sentinel listens on when a `redis+sentinel://` host names none.
pub const SENTINEL_DEFAULT_PORT: u16 = 26379;
const SENTINEL_SCHEME: &str = "redis+sentinel://";
/// The port a `redis+cluster://` node listens on when the URL names none.
pub const CLUSTER_DEFAULT_PORT: u16 = 6379;
const CLUSTER_SCHEME: &str = "redis+cluster://";
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Ids per pipelined round trip in `list`, so one round trip stays small
/// enough to finish within the timeout.
const LIST_CHUNK: usize = 500;

/// Adds a record, its id index and its id-set entry unless the hash or the id
/// is taken; announces the hash (a gateway may hold it as "unknown").
/// KEYS: record, id index, id set. ARGV: hash, id, channel, field/value pairs.
const INSERT_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[1])
return 0
";

/// Rewrites a record if the id index still points at it, then announces it
/// with the write time. KEYS: id index, record. ARGV: hash, channel, write
/// time (Unix ms), n, n field/value pairs, then the optional fields to delete.
const REPLACE_LUA: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[4])
redis.call('HSET', KEYS[2], unpack(ARGV, 5, 4 + 2 * n))
if #ARGV > 4 + 2 * n then redis.call('HDEL', KEYS[2], unpack(ARGV, 5 + 2 * n)) end
redis.call('PUBLISH', ARGV[2], ARGV[1] .. ' ' .. ARGV[3])
return 1
";

/// Adds a whole batch of usage deltas in one round trip; the last-use stamp
/// only ever moves forward, whichever gateway flushes last.
/// KEYS: usage hashes. ARGV per key: last_used_at, last_ip, total, n days,
/// then n day/count pairs.
const USAGE_LUA: &str = r"
local a = 1
for i = 1, #KEYS do
  local k = KEYS[i]
  local ts, ip, total, nd = ARGV[a], ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  a = a + 4
  for _ = 1, nd do
    redis.call('HINCRBY', k, 'd:' .. ARGV[a], ARGV[a + 1])
    a = a + 2
  end
  redis.call('HINCRBY', k, 'total', total)
  local cur = tonumber(redis.call('HGET', k, 'last_used_at'))
  if cur == nil or cur <= tonumber(ts) then
    redis.call('HSET', k, 'last_used_at', ts, 'last_ip', ip)
  end
end
return #KEYS
";

/// The command connection: one server (plain or Sentinel), or a Cluster.
/// Both reconnect by themselves; clones share the connection.
// Not boxed: the large variant is the common one, and every command clones
// the connection, so a box would cost an allocation per lookup.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
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
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// A `redis+cluster://` store's cluster client and seed nodes.
struct Cluster {
    client: ClusterClient,
    url: ClusterUrl,
}

struct Inner {
    /// The server to talk to: fixed for `redis://`, the current master for
    /// Sentinel (swapped together with `conn` when the master moves). With
    /// Cluster, the node the watcher last subscribed on (first tried next).
    client: RwLock<Client>,
    /// Swapped as a whole only when the connection is found half-open or
    /// the master moved.
    conn: RwLock<Conn>,
    /// Where to ask for the master, for a `redis+sentinel://` URL.
    sentinel: Option<SentinelUrl>,
    /// The cluster, for a `redis+cluster://` URL.
    cluster: Option<Cluster>,
    /// The key names this store uses.
    schema: Schema,
    /// Bumped whenever the master moves, so the watcher resubscribes there.
    generation: AtomicU64,
    /// One master look-up at a time.
    refreshing: tokio::sync::Mutex<()>,
    /// When a failing command last started a master look-up.
    last_kick: Mutex<Option<Instant>>,
    config: ConnectionManagerConfig,
    timeout: Duration,
    /// The URL without userinfo: the only form that appears in messages.
    shown_url: String,
    /// The password, scrubbed from any driver message that might echo it.
    password: Option<String>,
    insert: Script,
    replace: Script,
    usage: Script,
}

/// A connection to the shared Redis store; cloning shares the connection.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

/// Connects to `url` (`redis://[user:password@]host:port/db`,
/// `redis+unix:///socket`,
/// `redis+sentinel://[user:password@]host:port,host:port/<master>[/<db>]`, or
/// `redis+cluster://[user:password@]host:port,host:port/`) with `timeout` on
/// every round trip.
///
/// With Sentinel, the sentinels are asked in turn for the master of the
/// set, which must answer `ROLE` as a master; the credentials and the db
/// are the master's (sentinels are asked without credentials). When the
/// master stops answering, it is looked up again and every connection moves
/// to the new one.
///
/// With Cluster, the seed nodes are where the cluster client learns the
/// topology; it follows slot moves and failovers by itself.
///
/// Fails with [`StoreError::Unavailable`] if the URL is not supported (this
/// build has no TLS client) or the first connection cannot be
/// made, so a misconfigured gateway says so at start; later outages are
/// survived (the connection is re-established on demand).
pub async fn connect(url: &str, timeout: Duration) -> Result<RedisStore, StoreError> {
    let shown_url = redact_url(url);
    if url.starts_with(SENTINEL_SCHEME) {
        let spec = parse_sentinel_url(url)
            .map_err(|e| StoreError::Unavailable(format!("invalid redis URL {shown_url}: {e}")))?;
        let client = resolve_master(&spec, timeout).await.map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot connect to redis {shown_url}: {}",
                scrub(&e, spec.password.as_deref())
            ))
        })?;
        return finish_connect(client, Some(spec), None, shown_url, timeout).await;
    }
    if url.starts_with(CLUSTER_SCHEME) {
        let spec = parse_cluster_url(url)
            .map_err(|e| StoreError::Unavailable(format!("invalid redis URL {shown_url}: {e}")))?;
        let (host, port) = spec.nodes[0].clone();
        let first = spec
            .node_client(host, port)
            .map_err(|e| StoreError::Unavailable(format!("invalid redis URL {shown_url}: {e}")))?;
        let nodes = spec
            .nodes
            .iter()
            .map(|(h, p)| spec.node_info(h.clone(), *p));
        // The seeds are dialled together and all awaited before the slot map
        // is read: half the budget each, so one seed that never answers does
        // not use up the whole first-connection timeout.
        let client = ClusterClient::builder(nodes)
            .connection_timeout(timeout / 2)
            .response_timeout(timeout)
            .use_protocol(ProtocolVersion::RESP2)
            .build()
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "invalid redis URL {shown_url}: {}",
                    scrub(&e.to_string(), spec.password.as_deref())
                ))
            })?;
        let cluster = Cluster { client, url: spec };
        return finish_connect(first, None, Some(cluster), shown_url, timeout).await;
    }
    let client = Client::open(url).map_err(|e| {
        // The driver's message may quote the URL: scrub its userinfo.
        let mut msg = e.to_string();
        if let Some(info) = userinfo(url) {
            msg = info
                .split(':')
                .fold(msg.replace(info, "***"), |m, part| scrub(&m, Some(part)));
        }
        StoreError::Unavailable(format!(
            "unsupported or invalid redis URL {shown_url}: {msg}"
        ))
    })?;
    finish_connect(client, None, None, shown_url, timeout).await
}

/// A command connection: to the cluster if there is one, else to `client`.
async fn open_conn(
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

async fn finish_connect(
    client: Client,
    sentinel: Option<SentinelUrl>,
    cluster: Option<Cluster>,
    shown_url: String,
    timeout: Duration,
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
        }),
    })
}

impl RedisStore {
    fn conn(&self) -> Conn {
        self.inner.conn.read().clone()
    }

    /// Runs one round trip under the timeout. `subject` names the record for
    /// a `Corrupt` answer (a key of the wrong type).
    async fn run<T>(
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

    /// With Sentinel, a command that could not reach the master (or reached
    /// a demoted one) starts a look-up of the master in the background, at
    /// most once per [`KICK_EVERY`]; the watcher also looks every second.
    fn kick_refresh(&self) {
        if self.inner.sentinel.is_none() {
            return;
        }
        {
            let mut last = self.inner.last_kick.lock();
            if last.is_some_and(|t| t.elapsed() < KICK_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let store = self.clone();
        tokio::spawn(async move { store.refresh(false).await });
    }

    /// Looks the master up again through the sentinels and, if it moved (or
    /// `rebuild` asks for a fresh connection anyway), points every new
    /// command at it. Without Sentinel, `rebuild` just replaces the
    /// connection. Failures are logged; the next failure tries again.
    async fn refresh(&self, rebuild: bool) {
        let Some(spec) = &self.inner.sentinel else {
            if rebuild {
                self.rebuild_connection().await;
            }
            return;
        };
        let _one = self.inner.refreshing.lock().await;
        let client = match resolve_master(spec, self.inner.timeout).await {
            Ok(client) => client,
            Err(e) => {
                tracing::debug!(
                    url = %self.inner.shown_url,
                    "cannot find the redis master through the sentinels: {}",
                    scrub(&e, self.inner.password.as_deref())
                );
                return;
            }
        };
        let addr = client.get_connection_info().addr.to_string();
        let moved = addr
            != self
                .inner
                .client
                .read()
                .get_connection_info()
                .addr
                .to_string();
        if !moved && !rebuild {
            return;
        }
        let fresh = tokio::time::timeout(
            self.inner.timeout,
            open_conn(&client, None, &self.inner.config),
        )
        .await;
        if let Ok(Ok(conn)) = fresh {
            *self.inner.client.write() = client;
            *self.inner.conn.write() = conn;
            if moved {
                self.inner.generation.fetch_add(1, Ordering::SeqCst);
                tracing::warn!(url = %self.inner.shown_url, master = %addr, "the redis master moved; following it");
            } else {
                tracing::warn!(url = %self.inner.shown_url, "replaced an unresponsive redis connection");
            }
        }
    }

    fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::SeqCst)
    }

    fn unavailable(&self, op: &str, e: &RedisError) -> StoreError {
        StoreError::Unavailable(format!(
            "redis {}: {op}: {}",
            self.inner.shown_url,
            scrub(&e.to_string(), self.inner.password.as_deref())
        ))
    }

    /// One HGETALL: the request path's only round trip.
    pub(super) async fn lookup(&self, hash: &KeyHash) -> Result<Option<KeyRecord>, StoreError> {
        let hex = hash.to_hex();
        let what = &hex[..12];
        let mut conn = self.conn();
        let value: Value = self
            .run(
                "HGETALL",
                what,
                ::redis::cmd("HGETALL")
                    .arg(format!("{}{hex}", self.inner.schema.key))
                    .query_async(&mut conn),
            )
            .await?;
        let fields = hash_fields(value).map_err(|reason| corrupt(what, reason))?;
        if fields.is_empty() {
            return Ok(None);
        }
        parse_record(&fields)
            .map(Some)
            .map_err(|reason| corrupt(what, reason))
    }

    pub(super) async fn get(&self, id: &str) -> Result<Option<(KeyHash, KeyRecord)>, StoreError> {
        let mut conn = self.conn();
        let index: Value = self
            .run(
                "GET",
                id,
                ::redis::cmd("GET")
                    .arg(format!("{}{id}", self.inner.schema.id))
                    .query_async(&mut conn),
            )
            .await?;
        let Some(hash) = parse_index(self.inner.schema.id, id, index)? else {
            return Ok(None);
        };
        let value: Value = self
            .run(
                "HGETALL",
                id,
                ::redis::cmd("HGETALL")
                    .arg(format!("{}{}", self.inner.schema.key, hash.to_hex()))
                    .query_async(&mut conn),
            )
            .await?;
        let fields = hash_fields(value).map_err(|reason| corrupt(id, reason))?;
        if fields.is_empty() {
            tracing::warn!(id, "key id index points at a missing record; ignoring it");
            return Ok(None);
        }
        let record = parse_record(&fields).map_err(|reason| corrupt(id, reason))?;
        check_id(id, &record)?;
        Ok(Some((hash, record)))
    }

    pub(super) async fn list(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let ids_key = self.inner.schema.ids;
        let mut conn = self.conn();
        let members: Value = self
            .run(
                "SMEMBERS",
                ids_key,
                ::redis::cmd("SMEMBERS").arg(ids_key).query_async(&mut conn),
            )
            .await?;
        let mut ids = Vec::new();
        for m in list_items(members).map_err(|reason| corrupt(ids_key, reason))? {
            match bytes_of(m).map(String::from_utf8) {
                Some(Ok(id)) => ids.push(id),
                _ => tracing::warn!("{ids_key} holds a member that is not a UTF-8 id; ignoring it"),
            }
        }
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(LIST_CHUNK) {
            let mut pipe = ::redis::pipe();
            for id in chunk {
                pipe.cmd("GET").arg(format!("{}{id}", self.inner.schema.id));
            }
            let indexes: Vec<Value> = self
                .run("GET (pipelined)", ids_key, pipe.query_async(&mut conn))
                .await?;
            let mut found = Vec::with_capacity(chunk.len());
            for (id, index) in chunk.iter().zip(indexes) {
                match parse_index(self.inner.schema.id, id, index)? {
                    Some(hash) => found.push((id, hash)),
                    None => tracing::warn!(id, "{ids_key} names an id with no index; ignoring it"),
                }
            }
            let mut pipe = ::redis::pipe();
            for (_, hash) in &found {
                pipe.cmd("HGETALL")
                    .arg(format!("{}{}", self.inner.schema.key, hash.to_hex()));
            }
            let records: Vec<Value> = self
                .run("HGETALL (pipelined)", ids_key, pipe.query_async(&mut conn))
                .await?;
            for ((id, _), value) in found.into_iter().zip(records) {
                let fields = hash_fields(value).map_err(|reason| corrupt(id, reason))?;
                if fields.is_empty() {
                    tracing::warn!(id, "key id index points at a missing record; ignoring it");
                    continue;
                }
                let record = parse_record(&fields).map_err(|reason| corrupt(id, reason))?;
                check_id(id, &record)?;
                out.push(record);
            }
        }
        Ok(out)
    }

    pub(super) async fn insert(
        &self,
        hash: &KeyHash,
        record: &KeyRecord,
    ) -> Result<(), StoreError> {
        let hex = hash.to_hex();
        let (set, _) = record_fields(record);
        let mut inv = self.inner.insert.prepare_invoke();
        inv.key(format!("{}{hex}", self.inner.schema.key))
            .key(format!("{}{}", self.inner.schema.id, record.id))
            .key(self.inner.schema.ids)
            .arg(&hex)
            .arg(&record.id)
            .arg(INVALIDATE_CHANNEL);
        for (field, value) in &set {
            inv.arg(*field).arg(value);
        }
        let mut conn = self.conn();
        let answer: i64 = self
            .run("insert script", &record.id, inv.invoke_async(&mut conn))
            .await?;
        match answer {
            0 => Ok(()),
            1 => Err(StoreError::Conflict(format!(
                "a key with the same hash already exists (inserting id {})",
                record.id
            ))),
            _ => Err(StoreError::Conflict(format!(
                "key id {} already exists",
                record.id
            ))),
        }
    }

    pub(super) async fn replace(&self, record: &KeyRecord) -> Result<(), StoreError> {
        let id = record.id.as_str();
        let (set, absent) = record_fields(record);
        // The index moves only if someone deletes and re-creates the id
        // between our read and the script; try again once, then give up.
        for _ in 0..2 {
            let mut conn = self.conn();
            let index: Value = self
                .run(
                    "GET",
                    id,
                    ::redis::cmd("GET")
                        .arg(format!("{}{id}", self.inner.schema.id))
                        .query_async(&mut conn),
                )
                .await?;
            let Some(hash) = parse_index(self.inner.schema.id, id, index)? else {
                return Err(StoreError::Conflict(format!("no key with id {id}")));
            };
            let hex = hash.to_hex();
            let mut inv = self.inner.replace.prepare_invoke();
            inv.key(format!("{}{id}", self.inner.schema.id))
                .key(format!("{}{hex}", self.inner.schema.key))
                .arg(&hex)
                .arg(INVALIDATE_CHANNEL)
                .arg(Timestamp::now().0)
                .arg(set.len());
            for (field, value) in &set {
                inv.arg(*field).arg(value);
            }
            for field in &absent {
                inv.arg(*field);
            }
            let done: i64 = self
                .run("replace script", id, inv.invoke_async(&mut conn))
                .await?;
            if done == 1 {
                return Ok(());
            }
        }
        Err(StoreError::Conflict(format!(
            "key id {id} changed while it was being updated; try again"
        )))
    }

    pub(super) async fn add_usage(&self, batch: &[UsageDelta]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut inv = self.inner.usage.prepare_invoke();
        for d in batch {
            let total: u64 = d.daily.values().fold(0u64, |a, n| a.saturating_add(*n));
            inv.key(format!("{}{}", self.inner.schema.usage, d.id))
                .arg(d.last_used_at.0)
                .arg(d.last_ip.to_string())
                .arg(total.min(i64::MAX as u64))
                .arg(d.daily.len());
            for (day, n) in &d.daily {
                inv.arg(day).arg((*n).min(i64::MAX as u64));
            }
        }
        let mut conn = self.conn();
        let _: i64 = self
            .run("usage script", "usage", inv.invoke_async(&mut conn))
            .await?;
        Ok(())
    }

    pub(super) async fn usage(&self, id: &str) -> Result<KeyUsage, StoreError> {
        let mut conn = self.conn();
        let value: Value = self
            .run(
                "HGETALL",
                id,
                ::redis::cmd("HGETALL")
                    .arg(format!("{}{id}", self.inner.schema.usage))
                    .query_async(&mut conn),
            )
            .await?;
        let fields = hash_fields(value).map_err(|reason| corrupt(id, reason))?;
        parse_usage(&fields).map_err(|reason| StoreError::Corrupt {
            what: format!("usage of {id}"),
            reason,
        })
    }

    /// Liveness of the command connection, as the watcher reports it. With
    /// Sentinel the question is `ROLE`: a server that answers but is no
    /// longer the master (demoted after a failover) counts as failed. With
    /// Cluster it is `EXISTS` on the id set, which the master of the one
    /// slot holding every key answers (`PING` would ask every master).
    async fn ping(&self) -> Result<(), Liveness> {
        let mut conn = self.conn();
        let cmd = if self.inner.sentinel.is_some() {
            "ROLE"
        } else if self.inner.cluster.is_some() {
            "EXISTS"
        } else {
            "PING"
        };
        let mut question = ::redis::cmd(cmd);
        if cmd == "EXISTS" {
            question.arg(self.inner.schema.ids);
        }
        match tokio::time::timeout(self.inner.timeout, question.query_async::<Value>(&mut conn))
            .await
        {
            Ok(Ok(v)) if cmd == "ROLE" && !is_master_role(&v) => Err(Liveness::Failed(format!(
                "redis {}: the server is no longer the master",
                self.inner.shown_url
            ))),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Liveness::Failed(self.unavailable(cmd, &e).to_string())),
            Err(_) => Err(Liveness::TimedOut),
        }
    }

    /// Replaces a command connection that only times out: redis-rs treats a
    /// timeout as the server's slowness and keeps a half-open socket forever.
    async fn rebuild_connection(&self) {
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

    /// SUBSCRIBE to a channel already subscribed is a no-op the server
    /// answers: a ping on the pub/sub socket itself, which redis-rs 0.27
    /// does not offer otherwise.
    async fn check_subscription(&self, pubsub_sink: &mut PubSubSink) -> Result<(), String> {
        match tokio::time::timeout(
            self.inner.timeout,
            pubsub_sink.subscribe(INVALIDATE_CHANNEL),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(scrub(&e.to_string(), self.inner.password.as_deref())),
            Err(_) => Err("the subscription did not answer".into()),
        }
    }

    /// Subscribes on a dedicated connection, the first step of every
    /// (re)connection of the watcher, and proves the subscription works.
    /// With Cluster any node will do (PUBLISH reaches every node): the one
    /// last used, then the seed nodes, then the nodes the cluster names.
    async fn subscribe(&self) -> Result<(PubSubSink, PubSubStream), String> {
        let client = self.inner.client.read().clone();
        let Some(cluster) = &self.inner.cluster else {
            return self.subscribe_on(&client).await;
        };
        let mut tried = Vec::new();
        let mut why = Vec::new();
        let mut candidates = vec![node_of(&client)];
        candidates.extend(cluster.url.nodes.iter().cloned());
        for learned in [false, true] {
            if learned {
                candidates = self.cluster_nodes().await;
            }
            for (host, port) in candidates.drain(..) {
                if tried.contains(&(host.clone(), port)) {
                    continue;
                }
                tried.push((host.clone(), port));
                let shown = format!("{host}:{port}");
                let node = cluster.url.node_client(host, port)?;
                match self.subscribe_on(&node).await {
                    Ok(pair) => {
                        *self.inner.client.write() = node;
                        return Ok(pair);
                    }
                    Err(e) => why.push(format!("node {shown}: {e}")),
                }
            }
        }
        Err(why.join("; "))
    }

    /// The masters and replicas `CLUSTER SLOTS` names (none if it fails).
    async fn cluster_nodes(&self) -> Vec<(String, u16)> {
        let mut conn = self.conn();
        let slots = tokio::time::timeout(
            self.inner.timeout,
            ::redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async::<Value>(&mut conn),
        )
        .await;
        let Ok(Ok(Value::Array(ranges))) = slots else {
            return Vec::new();
        };
        let mut nodes = Vec::new();
        for range in ranges {
            let Value::Array(parts) = range else { continue };
            // start, end, then one [host, port, id, …] per node.
            for node in parts.into_iter().skip(2) {
                let Value::Array(fields) = node else { continue };
                let mut fields = fields.into_iter();
                let host = fields.next().and_then(bytes_of);
                let port = fields.next().and_then(|v| match v {
                    Value::Int(p) => u16::try_from(p).ok(),
                    _ => None,
                });
                if let (Some(host), Some(port)) = (host, port) {
                    if let Ok(host) = String::from_utf8(host) {
                        if !host.is_empty() && !nodes.contains(&(host.clone(), port)) {
                            nodes.push((host, port));
                        }
                    }
                }
            }
        }
        nodes
    }

    /// Subscribes through `client` and proves the subscription works.
    async fn subscribe_on(&self, client: &Client) -> Result<(PubSubSink, PubSubStream), String> {
        let attempt = async {
            let pubsub = client.get_async_pubsub().await?;
            let (mut sink, stream) = pubsub.split();
            sink.subscribe(INVALIDATE_CHANNEL).await?;
            Ok::<_, RedisError>((sink, stream))
        };
        let (sink, mut stream) = match tokio::time::timeout(self.inner.timeout, attempt).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(scrub(&e.to_string(), self.inner.password.as_deref())),
            Err(_) => return Err(format!("timed out after {:?}", self.inner.timeout)),
        };
        self.confirm(&mut stream).await?;
        Ok((sink, stream))
    }

    /// redis-rs 0.27 reports a refused SUBSCRIBE (an error reply such as
    /// NOPERM) as success, which would leave the watcher believing it
    /// listens and skip the flush when it really subscribes later. So a
    /// probe is published on the channel and must come back. Probes are
    /// hashes no key can have ([`PROBE_PREFIX`]): other gateways ignore them,
    /// and older ones drop a record nobody holds. Whatever else arrives
    /// meanwhile is dropped: the caller flushes everything next.
    async fn confirm(&self, stream: &mut PubSubStream) -> Result<(), String> {
        let probe = probe_message();
        let mut conn = self.conn();
        self.run(
            "PUBLISH",
            INVALIDATE_CHANNEL,
            ::redis::cmd("PUBLISH")
                .arg(INVALIDATE_CHANNEL)
                .arg(&probe)
                .query_async::<Value>(&mut conn),
        )
        .await
        .map_err(|e| format!("cannot publish a probe: {e}"))?;
        let echoed = async {
            while let Some(msg) = stream.next().await {
                if msg.get_payload_bytes() == probe.as_bytes() {
                    return true;
                }
            }
            false
        };
        match tokio::time::timeout(self.inner.timeout, echoed).await {
            Ok(true) => Ok(()),
            Ok(false) => Err("the subscription closed before it was confirmed".into()),
            Err(_) => Err(format!(
                "subscribed, but a probe published on {INVALIDATE_CHANNEL} did not arrive \
                 within {:?} (does this Redis user have the right to SUBSCRIBE to it?)",
                self.inner.timeout
            )),
        }
    }

    /// The watcher holds only a weak handle: it ends when the handle is
    /// aborted or when the last clone of the store is dropped.
    pub(super) fn watch(&self, sink: Arc<dyn InvalidationSink>) -> tokio::task::JoinHandle<()> {
        let store = Arc::downgrade(&self.inner);
        tokio::spawn(async move { watch_loop(store, &*sink).await })
    }
}

fn upgrade(store: &Weak<Inner>) -> Option<RedisStore> {
    store.upgrade().map(|inner| RedisStore { inner })
}

/// Subscribes, follows, and re-subscribes until the store is dropped. Every
/// (re)subscription flushes the sink, because messages sent while nobody
/// listened are lost; losing the channel does not flush, so cached keys keep
/// serving through an outage. While the channel is down the store counts as
/// down only if it does not answer a `PING` either.
async fn watch_loop(weak: Weak<Inner>, sink: &dyn InvalidationSink) {
    let mut backoff = Backoff::new();
    let mut up = State::default();
    // One warning per run of failed subscriptions.
    let mut warned = false;
    // Whether the last subscription failed or was lost: with Sentinel, the
    // master is then looked up again before subscribing.
    let mut lost = false;
    loop {
        let Some(store) = upgrade(&weak) else {
            return;
        };
        let url = store.inner.shown_url.clone();
        if lost {
            store.refresh(false).await;
        }
        lost = true;
        let generation = store.generation();
        let subscribed = store.subscribe().await;
        // Not held while following or sleeping: dropping the store ends us.
        drop(store);
        match subscribed {
            Ok((pubsub_sink, stream)) => {
                backoff.reset();
                warned = false;
                sink.invalidate_all();
                up.force(sink, true);
                tracing::info!(%url, "listening for key invalidations");
                match follow(&weak, pubsub_sink, stream, sink, &mut up, generation).await {
                    Some(why) => tracing::warn!(
                        %url,
                        "lost the invalidation channel ({why}); reconnecting"
                    ),
                    None => return,
                }
            }
            Err(e) => {
                if !warned {
                    tracing::warn!(%url, "cannot subscribe to {INVALIDATE_CHANNEL}: {e}");
                    warned = true;
                }
            }
        }
        // Without the channel, whether the store is up is for the command
        // connection to say. A store that answers while the channel is gone
        // (an ACL without channel rights, a proxy without pub/sub) stays up:
        // cached records are then trusted for `cache.ttl` and re-read from
        // the store after that, never served stale as in an outage.
        let Some(store) = upgrade(&weak) else {
            return;
        };
        let answering = store.ping().await.is_ok();
        drop(store);
        up.set(sink, answering);
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Forwards messages until the subscription is lost (returns why) or the
/// store is dropped (returns `None`).
async fn follow(
    weak: &Weak<Inner>,
    mut pubsub_sink: PubSubSink,
    mut stream: PubSubStream,
    sink: &dyn InvalidationSink,
    up: &mut State,
    generation: u64,
) -> Option<String> {
    let start = tokio::time::Instant::now() + LIVENESS_EVERY;
    let mut tick = tokio::time::interval_at(start, LIVENESS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut timeouts = 0u32;
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(msg) => forward(msg.get_payload_bytes(), sink),
                None => return Some("connection closed".into()),
            },
            _ = tick.tick() => {
                let store = upgrade(weak)?;
                if let Err(why) = store.check_subscription(&mut pubsub_sink).await {
                    return Some(why);
                }
                match store.ping().await {
                    Ok(()) => {
                        timeouts = 0;
                        up.set(sink, true);
                    }
                    Err(failure) => {
                        if up.get() != Some(false) {
                            tracing::warn!("{failure}");
                        }
                        up.set(sink, false);
                        let mut rebuild = false;
                        if matches!(failure, Liveness::TimedOut) {
                            timeouts += 1;
                            if timeouts >= REBUILD_AFTER_TIMEOUTS {
                                timeouts = 0;
                                rebuild = true;
                            }
                        }
                        // With Sentinel any failure asks where the master
                        // is now; without, only a half-open connection is
                        // replaced (redis-rs reconnects by itself otherwise).
                        if rebuild || store.inner.sentinel.is_some() {
                            store.refresh(rebuild).await;
                        }
                    }
                }
                if store.generation() != generation {
                    return Some("the redis master moved".into());
                }
            }
        }
    }
}

/// Why the command connection looks dead.
enum Liveness {
    TimedOut,
    Failed(String),
}

impl std::fmt::Display for Liveness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Liveness::TimedOut => f.write_str("redis PING timed out"),
            Liveness::Failed(msg) => f.write_str(msg),
        }
    }
}

/// The last `store_up` told to the sink, so it hears transitions, not noise.
#[derive(Default)]
struct State(Option<bool>);

impl State {
    fn get(&self) -> Option<bool> {
        self.0
    }

    fn set(&mut self, sink: &dyn InvalidationSink, up: bool) {
        if self.0 != Some(up) {
            self.force(sink, up);
        }
    }

    fn force(&mut self, sink: &dyn InvalidationSink, up: bool) {
        self.0 = Some(up);
        sink.store_up(up);
    }
}

/// Applies one channel message: `<hash hex>`, `<hash hex> <unix ms>` or
/// `*`. Anything unrecognised flushes everything: a message we cannot read
/// may have been about any key.
fn forward(payload: &[u8], sink: &dyn InvalidationSink) {
    if payload == b"*" {
        sink.invalidate_all();
        return;
    }
    if payload.starts_with(PROBE_PREFIX.as_bytes()) {
        // Another gateway proving its subscription.
        return;
    }
    match parse_message(payload) {
        Some((hash, None)) => sink.invalidate(&hash),
        Some((hash, Some(written_at))) => sink.invalidate_written_at(&hash, written_at),
        None => {
            // The payload is not logged: it could be anything, even a key.
            tracing::warn!(
                len = payload.len(),
                "unreadable message on {INVALIDATE_CHANNEL}; flushing every cached key"
            );
            sink.invalidate_all();
        }
    }
}

/// A fresh probe: [`PROBE_PREFIX`] and 48 random hex digits.
fn probe_message() -> String {
    let mut b = [0u8; 24];
    // A failed random source still makes a valid (if guessable) probe.
    let _ = getrandom::getrandom(&mut b);
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{PROBE_PREFIX}{hex}")
}

/// A hash message, with its write time when it carries one.
fn parse_message(payload: &[u8]) -> Option<(KeyHash, Option<Timestamp>)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (hex, written_at) = match text.split_once(' ') {
        Some((hex, ms)) => {
            let ms = ms
                .parse::<u64>()
                .ok()
                .and_then(|ms| i64::try_from(ms).ok())?;
            (hex, Some(Timestamp(ms)))
        }
        None => (text, None),
    };
    Some((KeyHash::from_hex(&hex.to_ascii_lowercase())?, written_at))
}

/// Exponential backoff with jitter, 50 ms doubling to 2 s, so a fleet of
/// gateways does not reconnect in lockstep after an outage.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff { next: BACKOFF_MIN }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        // Between half and all of the base delay.
        let half = base / 2;
        half + half.mul_f64(random_unit())
    }
}

fn random_unit() -> f64 {
    let mut b = [0u8; 4];
    if getrandom::getrandom(&mut b).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX)
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

/// The host and port a TCP client connects to (none for a Unix socket).
fn node_of(client: &Client) -> (String, u16) {
    match &client.get_connection_info().addr {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            (host.clone(), *port)
        }
        _ => (String::new(), 0),
    }
}

/// Whether a `ROLE` reply says "master".
fn is_master_role(v: &Value) -> bool {
    let first = match v {
        Value::Array(items) => items.first(),
        _ => None,
    };
    matches!(first, Some(Value::BulkString(b)) if b == b"master")
        || matches!(first, Some(Value::SimpleString(s)) if s == "master")
}

/// A parsed `redis+sentinel://[user:password@]host[:port][,host[:port]…]/<master>[/<db>]`
/// URL: where to ask for the master, and how to talk to it.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelUrl {
    /// The sentinels, asked in this order (port 26379 when none is given).
    pub sentinels: Vec<(String, u16)>,
    /// The name of the master set (`sentinel monitor <name> …`).
    pub master: String,
    /// The database on the master (0 when none is given).
    pub db: i64,
    /// The master's ACL user, if any.
    pub username: Option<String>,
    /// The master's password, if any; never printed.
    pub password: Option<String>,
}

impl std::fmt::Debug for SentinelUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelUrl")
            .field("sentinels", &self.sentinels)
            .field("master", &self.master)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl SentinelUrl {
    /// A client for the master at `host:port`, with this URL's credentials
    /// and db.
    fn master_client(&self, host: String, port: u16) -> Result<Client, String> {
        Client::open(ConnectionInfo {
            addr: ConnectionAddr::Tcp(host, port),
            redis: RedisConnectionInfo {
                db: self.db,
                username: self.username.clone(),
                password: self.password.clone(),
                protocol: ProtocolVersion::RESP2,
            },
        })
        .map_err(|e| scrub(&e.to_string(), self.password.as_deref()))
    }
}

/// The parts of a `scheme://[user:password@]host[:port][,host[:port]…]/path`
/// URL: user, password, hosts (with `default_port` where none is given) and
/// the path after the first `/`. Errors never quote the userinfo.
struct MultiHostUrl<'a> {
    username: Option<String>,
    password: Option<String>,
    hosts: Vec<(String, u16)>,
    path: &'a str,
}

fn parse_multi_host<'a>(
    rest: &'a str,
    form: &str,
    what: &str,
    default_port: u16,
) -> Result<MultiHostUrl<'a>, String> {
    if rest.contains(['?', '#']) {
        return Err(format!(
            "query parameters are not supported; expected {form}"
        ));
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| "the user or password is not valid UTF-8 once decoded".to_owned())
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(info) => {
            let (user, pass) = match info.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (info, None),
            };
            let user = Some(decode(user)?).filter(|u| !u.is_empty());
            let pass = pass.map(decode).transpose()?.filter(|p| !p.is_empty());
            (user, pass)
        }
    };
    let mut parsed = Vec::new();
    for host in hosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
        parsed.push(parse_host_port(host, what, default_port)?);
    }
    if parsed.is_empty() {
        return Err(format!("names no {what} host; expected {form}"));
    }
    Ok(MultiHostUrl {
        username,
        password,
        hosts: parsed,
        path,
    })
}

/// Parses a `redis+sentinel://` URL. Errors never quote the userinfo.
pub fn parse_sentinel_url(url: &str) -> Result<SentinelUrl, String> {
    const FORM: &str =
        "redis+sentinel://[user:password@]host:26379[,host:26379…]/<master-name>[/<db>]";
    let rest = url
        .strip_prefix(SENTINEL_SCHEME)
        .ok_or_else(|| format!("not a Sentinel URL; expected {FORM}"))?;
    let MultiHostUrl {
        username,
        password,
        hosts: sentinels,
        path,
    } = parse_multi_host(rest, FORM, "sentinel", SENTINEL_DEFAULT_PORT)?;
    let mut segments = path.split('/');
    let master = segments.next().unwrap_or("");
    if master.is_empty() {
        return Err(format!("names no master set; expected {FORM}"));
    }
    if master.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the master set name holds whitespace".to_owned());
    }
    let db = match segments.next() {
        None | Some("") => 0,
        Some(db) => db
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| format!("database {db:?} is not a non-negative number"))?,
    };
    if segments.any(|s| !s.is_empty()) {
        return Err(format!("too many path segments; expected {FORM}"));
    }
    Ok(SentinelUrl {
        sentinels,
        master: master.to_owned(),
        db,
        username,
        password,
    })
}

/// A parsed `redis+cluster://[user:password@]host[:port][,host[:port]…]/`
/// URL: the seed nodes the cluster client learns the topology from.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterUrl {
    /// The seed nodes, in this order (port 6379 when none is given).
    pub nodes: Vec<(String, u16)>,
    /// The ACL user, if any (the same on every node).
    pub username: Option<String>,
    /// The password, if any; never printed.
    pub password: Option<String>,
}

impl std::fmt::Debug for ClusterUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterUrl")
            .field("nodes", &self.nodes)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl ClusterUrl {
    /// How to reach the node at `host:port` with this URL's credentials.
    fn node_info(&self, host: String, port: u16) -> ConnectionInfo {
        ConnectionInfo {
            addr: ConnectionAddr::Tcp(host, port),
            redis: RedisConnectionInfo {
                db: 0,
                username: self.username.clone(),
                password: self.password.clone(),
                protocol: ProtocolVersion::RESP2,
            },
        }
    }

    /// A plain (non-cluster) client for one node: for the subscription.
    fn node_client(&self, host: String, port: u16) -> Result<Client, String> {
        Client::open(self.node_info(host, port))
            .map_err(|e| scrub(&e.to_string(), self.password.as_deref()))
    }
}

/// Parses a `redis+cluster://` URL. A cluster has only database 0, so the
/// path is empty or `0`. Errors never quote the userinfo.
pub fn parse_cluster_url(url: &str) -> Result<ClusterUrl, String> {
    const FORM: &str = "redis+cluster://[user:password@]host:6379[,host:6379…]/";
    let rest = url
        .strip_prefix(CLUSTER_SCHEME)
        .ok_or_else(|| format!("not a Cluster URL; expected {FORM}"))?;
    let parsed = parse_multi_host(rest, FORM, "cluster node", CLUSTER_DEFAULT_PORT)?;
    if !matches!(parsed.path, "" | "0" | "0/") {
        return Err(format!(
            "a cluster has only database 0 and the URL takes no path; expected {FORM}"
        ));
    }
    Ok(ClusterUrl {
        nodes: parsed.hosts,
        username: parsed.username,
        password: parsed.password,
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; `what` names it in errors.
fn parse_host_port(text: &str, what: &str, default_port: u16) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = text.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{what} {text:?}: unclosed '['"))?;
        match after {
            "" => (host, None),
            p => (
                host,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("{what} {text:?}: expected ':' after ']'"))?,
                ),
            ),
        }
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{what} {text:?}: no host"));
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{what} {text:?}: the port is not a number 1-65535"))?,
    };
    Ok((host.to_owned(), port))
}

/// Asks each sentinel in turn for the master of `spec.master` and returns a
/// client for the first answer that really is a master (a sentinel may
/// still name the old one for a moment after a failover).
async fn resolve_master(spec: &SentinelUrl, timeout: Duration) -> Result<Client, String> {
    let mut why = Vec::new();
    for (host, port) in &spec.sentinels {
        match ask_sentinel(host, *port, &spec.master, timeout).await {
            Ok((mhost, mport)) => {
                let shown = format!("{mhost}:{mport}");
                let client = spec.master_client(mhost, mport)?;
                match check_master(&client, timeout).await {
                    Ok(()) => return Ok(client),
                    Err(e) => why.push(format!(
                        "sentinel {host}:{port} names master {shown}, which {e}"
                    )),
                }
            }
            Err(e) => why.push(format!("sentinel {host}:{port}: {e}")),
        }
    }
    Err(why.join("; "))
}

/// `SENTINEL get-master-addr-by-name`, on a plain connection without
/// credentials.
async fn ask_sentinel(
    host: &str,
    port: u16,
    master: &str,
    timeout: Duration,
) -> Result<(String, u16), String> {
    let client = Client::open(ConnectionInfo {
        addr: ConnectionAddr::Tcp(host.to_owned(), port),
        redis: RedisConnectionInfo::default(),
    })
    .map_err(|e| e.to_string())?;
    let ask = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        ::redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(master)
            .query_async::<Option<(String, u16)>>(&mut conn)
            .await
    };
    match tokio::time::timeout(timeout, ask).await {
        Ok(Ok(Some(addr))) => Ok(addr),
        Ok(Ok(None)) => Err(format!("does not know a master set named {master:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("timed out after {timeout:?}")),
    }
}

/// Connects to a would-be master and checks that `ROLE` says so.
async fn check_master(client: &Client, timeout: Duration) -> Result<(), String> {
    let password = client.get_connection_info().redis.password.clone();
    let ask = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        ::redis::cmd("ROLE").query_async::<Value>(&mut conn).await
    };
    match tokio::time::timeout(timeout, ask).await {
        Ok(Ok(v)) if is_master_role(&v) => Ok(()),
        Ok(Ok(_)) => Err("is not a master (yet)".to_owned()),
        Ok(Err(e)) => Err(format!(
            "cannot be reached: {}",
            scrub(&e.to_string(), password.as_deref())
        )),
        Err(_) => Err(format!("did not answer within {timeout:?}")),
    }
}

fn corrupt(what: &str, reason: String) -> StoreError {
    StoreError::Corrupt {
        what: what.to_owned(),
        reason,
    }
}

/// `redis://user:pass@host/0` → `redis://host/0`: messages name the server,
/// never its credentials.
fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        // Not a URL we can take apart; say nothing that might be a secret.
        return "<redis URL>".to_owned();
    };
    match userinfo(url) {
        Some(info) => {
            let rest = scheme_end + 3 + info.len() + 1;
            format!("{}{}", &url[..scheme_end + 3], &url[rest..])
        }
        None => url.to_owned(),
    }
}

/// The `user:password` part of a URL's authority, if any.
fn userinfo(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    authority.rfind('@').map(|at| &authority[..at])
}

/// Removes the password from a driver message, in case it ever echoes it.
fn scrub(msg: &str, password: Option<&str>) -> String {
    match password {
        Some(p) if !p.is_empty() => msg.replace(p, "***"),
        _ => msg.to_owned(),
    }
}

fn bytes_of(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

fn list_items(v: Value) -> Result<Vec<Value>, String> {
    match v {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        _ => Err("unexpected reply type".into()),
    }
}

/// HGETALL's reply (flat array in RESP2, map in RESP3) as field → value.
fn hash_fields(v: Value) -> Result<HashMap<Vec<u8>, Vec<u8>>, String> {
    let pairs: Vec<(Value, Value)> = match v {
        Value::Map(pairs) => pairs,
        Value::Nil => Vec::new(),
        Value::Array(items) => {
            if items.len() % 2 != 0 {
                return Err("odd HGETALL reply".into());
            }
            let mut it = items.into_iter();
            let mut pairs = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            pairs
        }
        _ => return Err("unexpected HGETALL reply type".into()),
    };
    pairs
        .into_iter()
        .map(|(k, v)| match (bytes_of(k), bytes_of(v)) {
            (Some(k), Some(v)) => Ok((k, v)),
            _ => Err("unexpected field type in HGETALL reply".into()),
        })
        .collect()
}

/// The id index's value: `None` when the id is unknown.
fn parse_index(prefix: &str, id: &str, v: Value) -> Result<Option<KeyHash>, StoreError> {
    let Some(bytes) = bytes_of(v) else {
        return Ok(None);
    };
    std::str::from_utf8(&bytes)
        .ok()
        .and_then(KeyHash::from_hex)
        .map(Some)
        .ok_or_else(|| corrupt(id, format!("{prefix}{id}: not a lowercase sha256 hex")))
}

fn check_id(id: &str, record: &KeyRecord) -> Result<(), StoreError> {
    if record.id == id {
        Ok(())
    } else {
        Err(corrupt(id, format!("id: the record says {:?}", record.id)))
    }
}

/// A record as HSET field/value pairs, and the optional fields it lacks (to
/// HDEL on replace). Lists are space-separated; times are Unix milliseconds.
fn record_fields(r: &KeyRecord) -> (Vec<(&'static str, String)>, Vec<&'static str>) {
    let join = |items: Vec<String>| items.join(" ");
    let mut set = vec![
        ("id", r.id.clone()),
        ("name", r.name.clone()),
        ("env", r.env.as_str().to_owned()),
        (
            "scopes",
            join(r.scopes.iter().map(Scope::to_string).collect()),
        ),
        (
            "allowed_ips",
            join(r.allowed_ips.iter().map(|n| n.to_string()).collect()),
        ),
        ("created_at", r.created_at.0.to_string()),
        ("hint", r.hint.clone()),
    ];
    let mut absent = Vec::new();
    let optional = [
        ("account", r.account.clone()),
        ("expires_at", r.expires_at.map(|t| t.0.to_string())),
        ("revoked_at", r.revoked_at.map(|t| t.0.to_string())),
    ];
    for (field, value) in optional {
        match value {
            Some(v) => set.push((field, v)),
            None => absent.push(field),
        }
    }
    (set, absent)
}

struct Fields<'a>(&'a HashMap<Vec<u8>, Vec<u8>>);

impl Fields<'_> {
    fn opt(&self, name: &str) -> Result<Option<&str>, String> {
        self.0
            .get(name.as_bytes())
            .map(|v| std::str::from_utf8(v).map_err(|_| format!("{name}: not UTF-8")))
            .transpose()
    }

    fn req(&self, name: &str) -> Result<&str, String> {
        self.opt(name)?.ok_or_else(|| format!("{name}: missing"))
    }

    fn time(&self, name: &str) -> Result<Option<Timestamp>, String> {
        self.opt(name)?
            .map(|s| {
                s.parse::<i64>()
                    .map(Timestamp)
                    .map_err(|_| format!("{name}: not a whole number of milliseconds"))
            })
            .transpose()
    }
}

fn parse_record(raw: &HashMap<Vec<u8>, Vec<u8>>) -> Result<KeyRecord, String> {
    let f = Fields(raw);
    let id = f.req("id")?;
    if !valid_key_id(id) {
        return Err("id: not a valid key id".into());
    }
    let env = f.req("env")?;
    let env = Env::parse(env).ok_or_else(|| format!("env: {env:?} is neither live nor test"))?;
    let scopes = f
        .req("scopes")?
        .split_ascii_whitespace()
        .map(|s| Scope::parse(s).map_err(|e| format!("scopes: {e}")))
        .collect::<Result<_, _>>()?;
    let allowed_ips = f
        .req("allowed_ips")?
        .split_ascii_whitespace()
        .map(|s| parse_ip_or_cidr(s).map_err(|e| format!("allowed_ips: {e}")))
        .collect::<Result<_, _>>()?;
    Ok(KeyRecord {
        id: id.to_owned(),
        name: f.req("name")?.to_owned(),
        account: f.opt("account")?.map(str::to_owned),
        env,
        scopes,
        allowed_ips,
        created_at: f.time("created_at")?.ok_or("created_at: missing")?,
        expires_at: f.time("expires_at")?,
        revoked_at: f.time("revoked_at")?,
        hint: f.req("hint")?.to_owned(),
    })
}

fn parse_usage(raw: &HashMap<Vec<u8>, Vec<u8>>) -> Result<KeyUsage, String> {
    let f = Fields(raw);
    let count = |name: &str, s: &str| {
        s.parse::<u64>()
            .map_err(|_| format!("{name}: not a non-negative integer"))
    };
    let mut usage = KeyUsage {
        last_used_at: f.time("last_used_at")?,
        last_ip: f
            .opt("last_ip")?
            .map(|s| {
                s.parse::<IpAddr>()
                    .map_err(|_| "last_ip: not an IP address".to_owned())
            })
            .transpose()?,
        total: f
            .opt("total")?
            .map(|s| count("total", s))
            .transpose()?
            .unwrap_or(0),
        daily: Default::default(),
    };
    for (k, v) in raw {
        let Some(day) = k.strip_prefix(b"d:") else {
            continue;
        };
        let day = std::str::from_utf8(day).map_err(|_| "d:<day>: not UTF-8".to_owned())?;
        let name = format!("d:{day}");
        let v = std::str::from_utf8(v).map_err(|_| format!("{name}: not UTF-8"))?;
        usage.daily.insert(day.to_owned(), count(&name, v)?);
    }
    Ok(usage)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_userinfo() {
        assert_eq!(redact_url("redis://u:secret@h:6379/0"), "redis://h:6379/0");
        assert_eq!(redact_url("redis://:secret@h"), "redis://h");
        assert_eq!(redact_url("rediss://h:1/2?x=@y"), "rediss://h:1/2?x=@y");
        assert_eq!(redact_url("redis://a@b@h/0"), "redis://h/0");
        assert_eq!(redact_url("garbage:secret"), "<redis URL>");
        assert_eq!(userinfo("redis://u:p@h/0"), Some("u:p"));
        assert_eq!(userinfo("redis://h/0?a=b@c"), None);
        assert_eq!(
            scrub("auth failed for hunter2", Some("hunter2")),
            "auth failed for ***"
        );
    }

    #[test]
    fn sentinel_urls_are_parsed() {
        let s = parse_sentinel_url("redis+sentinel://u:p%40ss@a:1,b,[::1]:3/mymaster/4").unwrap();
        assert_eq!(
            s.sentinels,
            vec![
                ("a".to_owned(), 1),
                ("b".to_owned(), SENTINEL_DEFAULT_PORT),
                ("::1".to_owned(), 3)
            ]
        );
        assert_eq!(s.master, "mymaster");
        assert_eq!(s.db, 4);
        assert_eq!(s.username.as_deref(), Some("u"));
        assert_eq!(s.password.as_deref(), Some("p@ss"));
        assert!(!format!("{s:?}").contains("p@ss"));
        let one = parse_sentinel_url("redis+sentinel://h:26379/m").unwrap();
        assert_eq!((one.sentinels.len(), one.db, one.password), (1, 0, None));
        for (bad, why) in [
            ("redis+sentinel:///m", "no sentinel"),
            ("redis+sentinel://h", "no master"),
            ("redis+sentinel://h:x/m", "port"),
            ("redis+sentinel://h:0/m", "port"),
            ("redis+sentinel://[::1/m", "unclosed"),
            ("redis+sentinel://h/m/-1", "database"),
            ("redis+sentinel://h/m/1/2", "too many"),
            ("redis://h/m", "not a Sentinel URL"),
        ] {
            let err = parse_sentinel_url(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert_eq!(
            redact_url("redis+sentinel://u:pw@a:1,b:2/m/0"),
            "redis+sentinel://a:1,b:2/m/0"
        );
    }

    #[test]
    fn cluster_urls_are_parsed() {
        let c = parse_cluster_url("redis+cluster://u:p%40ss@a:7000,b,[::1]:7002/").unwrap();
        assert_eq!(
            c.nodes,
            vec![
                ("a".to_owned(), 7000),
                ("b".to_owned(), CLUSTER_DEFAULT_PORT),
                ("::1".to_owned(), 7002)
            ]
        );
        assert_eq!(c.username.as_deref(), Some("u"));
        assert_eq!(c.password.as_deref(), Some("p@ss"));
        assert!(!format!("{c:?}").contains("p@ss"));
        let one = parse_cluster_url("redis+cluster://h:7000").unwrap();
        assert_eq!((one.nodes.len(), one.password), (1, None));
        assert!(parse_cluster_url("redis+cluster://h:7000/0").is_ok());
        for (bad, why) in [
            ("redis+cluster://", "no cluster node"),
            ("redis+cluster://u:p@/", "no cluster node"),
            ("redis+cluster://h:x", "port"),
            ("redis+cluster://[::1", "unclosed"),
            ("redis+cluster://h:1/2", "only database 0"),
            ("redis+cluster://h:1/?a=b", "query"),
            ("redis://h:1", "not a Cluster URL"),
        ] {
            let err = parse_cluster_url(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert_eq!(
            redact_url("redis+cluster://u:pw@a:1,b:2/"),
            "redis+cluster://a:1,b:2/"
        );
        // Every key a script touches shares the cluster schema's hash tag.
        for prefix in [
            Schema::CLUSTER.key,
            Schema::CLUSTER.id,
            Schema::CLUSTER.ids,
            Schema::CLUSTER.usage,
        ] {
            assert!(prefix.starts_with("{osir}:"), "{prefix}");
        }
    }

    fn sample() -> KeyRecord {
        KeyRecord {
            id: "key_abc".into(),
            name: "CI deploys".into(),
            account: Some("acct_1".into()),
            env: Env::Live,
            scopes: vec![
                Scope::parse("domains:read").unwrap(),
                Scope::parse("*").unwrap(),
            ],
            allowed_ips: vec![
                parse_ip_or_cidr("10.0.0.0/8").unwrap(),
                parse_ip_or_cidr("::1").unwrap(),
            ],
            created_at: Timestamp(1_700_000_000_000),
            expires_at: Some(Timestamp(1_800_000_000_000)),
            revoked_at: None,
            hint: "osir_live_…o5p6".into(),
        }
    }

    fn as_raw(set: &[(&str, String)]) -> HashMap<Vec<u8>, Vec<u8>> {
        set.iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn records_roundtrip_through_fields() {
        let r = sample();
        let (set, absent) = record_fields(&r);
        assert_eq!(absent, vec!["revoked_at"]);
        assert_eq!(parse_record(&as_raw(&set)).unwrap(), r);
    }

    #[test]
    fn bad_fields_are_named() {
        let (set, _) = record_fields(&sample());
        let cases: [(&str, &[u8], &str); 7] = [
            ("env", b"prod", "env:"),
            ("scopes", b"domains:list", "scopes:"),
            ("allowed_ips", b"10.0.0.0/33", "allowed_ips:"),
            ("created_at", b"yesterday", "created_at:"),
            ("expires_at", b"1.5", "expires_at:"),
            ("name", b"\xff\xfe", "name: not UTF-8"),
            ("id", b"key 1", "id:"),
        ];
        for (field, value, expect) in cases {
            let mut raw = as_raw(&set);
            raw.insert(field.as_bytes().to_vec(), value.to_vec());
            let err = parse_record(&raw).unwrap_err();
            assert!(err.starts_with(expect), "{field}: {err}");
        }
        for field in [
            "id",
            "name",
            "env",
            "scopes",
            "allowed_ips",
            "created_at",
            "hint",
        ] {
            let mut raw = as_raw(&set);
            raw.remove(field.as_bytes());
            assert_eq!(parse_record(&raw).unwrap_err(), format!("{field}: missing"));
        }
    }

    #[test]
    fn messages_are_forwarded_or_flush() {
        use std::sync::Mutex;
        #[derive(Default)]
        struct Rec(Mutex<Vec<String>>);
        impl InvalidationSink for Rec {
            fn invalidate(&self, hash: &KeyHash) {
                self.0.lock().unwrap().push(hash.to_hex());
            }
            fn invalidate_written_at(&self, hash: &KeyHash, at: Timestamp) {
                self.0
                    .lock()
                    .unwrap()
                    .push(format!("{}@{}", hash.to_hex(), at.0));
            }
            fn invalidate_all(&self) {
                self.0.lock().unwrap().push("*".into());
            }
            fn store_up(&self, _: bool) {}
        }
        let rec = Rec::default();
        let hex = "ab".repeat(32);
        forward(hex.as_bytes(), &rec);
        forward(hex.to_ascii_uppercase().as_bytes(), &rec);
        forward(b"*", &rec);
        forward(b"nonsense", &rec);
        forward(b"\xff", &rec);
        assert_eq!(
            *rec.0.lock().unwrap(),
            vec![hex.clone(), hex.clone(), "*".into(), "*".into(), "*".into()]
        );
        rec.0.lock().unwrap().clear();
        forward(format!("{hex} 1700000000123").as_bytes(), &rec);
        for bad in ["-5", "", "12x", "1 2", "99999999999999999999"] {
            forward(format!("{hex} {bad}").as_bytes(), &rec);
        }
        forward(format!("{} 1", &hex[1..]).as_bytes(), &rec);
        forward(probe_message().as_bytes(), &rec);
        let mut want = vec![format!("{hex}@1700000000123")];
        want.extend(std::iter::repeat_n("*".to_owned(), 6));
        assert_eq!(*rec.0.lock().unwrap(), want);
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let mut b = Backoff::new();
        let first = b.next_delay();
        assert!(first >= BACKOFF_MIN / 2 && first <= BACKOFF_MIN);
        for _ in 0..10 {
            b.next_delay();
        }
        let late = b.next_delay();
        assert!(late >= BACKOFF_MAX / 2 && late <= BACKOFF_MAX);
        b.reset();
        assert!(b.next_delay() <= BACKOFF_MIN);
    }
}
