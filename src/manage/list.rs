//! Listing records and the audit trail: filters, statuses, cursors, pages.

use super::input::{check_account, invalid, parse_env};
use super::KeyOpError;
use crate::keys::{valid_key_id, AuditQuery, Env, KeyRecord, Timestamp};

/// Which records `list` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only this account's keys.
    pub account: Option<String>,
    /// Only this environment's keys.
    pub env: Option<Env>,
    /// Only keys in this state now.
    pub status: Option<Status>,
    /// At most this many (all when `None`).
    pub limit: Option<usize>,
    /// Only records after this one (the previous page's `next_cursor`).
    pub cursor: Option<ListCursor>,
}

/// A key's state at a moment: what `status` filters on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Neither revoked nor expired.
    Active,
    /// Revoked (whatever its expiry).
    Revoked,
    /// Expired and not revoked.
    Expired,
}

impl Status {
    /// The state of `r` at `now`.
    pub fn of(r: &KeyRecord, now: Timestamp) -> Status {
        if r.revoked_at.is_some() {
            Status::Revoked
        } else if r.expires_at.is_some_and(|t| t <= now) {
            Status::Expired
        } else {
            Status::Active
        }
    }

    /// `active`, `revoked` or `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Revoked => "revoked",
            Status::Expired => "expired",
        }
    }

    /// Parses `active`, `revoked` or `expired`.
    pub fn parse(text: &str) -> Result<Status, KeyOpError> {
        match text {
            "active" => Ok(Status::Active),
            "revoked" => Ok(Status::Revoked),
            "expired" => Ok(Status::Expired),
            _ => Err(invalid(
                "status",
                format!("unknown status {text:?}: expected active, revoked or expired"),
            )),
        }
    }
}

/// Where a page of records ends: records sort by creation time, then id.
/// Shown as `<created ms>.<id>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListCursor(pub Timestamp, pub String);

impl std::fmt::Display for ListCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0 .0, self.1)
    }
}

impl ListCursor {
    /// Parses what [`ListCursor`]'s `Display` wrote.
    pub fn parse(text: &str) -> Result<ListCursor, KeyOpError> {
        let bad = || {
            invalid(
                "cursor",
                format!("invalid cursor {text:?}: pass a next_cursor as returned"),
            )
        };
        let (ms, id) = text.split_once('.').ok_or_else(bad)?;
        if ms.is_empty() || ms.len() > 18 || !ms.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let ms: i64 = ms.parse().map_err(|_| bad())?;
        if !valid_key_id(id) {
            return Err(bad());
        }
        Ok(ListCursor(Timestamp(ms), id.to_owned()))
    }
}

/// Largest page `list` serves.
pub const LIST_MAX_LIMIT: usize = 1000;
/// The page size when only a cursor is given.
pub const LIST_DEFAULT_LIMIT: usize = 100;

/// Builds a list query from its text parts (flags or query parameters),
/// checking each; `limit` defaults to [`LIST_DEFAULT_LIMIT`] when only a
/// cursor is given. Returns the query and whether it asks for a page.
pub fn list_query(
    account: Option<&str>,
    env: Option<&str>,
    status: Option<&str>,
    limit: Option<&str>,
    cursor: Option<&str>,
) -> Result<(ListQuery, bool), KeyOpError> {
    if let Some(a) = account {
        check_account(a)?;
    }
    let paged = limit.is_some() || cursor.is_some();
    let query = ListQuery {
        account: account.map(str::to_owned),
        env: env.map(parse_env).transpose()?,
        status: status.map(Status::parse).transpose()?,
        limit: match limit {
            Some(l) => Some(parse_list_limit(l)?),
            None => paged.then_some(LIST_DEFAULT_LIMIT),
        },
        cursor: cursor.map(ListCursor::parse).transpose()?,
    };
    Ok((query, paged))
}

/// Parses a page size for `list` (1 to [`LIST_MAX_LIMIT`]).
pub fn parse_list_limit(text: &str) -> Result<usize, KeyOpError> {
    match text.parse::<usize>() {
        Ok(n) if (1..=LIST_MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(invalid(
            "limit",
            format!("invalid limit {text:?}: a whole number from 1 to {LIST_MAX_LIMIT}"),
        )),
    }
}

/// One page of records, in creation order.
#[derive(Debug, Default)]
pub struct ListPage {
    /// The records.
    pub records: Vec<KeyRecord>,
    /// Pass as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<ListCursor>,
    /// Records that could not be read, each naming its id: one bad record
    /// hides no other.
    pub corrupt: Vec<crate::store::StoreError>,
}

/// Page size of `audit` when none is given, and the largest one allowed.
pub const AUDIT_DEFAULT_LIMIT: usize = 50;
/// See [`AUDIT_DEFAULT_LIMIT`].
pub const AUDIT_MAX_LIMIT: usize = 1000;

/// Parses `--since`/`since`: an RFC 3339 time, or a duration back from now
/// (`24h`, `7d`).
pub fn parse_since(text: &str) -> Result<Timestamp, KeyOpError> {
    if let Ok(t) = Timestamp::parse(text) {
        return Ok(t);
    }
    match crate::config::units::parse_duration(text) {
        Ok(d) => Ok(Timestamp(
            Timestamp::now()
                .0
                .saturating_sub(d.as_millis().min(i64::MAX as u128) as i64),
        )),
        Err(_) => Err(invalid(
            "since",
            format!("invalid since {text:?}: an RFC 3339 time or a duration such as 24h"),
        )),
    }
}

/// Builds an audit query from its text parts, checking each.
pub fn audit_query(
    key: Option<&str>,
    since: Option<&str>,
    limit: Option<&str>,
    cursor: Option<&str>,
) -> Result<AuditQuery, KeyOpError> {
    let limit = match limit {
        None => AUDIT_DEFAULT_LIMIT,
        Some(t) => match t.parse::<usize>() {
            Ok(n) if (1..=AUDIT_MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(invalid(
                    "limit",
                    format!("invalid limit {t:?}: a whole number from 1 to {AUDIT_MAX_LIMIT}"),
                ))
            }
        },
    };
    if let Some(k) = key {
        if !valid_key_id(k) {
            return Err(invalid("key", format!("invalid key id {k:?}")));
        }
    }
    Ok(AuditQuery {
        key: key.map(str::to_owned),
        since: since.map(parse_since).transpose()?,
        limit,
        cursor: cursor
            .map(|c| c.parse().map_err(|m: String| invalid("cursor", m)))
            .transpose()?,
    })
}
