//! Key records: what the store knows about a key, never the key itself.
//!
//! A record is looked up by the key's SHA-256 ([`crate::keys::KeyHash`]) and
//! names the key by a public `id`. Scopes and allowed IPs are parsed once
//! (see [`crate::keys::scope`], [`crate::keys::ip`]), so the request path
//! only compares.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::api_key::Env;
use super::scope::Scope;
use super::time::Timestamp;

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
    /// The key this one was rotated from (set on the new record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
    /// The key this one was rotated to (set on the old record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<String>,
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
    fn ids_are_valid() {
        let id = new_key_id().unwrap();
        assert!(id.starts_with("key_") && id.len() == 24 && valid_key_id(&id));
        assert!(!valid_key_id("key 1") && !valid_key_id(""));
    }
}
