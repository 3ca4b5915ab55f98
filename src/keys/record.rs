//! Key records: what the store knows about a key, never the key itself.
//!
//! A record is looked up by the key's SHA-256 ([`crate::keys::api_key::KeyHash`]) and
//! names the key by a public `id`. Scopes and allowed IPs are parsed once
//! here, so the request path only compares.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::keys::api_key::Env;

/// What a request does to a resource; decides the scope it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// GET, HEAD, OPTIONS.
    Read,
    /// POST, PUT, PATCH.
    Write,
    /// DELETE.
    Delete,
}

impl Action {
    /// The word used in scopes.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
            Action::Delete => "delete",
        }
    }
}

/// A grant (`domains:read`, `vps:*`, `*`) or a requirement (`domains:read`).
///
/// `None` in a part means `*`. Actions are independent: `write` does not
/// imply `read`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scope {
    resource: Option<Box<str>>,
    action: Option<Action>,
}

impl Scope {
    /// A concrete requirement, as routes compute them.
    pub fn new(resource: &str, action: Action) -> Scope {
        Scope {
            resource: Some(resource.into()),
            action: Some(action),
        }
    }

    /// Parses `*`, `resource:action`, `resource:*` or `*:action`. The error
    /// quotes the bad value so CLI and API messages can name it.
    pub fn parse(text: &str) -> Result<Scope, String> {
        if text == "*" {
            return Ok(Scope {
                resource: None,
                action: None,
            });
        }
        let Some((res, act)) = text.split_once(':') else {
            return Err(format!(
                "invalid scope {text:?}: expected resource:action (action read, write, delete or *) or *"
            ));
        };
        let resource = match res {
            "*" => None,
            r if !r.is_empty()
                && r.bytes().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-'
                }) =>
            {
                Some(r.into())
            }
            _ => {
                return Err(format!(
                    "invalid scope {text:?}: resource must match [a-z0-9_-]+ or be *"
                ))
            }
        };
        let action = match act {
            "*" => None,
            "read" => Some(Action::Read),
            "write" => Some(Action::Write),
            "delete" => Some(Action::Delete),
            _ => {
                return Err(format!(
                    "invalid scope {text:?}: action must be read, write, delete or *"
                ))
            }
        };
        Ok(Scope { resource, action })
    }

    /// Does this grant cover `required`? A wildcard requirement is covered
    /// only by a wildcard grant.
    pub fn grants(&self, required: &Scope) -> bool {
        (self.resource.is_none() || self.resource == required.resource)
            && (self.action.is_none() || self.action == required.action)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.resource, self.action) {
            (None, None) => f.write_str("*"),
            (r, a) => write!(
                f,
                "{}:{}",
                r.as_deref().unwrap_or("*"),
                a.map_or("*", Action::as_str)
            ),
        }
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Scope, D::Error> {
        let s = String::deserialize(d)?;
        Scope::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Parses an allowed-IP entry: a single address (a /32 or /128) or a CIDR.
/// IPv4-mapped IPv6 is turned into IPv4, because client addresses are too;
/// host bits after the prefix are cleared.
pub fn parse_ip_or_cidr(text: &str) -> Result<IpNet, String> {
    let bad = || format!("invalid IP or CIDR {text:?}");
    let net = if text.contains('/') {
        text.parse::<IpNet>().map_err(|_| bad())?
    } else {
        IpNet::from(text.parse::<IpAddr>().map_err(|_| bad())?)
    };
    Ok(canonical_net(net))
}

fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if let Some(v4) = v6.addr().to_ipv4_mapped() {
            if v6.prefix_len() >= 96 {
                if let Ok(n) = ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96) {
                    return IpNet::V4(n.trunc());
                }
            }
        }
    }
    net.trunc()
}

/// Canonical client address: IPv4-mapped IPv6 becomes IPv4 (so IPv4 CIDRs
/// match it; ipnet's cross-family `contains` is always false).
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A point in time, in whole milliseconds since the Unix epoch; shown as
/// RFC 3339 (UTC) wherever a person or another program reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Timestamp {
        Timestamp::from_system(SystemTime::now())
    }

    /// Converts, clamping times before 1970 to the epoch.
    pub fn from_system(t: SystemTime) -> Timestamp {
        Timestamp(
            t.duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        )
    }

    /// Back to `SystemTime`, for formatting.
    pub fn to_system(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0.max(0) as u64)
    }

    /// `self + d`, saturating.
    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(d.as_millis().min(i64::MAX as u128) as i64),
        )
    }

    /// Parses RFC 3339 (`2026-11-27T13:47:00Z`, fractional seconds allowed).
    pub fn parse(text: &str) -> Result<Timestamp, String> {
        humantime::parse_rfc3339_weak(text.trim_end_matches('Z'))
            .map(Timestamp::from_system)
            .map_err(|e| format!("invalid timestamp {text:?}: {e}"))
    }

    /// The UTC day, `YYYY-MM-DD`, for daily usage counters.
    pub fn day(self) -> String {
        let s = self.to_string();
        s[..10].to_owned()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 % 1000 == 0 {
            write!(f, "{}", humantime::format_rfc3339_seconds(self.to_system()))
        } else {
            write!(f, "{}", humantime::format_rfc3339_millis(self.to_system()))
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Everything the gateway and the CLI know about one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// Public, stable name of the key: CLI argument and `X-Osir-Key-Id`.
    pub id: String,
    /// What the owner called it ("CI deploys").
    pub name: String,
    /// The customer account, forwarded as `X-Osir-Account` when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Live or test; also encoded in the key itself.
    pub env: Env,
    /// Grants checked against each route's required scope.
    pub scopes: Vec<Scope>,
    /// Where the key may be used from; empty means anywhere.
    #[serde(default)]
    pub allowed_ips: Vec<IpNet>,
    /// When the key was issued.
    pub created_at: Timestamp,
    /// From this moment the key answers `expired_api_key`.
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    /// Set once revoked; never cleared.
    #[serde(default)]
    pub revoked_at: Option<Timestamp>,
    /// `osir_live_…o5p6`, so people can tell keys apart without the secret.
    pub hint: String,
}

/// Makes a new public key id: `key_` and 20 random base-36 characters.
pub fn new_key_id() -> Result<String, getrandom::Error> {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut id = String::with_capacity(24);
    id.push_str("key_");
    let mut pool = [0u8; 64];
    while id.len() < 24 {
        getrandom::getrandom(&mut pool)?;
        for &r in &pool {
            if r < 252 && id.len() < 24 {
                id.push(ALPHABET[(r % 36) as usize] as char);
            }
        }
    }
    Ok(id)
}

/// Is this a plausible key id (for early, clear CLI/API errors)?
pub fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// Usage of one key, as `keys show` and the admin API report it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyUsage {
    /// Last request seen by any gateway (flushed in batches).
    pub last_used_at: Option<Timestamp>,
    /// Client IP of that request.
    pub last_ip: Option<IpAddr>,
    /// All requests ever counted.
    pub total: u64,
    /// Requests per UTC day, `YYYY-MM-DD` → count.
    pub daily: BTreeMap<String, u64>,
}

/// One gateway's usage of one key since its last flush.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageDelta {
    /// Key id.
    pub id: String,
    /// Requests per UTC day in this batch.
    pub daily: BTreeMap<String, u64>,
    /// Latest request in this batch.
    pub last_used_at: Timestamp,
    /// Its client IP.
    pub last_ip: IpAddr,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_display_and_grant() {
        for s in ["*", "domains:read", "vps:*", "*:read", "billing:delete"] {
            assert_eq!(Scope::parse(s).unwrap().to_string(), s);
        }
        for bad in [
            "",
            "domains",
            "domains:",
            ":read",
            "Domains:read",
            "domains:list",
            "a:b:c",
            "dom ains:read",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad:?}");
        }
        let need = Scope::new("domains", Action::Read);
        assert!(Scope::parse("domains:read").unwrap().grants(&need));
        assert!(Scope::parse("domains:*").unwrap().grants(&need));
        assert!(Scope::parse("*").unwrap().grants(&need));
        assert!(!Scope::parse("domains:write").unwrap().grants(&need));
        assert!(!Scope::parse("vps:read").unwrap().grants(&need));
        assert!(!Scope::parse("domain:read").unwrap().grants(&need));
    }

    #[test]
    fn ip_entries_are_canonical() {
        assert_eq!(
            parse_ip_or_cidr("1.2.3.4").unwrap().to_string(),
            "1.2.3.4/32"
        );
        assert_eq!(
            parse_ip_or_cidr("10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_ip_or_cidr("::ffff:1.2.3.4").unwrap().to_string(),
            "1.2.3.4/32"
        );
        assert_eq!(
            parse_ip_or_cidr("::ffff:10.0.0.0/104").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_ip_or_cidr("2001:db8::/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        for bad in ["", "1.2.3", "10.0.0.0/33", "fe80::1%eth0", "host.example"] {
            assert!(parse_ip_or_cidr(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn timestamps_roundtrip_as_rfc3339() {
        let t = Timestamp(1_795_000_000_123);
        let s = t.to_string();
        assert!(s.ends_with('Z'), "{s}");
        assert_eq!(Timestamp::parse(&s).unwrap(), t);
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(Timestamp(0).day(), "1970-01-01");
        assert!(Timestamp::parse("yesterday").is_err());
    }

    #[test]
    fn ids_are_valid() {
        let id = new_key_id().unwrap();
        assert!(id.starts_with("key_") && id.len() == 24 && valid_key_id(&id));
        assert!(!valid_key_id("key 1") && !valid_key_id(""));
    }
}
