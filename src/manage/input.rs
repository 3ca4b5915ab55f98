//! Key-management input, as text from flags or JSON fields, checked here
//! once for the CLI and the admin API alike: each error names the field
//! and quotes the bad value.

use std::time::Duration;

use ipnet::IpNet;

use super::KeyOpError;
use crate::keys::{parse_ip_or_cidr, Env, Scope};

pub(super) fn invalid(field: &'static str, message: impl Into<String>) -> KeyOpError {
    KeyOpError::Invalid {
        field,
        message: message.into(),
    }
}

/// The error for an empty scope list (create, update and parsing alike).
pub(super) fn no_scopes() -> KeyOpError {
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

pub(super) fn check_name(name: &str) -> Result<(), KeyOpError> {
    if name.trim().is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(invalid(
            "name",
            format!("invalid name {name:?}: 1–200 characters, no control characters"),
        ));
    }
    Ok(())
}

pub(super) fn check_account(a: &str) -> Result<(), KeyOpError> {
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
