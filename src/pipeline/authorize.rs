//! The key decision: credential → format → lookup → expiry/revocation → IP
//! → scope, in exactly the contract's order (§6), first failure answers.
//!
//! Split in two so the cache-hit path can be measured alone:
//! [`parse_credential`] and [`check_grants`] are synchronous and pure;
//! [`authorize`] adds the (possibly async) cache lookup between them.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::GatewayError;
use crate::keys::ApiKey;
use crate::keys::{Scope, Timestamp};
use crate::lookup::cache::{CachedKey, KeyCache, Lookup};
use crate::pipeline::budget::{client_group, FailedLookups};
use crate::pipeline::credential::{self, Credential};
use crate::pipeline::head::Fields;

/// The caller, once the key has passed every check.
pub type Identity = Arc<CachedKey>;

/// Finds the single credential and checks its format (and checksum), so a
/// malformed key is refused before any lookup.
pub fn parse_credential<F: Fields>(
    headers: &F,
    query: Option<&str>,
    query_key: bool,
    verify_checksum: bool,
) -> Result<ApiKey, GatewayError> {
    let text = match credential::extract(headers, query, query_key)? {
        None => return Err(GatewayError::MissingApiKey),
        Some(Credential::Unusable) => return Err(GatewayError::InvalidApiKey),
        Some(Credential::Bearer(t)) => std::borrow::Cow::Borrowed(t),
        Some(Credential::Query(t)) => t,
    };
    ApiKey::parse(&text, verify_checksum).map_err(|_| GatewayError::InvalidApiKey)
}

/// Everything checked against a found record: expiry, revocation, IP, scope.
pub fn check_grants(
    key: &ApiKey,
    entry: &CachedKey,
    client_ip: IpAddr,
    required: Option<&Scope>,
    now: Timestamp,
) -> Result<(), GatewayError> {
    if entry.env != key.env() {
        // A record filed under this hash for the other environment is not
        // this key's record.
        return Err(GatewayError::InvalidApiKey);
    }
    if entry.expired_at(now) {
        return Err(GatewayError::ExpiredApiKey);
    }
    if entry.revoked_at(now) {
        return Err(GatewayError::RevokedApiKey);
    }
    if !entry.allowed_ips.is_empty() && !entry.allowed_ips.iter().any(|n| n.contains(&client_ip)) {
        return Err(GatewayError::IpNotAllowed);
    }
    if let Some(need) = required {
        if !entry.scopes.iter().any(|s| s.grants(need)) {
            return Err(GatewayError::InsufficientScope(need.clone()));
        }
    }
    Ok(())
}

/// A client IP's allowance of unknown keys (see `crate::pipeline::budget`).
#[derive(Clone, Copy)]
pub struct Budget<'a> {
    /// The per-IP counters.
    pub failures: &'a FailedLookups,
    /// Unknown keys allowed per window.
    pub limit: u32,
    /// The window.
    pub window: Duration,
    /// IPv6 clients are counted per prefix of this length.
    pub ipv6_prefix: u8,
}

/// A refused key decision, with the record when one was found: a key that
/// was identified (then expired, revoked, out of its IPs or scopes) is
/// attributable in the access log even though it was refused.
#[derive(Debug)]
pub struct Refusal {
    /// The answer to send.
    pub error: GatewayError,
    /// The key's record, when the lookup found this key's record.
    pub identity: Option<Identity>,
}

impl From<GatewayError> for Refusal {
    fn from(error: GatewayError) -> Refusal {
        Refusal {
            error,
            identity: None,
        }
    }
}

/// The whole decision for a non-public route. `client_ip` must be
/// canonical; `now` is the wall clock (expiry), `clock` the monotonic one
/// (the cached record's age), both read once by the caller.
#[allow(clippy::too_many_arguments)]
pub async fn authorize(
    cache: &KeyCache,
    budget: Budget<'_>,
    key: &ApiKey,
    client_ip: IpAddr,
    required: Option<&Scope>,
    now: Timestamp,
    clock: Instant,
) -> Result<Identity, Refusal> {
    let hash = key.hash();
    let entry = match cache.get_fresh(&hash, clock) {
        Some(e) => e,
        None => {
            // A key the cache holds (past `ttl`, being refreshed), or has
            // seen valid (before a flush, an eviction), is known, not
            // guessed: only lookups of other keys are subject to, and
            // charged to, the client's budget.
            let guessed = !cache.known(&hash);
            let group = client_group(client_ip, budget.ipv6_prefix);
            if guessed {
                if let Some(retry) = budget.failures.check(group, budget.limit, budget.window) {
                    // Refused before any lookup: the key is not identified.
                    return Err(GatewayError::RateLimited(retry).into());
                }
            }
            match cache.get(&hash).await {
                Ok(Lookup::Found(e)) => e,
                Ok(Lookup::Unknown) => {
                    if guessed {
                        budget.failures.record_failure(group);
                    }
                    return Err(GatewayError::InvalidApiKey.into());
                }
                Err(e) => {
                    return Err(GatewayError::KeyStoreUnavailable {
                        retry_after: Duration::from_secs(1),
                        source: e,
                    }
                    .into())
                }
            }
        }
    };
    match check_grants(key, &entry, client_ip, required, now) {
        Ok(()) => Ok(entry),
        // A record of the other environment is not this key's record.
        Err(error @ GatewayError::InvalidApiKey) => Err(error.into()),
        Err(error) => Err(Refusal {
            error,
            identity: Some(entry),
        }),
    }
}
