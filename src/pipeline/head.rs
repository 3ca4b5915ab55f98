//! The request head as every stage reads it, whichever engine read it.
//!
//! The HTTP/1.1 engine hands the pipeline the fields of the head it parsed,
//! as spans of the bytes it read ([`RawFields`]): no header map is built,
//! hashed or dropped per request. hyper's HTTP/2 server hands over its
//! [`HeaderMap`]. Both are [`Fields`], so no stage depends on one engine's
//! request type.
//!
//! Names are compared without regard to case: HTTP/1.1 names arrive as the
//! client spelled them (and are forwarded so), HTTP/2 names are lower-case.
//! The bytes are those the engine already checked: `httparse` admits the
//! same name and value bytes as `http::HeaderName` and `HeaderValue`.

use http::header::{self, HeaderName};
use http::{HeaderMap, Method, Uri, Version};

use crate::http1::head::Span;

/// A request's method, target, version and header fields.
#[derive(Debug)]
pub struct Head<F> {
    /// The method.
    pub method: Method,
    /// The target, as parsed.
    pub uri: Uri,
    /// HTTP/1.0, HTTP/1.1 or HTTP/2.
    pub version: Version,
    /// The header fields.
    pub fields: F,
}

/// A request's header fields, in order.
pub trait Fields {
    /// Every field: name and value.
    fn each(&self) -> impl Iterator<Item = (&[u8], &[u8])>;

    /// The values of the fields named `name` (given in lower case), in
    /// order.
    fn values(&self, name: &'static str) -> impl DoubleEndedIterator<Item = &[u8]>;

    /// The first value of the fields named `name`.
    fn first(&self, name: &'static str) -> Option<&[u8]> {
        self.values(name).next()
    }

    /// Is there a field named `name`?
    fn has(&self, name: &'static str) -> bool {
        self.first(name).is_some()
    }
}

impl Fields for HeaderMap {
    fn each(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.iter()
            .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
    }

    fn values(&self, name: &'static str) -> impl DoubleEndedIterator<Item = &[u8]> {
        // The names the stages ask for, as ready-made `HeaderName`s: a
        // lookup by `&str` parses the name again every time.
        let known = match name {
            "authorization" => Some(header::AUTHORIZATION),
            "connection" => Some(header::CONNECTION),
            "content-length" => Some(header::CONTENT_LENGTH),
            "host" => Some(header::HOST),
            "upgrade" => Some(header::UPGRADE),
            "x-forwarded-for" => Some(X_FORWARDED_FOR),
            "x-request-id" => Some(X_REQUEST_ID),
            _ => None,
        };
        match known {
            Some(n) => self.get_all(n),
            None => self.get_all(name),
        }
        .into_iter()
        .map(|v| v.as_bytes())
    }
}

use crate::error::X_REQUEST_ID;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The fields of a head as the HTTP/1.1 engine parsed it: spans of `raw`.
#[derive(Clone, Copy, Debug)]
pub struct RawFields<'a> {
    raw: &'a [u8],
    spans: &'a [(Span, Span)],
}

impl<'a> RawFields<'a> {
    /// The fields `spans` marks in `raw` (name and value spans, in order).
    pub fn new(raw: &'a [u8], spans: &'a [(Span, Span)]) -> RawFields<'a> {
        RawFields { raw, spans }
    }
}

impl Fields for RawFields<'_> {
    fn each(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans
            .iter()
            .map(|(n, v)| (n.of(self.raw), v.of(self.raw)))
    }

    fn values(&self, name: &'static str) -> impl DoubleEndedIterator<Item = &[u8]> {
        let want = name.as_bytes();
        self.spans
            .iter()
            .filter(move |(n, _)| n.of(self.raw).eq_ignore_ascii_case(want))
            .map(|(_, v)| v.of(self.raw))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn raw_fields_read_like_a_header_map() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\nx-forwarded-for: 2.2.2.2\r\nX-Long-Name: v\r\n\r\n";
        let head = crate::http1::head::parse(raw).unwrap().unwrap();
        let fields = RawFields::new(raw, &head.headers);
        let mut map = HeaderMap::new();
        for (n, v) in fields.each() {
            map.append(
                http::HeaderName::from_bytes(n).unwrap(),
                http::HeaderValue::from_bytes(v).unwrap(),
            );
        }
        for name in ["host", "x-forwarded-for", "x-long", "x-long-name", "absent"] {
            let a: Vec<&[u8]> = fields.values(name).collect();
            let b: Vec<&[u8]> = Fields::values(&map, name).collect();
            assert_eq!(a, b, "{name}");
            let a: Vec<&[u8]> = fields.values(name).rev().collect();
            let b: Vec<&[u8]> = Fields::values(&map, name).rev().collect();
            assert_eq!(a, b, "{name}");
            assert_eq!(fields.has(name), map.has(name), "{name}");
        }
        assert_eq!(fields.first("x-forwarded-for"), Some(&b"1.1.1.1"[..]));
        // Names as sent, in order.
        let names: Vec<&[u8]> = fields.each().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                &b"Host"[..],
                b"X-Forwarded-For",
                b"x-forwarded-for",
                b"X-Long-Name"
            ]
        );
    }
}
