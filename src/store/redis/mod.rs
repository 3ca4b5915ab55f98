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
//! name (asked through redis-rs's Sentinel client), looked up again (and
//! every connection moved) when it stops answering or is demoted; see
//! [`connect`]. Every `rediss` form is the same over TLS (rustls, `ring`),
//! checked against `[store] tls_ca` or the public (Mozilla) roots built
//! in; the password
//! may come from the variable `[store] password_env` names.
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
//! - `url.rs`: the URL forms (`redis://`, `rediss://`, `redis+unix://`,
//!   `redis[s]+sentinel://`, `redis[s]+cluster://`) and keeping passwords
//!   out of messages.
//! - `target.rs`: a URL and its options (password variable, CA file)
//!   turned into clients, before anything is dialled.
//! - `conn.rs`: the connection (target, current server, command
//!   connection, generation): timeouts, replacement, following the master.
//! - `sentinel.rs`: asking the sentinels (through redis-rs) for the master.
//! - `schema.rs`: key names and the record/usage hash encoding.
//! - `scripts.rs`: the Lua scripts every write goes through.
//! - `feed.rs`: reading the change feed (positions, XINFO, XREAD) and
//!   checking this user's rights, with NOPERM turned into the rule to add.
//! - `watch.rs`: the task that follows the feed from the last id it applied
//!   and reports whether the store is up and the feed is live.
//! - `lazy.rs`: the store `run` serves with while Redis is unreachable at
//!   start, connecting in the background.
//! - `pipe.rs`: the request path's lookups (HGETALL of a record) on a
//!   connection of their own with a reply parser for that one shape, on
//!   one server or a Sentinel master (TCP, Unix socket or TLS); redis-rs
//!   on a Cluster.
//!
//! Over 400 lines: the store's operations and the four job traits; it grew
//! with the change feed and the audit trail, and the trait impls are the
//! next split (`connect` already moved out: `target.rs` and `conn.rs`).

mod conn;
mod feed;
mod lazy;
mod pipe;
mod schema;
mod scripts;
mod sentinel;
mod target;
mod url;
mod watch;

pub use lazy::{connect_or_defer, LazyRedisStore};
pub use url::{
    parse_cluster_url, parse_sentinel_url, ClusterUrl, SentinelUrl, CLUSTER_DEFAULT_PORT,
    SENTINEL_DEFAULT_PORT,
};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ::redis::{Script, Value};

use super::{InvalidationSink, Listing, StoreError, StoreFuture};
use crate::keys::KeyHash;
use crate::keys::{AuditEntry, AuditPage, AuditQuery};
use crate::keys::{KeyRecord, KeyUsage, Timestamp, UsageDelta};
use conn::{Conn, Link};
use schema::{
    bytes_of, check_id, corrupt, hash_fields, list_items, parse_index, parse_record, parse_usage,
    record_fields, HashReply, Schema,
};
use scripts::{INSERT_LUA, REPLACE_LUA, USAGE_LUA};
use target::Plan;

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
    /// The connection: target, current server, command connection and
    /// generation.
    link: Arc<Link>,
    /// The key names this store uses.
    schema: Schema,
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

/// How to reach Redis, besides the URL: `[store]` in `gateway.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// The bound on every round trip.
    pub timeout: Duration,
    /// `MAXLEN ~` of every feed append (`[store] feed_max_len`).
    pub feed_max_len: u64,
    /// The CA bundle (PEM) a `rediss` server's certificate must chain to;
    /// `None`: the public (Mozilla) roots built in (webpki-roots).
    pub tls_ca: Option<PathBuf>,
    /// The environment variable holding the password (`[store]
    /// password_env`); the URL then must hold none.
    pub password_env: Option<String>,
}

impl RedisOptions {
    /// `timeout`, the default feed length, the built-in roots, no password
    /// variable.
    pub fn new(timeout: Duration) -> RedisOptions {
        RedisOptions {
            timeout,
            feed_max_len: DEFAULT_FEED_MAX_LEN,
            tls_ca: None,
            password_env: None,
        }
    }
}

/// Connects to `url` (`redis://[user:password@]host:port/db`,
/// `rediss://…` (TLS), `redis+unix:///socket`,
/// `redis[s]+sentinel://[user:password@]host:port,host:port/<master>[/<db>]`, or
/// `redis[s]+cluster://[user:password@]host:port,host:port/`) with `timeout` on
/// every round trip and the other options at their defaults.
///
/// With Sentinel, redis-rs asks the sentinels for the master of the set,
/// which must answer `ROLE` as a master; the credentials and the db are the
/// master's (sentinels are asked without credentials). When the master
/// stops answering, it is looked up again and every connection moves to
/// the new one.
///
/// With Cluster, the seed nodes are where the cluster client learns the
/// topology; it follows slot moves and failovers by itself.
///
/// Fails with [`StoreError::Unavailable`] if the URL is not supported or
/// the first connection cannot be made, so a misconfigured gateway says so
/// at start; later outages are survived (the connection is re-established
/// on demand).
pub async fn connect(url: &str, timeout: Duration) -> Result<RedisStore, StoreError> {
    connect_with(url, &RedisOptions::new(timeout)).await
}

/// [`connect`] with every option: the feed's length bound, the TLS roots,
/// the password variable.
pub async fn connect_with(url: &str, options: &RedisOptions) -> Result<RedisStore, StoreError> {
    let plan = Plan::new(url, options)?;
    let cluster = matches!(plan.target, conn::Target::Cluster { .. });
    let link = Link::open(
        plan.target,
        plan.shown_url,
        plan.password,
        plan.username,
        plan.tls,
        options.timeout,
    )
    .await?;
    Ok(RedisStore {
        inner: Arc::new(Inner {
            link,
            schema: if cluster {
                Schema::CLUSTER
            } else {
                Schema::PLAIN
            },
            insert: Script::new(INSERT_LUA),
            replace: Script::new(REPLACE_LUA),
            usage: Script::new(USAGE_LUA),
            feed_max_len: options.feed_max_len.max(1),
        }),
    })
}

/// Checks that `url` and `options` are ones [`connect_with`] can use,
/// without connecting: the same errors it gives for a bad URL, an unset
/// password variable or an unreadable CA file.
pub fn check_url(url: &str, options: &RedisOptions) -> Result<(), StoreError> {
    Plan::new(url, options).map(|_| ())
}

impl RedisStore {
    /// The command connection (a cheap clone).
    fn conn(&self) -> Conn {
        self.inner.link.conn()
    }

    /// One round trip under the timeout; see [`Link::run`].
    async fn run<T>(
        &self,
        op: &str,
        subject: &str,
        fut: impl std::future::Future<Output = ::redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        self.inner.link.run(op, subject, fut).await
    }

    /// One HGETALL of `key` as field → value; `subject` names the record in
    /// a `Corrupt` answer.
    async fn hgetall(&self, subject: &str, key: String) -> Result<HashReply, StoreError> {
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
        let prefix = self.inner.schema.key;
        let mut key = String::with_capacity(prefix.len() + hex.len());
        key.push_str(prefix);
        key.push_str(&hex);
        let fields = match self.inner.link.pipe_hgetall(&key, what).await {
            Some(fields) => fields?,
            None => self.hgetall(what, key).await?,
        };
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
