//! The audit trail's model: who changed which key, when, and how.
//!
//! An [`AuditEntry`] is written by the store together with the change it
//! describes (same Lua script, same file write), so a change and its entry
//! exist together or not at all. Entries are append-only and are read
//! newest first, in pages: an [`AuditId`] orders them and is the cursor.
//! An entry never holds a secret: `changes` names fields and their new
//! non-secret values (a key's hint, never the key).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::time::Timestamp;

/// Who made a change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "via", rename_all = "lowercase", deny_unknown_fields)]
pub enum Actor {
    /// The `keys` command line: the OS user and the host it ran on.
    Cli {
        /// `$USER` (or `$LOGNAME`), `unknown` when neither is set.
        user: String,
        /// The host name, `unknown` when it cannot be read.
        host: String,
    },
    /// The admin API: the admin token's configured name and the client.
    Api {
        /// `[admin] token_name` (default `admin`).
        token: String,
        /// The admin client's address.
        ip: IpAddr,
    },
    /// A program using the library directly (the demo, tests).
    Local {
        /// The OS user of the process.
        user: String,
        /// The host name.
        host: String,
    },
}

impl Actor {
    /// The `keys` command line as run by this process's OS user.
    pub fn cli() -> Actor {
        let (user, host) = os_user_and_host();
        Actor::Cli { user, host }
    }

    /// This process, not through the CLI or the API.
    pub fn local() -> Actor {
        let (user, host) = os_user_and_host();
        Actor::Local { user, host }
    }
}

/// `$USER` or `$LOGNAME`, and the host name (`$HOSTNAME`, else the kernel's).
fn os_user_and_host() -> (String, String) {
    let user = ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned());
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            ["/proc/sys/kernel/hostname", "/etc/hostname"]
                .iter()
                .find_map(|p| std::fs::read_to_string(p).ok())
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    (user, host)
}

/// What was done to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditAction {
    /// A new key (also the new key of a rotation, with `replaces`).
    Create,
    /// Name, scopes, allowed IPs, expiry or account changed.
    Update,
    /// Revoked.
    Revoke,
    /// Replaced by a new key (`replaced_by`); expires after the grace.
    Rotate,
}

/// Orders entries: `<ms>-<seq>`, like a Redis stream id (which it is, on
/// Redis). Strictly increasing within one store; the paging cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct AuditId(pub u64, pub u64);

impl AuditId {
    /// `0-0`: not written yet.
    pub fn is_unset(&self) -> bool {
        *self == AuditId(0, 0)
    }

    /// The id after `last` for an entry written at `now` (milliseconds).
    pub fn next_after(last: Option<AuditId>, now: Timestamp) -> AuditId {
        let ms = now.0.max(0) as u64;
        match last {
            Some(AuditId(l, seq)) if l >= ms => AuditId(l, seq + 1),
            _ => AuditId(ms, 0),
        }
    }
}

impl fmt::Display for AuditId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

impl FromStr for AuditId {
    type Err = String;
    fn from_str(s: &str) -> Result<AuditId, String> {
        let bad = || format!("invalid cursor {s:?}: expected <ms>-<seq> as returned");
        let (ms, seq) = s.split_once('-').ok_or_else(bad)?;
        let num = |t: &str| {
            if t.is_empty() || t.len() > 20 || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            t.parse::<u64>().map_err(|_| bad())
        };
        Ok(AuditId(num(ms)?, num(seq)?))
    }
}

impl Serialize for AuditId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AuditId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<AuditId, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One change to one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Assigned by the store when written; the paging cursor.
    #[serde(default, skip_serializing_if = "AuditId::is_unset")]
    pub id: AuditId,
    /// When the change was made (the writer's clock).
    pub time: Timestamp,
    /// Who made it.
    pub actor: Actor,
    /// What was done.
    pub action: AuditAction,
    /// The key it was done to.
    pub key_id: String,
    /// Fields changed and their new values (never a secret).
    pub changes: BTreeMap<String, serde_json::Value>,
}

impl AuditEntry {
    /// One JSON line (no id when not yet written).
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Which entries to read: newest first, at most `limit`, older than
/// `cursor`, about `key`, not before `since`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only entries about this key id.
    pub key: Option<String>,
    /// Only entries at or after this time.
    pub since: Option<Timestamp>,
    /// Page size (at least 1).
    pub limit: usize,
    /// Only entries older than this one (the previous page's `next_cursor`).
    pub cursor: Option<AuditId>,
}

impl AuditQuery {
    /// Does `e` pass the key and time filters?
    pub fn matches(&self, e: &AuditEntry) -> bool {
        self.key.as_ref().is_none_or(|k| *k == e.key_id) && self.since.is_none_or(|s| e.time >= s)
    }

    /// A page from entries in append order (oldest first): filters, then
    /// takes `limit` from the newest end.
    pub fn page_of<'a>(&self, all: impl DoubleEndedIterator<Item = &'a AuditEntry>) -> AuditPage {
        let mut entries = Vec::new();
        let mut more = false;
        for e in all.rev() {
            if self.cursor.is_some_and(|c| e.id >= c) {
                continue;
            }
            if self.since.is_some_and(|s| e.time < s) {
                break;
            }
            if !self.matches(e) {
                continue;
            }
            if entries.len() == self.limit.max(1) {
                more = true;
                break;
            }
            entries.push(e.clone());
        }
        AuditPage::new(entries, more)
    }
}

/// One page of the audit trail, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AuditPage {
    /// The entries.
    pub entries: Vec<AuditEntry>,
    /// Pass as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<AuditId>,
}

impl AuditPage {
    /// A page; `more` says older matching entries exist.
    pub fn new(entries: Vec<AuditEntry>, more: bool) -> AuditPage {
        let next_cursor = if more {
            entries.last().map(|e| e.id)
        } else {
            None
        };
        AuditPage {
            entries,
            next_cursor,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(n: u64, key: &str, t: i64) -> AuditEntry {
        AuditEntry {
            id: AuditId(n, 0),
            time: Timestamp(t),
            actor: Actor::Local {
                user: "u".into(),
                host: "h".into(),
            },
            action: AuditAction::Update,
            key_id: key.into(),
            changes: BTreeMap::new(),
        }
    }

    #[test]
    fn ids_order_parse_and_advance() {
        assert_eq!("12-3".parse::<AuditId>().unwrap(), AuditId(12, 3));
        for bad in ["", "12", "-1", "1-", "a-1", "1-2-3", "+1-2"] {
            assert!(bad.parse::<AuditId>().is_err(), "{bad}");
        }
        let a = AuditId::next_after(None, Timestamp(5));
        assert_eq!(a, AuditId(5, 0));
        assert_eq!(AuditId::next_after(Some(a), Timestamp(5)), AuditId(5, 1));
        // A clock that steps back never reorders the trail.
        assert_eq!(AuditId::next_after(Some(a), Timestamp(4)), AuditId(5, 1));
        assert_eq!(AuditId::next_after(Some(a), Timestamp(9)), AuditId(9, 0));
    }

    #[test]
    fn pages_are_newest_first_filtered_and_chained() {
        let all: Vec<AuditEntry> = (1..=5)
            .map(|n| entry(n, if n % 2 == 0 { "key_b" } else { "key_a" }, n as i64))
            .collect();
        let mut q = AuditQuery {
            limit: 2,
            ..AuditQuery::default()
        };
        let p = q.page_of(all.iter());
        let ids: Vec<u64> = p.entries.iter().map(|e| e.id.0).collect();
        assert_eq!(ids, [5, 4]);
        q.cursor = p.next_cursor;
        let p = q.page_of(all.iter());
        assert_eq!(p.entries.iter().map(|e| e.id.0).collect::<Vec<_>>(), [3, 2]);
        q.cursor = p.next_cursor;
        let p = q.page_of(all.iter());
        assert_eq!(p.entries.iter().map(|e| e.id.0).collect::<Vec<_>>(), [1]);
        assert_eq!(p.next_cursor, None);
        let q = AuditQuery {
            key: Some("key_a".into()),
            since: Some(Timestamp(2)),
            limit: 10,
            cursor: None,
        };
        let p = q.page_of(all.iter());
        assert_eq!(p.entries.iter().map(|e| e.id.0).collect::<Vec<_>>(), [5, 3]);
    }
}
