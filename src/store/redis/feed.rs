//! Reading the change feed, the stream every write script appends to
//! (`scripts.rs`): entry ids and their order, what `XINFO STREAM` says about
//! trimming, one bounded blocking read, and the rights a gateway needs,
//! checked with real harmless commands so a refusal names the command and
//! the ACL rule to add. The watcher in `watch.rs` drives these.
//!
//! Over 400 lines: the feed's positions, its bounded read and the permission
//! probes with their ACL messages belong together.

use std::time::Duration;

use ::redis::{RedisError, Value};

use super::conn::Conn;
use super::schema::{bytes_of, list_items};
use super::RedisStore;
use crate::keys::{KeyHash, Timestamp};

/// How long one `XREAD` blocks on the server when nothing changes.
pub(super) const BLOCK: Duration = Duration::from_millis(250);

/// Entries per read: a gateway far behind catches up in steps this big.
pub(super) const COUNT: usize = 500;

/// How long the watcher waits for a blocking read's answer before it takes
/// the connection for silent (bytes dropped, no reset) and replaces it: the
/// block plus at most 300 ms of round trip, so a black-holed connection is
/// replaced well within the contract's one second.
pub(super) fn read_deadline(timeout: Duration) -> Duration {
    BLOCK + timeout.min(Duration::from_millis(300))
}

/// A stream entry id, `<ms>-<seq>`, ordered as Redis orders them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct EntryId {
    ms: u64,
    seq: u64,
}

impl EntryId {
    /// Parses `<ms>-<seq>` (or a bare `<ms>`).
    pub(super) fn parse(text: &[u8]) -> Option<EntryId> {
        let text = std::str::from_utf8(text).ok()?;
        let (ms, seq) = text.split_once('-').unwrap_or((text, "0"));
        Some(EntryId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// What `XINFO STREAM` says about the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FeedInfo {
    /// The newest id ever added (also after it was trimmed).
    pub(super) last: EntryId,
    /// The newest id ever deleted by `XDEL` (Redis 7; trimming does not
    /// move it).
    pub(super) max_deleted: Option<EntryId>,
    /// The oldest entry still there, if any.
    pub(super) first: Option<EntryId>,
    /// How many entries are there.
    pub(super) length: u64,
    /// How many were ever added (Redis 7).
    pub(super) added: Option<u64>,
}

impl FeedInfo {
    /// Were entries after `pos` deleted before this gateway read them?
    /// Trimming removes the oldest entries, so they were if the oldest entry
    /// left is after `pos` (the entry at `pos` is gone, and with it, but
    /// for the rare case where the oldest left is its very successor, some
    /// after it), if the feed is empty although entries after `pos` were
    /// added, or if one after `pos` was deleted by hand (`XDEL`).
    pub(super) fn trimmed_past(&self, pos: EntryId) -> bool {
        let deleted = self.max_deleted.is_some_and(|d| d > pos);
        if pos == EntryId::default() {
            // Started on a feed that did not exist yet: every entry was
            // added since, so one is missing if fewer are left than were added.
            return deleted || self.added.is_some_and(|added| added > self.length);
        }
        let trimmed = match self.first {
            Some(first) => first > pos,
            None => self.length == 0 && self.last > pos,
        };
        deleted || trimmed
    }
}

/// One change read from the feed.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Change {
    /// A record changed; `at` is the writer's clock for a replace.
    One(KeyHash, Option<Timestamp>),
    /// `h *`: someone edited Redis by hand and asks for a flush.
    All,
    /// An entry this build cannot read: it may have been about any key.
    Unreadable,
}

/// A feed entry: its id and what it says.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) id: EntryId,
    pub(super) change: Change,
}

/// The rules a gateway's Redis user needs, as `ACL SETUSER` arguments
/// (`docs/store.md` lists the whole set).
struct Rights {
    feed: String,
    records: String,
    usage: String,
}

impl RedisStore {
    /// A connection of the feed's own: a blocking read would stall every
    /// other command on a shared one.
    pub(super) async fn open_feed(&self) -> Result<Conn, String> {
        let link = &self.inner.link;
        link.open_feed(read_deadline(link.timeout)).await
    }

    fn scrubbed(&self, e: &RedisError) -> String {
        self.inner.link.scrubbed(e)
    }

    fn rights(&self) -> Rights {
        let s = self.inner.schema;
        Rights {
            feed: format!("+xread +xinfo|stream %R~{}", s.changes),
            records: format!("+hgetall %R~{}*", s.key),
            usage: format!(
                "+evalsha +eval +script|load +hincrby +hget +hset %RW~{}*",
                s.usage
            ),
        }
    }

    /// A refused or failed command as one clear line: a `NOPERM` names the
    /// user, the command and the rule to add.
    fn refusal(&self, what: &str, cmd: &str, rule: &str, e: &RedisError) -> String {
        let msg = self.scrubbed(e);
        if e.code() == Some("NOPERM") || msg.contains("NOPERM") {
            let user = self.inner.link.username.as_deref().unwrap_or("default");
            format!(
                "redis user {user} may not {what}: {cmd} was refused ({msg}); \
                 add `ACL SETUSER {user} {rule}` (see docs/store.md)"
            )
        } else {
            format!("cannot {what}: {cmd} failed: {msg}")
        }
    }

    /// Runs one command on `conn` under the store timeout.
    async fn ask(&self, conn: &mut Conn, cmd: &::redis::Cmd) -> Result<Value, Failure> {
        match tokio::time::timeout(self.inner.link.timeout, cmd.query_async::<Value>(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Failure::Error(e)),
            Err(_) => Err(Failure::TimedOut),
        }
    }

    /// Proves, on the feed's connection, that this user may read records and
    /// read the feed: `HGETALL` of a record no key hashes to, and
    /// `XINFO STREAM` of the feed, whose answer is returned (`None`: no
    /// feed yet, nothing was ever written).
    pub(super) async fn check_rights(&self, conn: &mut Conn) -> Result<Option<FeedInfo>, String> {
        let rights = self.rights();
        let probe = format!("{}probe", self.inner.schema.key);
        let mut cmd = ::redis::cmd("HGETALL");
        cmd.arg(&probe);
        self.ask(conn, &cmd)
            .await
            .map_err(|f| f.explain(self, "read key records", "HGETALL", &rights.records))?;
        let info = self.feed_info(conn).await?;
        let mut cmd = ::redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(1)
            .arg("STREAMS")
            .arg(self.inner.schema.changes)
            .arg(info.map_or(EntryId::default(), |i| i.last).to_string());
        self.ask(conn, &cmd)
            .await
            .map_err(|f| f.explain(self, "read the change feed", "XREAD", &rights.feed))?;
        Ok(info)
    }

    /// `XINFO STREAM` of the feed; `None` when the stream does not exist.
    pub(super) async fn feed_info(&self, conn: &mut Conn) -> Result<Option<FeedInfo>, String> {
        let mut cmd = ::redis::cmd("XINFO");
        cmd.arg("STREAM").arg(self.inner.schema.changes);
        match self.ask(conn, &cmd).await {
            Ok(v) => parse_info(v).map(Some),
            Err(Failure::Error(e)) if no_such_key(&e) => Ok(None),
            Err(f) => Err(f.explain(
                self,
                "read the change feed",
                "XINFO STREAM",
                &self.rights().feed,
            )),
        }
    }

    /// One blocking read of the entries after `after`: empty when nothing
    /// changed within [`BLOCK`]. `Err` when it failed, or when no answer came
    /// within [`read_deadline`] (the connection is then taken for silent).
    pub(super) async fn read_feed(
        &self,
        conn: &mut Conn,
        after: EntryId,
    ) -> Result<Vec<Entry>, String> {
        let mut cmd = ::redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(COUNT)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(self.inner.schema.changes)
            .arg(after.to_string());
        let deadline = read_deadline(self.inner.link.timeout);
        match tokio::time::timeout(deadline, cmd.query_async::<Value>(conn)).await {
            Ok(Ok(v)) => parse_read(v),
            Ok(Err(e)) => Err(self.refusal("read the change feed", "XREAD", &self.rights().feed, &e)),
            Err(_) => Err(format!(
                "the feed connection went silent (no answer to a {BLOCK:?} blocking read within {deadline:?})"
            )),
        }
    }

    /// Proves this user may write usage counters: the usage script, run on
    /// a probe hash no key id can name (ids have no `.`), adding nothing.
    pub(super) async fn check_usage_right(&self) -> Result<(), String> {
        let mut inv = self.inner.usage.prepare_invoke();
        inv.key(format!("{}.probe", self.inner.schema.usage))
            .arg(0)
            .arg("probe")
            .arg(0)
            .arg(0);
        let mut conn = self.conn();
        match tokio::time::timeout(self.inner.link.timeout, inv.invoke_async::<i64>(&mut conn))
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.refusal(
                "write usage counters",
                "EVALSHA (the usage script)",
                &self.rights().usage,
                &e,
            )),
            Err(_) => Err(format!(
                "cannot write usage counters: timed out after {:?}",
                self.inner.link.timeout
            )),
        }
    }
}

/// A command that failed: with an error, or by not answering in time.
enum Failure {
    Error(RedisError),
    TimedOut,
}

impl Failure {
    fn explain(&self, store: &RedisStore, what: &str, cmd: &str, rule: &str) -> String {
        match self {
            Failure::Error(e) => store.refusal(what, cmd, rule, e),
            Failure::TimedOut => format!(
                "cannot {what}: {cmd} timed out after {:?}",
                store.inner.link.timeout
            ),
        }
    }
}

fn no_such_key(e: &RedisError) -> bool {
    e.to_string().to_ascii_lowercase().contains("no such key")
}

fn text_of(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::VerbatimString { text, .. } => Some(text.into_bytes()),
        other => bytes_of(other),
    }
}

/// `XINFO STREAM`'s reply (pairs in RESP2, a map in RESP3).
fn parse_info(v: Value) -> Result<FeedInfo, String> {
    let pairs: Vec<(Value, Value)> = match v {
        Value::Map(pairs) => pairs,
        Value::Array(items) => {
            let mut it = items.into_iter();
            let mut pairs = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            pairs
        }
        _ => return Err("XINFO STREAM: unexpected reply".into()),
    };
    let mut info = FeedInfo {
        last: EntryId::default(),
        max_deleted: None,
        first: None,
        length: 0,
        added: None,
    };
    let mut has_last = false;
    for (k, v) in pairs {
        match text_of(k).as_deref() {
            Some(b"last-generated-id") => {
                info.last = text_of(v)
                    .and_then(|raw| EntryId::parse(&raw))
                    .ok_or("XINFO STREAM: unreadable last-generated-id")?;
                has_last = true;
            }
            Some(b"length") => {
                info.length = match v {
                    Value::Int(n) => u64::try_from(n).unwrap_or(0),
                    other => text_of(other)
                        .and_then(|t| std::str::from_utf8(&t).ok()?.parse().ok())
                        .unwrap_or(0),
                };
            }
            Some(b"entries-added") => {
                info.added = match v {
                    Value::Int(n) => u64::try_from(n).ok(),
                    _ => None,
                };
            }
            Some(b"max-deleted-entry-id") => {
                info.max_deleted = text_of(v).and_then(|raw| EntryId::parse(&raw));
            }
            Some(b"first-entry") => {
                if let Value::Array(mut entry) = v {
                    if !entry.is_empty() {
                        info.first =
                            text_of(entry.swap_remove(0)).and_then(|raw| EntryId::parse(&raw));
                    }
                }
            }
            _ => {}
        }
    }
    if !has_last {
        return Err("XINFO STREAM: no last-generated-id".into());
    }
    Ok(info)
}

/// `XREAD`'s reply: nil (nothing within the block), or per stream its
/// entries (RESP2: `[[stream, [[id, [field, value, …]], …]]]`; RESP3: a
/// map from stream to entries).
fn parse_read(v: Value) -> Result<Vec<Entry>, String> {
    let streams: Vec<Value> = match v {
        Value::Nil => return Ok(Vec::new()),
        Value::Map(pairs) => pairs.into_iter().map(|(_, entries)| entries).collect(),
        Value::Array(items) => items
            .into_iter()
            .filter_map(|s| match s {
                Value::Array(mut kv) if kv.len() == 2 => kv.pop(),
                _ => None,
            })
            .collect(),
        _ => return Err("XREAD: unexpected reply".into()),
    };
    let mut out = Vec::new();
    for entries in streams {
        for entry in list_items(entries).map_err(|e| format!("XREAD: {e}"))? {
            let Value::Array(mut parts) = entry else {
                return Err("XREAD: an entry is not an array".into());
            };
            if parts.len() != 2 {
                return Err("XREAD: an entry is not [id, fields]".into());
            }
            let fields = parts.pop().map(list_items).unwrap_or(Ok(Vec::new()));
            let id = parts
                .pop()
                .and_then(text_of)
                .and_then(|raw| EntryId::parse(&raw))
                .ok_or("XREAD: an entry without a readable id")?;
            let change = match fields {
                Ok(fields) => parse_change(fields),
                Err(_) => Change::Unreadable,
            };
            out.push(Entry { id, change });
        }
    }
    Ok(out)
}

/// An entry's fields: `h` (a hash hex or `*`) and, optionally, `at`.
fn parse_change(fields: Vec<Value>) -> Change {
    let mut hash = None;
    let mut at = None;
    let mut it = fields.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        match (text_of(k).as_deref(), text_of(v)) {
            (Some(b"h"), Some(v)) => hash = Some(v),
            (Some(b"at"), Some(v)) => at = Some(v),
            _ => {}
        }
    }
    let Some(hash) = hash else {
        return Change::Unreadable;
    };
    if hash == b"*" {
        return Change::All;
    }
    let Some(hash) = std::str::from_utf8(&hash)
        .ok()
        .and_then(|h| KeyHash::from_hex(&h.to_ascii_lowercase()))
    else {
        return Change::Unreadable;
    };
    match at {
        None => Change::One(hash, None),
        Some(at) => match std::str::from_utf8(&at)
            .ok()
            .and_then(|t| t.parse::<u64>().ok())
            .and_then(|ms| i64::try_from(ms).ok())
        {
            Some(ms) => Change::One(hash, Some(Timestamp(ms))),
            None => Change::Unreadable,
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn entry_ids_order_like_redis() {
        let a = EntryId::parse(b"1700000000000-5").unwrap();
        let b = EntryId::parse(b"1700000000000-12").unwrap();
        let c = EntryId::parse(b"1700000000001").unwrap();
        assert!(a < b && b < c);
        assert_eq!(a.to_string(), "1700000000000-5");
        for bad in ["", "x-1", "1-", "-1", "1-2-3", "99999999999999999999-0"] {
            assert!(EntryId::parse(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_trim_past_the_position_is_detected() {
        let id = |s: &str| EntryId::parse(s.as_bytes()).unwrap();
        // XDEL by hand of 5-0.
        let info = FeedInfo {
            last: id("9-0"),
            max_deleted: Some(id("5-0")),
            first: Some(id("3-0")),
            length: 4,
            added: Some(5),
        };
        assert!(!info.trimmed_past(id("5-0")));
        assert!(!info.trimmed_past(id("7-0")));
        assert!(info.trimmed_past(id("4-9")));
        // Trimmed to 6-0..9-0: a reader at 5-0 or before missed entries.
        let info = FeedInfo {
            last: id("9-0"),
            max_deleted: Some(id("0-0")),
            first: Some(id("6-0")),
            length: 4,
            added: Some(9),
        };
        assert!(!info.trimmed_past(id("6-0")));
        assert!(!info.trimmed_past(id("9-0")));
        assert!(info.trimmed_past(id("4-0")));
        // Trimmed to nothing.
        let empty = FeedInfo {
            first: None,
            length: 0,
            ..info
        };
        assert!(!empty.trimmed_past(id("9-0")));
        assert!(empty.trimmed_past(id("8-0")));
        // A reader that started before the feed existed.
        let fresh = FeedInfo {
            max_deleted: None,
            first: Some(id("6-0")),
            length: 2,
            added: Some(2),
            ..info
        };
        assert!(!fresh.trimmed_past(EntryId::default()));
        let lost = FeedInfo {
            added: Some(3),
            ..fresh
        };
        assert!(lost.trimmed_past(EntryId::default()));
    }

    #[test]
    fn reads_are_parsed_and_bad_entries_flush() {
        let hex = "ab".repeat(32);
        let entry = |id: &str, fields: &[&str]| {
            Value::Array(vec![
                bulk(id),
                Value::Array(fields.iter().map(|f| bulk(f)).collect()),
            ])
        };
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("osir:changes"),
            Value::Array(vec![
                entry("1-0", &["h", &hex]),
                entry(
                    "2-0",
                    &["h", &hex.to_ascii_uppercase(), "at", "1700000000123"],
                ),
                entry("3-0", &["h", "*"]),
                entry("4-0", &["h", "nonsense"]),
                entry("5-0", &["x", "y"]),
                entry("6-0", &["h", &hex, "at", "-5"]),
            ]),
        ])]);
        let got = parse_read(reply).unwrap();
        let hash = KeyHash::from_hex(&hex).unwrap();
        let changes: Vec<_> = got.iter().map(|e| &e.change).collect();
        assert_eq!(
            changes,
            vec![
                &Change::One(hash, None),
                &Change::One(hash, Some(Timestamp(1_700_000_000_123))),
                &Change::All,
                &Change::Unreadable,
                &Change::Unreadable,
                &Change::Unreadable,
            ]
        );
        assert_eq!(got[5].id, EntryId::parse(b"6-0").unwrap());
        assert!(parse_read(Value::Nil).unwrap().is_empty());
    }

    #[test]
    fn xinfo_gives_the_last_and_max_deleted_ids() {
        let reply = Value::Array(vec![
            bulk("length"),
            Value::Int(2),
            bulk("last-generated-id"),
            bulk("10-1"),
            bulk("max-deleted-entry-id"),
            bulk("3-0"),
            bulk("first-entry"),
            Value::Nil,
        ]);
        let info = parse_info(reply).unwrap();
        assert_eq!(info.last, EntryId::parse(b"10-1").unwrap());
        assert_eq!(info.max_deleted, EntryId::parse(b"3-0"));
        assert_eq!((info.first, info.length), (None, 2));
    }
}
