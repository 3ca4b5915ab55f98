//! Keys sent in the wrong place, and key-shaped text in what the gateway writes.
//!
//! A key is accepted only as `Authorization: Bearer <key>` or as the
//! `api_key` query parameter. Sent anywhere else (`?API_KEY=`, `?apikey=`,
//! `?x=1;api_key=`, inside the path, in `X-Api-Key` or a cookie) it would be
//! an ordinary parameter or header: written to the access log and forwarded.
//! The checksum makes keys recognisable, so such a request is refused
//! instead (400 `misplaced_api_key`) before anything is logged or forwarded.
//!
//! A key is a 42-byte window that [`ApiKey::parse`] accepts (with its
//! checksum when `auth.verify_checksum` is on), at any offset, whatever
//! surrounds it. The target and header values are searched raw and, where
//! they hold a `%`, percent-decoded once (as an upstream would read them). The
//! scan looks only for the `osir_` prefix (memchr's substring search), so a
//! request without it costs one pass over its bytes and no allocation.
//!
//! [`redact`] replaces key-shaped text (shape only, checksum or not) by the
//! key's hint wherever the gateway writes client text (the access log's
//! path and query, error messages).

use std::borrow::Cow;
use std::fmt;
use std::sync::LazyLock;

use memchr::memmem::Finder;

use super::api_key::{ApiKey, KEY_LEN};

static PREFIX: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"osir_"));

/// Longest query parameter name quoted back in an error message.
const MAX_NAME: usize = 64;

/// Where a misplaced key was found (for the message and the metric label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// The request path.
    Path,
    /// The authority of an absolute-form target (`GET http://HOST/…`).
    Authority,
    /// A query parameter other than `api_key`: its decoded name, with any
    /// key-shaped text replaced by its hint and shortened.
    Query(String),
    /// A header other than `Authorization`: its name (redacted likewise).
    Header(String),
}

impl Place {
    /// The metric label: `path`, `query` or `header`.
    pub fn label(&self) -> &'static str {
        match self {
            Place::Path => "path",
            Place::Authority => "authority",
            Place::Query(_) => "query",
            Place::Header(_) => "header",
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Path => f.write_str("the request path"),
            Place::Authority => f.write_str("the request target's host"),
            Place::Query(name) => write!(f, "the query parameter {name:?}"),
            Place::Header(name) => write!(f, "the header {name:?}"),
        }
    }
}

/// Does this raw parameter name decode to `api_key`?
pub fn is_key_param(name: &str) -> bool {
    if name == "api_key" {
        return true;
    }
    // Only spend a decode on names that could spell it.
    name.contains('%') && percent_encoding::percent_decode_str(name).eq(b"api_key".iter().copied())
}

/// Is there a key anywhere in `bytes`? Text shorter than a key holds none
/// (most header values), and is not searched.
pub fn holds_key(bytes: &[u8], verify_checksum: bool) -> bool {
    bytes.len() >= KEY_LEN
        && PREFIX
            .find_iter(bytes)
            .any(|at| key_at(bytes, at, verify_checksum).is_some())
}

/// The key starting at `at`, if the 42 bytes there are one.
fn key_at(bytes: &[u8], at: usize, verify_checksum: bool) -> Option<ApiKey> {
    let window = bytes.get(at..at.checked_add(KEY_LEN)?)?;
    ApiKey::parse(std::str::from_utf8(window).ok()?, verify_checksum).ok()
}

/// [`holds_key`] on `text` as sent and, when it has a `%`, once decoded.
fn holds_key_either(text: &str, verify_checksum: bool) -> bool {
    holds_key_either_bytes(text.as_bytes(), verify_checksum)
}

/// Decoding never lengthens text, so text shorter than a key holds none
/// either way.
fn holds_key_either_bytes(raw: &[u8], verify_checksum: bool) -> bool {
    raw.len() >= KEY_LEN
        && (holds_key(raw, verify_checksum)
            || (memchr::memchr(b'%', raw).is_some() && holds_key_decoded(raw, verify_checksum)))
}

/// Is there a key in `raw` once percent-decoded (as `percent_decode` reads
/// it: a `%` not followed by two hex digits stands for itself)? Decodes on
/// the fly from each place a decoded `o` starts, into a buffer on the
/// stack: no allocation.
fn holds_key_decoded(raw: &[u8], verify_checksum: bool) -> bool {
    let decode_at = |j: usize| -> (u8, usize) {
        match (raw[j], raw.get(j + 1), raw.get(j + 2)) {
            (b'%', Some(&h), Some(&l)) => match (hex(h), hex(l)) {
                (Some(h), Some(l)) => ((h << 4) | l, 3),
                _ => (b'%', 1),
            },
            (b, _, _) => (b, 1),
        }
    };
    let mut buf = [0u8; KEY_LEN];
    for start in 0..raw.len() {
        if !matches!(raw[start], b'o' | b'%') {
            continue;
        }
        let (mut n, mut j) = (0, start);
        while n < KEY_LEN && j < raw.len() {
            let (b, step) = decode_at(j);
            buf[n] = b;
            n += 1;
            j += step;
            if n <= PREFIX_LEN && buf[n - 1] != b"osir_"[n - 1] {
                break;
            }
        }
        if n == KEY_LEN
            && std::str::from_utf8(&buf).is_ok_and(|t| ApiKey::parse(t, verify_checksum).is_ok())
        {
            return true;
        }
    }
    false
}

const PREFIX_LEN: usize = 5;

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// [`find`], plus the authority of an absolute-form target.
pub fn find_in_request<'h>(
    uri: &http::Uri,
    headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
    verify_checksum: bool,
) -> Option<Place> {
    let (path, query) = match uri.path_and_query() {
        Some(pq) => (pq.path(), pq.query()),
        None => ("/", None),
    };
    if uri
        .authority()
        .is_some_and(|a| holds_key_either(a.as_str(), verify_checksum))
    {
        return Some(Place::Authority);
    }
    find(path, query, headers, verify_checksum)
}

/// Looks for a key in the target (path and query, except the `api_key`
/// parameter's value) and in every header field (name and value) but
/// `Authorization`.
pub fn find<'h>(
    path: &str,
    query: Option<&str>,
    headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
    verify_checksum: bool,
) -> Option<Place> {
    if holds_key_either(path, verify_checksum) {
        return Some(Place::Path);
    }
    if let Some(place) = query.and_then(|q| in_query(q, verify_checksum)) {
        return Some(place);
    }
    in_headers(headers, verify_checksum)
}

fn in_query(query: &str, verify_checksum: bool) -> Option<Place> {
    let b = query.as_bytes();
    if PREFIX.find(b).is_none() && memchr::memchr(b'%', b).is_none() {
        return None;
    }
    for piece in query.split('&') {
        let (name, _) = piece.split_once('=').unwrap_or((piece, ""));
        // The credential's own slot is the one place a key belongs.
        let searched = if is_key_param(name) { name } else { piece };
        if holds_key_either(searched, verify_checksum) {
            return Some(Place::Query(shown_name(name)));
        }
    }
    None
}

fn in_headers<'h>(
    headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
    verify_checksum: bool,
) -> Option<Place> {
    headers
        .into_iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case(b"authorization"))
        .find(|(name, value)| {
            holds_key_either_bytes(value, verify_checksum) || holds_key(name, verify_checksum)
        })
        .map(|(name, _)| {
            // Quoted in lower case, however it was sent (as HTTP/2 sends it).
            Place::Header(shown_name(
                &String::from_utf8_lossy(name).to_ascii_lowercase(),
            ))
        })
}

/// A client-sent name fit to quote: decoded, keys replaced by hints,
/// controls dropped, at most [`MAX_NAME`] characters.
fn shown_name(raw: &str) -> String {
    let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
    let redacted = redact(&decoded);
    let mut out: String = redacted
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME)
        .collect();
    if redacted.chars().count() > MAX_NAME {
        out.push('…');
    }
    out
}

/// `text` with every key-shaped run (a well-formed key, checksum or not)
/// replaced by its hint, `osir_live_…o5p6`. Borrowed when there is none.
pub fn redact(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    for at in PREFIX.find_iter(bytes) {
        if at < copied {
            continue;
        }
        if let Some(key) = key_at(bytes, at, false) {
            out.push_str(&text[copied..at]);
            out.push_str(&key.hint());
            copied = at + KEY_LEN;
        }
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::keys::api_key::Env;
    use http::header::AUTHORIZATION;
    use http::HeaderMap;

    fn pairs(h: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
        h.iter().map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
    }

    fn key() -> String {
        ApiKey::generate(Env::Live)
            .unwrap()
            .expose_secret()
            .to_owned()
    }

    #[test]
    fn finds_keys_anywhere_but_their_places() {
        let k = key();
        let none = HeaderMap::new();
        let q = |q: &str| find("/v1/x", Some(q), pairs(&none), true);
        assert_eq!(q(&format!("api_key={k}")), None);
        assert_eq!(q(&format!("a=1&api%5Fkey={k}")), None);
        assert_eq!(
            q(&format!("API_KEY={k}")),
            Some(Place::Query("API_KEY".into()))
        );
        assert_eq!(
            q(&format!("x=1;api_key={k}")),
            Some(Place::Query("x".into()))
        );
        let enc: String = k.bytes().map(|b| format!("%{b:02x}")).collect();
        assert_eq!(q(&format!("x={enc}")), Some(Place::Query("x".into())));
        let hint = ApiKey::parse(&k, true).unwrap().hint();
        assert_eq!(
            q(&format!("api_key%3D{k}")),
            Some(Place::Query(format!("api_key={hint}")))
        );
        assert_eq!(
            find(&format!("/v1/{k}/x"), None, pairs(&none), true),
            Some(Place::Path)
        );
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, format!("Bearer {k}").parse().unwrap());
        assert_eq!(find("/v1/x", None, pairs(&h), true), None);
        h.insert("cookie", format!("s={k}").parse().unwrap());
        assert_eq!(
            find("/v1/x", None, pairs(&h), true),
            Some(Place::Header("cookie".into()))
        );
    }

    #[test]
    fn decoding_on_the_fly_matches_percent_decode() {
        let k = key();
        let enc: String = k.bytes().map(|b| format!("%{b:02X}")).collect();
        let half: String = k
            .bytes()
            .enumerate()
            .map(|(i, b)| {
                if i % 2 == 0 {
                    format!("%{b:02x}")
                } else {
                    (b as char).to_string()
                }
            })
            .collect();
        for text in [
            format!("x={enc}"),
            format!("%zz{half}"),
            format!("oosir_{}", &enc[..3]) + &enc,
            format!("%%{enc}%"),
        ] {
            let decoded: Vec<u8> = percent_encoding::percent_decode_str(&text).collect();
            assert!(holds_key(&decoded, true), "{text}");
            assert!(holds_key_decoded(text.as_bytes(), true), "{text}");
        }
        for text in ["", "%", "%6", "osir_", "%6fsir_live_", "o%73ir%5flive"] {
            assert!(!holds_key_decoded(text.as_bytes(), true), "{text}");
        }
    }

    #[test]
    fn a_bad_checksum_is_not_a_key_but_is_redacted() {
        let k = key();
        let last = if k.ends_with('0') { "1" } else { "0" };
        let bad = format!("{}{last}", &k[..41]);
        assert!(!holds_key(bad.as_bytes(), true));
        assert!(holds_key(bad.as_bytes(), false));
        let text = format!("/v1/{bad}/x");
        let shown = redact(&text);
        assert!(!shown.contains(&bad[10..]), "{shown}");
        assert!(shown.starts_with("/v1/osir_live_…"));
        assert!(matches!(redact("/v1/osir_x"), Cow::Borrowed(_)));
    }
}
