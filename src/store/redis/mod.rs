//! Shared Redis store: one source of truth for every gateway in a fleet.
//!
//! Layout (also in `docs/store.md`):
//! - `osir:key:<sha256 hex>`: HASH, the record (fields below).
//! - `osir:id:<id>`: STRING, the hash hex: the id index.
//! - `osir:ids`: SET of ids, for `list`.
//! - `osir:usage:<id>`: HASH, `total`, `last_used_at`, `last_ip`, `d:YYYY-MM-DD`.
//! - `osir:audit`: STREAM, the audit trail: one entry per key change, field
//!   `entry` holding its JSON, added by the same script as the change;
//!   never trimmed (append-only).
//! - `osir:changes`: STREAM, the change feed. Every write script appends
//!   `h <hash hex>` (and `at <unix ms>` for a replace, which feeds the
//!   revocation-delay metric) before it writes anything, trimmed to about
//!   `[store] feed_max_len` entries; `h *` asks every gateway to flush.
//!   Each gateway reads it from the last id it applied (see `watch.rs`).
//!
//! With a `redis+sentinel://` URL the server is the master the sentinels
//! name, looked up again (and every connection moved) when it stops
//! answering or is demoted; see [`connect`].
//!
//! With a `redis+cluster://` URL every key above is put under one hash tag
//! (`{osir}:key:<hash>`, `{osir}:id:<id>`, `{osir}:ids`, `{osir}:usage:<id>`)
//! so each script's keys share a slot: the cluster gives failover through
//! replicas, not sharding. Commands go through the cluster client, and so
//! does the feed reader (a cluster connection of its own).
//!
//! Writes are Lua scripts, so a record, its index and its feed entry change
//! together or not at all, and a check ("is this id free?") cannot race the
//! write it guards. Every round trip is bounded by the configured timeout and
//! any failure is [`StoreError::Unavailable`]: the caller decides what an
//! outage means, the store never guesses. Nothing read from Redis is trusted:
//! a bad field is [`StoreError::Corrupt`] naming the record and the field.
//!
//! Files:
//! - `url.rs`: the URL forms (`redis://`, `redis+unix://`,
//!   `redis+sentinel://`, `redis+cluster://`) and keeping passwords out of
//!   messages.
//! - `conn.rs`: the command connection, its timeout and its replacement.
//! - `sentinel.rs`: finding the master and following it when it moves.
//! - `schema.rs`: key names and the record/usage hash encoding.
//! - `scripts.rs`: the Lua scripts every write goes through.
//! - `feed.rs`: reading the change feed (positions, XINFO, XREAD) and
//!   checking this user's rights, with NOPERM turned into the rule to add.
//! - `watch.rs`: the task that follows the feed from the last id it applied
//!   and reports whether the store is up and the feed is live.
//!
//! Over 400 lines: the store's operations and the four job traits; it grew
//! with the change feed and the audit trail, and the trait impls and
//! `connect` are the next split.

//! - `lazy.rs`: the store `run` serves with while Redis is unreachable at
//!   start, connecting in the background.

mod conn;
mod feed;
mod lazy;
mod schema;
mod scripts;
mod sentinel;
mod url;
mod watch;

pub use lazy::{connect_or_defer, LazyRedisStore};
pub use url::{
    parse_cluster_url, parse_sentinel_url, ClusterUrl, SentinelUrl, CLUSTER_DEFAULT_PORT,
    SENTINEL_DEFAULT_PORT,
};

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::redis::aio::ConnectionManagerConfig;
use ::redis::cluster::ClusterClient;
use ::redis::{Client, ProtocolVersion, Script, Value};
use parking_lot::{Mutex, RwLock};

use super::{InvalidationSink, Listing, StoreError, StoreFuture};
use crate::keys::KeyHash;
use crate::keys::{AuditEntry, AuditPage, AuditQuery};
use crate::keys::{KeyRecord, KeyUsage, Timestamp, UsageDelta};
use conn::{finish_connect, Cluster, Conn};
use schema::{
    bytes_of, check_id, corrupt, hash_fields, list_items, parse_index, parse_record, parse_usage,
    record_fields, Schema,
};
use sentinel::resolve_master;
use url::{redact_url, scrub, userinfo, CLUSTER_SCHEME, SENTINEL_SCHEME};

/// The change feed (a Redis Stream) every write appends to and every
/// gateway reads; on a Cluster it is `{osir}:changes`.
pub const CHANGE_FEED: &str = "osir:changes";

/// The default bound on the feed's length (`XADD … MAXLEN ~`): how many
/// changes a gateway may fall behind (a long pause, a slow reconnect) and
/// still catch up without flushing its cache.
pub const DEFAULT_FEED_MAX_LEN: u64 = 100_000;

/// Ids per pipelined round trip in `list`, so one round trip stays small
/// enough to finish within the timeout.
const LIST_CHUNK: usize = 500;

struct Inner {
    /// The server to talk to: fixed for `redis://`, the current master for
    /// Sentinel (swapped together with `conn` when the master moves). With
    /// Cluster, the first seed node.
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
    /// Bumped whenever the master moves, so the feed reader reconnects there.
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
    /// `MAXLEN ~` of every feed append.
    feed_max_len: u64,
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
    connect_with(url, timeout, DEFAULT_FEED_MAX_LEN).await
}

/// [`connect`], with the bound on the change feed's length that this
/// store's writes keep (`[store] feed_max_len`).
pub async fn connect_with(
    url: &str,
    timeout: Duration,
    feed_max_len: u64,
) -> Result<RedisStore, StoreError> {
    let shown_url = redact_url(url);
    let feed_max_len = feed_max_len.max(1);
    if url.starts_with(SENTINEL_SCHEME) {
        let spec = parse_sentinel_url(url)
            .map_err(|e| StoreError::Unavailable(format!("invalid redis URL {shown_url}: {e}")))?;
        let client = resolve_master(&spec, timeout).await.map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot connect to redis {shown_url}: {}",
                scrub(&e, spec.password.as_deref())
            ))
        })?;
        return finish_connect(client, Some(spec), None, shown_url, timeout, feed_max_len).await;
    }
    if url.starts_with(CLUSTER_SCHEME) {
        let spec = parse_cluster_url(url)
            .map_err(|e| StoreError::Unavailable(format!("invalid redis URL {shown_url}: {e}")))?;
        let (host, port) = spec.nodes[0].clone();
        let first = spec
            .node_client(host, port)
            .map_err(|e| StoreError::Unavailable(format!("invalid redis URL {shown_url}: {e}")))?;
        // The seeds are dialled together and all awaited before the slot map
        // is read: half the budget each, so one seed that never answers does
        // not use up the whole first-connection timeout. The feed reader has
        // its own client, whose replies may wait out a blocking read.
        let build = |response: Duration| {
            let nodes = spec
                .nodes
                .iter()
                .map(|(h, p)| spec.node_info(h.clone(), *p));
            ClusterClient::builder(nodes)
                .connection_timeout(timeout / 2)
                .response_timeout(response)
                .use_protocol(ProtocolVersion::RESP2)
                .build()
                .map_err(|e| {
                    StoreError::Unavailable(format!(
                        "invalid redis URL {shown_url}: {}",
                        scrub(&e.to_string(), spec.password.as_deref())
                    ))
                })
        };
        let client = build(timeout)?;
        let feed = build(feed::read_deadline(timeout))?;
        let cluster = Cluster { client, feed };
        return finish_connect(first, None, Some(cluster), shown_url, timeout, feed_max_len).await;
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
    finish_connect(client, None, None, shown_url, timeout, feed_max_len).await
}

/// Checks that `url` is one [`connect`] can use, without connecting: the
/// same errors `connect` gives for a bad URL.
pub fn check_url(url: &str) -> Result<(), StoreError> {
    let shown_url = redact_url(url);
    let bad = |e: String| StoreError::Unavailable(format!("invalid redis URL {shown_url}: {e}"));
    if url.starts_with(SENTINEL_SCHEME) {
        return parse_sentinel_url(url)
            .map(|_| ())
            .map_err(|e| bad(e.to_string()));
    }
    if url.starts_with(CLUSTER_SCHEME) {
        let spec = parse_cluster_url(url).map_err(|e| bad(e.to_string()))?;
        let (host, port) = spec.nodes[0].clone();
        return spec
            .node_client(host, port)
            .map(|_| ())
            .map_err(|e| bad(scrub(&e.to_string(), spec.password.as_deref())));
    }
    Client::open(url).map(|_| ()).map_err(|e| {
        let mut msg = e.to_string();
        if let Some(info) = userinfo(url) {
            msg = info
                .split(':')
                .fold(msg.replace(info, "***"), |m, part| scrub(&m, Some(part)));
        }
        StoreError::Unavailable(format!(
            "unsupported or invalid redis URL {shown_url}: {msg}"
        ))
    })
}

impl RedisStore {
    /// One HGETALL of `key` as field → value; `subject` names the record in
    /// a `Corrupt` answer.
    async fn hgetall(
        &self,
        subject: &str,
        key: String,
    ) -> Result<HashMap<Vec<u8>, Vec<u8>>, StoreError> {
        let mut conn = self.conn();
        let value: Value = self
            .run(
                "HGETALL",
                subject,
                ::redis::cmd("HGETALL").arg(key).query_async(&mut conn),
            )
            .await?;
        hash_fields(value).map_err(|reason| corrupt(subject, reason))
    }

    /// One HGETALL: the request path's only round trip.
    pub(super) async fn lookup(&self, hash: &KeyHash) -> Result<Option<KeyRecord>, StoreError> {
        let hex = hash.to_hex();
        let what = &hex[..12];
        let fields = self
            .hgetall(what, format!("{}{hex}", self.inner.schema.key))
            .await?;
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
        let fields = self
            .hgetall(id, format!("{}{}", self.inner.schema.key, hash.to_hex()))
            .await?;
        if fields.is_empty() {
            tracing::warn!(id, "key id index points at a missing record; ignoring it");
            return Ok(None);
        }
        let record = parse_record(&fields).map_err(|reason| corrupt(id, reason))?;
        check_id(id, &record)?;
        Ok(Some((hash, record)))
    }

    pub(super) async fn list(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.list_with(true).await.map(|l| l.records)
    }

    pub(super) async fn list_all(&self) -> Result<Listing, StoreError> {
        self.list_with(false).await
    }

    /// Lists every record. `strict`: the first unreadable one fails the
    /// listing; else it is reported by id and the others are still listed.
    async fn list_with(&self, strict: bool) -> Result<Listing, StoreError> {
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
        let mut bad = Vec::new();
        let mut keep = |e: StoreError| {
            if strict {
                Err(e)
            } else {
                bad.push(e);
                Ok(())
            }
        };
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
                match parse_index(self.inner.schema.id, id, index) {
                    Ok(Some(hash)) => found.push((id, hash)),
                    Ok(None) => {
                        tracing::warn!(id, "{ids_key} names an id with no index; ignoring it")
                    }
                    Err(e) => keep(e)?,
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
                let fields = match hash_fields(value) {
                    Ok(f) => f,
                    Err(reason) => {
                        keep(corrupt(id, reason))?;
                        continue;
                    }
                };
                if fields.is_empty() {
                    tracing::warn!(id, "key id index points at a missing record; ignoring it");
                    continue;
                }
                let record = match parse_record(&fields) {
                    Ok(r) => r,
                    Err(reason) => {
                        keep(corrupt(id, reason))?;
                        continue;
                    }
                };
                match check_id(id, &record) {
                    Ok(()) => out.push(record),
                    Err(e) => keep(e)?,
                }
            }
        }
        Ok(Listing {
            records: out,
            corrupt: bad,
        })
    }

    pub(super) async fn insert(
        &self,
        hash: &KeyHash,
        record: &KeyRecord,
        audit: Option<&AuditEntry>,
    ) -> Result<(), StoreError> {
        let hex = hash.to_hex();
        let (set, _) = record_fields(record);
        let mut inv = self.inner.insert.prepare_invoke();
        inv.key(format!("{}{hex}", self.inner.schema.key))
            .key(format!("{}{}", self.inner.schema.id, record.id))
            .key(self.inner.schema.ids)
            .key(self.inner.schema.changes)
            .arg(&hex)
            .arg(&record.id)
            .arg(self.inner.feed_max_len);
        for (field, value) in &set {
            inv.arg(*field).arg(value);
        }
        if let Some(entry) = audit {
            inv.key(self.inner.schema.audit).arg(entry.to_json_line());
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

    pub(super) async fn replace(
        &self,
        record: &KeyRecord,
        audit: Option<&AuditEntry>,
    ) -> Result<(), StoreError> {
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
                .key(self.inner.schema.changes)
                .arg(&hex)
                .arg(self.inner.feed_max_len)
                .arg(Timestamp::now().0)
                .arg(set.len());
            for (field, value) in &set {
                inv.arg(*field).arg(value);
            }
            for field in &absent {
                inv.arg(*field);
            }
            if let Some(entry) = audit {
                inv.key(self.inner.schema.audit).arg(entry.to_json_line());
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

    /// Newest first, one bounded XREVRANGE per chunk, filtered here; stops
    /// at the first entry older than `since` (entries are in time order).
    pub(super) async fn audit(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        let stream = self.inner.schema.audit;
        if query.cursor.is_some_and(|c| c.is_unset()) {
            // Nothing is older than the first possible id (and Redis
            // refuses the exclusive range "(0-0").
            return Ok(AuditPage::default());
        }
        let limit = query.limit.max(1);
        let chunk = (limit + 1).clamp(50, LIST_CHUNK);
        let mut end = query
            .cursor
            .map_or_else(|| "+".to_owned(), |c| format!("({c}"));
        let mut entries = Vec::new();
        loop {
            let mut conn = self.conn();
            let reply: Value = self
                .run(
                    "XREVRANGE",
                    stream,
                    ::redis::cmd("XREVRANGE")
                        .arg(stream)
                        .arg(&end)
                        .arg("-")
                        .arg("COUNT")
                        .arg(chunk)
                        .query_async(&mut conn),
                )
                .await?;
            let items = schema::audit_items(reply).map_err(|reason| corrupt(stream, reason))?;
            let exhausted = items.len() < chunk;
            for entry in &items {
                if query.since.is_some_and(|s| entry.time < s) {
                    return Ok(AuditPage::new(entries, false));
                }
                if !query.matches(entry) {
                    continue;
                }
                if entries.len() == limit {
                    return Ok(AuditPage::new(entries, true));
                }
                entries.push(entry.clone());
            }
            match items.last() {
                Some(last) if !exhausted => end = format!("({}", last.id),
                _ => return Ok(AuditPage::new(entries, false)),
            }
        }
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
        let fields = self
            .hgetall(id, format!("{}{id}", self.inner.schema.usage))
            .await?;
        parse_usage(&fields).map_err(|reason| StoreError::Corrupt {
            what: format!("usage of {id}"),
            reason,
        })
    }

    /// The watcher holds only a weak handle: it ends when the handle is
    /// aborted or when the last clone of the store is dropped.
    pub(super) fn watch(&self, sink: Arc<dyn InvalidationSink>) -> tokio::task::JoinHandle<()> {
        let store = Arc::downgrade(&self.inner);
        tokio::spawn(async move { watch::watch_loop(store, &*sink).await })
    }
}

impl crate::store::KeyLookup for RedisStore {
    fn lookup<'a>(&'a self, hash: &'a KeyHash) -> StoreFuture<'a, Option<KeyRecord>> {
        Box::pin(RedisStore::lookup(self, hash))
    }
}

impl crate::store::KeyAdmin for RedisStore {
    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<(KeyHash, KeyRecord)>> {
        Box::pin(RedisStore::get(self, id))
    }
    fn list(&self) -> StoreFuture<'_, Vec<KeyRecord>> {
        Box::pin(RedisStore::list(self))
    }
    fn list_all(&self) -> StoreFuture<'_, Listing> {
        Box::pin(RedisStore::list_all(self))
    }
    fn insert<'a>(
        &'a self,
        hash: &'a KeyHash,
        record: &'a KeyRecord,
        audit: Option<&'a AuditEntry>,
    ) -> StoreFuture<'a, ()> {
        Box::pin(RedisStore::insert(self, hash, record, audit))
    }
    fn replace<'a>(
        &'a self,
        record: &'a KeyRecord,
        audit: Option<&'a AuditEntry>,
    ) -> StoreFuture<'a, ()> {
        Box::pin(RedisStore::replace(self, record, audit))
    }
}

impl crate::store::AuditLog for RedisStore {
    fn audit<'a>(&'a self, query: &'a AuditQuery) -> StoreFuture<'a, AuditPage> {
        Box::pin(RedisStore::audit(self, query))
    }
}

impl crate::store::UsageStore for RedisStore {
    fn add_usage<'a>(&'a self, batch: &'a [UsageDelta]) -> StoreFuture<'a, ()> {
        Box::pin(RedisStore::add_usage(self, batch))
    }
    fn usage<'a>(&'a self, id: &'a str) -> StoreFuture<'a, KeyUsage> {
        Box::pin(RedisStore::usage(self, id))
    }
}

impl crate::store::ChangeFeed for RedisStore {
    fn watch(&self, sink: Arc<dyn InvalidationSink>) -> tokio::task::JoinHandle<()> {
        RedisStore::watch(self, sink)
    }
}

impl crate::store::Backend for RedisStore {
    fn name(&self) -> &'static str {
        "redis"
    }
}
