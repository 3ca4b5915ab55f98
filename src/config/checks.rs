//! Checks of single values, free of any `Validator` state: listener
//! overlap, names, Redis and upstream URLs, route prefixes, methods and
//! scopes. Each returns what is wrong as a message; the caller attaches the
//! field's path. Kept apart so each rule can be read, and tested, on its
//! own.

use std::net::{IpAddr, SocketAddr};

use http::uri::{Authority, Scheme};
use http::Method;
use ipnet::IpNet;

use super::UpstreamUrl;

/// Whether two listeners would fight over the same port. Port 0 (pick any) never
/// clashes; an unspecified IP clashes with every address of its family, and `[::]`
/// with IPv4 too because Linux binds it dual-stack by default.
pub(super) fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() != b.port() || a.port() == 0 {
        return false;
    }
    let (x, y) = (a.ip(), b.ip());
    if x.is_ipv4() == y.is_ipv4() {
        x == y || x.is_unspecified() || y.is_unspecified()
    } else {
        (x.is_ipv6() && x.is_unspecified()) || (y.is_ipv6() && y.is_unspecified())
    }
}

pub(super) fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(super) fn is_resource_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Checks the scheme and that something follows it: the redis client parses
/// the rest of a `redis://` or `rediss://` URL; a `redis[s]+sentinel://` URL
/// is parsed whole (at least one sentinel and a master name), and so is a
/// `redis[s]+cluster://` one (at least one seed node). The URL is never
/// quoted back because it may hold a password.
pub(super) fn check_redis_url(url: &str) -> Result<(), String> {
    const SCHEMES: [&str; 8] = [
        "redis",
        "rediss",
        "redis+unix",
        "unix",
        "redis+sentinel",
        "rediss+sentinel",
        "redis+cluster",
        "rediss+cluster",
    ];
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("must be a URL such as \"redis://127.0.0.1:6379/0\"".to_owned());
    };
    if !SCHEMES.contains(&scheme) {
        return Err(format!(
            "unsupported scheme {scheme:?}; use redis://, rediss://, redis+unix://, redis[s]+sentinel:// or redis[s]+cluster://"
        ));
    }
    if rest.is_empty() {
        return Err(format!(
            "nothing follows {scheme}://; expected a host such as {scheme}://127.0.0.1:6379/0"
        ));
    }
    if url.contains("#insecure") {
        return Err(
            "#insecure (no certificate check) is not supported; give the CA with store.tls_ca"
                .to_owned(),
        );
    }
    if scheme.ends_with("+sentinel") {
        crate::store::redis::parse_sentinel_url(url)?;
    }
    if scheme.ends_with("+cluster") {
        crate::store::redis::parse_cluster_url(url)?;
    }
    Ok(())
}

/// Whether a redis URL's userinfo holds a password (`user:password@`, or
/// `:password@`).
pub(super) fn url_has_password(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    authority
        .rfind('@')
        .and_then(|at| authority[..at].split_once(':'))
        .is_some_and(|(_, pass)| !pass.is_empty())
}

/// A CIDR, or a bare IP meaning just that host (/32 or /128).
pub(super) fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

pub(super) fn placeholder_url() -> UpstreamUrl {
    UpstreamUrl {
        scheme: Scheme::HTTP,
        authority: Authority::from_static("invalid"),
        base_path: String::new(),
    }
}

/// Parses an upstream base. Userinfo is rejected before parsing so that a
/// credential-bearing URL is never echoed into an error message or log.
pub(super) fn parse_upstream_url(text: &str) -> Result<UpstreamUrl, String> {
    let after_scheme = text.split_once("://").map_or(text, |(_, rest)| rest);
    let authority_end = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    if after_scheme[..authority_end].contains('@') {
        return Err(
            "must not contain userinfo (user:password@); upstream credentials are not supported"
                .to_owned(),
        );
    }
    if text.contains('#') {
        return Err(format!("{text:?} must not have a fragment"));
    }
    let uri: http::Uri = text
        .parse()
        .map_err(|err| format!("invalid URL {text:?}: {err}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err("only http:// upstreams are supported".to_owned()),
        Some(other) => {
            return Err(format!(
                "unsupported scheme {other:?}; only http:// upstreams are supported"
            ))
        }
        None => {
            return Err(format!(
                "{text:?} is not an absolute URL; expected http://host[:port][/path]"
            ))
        }
    }
    let authority = match uri.authority() {
        Some(a) if !a.host().is_empty() => a.clone(),
        _ => return Err(format!("{text:?} has no host")),
    };
    // `Authority` keeps an out-of-range port as text, so check it here.
    let after_host = authority.as_str().strip_prefix(authority.host());
    if let Some(port) = after_host.and_then(|rest| rest.strip_prefix(':')) {
        if !port.parse::<u16>().is_ok_and(|p| p > 0) {
            return Err(format!("{text:?} has an invalid port; expected 1-65535"));
        }
    }
    if uri.query().is_some() {
        return Err(format!("{text:?} must not have a query"));
    }
    let base_path = uri.path().trim_end_matches('/');
    if base_path.contains("//") || base_path.split('/').any(|s| s == "." || s == "..") {
        return Err(format!(
            "{text:?} must not have empty, \".\" or \"..\" path segments"
        ));
    }
    Ok(UpstreamUrl {
        scheme: Scheme::HTTP,
        authority,
        base_path: base_path.to_owned(),
    })
}

/// Route prefixes obey the same rules as the request paths they are matched
/// against, so a prefix that no checked request path could ever equal is an error
/// instead of a silently dead route.
pub(super) fn check_prefix(prefix: &str) -> Result<(), String> {
    if !prefix.starts_with('/') {
        return Err("must start with \"/\"".to_owned());
    }
    if prefix.len() > 1 && prefix.ends_with('/') {
        return Err(
            "must not end with \"/\" (prefixes already match on segment boundaries)".to_owned(),
        );
    }
    if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".to_owned());
    }
    if !prefix.is_ascii() {
        return Err(
            "must be ASCII (request paths are matched as sent, percent-encoded)".to_owned(),
        );
    }
    if let Some(c) = prefix.chars().find(|c| "%;\\?#".contains(*c)) {
        return Err(format!("must not contain {c:?}"));
    }
    if prefix.contains("//") {
        return Err("must not contain empty segments (\"//\")".to_owned());
    }
    if prefix.split('/').any(|s| s == "." || s == "..") {
        return Err("must not contain \".\" or \"..\" segments".to_owned());
    }
    if prefix.split('/').any(|s| s.ends_with('.')) {
        return Err(
            "must not have a segment ending in \".\" (request paths with one are refused)"
                .to_owned(),
        );
    }
    Ok(())
}

/// The methods a scope override may name, in the order overrides are listed.
pub(super) const METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::OPTIONS,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

/// Any case is accepted in the file; the canonical method is stored.
pub(super) fn parse_method(key: &str) -> Option<Method> {
    METHODS
        .into_iter()
        .find(|m| m.as_str().eq_ignore_ascii_case(key))
}
