//! Key management: create, list, show, update, revoke, rotate.
//!
//! The one implementation behind both the `keys` CLI and the admin API, so
//! they cannot disagree. Input arrives as text (flags or JSON fields) and is
//! validated here, each error naming the field and the bad value; a key is
//! returned exactly once, from `create` and `rotate`.
//!
//! Every change is audited: the store writes an [`AuditEntry`] (who, what,
//! which fields, never a secret) in the same atomic write as the change,
//! and the entry goes to the diagnostics log as one JSON line at info,
//! target `audit`.
//!
//! Input parsing is [`input`]; listing, paging and audit queries [`list`].
//! This file, the operations themselves and their audit entries, runs past
//! 400 lines only with its unit tests.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ipnet::IpNet;

use crate::keys::{new_key_id, valid_key_id, KeyRecord, KeyUsage, Scope, Timestamp};
use crate::keys::{Actor, AuditAction, AuditEntry, AuditPage, AuditQuery};
use crate::keys::{ApiKey, Env};
use crate::store::{Store, StoreError};

mod input;
mod list;

pub use input::*;
use input::{check_account, check_name, invalid, no_scopes};
pub use list::*;

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
    /// An update that changes nothing (a usage error: CLI exit 2, API 400).
    #[error("nothing to change: give at least one of {0}")]
    NothingToChange(&'static str),
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
    /// A listing in which some records could not be read: `listed` holds
    /// the readable ones, as the command prints them; each bad one was
    /// named on stderr.
    #[error("{count} key record(s) could not be read")]
    Unreadable {
        /// The output for the readable records.
        listed: String,
        /// How many could not be read.
        count: usize,
    },
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
    /// New lifetime from now; `Some(None)` removes the expiry.
    pub expires_in: Option<Option<Duration>>,
    /// New account; `Some(None)` removes it.
    pub account: Option<Option<String>>,
}

impl Changes {
    /// Nothing would change.
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.scopes.is_none()
            && self.allowed_ips.is_none()
            && self.expires_in.is_none()
            && self.account.is_none()
    }
}

/// The key operations over one store, made by one actor.
pub struct KeyService<'a> {
    store: &'a Store,
    /// Named in the audit entry of every change.
    actor: Actor,
    /// The resources routes name; a new scope must name one of them (or
    /// `*`). `None`: not checked (library callers, `--allow-unknown-scope`).
    resources: Option<BTreeSet<String>>,
}

/// What the audit trail says about a record's fields (never a secret).
fn record_changes(r: &KeyRecord) -> BTreeMap<String, serde_json::Value> {
    let mut v = match serde_json::to_value(r) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    v.remove("id");
    v.remove("created_at");
    v.into_iter().collect()
}

/// The fields that differ between `old` and `new`, with their new values
/// (`null` for a field cleared).
fn diff(old: &KeyRecord, new: &KeyRecord) -> BTreeMap<String, serde_json::Value> {
    let (a, b) = (record_changes(old), record_changes(new));
    let mut out = BTreeMap::new();
    for (k, v) in &b {
        if a.get(k) != Some(v) {
            out.insert(k.clone(), v.clone());
        }
    }
    for k in a.keys() {
        if !b.contains_key(k) {
            out.insert(k.clone(), serde_json::Value::Null);
        }
    }
    out
}

impl<'a> KeyService<'a> {
    /// Operations on `store`, audited as this process ([`Actor::local`]).
    pub fn new(store: &'a Store) -> KeyService<'a> {
        KeyService::as_actor(store, Actor::local())
    }

    /// Operations on `store`, audited as `actor`.
    pub fn as_actor(store: &'a Store, actor: Actor) -> KeyService<'a> {
        KeyService {
            store,
            actor,
            resources: None,
        }
    }

    /// Refuses new scopes whose resource is not in `resources` (the ones
    /// routes name), listing the known ones; `None` checks nothing.
    pub fn known_resources(mut self, resources: Option<BTreeSet<String>>) -> KeyService<'a> {
        self.resources = resources;
        self
    }

    fn check_scopes(&self, scopes: &[Scope]) -> Result<(), KeyOpError> {
        // A config with no private route (one used only to manage keys)
        // names no resource: nothing to check against.
        let Some(known) = self.resources.as_ref().filter(|k| !k.is_empty()) else {
            return Ok(());
        };
        for s in scopes {
            if let Some(r) = s.resource() {
                if !known.contains(r) {
                    let list: Vec<&str> = known.iter().map(String::as_str).collect();
                    return Err(invalid(
                        "scopes",
                        format!(
                            "no route names the resource {r:?} (in {s}); known resources: {}",
                            list.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn entry(
        &self,
        action: AuditAction,
        key_id: &str,
        changes: BTreeMap<String, serde_json::Value>,
    ) -> AuditEntry {
        AuditEntry {
            id: Default::default(),
            time: Timestamp::now(),
            actor: self.actor.clone(),
            action,
            key_id: key_id.to_owned(),
            changes,
        }
    }

    /// Inserts with its audit entry, then logs the entry.
    async fn insert(
        &self,
        hash: &crate::keys::KeyHash,
        r: &KeyRecord,
        e: AuditEntry,
    ) -> Result<(), KeyOpError> {
        self.store.insert_audited(hash, r, &e).await?;
        log_audit(&e);
        Ok(())
    }

    /// Replaces with its audit entry, then logs the entry.
    async fn replace(&self, r: &KeyRecord, e: AuditEntry) -> Result<(), KeyOpError> {
        self.store.replace_audited(r, &e).await?;
        log_audit(&e);
        Ok(())
    }

    /// One page of the audit trail, newest first.
    pub async fn audit(&self, query: &AuditQuery) -> Result<AuditPage, KeyOpError> {
        Ok(self.store.audit(query).await?)
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
        self.check_scopes(&new.scopes)?;
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
            replaces: None,
            replaced_by: None,
        };
        let e = self.entry(AuditAction::Create, &record.id, record_changes(&record));
        self.insert(&key.hash(), &record, e).await?;
        Ok(Issued { key, record })
    }

    /// Every readable record (never a secret), and the records that could
    /// not be read, by id: one bad record hides no other.
    pub async fn list(&self) -> Result<crate::store::Listing, KeyOpError> {
        Ok(self.store.list_all().await?)
    }

    /// The records `query` selects, in creation order, one page.
    pub async fn list_page(&self, query: &ListQuery) -> Result<ListPage, KeyOpError> {
        let now = Timestamp::now();
        let listing = self.store.list_all().await?;
        let mut records: Vec<KeyRecord> = listing
            .records
            .into_iter()
            .filter(|r| {
                query
                    .account
                    .as_ref()
                    .is_none_or(|a| r.account.as_ref() == Some(a))
                    && query.env.is_none_or(|e| r.env == e)
                    && query.status.is_none_or(|s| Status::of(r, now) == s)
                    && query
                        .cursor
                        .as_ref()
                        .is_none_or(|c| (r.created_at, &r.id) > (c.0, &c.1))
            })
            .collect();
        let mut next_cursor = None;
        if let Some(limit) = query.limit {
            if records.len() > limit {
                records.truncate(limit);
                next_cursor = records
                    .last()
                    .map(|r| ListCursor(r.created_at, r.id.clone()));
            }
        }
        Ok(ListPage {
            records,
            next_cursor,
            corrupt: listing.corrupt,
        })
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
        if changes.is_empty() {
            return Err(KeyOpError::NothingToChange(
                "name, scopes, allowed_ips, expires_in, account",
            ));
        }
        let mut rec = self.get(id).await?;
        let before = rec.clone();
        if let Some(n) = changes.name {
            check_name(&n)?;
            rec.name = n;
        }
        if let Some(s) = changes.scopes {
            if s.is_empty() {
                return Err(no_scopes());
            }
            self.check_scopes(&s)?;
            rec.scopes = s;
        }
        if let Some(ips) = changes.allowed_ips {
            rec.allowed_ips = ips;
        }
        if let Some(exp) = changes.expires_in {
            if exp.is_some_and(|d| d.is_zero()) {
                return Err(invalid(
                    "expires_in",
                    "must be longer than 0s (revoke a key to stop it now)",
                ));
            }
            rec.expires_at = exp.map(|d| Timestamp::now().plus(d));
        }
        if let Some(account) = changes.account {
            if let Some(a) = &account {
                check_account(a)?;
            }
            rec.account = account;
        }
        let e = self.entry(AuditAction::Update, id, diff(&before, &rec));
        self.replace(&rec, e).await?;
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
        let mut changes = BTreeMap::new();
        changes.insert(
            "revoked_at".to_owned(),
            serde_json::to_value(rec.revoked_at).unwrap_or_default(),
        );
        let e = self.entry(AuditAction::Revoke, id, changes);
        self.replace(&rec, e).await?;
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
            replaces: Some(old.id.clone()),
            replaced_by: None,
        };
        let e = self.entry(AuditAction::Create, &record.id, record_changes(&record));
        self.insert(&key.hash(), &record, e).await?;
        let before = old.clone();
        let grace_end = now.plus(grace);
        old.expires_at = Some(old.expires_at.map_or(grace_end, |t| t.min(grace_end)));
        old.replaced_by = Some(record.id.clone());
        let e = self.entry(AuditAction::Rotate, &old.id, diff(&before, &old));
        self.replace(&old, e).await?;
        Ok(Issued { key, record })
    }
}

/// One audit entry as one JSON line in the diagnostics log.
fn log_audit(e: &AuditEntry) {
    tracing::info!(target: "audit", "{}", e.to_json_line());
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
