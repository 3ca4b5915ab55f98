//! The store's schema: key names, and how a record and its usage are laid
//! out as hash fields and read back. Everything read from Redis passes
//! through here and is checked: a bad reply or field becomes
//! [`StoreError::Corrupt`] naming the record and the field, so the store
//! operations never see unchecked data.

use std::net::IpAddr;

use ::redis::Value;

use crate::keys::{parse_ip_or_cidr, valid_key_id, KeyRecord, KeyUsage, Scope, Timestamp};
use crate::keys::{AuditEntry, AuditId, Env, KeyHash};
use crate::store::StoreError;

/// The names of the schema's keys. A store uses [`Schema::PLAIN`], or
/// [`Schema::CLUSTER`] with a Cluster, where every key a script touches must
/// hash to one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Schema {
    /// Prefix of a record: `<key><sha256 hex>`.
    pub(super) key: &'static str,
    /// Prefix of the id index: `<id><id>`.
    pub(super) id: &'static str,
    /// The set of ids.
    pub(super) ids: &'static str,
    /// Prefix of a usage hash: `<usage><id>`.
    pub(super) usage: &'static str,
    /// The audit trail: a STREAM, one `entry` field (JSON) per change.
    pub(super) audit: &'static str,
    /// The change feed: a stream every write appends to.
    pub(super) changes: &'static str,
}

impl Schema {
    pub(super) const PLAIN: Schema = Schema {
        key: "osir:key:",
        id: "osir:id:",
        ids: "osir:ids",
        usage: "osir:usage:",
        audit: "osir:audit",
        changes: "osir:changes",
    };
    /// Everything under the hash tag `{osir}`: one slot.
    pub(super) const CLUSTER: Schema = Schema {
        key: "{osir}:key:",
        id: "{osir}:id:",
        ids: "{osir}:ids",
        usage: "{osir}:usage:",
        audit: "{osir}:audit",
        changes: "{osir}:changes",
    };
}

pub(super) fn corrupt(what: &str, reason: String) -> StoreError {
    StoreError::Corrupt {
        what: what.to_owned(),
        reason,
    }
}

pub(super) fn bytes_of(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

pub(super) fn list_items(v: Value) -> Result<Vec<Value>, String> {
    match v {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        _ => Err("unexpected reply type".into()),
    }
}

/// HGETALL's reply (flat array in RESP2, map in RESP3) as field → value.
/// An HGETALL reply: field and value pairs in reply order (a Redis hash
/// holds each field once). Read by linear search: a record has about fifteen
/// fields, and comparing a name (length first) is cheaper than hashing it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct HashReply(Vec<(Vec<u8>, Vec<u8>)>);

impl HashReply {
    /// The value of `name`.
    pub(super) fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(k, _)| k.as_slice() == name)
            .map(|(_, v)| v.as_slice())
    }

    /// No fields: the hash does not exist.
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every field and value.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.0.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))
    }
}

impl FromIterator<(Vec<u8>, Vec<u8>)> for HashReply {
    fn from_iter<I: IntoIterator<Item = (Vec<u8>, Vec<u8>)>>(iter: I) -> Self {
        HashReply(iter.into_iter().collect())
    }
}

pub(super) fn hash_fields(v: Value) -> Result<HashReply, String> {
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
pub(super) fn parse_index(prefix: &str, id: &str, v: Value) -> Result<Option<KeyHash>, StoreError> {
    let Some(bytes) = bytes_of(v) else {
        return Ok(None);
    };
    std::str::from_utf8(&bytes)
        .ok()
        .and_then(KeyHash::from_hex)
        .map(Some)
        .ok_or_else(|| corrupt(id, format!("{prefix}{id}: not a lowercase sha256 hex")))
}

pub(super) fn check_id(id: &str, record: &KeyRecord) -> Result<(), StoreError> {
    if record.id == id {
        Ok(())
    } else {
        Err(corrupt(id, format!("id: the record says {:?}", record.id)))
    }
}

/// A record as HSET field/value pairs, and the optional fields it lacks (to
/// HDEL on replace). Lists are space-separated; times are Unix milliseconds.
pub(super) fn record_fields(r: &KeyRecord) -> (Vec<(&'static str, String)>, Vec<&'static str>) {
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
        ("replaces", r.replaces.clone()),
        ("replaced_by", r.replaced_by.clone()),
    ];
    for (field, value) in optional {
        match value {
            Some(v) => set.push((field, v)),
            None => absent.push(field),
        }
    }
    (set, absent)
}

struct Fields<'a>(&'a HashReply);

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

    /// An optional key id linking to another record.
    fn link(&self, name: &str) -> Result<Option<String>, String> {
        match self.opt(name)? {
            Some(id) if !valid_key_id(id) => Err(format!("{name}: not a valid key id")),
            other => Ok(other.map(str::to_owned)),
        }
    }

    fn time(&self, name: &str) -> Result<Option<Timestamp>, String> {
        self.opt(name)?
            .map(|s| match s.parse::<i64>().map(Timestamp) {
                Ok(t) if t.in_range() => Ok(t),
                Ok(_) => Err(format!(
                    "{name}: out of range (Unix ms from 0 to {})",
                    Timestamp::MAX.0
                )),
                Err(_) => Err(format!("{name}: not a whole number of milliseconds")),
            })
            .transpose()
    }
}

pub(super) fn parse_record(raw: &HashReply) -> Result<KeyRecord, String> {
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
        replaces: f.link("replaces")?,
        replaced_by: f.link("replaced_by")?,
    })
}

/// XREVRANGE's reply as entries, their ids taken from the stream.
pub(super) fn audit_items(v: Value) -> Result<Vec<AuditEntry>, String> {
    let mut out = Vec::new();
    for item in list_items(v)? {
        let mut parts = list_items(item)?.into_iter();
        let (Some(id), Some(fields), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err("unexpected stream entry shape".into());
        };
        let id = bytes_of(id)
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or("stream entry id: not text")?;
        let id: AuditId = id.parse().map_err(|e| format!("stream entry id: {e}"))?;
        let fields = list_items(fields)?;
        let mut json = None;
        for pair in fields.chunks(2) {
            if let [k, v] = pair {
                if bytes_of(k.clone()).as_deref() == Some(b"entry") {
                    json = bytes_of(v.clone());
                }
            }
        }
        let json = json.ok_or_else(|| format!("audit entry {id}: no entry field"))?;
        let mut entry: AuditEntry =
            serde_json::from_slice(&json).map_err(|e| format!("audit entry {id}: {e}"))?;
        entry.id = id;
        out.push(entry);
    }
    Ok(out)
}

pub(super) fn parse_usage(raw: &HashReply) -> Result<KeyUsage, String> {
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
    for (k, v) in raw.iter() {
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
    fn cluster_keys_share_one_hash_tag() {
        // Every key a script touches shares the cluster schema's hash tag.
        for prefix in [
            Schema::CLUSTER.key,
            Schema::CLUSTER.id,
            Schema::CLUSTER.ids,
            Schema::CLUSTER.usage,
            Schema::CLUSTER.audit,
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
            replaces: Some("key_old".into()),
            replaced_by: None,
        }
    }

    fn as_raw(set: &[(&str, String)]) -> HashReply {
        set.iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    impl HashReply {
        fn set(&mut self, k: &[u8], v: &[u8]) {
            self.remove(k);
            self.0.push((k.to_vec(), v.to_vec()));
        }

        fn remove(&mut self, k: &[u8]) {
            self.0.retain(|(n, _)| n.as_slice() != k);
        }
    }

    #[test]
    fn records_roundtrip_through_fields() {
        let r = sample();
        let (set, absent) = record_fields(&r);
        assert_eq!(absent, vec!["revoked_at", "replaced_by"]);
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
            raw.set(field.as_bytes(), value);
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
}
