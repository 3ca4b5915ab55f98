//! Finding the one credential a request carries, and removing it.
//!
//! Exactly one credential or a refusal: two Authorization headers, two
//! `api_key` parameters, or a header and a parameter are ambiguous (400),
//! never "take the first". The `api_key` parameter is recognised by its
//! decoded name (`api%5Fkey` too), so no spelling of it can slip through to
//! the upstream, and it is stripped even when `auth.query_key` is off.

use std::borrow::Cow;

use crate::error::GatewayError;
use crate::http1::field::Known;
use crate::http1::head::trim;
use crate::pipeline::head::Fields;

/// The credential as sent; still untrusted text.
#[derive(Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    /// `Authorization: Bearer <token>`.
    Bearer(&'a str),
    /// `?api_key=<token>` (decoded).
    Query(Cow<'a, str>),
    /// Something was sent that cannot be a key (other scheme, non-ASCII,
    /// empty): answered `invalid_api_key`.
    Unusable,
}

/// Looks at the Authorization headers and the query and returns the single
/// credential, `None` when there is none, or `AmbiguousCredentials`.
pub fn extract<'a, F: Fields>(
    headers: &'a F,
    query: Option<&'a str>,
    query_key: bool,
) -> Result<Option<Credential<'a>>, GatewayError> {
    let mut auth = headers.values(Known::Authorization);
    let header = auth.next();
    if auth.next().is_some() {
        return Err(GatewayError::AmbiguousCredentials);
    }
    let mut from_query = None;
    if query_key {
        for (_, value) in query.into_iter().flat_map(key_params) {
            if from_query.is_some() {
                return Err(GatewayError::AmbiguousCredentials);
            }
            from_query = Some(value);
        }
    }
    match (header, from_query) {
        (Some(_), Some(_)) => Err(GatewayError::AmbiguousCredentials),
        (Some(h), None) => Ok(Some(parse_authorization(h))),
        (None, Some(v)) => Ok(Some(
            match percent_encoding::percent_decode_str(v).decode_utf8() {
                Ok(s) if !s.is_empty() => Credential::Query(s),
                _ => Credential::Unusable,
            },
        )),
        (None, None) => Ok(None),
    }
}

/// `Bearer <token>` (any case of the scheme), the token ASCII and not
/// empty; anything else cannot be a key.
fn parse_authorization(value: &[u8]) -> Credential<'_> {
    let Some(space) = memchr::memchr(b' ', value) else {
        return Credential::Unusable;
    };
    if !value[..space].eq_ignore_ascii_case(b"bearer") {
        return Credential::Unusable;
    }
    let token = trim(&value[space + 1..]);
    if token.is_empty() || !token.is_ascii() {
        return Credential::Unusable;
    }
    match std::str::from_utf8(token) {
        Ok(t) => Credential::Bearer(t),
        Err(_) => Credential::Unusable,
    }
}

/// Query pieces whose decoded name is `api_key`, with their raw value.
fn key_params(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query.split('&').filter_map(|piece| {
        let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
        is_key_param(name).then_some((piece, value))
    })
}

pub use crate::keys::is_key_param;

/// The query without any `api_key` piece, everything else byte for byte and
/// in order. Borrowed when there was nothing to remove; `None` when nothing
/// is left.
pub fn strip_key_param(query: &str) -> Option<Cow<'_, str>> {
    if !query
        .split('&')
        .any(|p| is_key_param(p.split_once('=').map_or(p, |(n, _)| n)))
    {
        return if query.is_empty() {
            None
        } else {
            Some(Cow::Borrowed(query))
        };
    }
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !is_key_param(p.split_once('=').map_or(p, |(n, _)| n)))
        .collect();
    if kept.is_empty() {
        None
    } else {
        Some(Cow::Owned(kept.join("&")))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http::header::AUTHORIZATION;
    use http::HeaderMap;

    fn hm(auth: &[&str]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for a in auth {
            m.append(AUTHORIZATION, a.parse().unwrap());
        }
        m
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for h in ["Bearer abc", "bearer abc", "BEARER  abc ", "bEaReR abc"] {
            assert_eq!(
                extract(&hm(&[h]), None, true).unwrap(),
                Some(Credential::Bearer("abc"))
            );
        }
    }

    #[test]
    fn other_schemes_and_junk_are_unusable() {
        for h in [
            "Basic YWxhZGRpbjpvcGVu",
            "Bearer",
            "Bearer ",
            "Token abc",
            "abc",
        ] {
            assert_eq!(
                extract(&hm(&[h]), None, true).unwrap(),
                Some(Credential::Unusable),
                "{h}"
            );
        }
        let mut m = HeaderMap::new();
        m.insert(
            AUTHORIZATION,
            http::HeaderValue::from_bytes(b"Bearer \xc3\xa9").unwrap(),
        );
        assert_eq!(extract(&m, None, true).unwrap(), Some(Credential::Unusable));
    }

    #[test]
    fn ambiguity_is_refused() {
        let two = hm(&["Bearer a", "Bearer b"]);
        assert_eq!(
            extract(&two, None, true),
            Err(GatewayError::AmbiguousCredentials)
        );
        let one = hm(&["Bearer a"]);
        assert_eq!(
            extract(&one, Some("api_key=b"), true),
            Err(GatewayError::AmbiguousCredentials)
        );
        let none = hm(&[]);
        assert_eq!(
            extract(&none, Some("api_key=a&api_key=b"), true),
            Err(GatewayError::AmbiguousCredentials)
        );
        assert_eq!(
            extract(&none, Some("api_key=a&api%5Fkey=b"), true),
            Err(GatewayError::AmbiguousCredentials)
        );
        // With query keys off the parameter is not a credential at all.
        assert_eq!(
            extract(&one, Some("api_key=b"), false).unwrap(),
            Some(Credential::Bearer("a"))
        );
    }

    #[test]
    fn query_keys_are_found_and_decoded() {
        let none = hm(&[]);
        assert_eq!(
            extract(&none, Some("a=1&api_key=k%65y&b=2"), true).unwrap(),
            Some(Credential::Query(Cow::Borrowed("key")))
        );
        assert_eq!(
            extract(&none, Some("api_key="), true).unwrap(),
            Some(Credential::Unusable)
        );
        assert_eq!(
            extract(&none, Some("api_key"), true).unwrap(),
            Some(Credential::Unusable)
        );
        assert_eq!(extract(&none, Some("xapi_key=1"), true).unwrap(), None);
        assert_eq!(extract(&none, None, true).unwrap(), None);
    }

    #[test]
    fn stripping_keeps_the_rest_byte_for_byte() {
        assert_eq!(
            strip_key_param("a=1&api_key=x&b=%20&&c").as_deref(),
            Some("a=1&b=%20&&c")
        );
        assert_eq!(strip_key_param("api_key=x").as_deref(), None);
        assert_eq!(strip_key_param("api%5fkey=x&z=1").as_deref(), Some("z=1"));
        assert!(matches!(
            strip_key_param("a=1&b=2"),
            Some(Cow::Borrowed("a=1&b=2"))
        ));
        assert_eq!(strip_key_param(""), None);
    }
}
