//! Key management: create, list, show, update, revoke, rotate.
//!
//! The one implementation behind both the `keys` CLI and the admin API, so
//! they cannot disagree. Input arrives as text (flags or JSON fields) and is
//! validated here, each error naming the field and the bad value; a key is
//! returned exactly once, from `create` and `rotate`.

use std::time::Duration;

use ipnet::IpNet;

use crate::keys::{
    new_key_id, parse_ip_or_cidr, valid_key_id, KeyRecord, KeyUsage, Scope, Timestamp,
};
use crate::keys::{ApiKey, Env};
use crate::store::{Store, StoreError};

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyOpError {
    /// No record with this id (a failure, never a silent success).
    #[error("no API key with id {0:?}")]
    NotFound(String),
    /// Bad input; `field` is the flag or JSON field.
    #[error("{field}: {message}")]
    Invalid {
        /// The field, as the caller spelled it (`scopes`, `allowed_ips`, …).
        field: &'static str,
        /// What is wrong, quoting the bad value.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The OS random source failed (no key can be made safely).
    #[error("cannot read the system random source: {0}")]
    Random(String),
    /// `keys create --count N` failed part-way.
    #[error("{source} ({made} of {count} keys were made before this failure)")]
    Partial {
        /// Keys made (and printed nowhere: the batch output is lost).
        made: u32,
        /// Keys asked for.
        count: u32,
        /// What stopped the batch.
        source: Box<KeyOpError>,
    },
}

fn invalid(field: &'static str, message: impl Into<String>) -> KeyOpError {
    KeyOpError::Invalid {
        field,
        message: message.into(),
    }
}

/// The error for an empty scope list (create, update and parsing alike).
fn no_scopes() -> KeyOpError {
    invalid(
        "scopes",
        "at least one scope is required (e.g. domains:read)",
    )
}

/// Parses scope texts; at least one is required.
pub fn parse_scopes(texts: &[String]) -> Result<Vec<Scope>, KeyOpError> {
    if texts.is_empty() {
        return Err(no_scopes());
    }
    let mut out: Vec<Scope> = Vec::with_capacity(texts.len());
    for t in texts {
        let s = Scope::parse(t).map_err(|m| invalid("scopes", m))?;
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

/// Parses allowed-IP entries (IPs or CIDRs).
pub fn parse_ips(texts: &[String]) -> Result<Vec<IpNet>, KeyOpError> {
    let mut out: Vec<IpNet> = Vec::with_capacity(texts.len());
    for t in texts {
        let n = parse_ip_or_cidr(t.trim()).map_err(|m| invalid("allowed_ips", m))?;
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

/// Parses `live` or `test`.
pub fn parse_env(text: &str) -> Result<Env, KeyOpError> {
    Env::parse(text).ok_or_else(|| {
        invalid(
            "env",
            format!("unknown env {text:?}: expected live or test"),
        )
    })
}

/// The longest duration a key input takes (`expires_in`, `grace`): 100
/// years (of 365.25 days), far inside what a timestamp can show.
pub const MAX_KEY_DURATION: Duration = Duration::from_secs(36_525 * 24 * 3600);

/// Parses a duration such as `30d`, `24h`, `90m`: at most
/// [`MAX_KEY_DURATION`].
pub fn parse_duration(field: &'static str, text: &str) -> Result<Duration, KeyOpError> {
    let d = crate::config::units::parse_duration(text).map_err(|m| invalid(field, m))?;
    if d > MAX_KEY_DURATION {
        return Err(invalid(
            field,
            format!("{text:?} is too long: at most 100 years (36525d)"),
        ));
    }
    Ok(d)
}

fn check_name(name: &str) -> Result<(), KeyOpError> {
    if name.trim().is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(invalid(
            "name",
            format!("invalid name {name:?}: 1–200 characters, no control characters"),
        ));
    }
    Ok(())
}

fn check_account(a: &str) -> Result<(), KeyOpError> {
    let ok = (1..=128).contains(&a.len())
        && a.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-:@".contains(&c));
    if !ok {
        return Err(invalid(
            "account",
            format!("invalid account {a:?}: 1–128 of [A-Za-z0-9_.-:@]"),
        ));
    }
    Ok(())
}

/// What a new key grants.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// Display name.
    pub name: String,
    /// Live or test.
    pub env: Env,
    /// Grants (validated).
    pub scopes: Vec<Scope>,
    /// IP restrictions (validated); empty means any.
    pub allowed_ips: Vec<IpNet>,
    /// Customer account.
    pub account: Option<String>,
    /// Lifetime from now.
    pub expires_in: Option<Duration>,
}

/// A key just made: the secret (shown once) and its record.
#[derive(Debug)]
pub struct Issued {
    /// The secret; print it once and forget it.
    pub key: ApiKey,
    /// What the store now holds.
    pub record: KeyRecord,
}

/// Changes to a key's grants; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// New name.
    pub name: Option<String>,
    /// New scopes (replace all).
    pub scopes: Option<Vec<Scope>>,
    /// New IP list (replace all; `Some(vec![])` clears it).
    pub allowed_ips: Option<Vec<IpNet>>,
}

/// The key operations over one store.
pub struct KeyService<'a> {
    store: &'a Store,
}

impl<'a> KeyService<'a> {
    /// Operations on `store`.
    pub fn new(store: &'a Store) -> KeyService<'a> {
        KeyService { store }
    }

    /// Makes a key, stores its record, returns the secret once.
    pub async fn create(&self, new: NewKey) -> Result<Issued, KeyOpError> {
        check_name(&new.name)?;
        if let Some(a) = &new.account {
            check_account(a)?;
        }
        if new.scopes.is_empty() {
            return Err(no_scopes());
        }
        if new.expires_in.is_some_and(|d| d.is_zero()) {
            return Err(invalid(
                "expires_in",
                "must be longer than 0s: a key born expired is useless",
            ));
        }
        let key = ApiKey::generate(new.env).map_err(|e| KeyOpError::Random(e.to_string()))?;
        let now = Timestamp::now();
        let record = KeyRecord {
            id: new_key_id().map_err(|e| KeyOpError::Random(e.to_string()))?,
            name: new.name,
            account: new.account,
            env: new.env,
            scopes: new.scopes,
            allowed_ips: new.allowed_ips,
            created_at: now,
            expires_at: new.expires_in.map(|d| now.plus(d)),
            revoked_at: None,
            hint: key.hint(),
        };
        self.store.insert(&key.hash(), &record).await?;
        Ok(Issued { key, record })
    }

    /// Every readable record (never a secret), and the records that could
    /// not be read, by id: one bad record hides no other.
    pub async fn list(&self) -> Result<crate::store::Listing, KeyOpError> {
        Ok(self.store.list_all().await?)
    }

    /// One record with its usage.
    pub async fn show(&self, id: &str) -> Result<(KeyRecord, KeyUsage), KeyOpError> {
        let record = self.get(id).await?;
        let usage = self.store.usage(id).await?;
        Ok((record, usage))
    }

    async fn get(&self, id: &str) -> Result<KeyRecord, KeyOpError> {
        if !valid_key_id(id) {
            return Err(KeyOpError::NotFound(id.to_owned()));
        }
        match self.store.get(id).await? {
            Some((_, r)) => Ok(r),
            None => Err(KeyOpError::NotFound(id.to_owned())),
        }
    }

    /// Applies changes; every gateway's cache learns of it like a revoke.
    pub async fn update(&self, id: &str, changes: Changes) -> Result<KeyRecord, KeyOpError> {
        let mut rec = self.get(id).await?;
        if let Some(n) = changes.name {
            check_name(&n)?;
            rec.name = n;
        }
        if let Some(s) = changes.scopes {
            if s.is_empty() {
                return Err(no_scopes());
            }
            rec.scopes = s;
        }
        if let Some(ips) = changes.allowed_ips {
            rec.allowed_ips = ips;
        }
        self.store.replace(&rec).await?;
        Ok(rec)
    }

    /// Revokes; revoking twice keeps the first time.
    pub async fn revoke(&self, id: &str) -> Result<KeyRecord, KeyOpError> {
        let mut rec = self.get(id).await?;
        if rec.revoked_at.is_none() {
            rec.revoked_at = Some(Timestamp::now());
        }
        // Replace even when already revoked: re-announcing is harmless and
        // heals a gateway that missed the first message.
        self.store.replace(&rec).await?;
        Ok(rec)
    }

    /// A new key with the same grants; the old one expires after `grace`
    /// (or keeps an earlier expiry).
    pub async fn rotate(&self, id: &str, grace: Duration) -> Result<Issued, KeyOpError> {
        let mut old = self.get(id).await?;
        if old.revoked_at.is_some() {
            return Err(invalid(
                "id",
                format!("key {id} is revoked; create a new key instead"),
            ));
        }
        let now = Timestamp::now();
        if old.expires_at.is_some_and(|t| t <= now) {
            return Err(invalid(
                "id",
                format!("key {id} has expired; create a new key instead"),
            ));
        }
        let key = ApiKey::generate(old.env).map_err(|e| KeyOpError::Random(e.to_string()))?;
        let record = KeyRecord {
            id: new_key_id().map_err(|e| KeyOpError::Random(e.to_string()))?,
            name: old.name.clone(),
            account: old.account.clone(),
            env: old.env,
            scopes: old.scopes.clone(),
            allowed_ips: old.allowed_ips.clone(),
            created_at: now,
            expires_at: old.expires_at,
            revoked_at: None,
            hint: key.hint(),
        };
        self.store.insert(&key.hash(), &record).await?;
        let grace_end = now.plus(grace);
        old.expires_at = Some(old.expires_at.map_or(grace_end, |t| t.min(grace_end)));
        self.store.replace(&old).await?;
        Ok(Issued { key, record })
    }
}

/// A record (and optionally usage and the new secret) as the CLI's `--json`
/// and the admin API both show it: one shape for both.
pub fn record_json(
    record: &crate::keys::KeyRecord,
    usage: Option<&crate::keys::KeyUsage>,
    key: Option<&crate::keys::ApiKey>,
) -> serde_json::Value {
    let mut v = serde_json::to_value(record).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        if let Some(u) = usage {
            obj.insert("usage".into(), serde_json::to_value(u).unwrap_or_default());
        }
        if let Some(k) = key {
            obj.insert(
                "key".into(),
                serde_json::Value::String(k.expose_secret().to_owned()),
            );
        }
    }
    v
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    fn new_key(scopes: &[&str]) -> NewKey {
        NewKey {
            name: "ci".into(),
            env: Env::Test,
            scopes: parse_scopes(&scopes.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap(),
            allowed_ips: vec![],
            account: Some("acct_1".into()),
            expires_in: None,
        }
    }

    #[tokio::test]
    async fn lifecycle() {
        let store = Store::new(MemoryStore::new());
        let svc = KeyService::new(&store);
        let issued = svc.create(new_key(&["domains:read"])).await.unwrap();
        let id = issued.record.id.clone();
        assert_eq!(
            store.lookup(&issued.key.hash()).await.unwrap().unwrap().id,
            id
        );
        let upd = svc
            .update(
                &id,
                Changes {
                    scopes: Some(parse_scopes(&["vps:*".into()]).unwrap()),
                    ..Changes::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(upd.scopes[0].to_string(), "vps:*");
        let rotated = svc.rotate(&id, Duration::from_secs(60)).await.unwrap();
        assert_ne!(rotated.record.id, id);
        assert_eq!(rotated.record.scopes, upd.scopes);
        let (old, _) = svc.show(&id).await.unwrap();
        assert!(old.expires_at.is_some());
        let rev = svc.revoke(&id).await.unwrap();
        assert!(rev.revoked_at.is_some());
        assert!(matches!(
            svc.revoke("key_nope").await,
            Err(KeyOpError::NotFound(_))
        ));
        assert!(matches!(
            svc.rotate(&id, Duration::from_secs(1)).await,
            Err(KeyOpError::Invalid { .. })
        ));
        assert_eq!(svc.list().await.unwrap().records.len(), 2);
    }

    #[test]
    fn bad_input_names_the_field_and_value() {
        let e = parse_scopes(&["domains:list".into()])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("scopes: ") && e.contains("domains:list"),
            "{e}"
        );
        let e = parse_ips(&["10.0.0.0/33".into()]).unwrap_err().to_string();
        assert!(
            e.starts_with("allowed_ips: ") && e.contains("10.0.0.0/33"),
            "{e}"
        );
        let e = parse_env("prod").unwrap_err().to_string();
        assert!(e.starts_with("env: ") && e.contains("prod"), "{e}");
        assert!(parse_scopes(&[]).is_err());
    }

    #[tokio::test]
    async fn a_key_born_expired_is_refused() {
        let store = Store::new(MemoryStore::new());
        let mut k = new_key(&["domains:read"]);
        k.expires_in = Some(Duration::ZERO);
        let e = KeyService::new(&store).create(k).await.unwrap_err();
        assert!(e.to_string().starts_with("expires_in: "), "{e}");
        assert!(store.list().await.unwrap().is_empty());
    }
}
