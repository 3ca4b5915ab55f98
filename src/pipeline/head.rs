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

use crate::http1::field::{Field, Known, KnownSet};

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

    /// Every field with what its name is ([`Known::of`]).
    fn each_known(&self) -> impl Iterator<Item = (Known, &[u8], &[u8])>;

    /// The values of the fields named `name`, in order.
    fn values(&self, name: Known) -> impl DoubleEndedIterator<Item = &[u8]>;

    /// The first value of the fields named `name`.
    fn first(&self, name: Known) -> Option<&[u8]> {
        self.values(name).next()
    }

    /// Is there a field named `name`?
    fn has(&self, name: Known) -> bool {
        self.first(name).is_some()
    }
}

impl Fields for HeaderMap {
    fn each(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.iter()
            .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
    }

    fn each_known(&self) -> impl Iterator<Item = (Known, &[u8], &[u8])> {
        self.iter().map(|(n, v)| {
            let n = n.as_str().as_bytes();
            (Known::of(n), n, v.as_bytes())
        })
    }

    fn values(&self, name: Known) -> impl DoubleEndedIterator<Item = &[u8]> {
        // Ready-made `HeaderName`s: a lookup by `&str` parses the name
        // again every time.
        let name = match name {
            Known::Authorization => Some(header::AUTHORIZATION),
            Known::Connection => Some(header::CONNECTION),
            Known::ContentLength => Some(header::CONTENT_LENGTH),
            Known::Date => Some(header::DATE),
            Known::Expect => Some(header::EXPECT),
            Known::Host => Some(header::HOST),
            Known::TransferEncoding => Some(header::TRANSFER_ENCODING),
            Known::Upgrade => Some(header::UPGRADE),
            Known::XForwardedFor => Some(X_FORWARDED_FOR),
            Known::XRequestId => Some(X_REQUEST_ID),
            // No one name: nothing is asked for by these.
            Known::Other | Known::OtherHopByHop => None,
        };
        name.map(|n| self.get_all(n))
            .into_iter()
            .flatten()
            .map(|v| v.as_bytes())
    }
}

use crate::error::X_REQUEST_ID;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The fields of a head as the HTTP/1.1 engine parsed it: spans of `raw`,
/// each name recognised once at parse time.
#[derive(Clone, Copy, Debug)]
pub struct RawFields<'a> {
    raw: &'a [u8],
    fields: &'a [Field],
    known: KnownSet,
}

impl<'a> RawFields<'a> {
    /// The fields `fields` marks in `raw`, `known` the names among them.
    pub fn new(raw: &'a [u8], fields: &'a [Field], known: KnownSet) -> RawFields<'a> {
        RawFields { raw, fields, known }
    }
}

impl Fields for RawFields<'_> {
    fn each(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields
            .iter()
            .map(|f| (f.name.of(self.raw), f.value.of(self.raw)))
    }

    fn each_known(&self) -> impl Iterator<Item = (Known, &[u8], &[u8])> {
        self.fields
            .iter()
            .map(|f| (f.known, f.name.of(self.raw), f.value.of(self.raw)))
    }

    fn values(&self, name: Known) -> impl DoubleEndedIterator<Item = &[u8]> {
        // A name the head does not hold is answered without a scan.
        let fields = if name != Known::Other && self.known.has(name) {
            self.fields
        } else {
            &[]
        };
        fields
            .iter()
            .filter(move |f| f.known == name)
            .map(|f| f.value.of(self.raw))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn raw_fields_read_like_a_header_map() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\nx-forwarded-for: 2.2.2.2\r\nX-Long-Name: v\r\nConnection: x, y\r\n\r\n";
        let head = crate::http1::head::parse(raw).unwrap().unwrap();
        let fields = RawFields::new(raw, &head.headers, head.known);
        let mut map = HeaderMap::new();
        for (n, v) in fields.each() {
            map.append(
                http::HeaderName::from_bytes(n).unwrap(),
                http::HeaderValue::from_bytes(v).unwrap(),
            );
        }
        for name in Known::NAMED {
            let a: Vec<&[u8]> = fields.values(name).collect();
            let b: Vec<&[u8]> = Fields::values(&map, name).collect();
            assert_eq!(a, b, "{name:?}");
            let a: Vec<&[u8]> = fields.values(name).rev().collect();
            let b: Vec<&[u8]> = Fields::values(&map, name).rev().collect();
            assert_eq!(a, b, "{name:?}");
            assert_eq!(fields.has(name), map.has(name), "{name:?}");
        }
        assert_eq!(
            fields.values(Known::XForwardedFor).collect::<Vec<_>>(),
            [&b"1.1.1.1"[..], b"2.2.2.2"]
        );
        assert_eq!(fields.first(Known::Connection), Some(&b"x, y"[..]));
        assert!(!fields.has(Known::Authorization));
        assert!(!fields.has(Known::Other) && !map.has(Known::Other));
        // Names as sent, in order, each recognised as the map's are.
        let names: Vec<&[u8]> = fields.each().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                &b"Host"[..],
                b"X-Forwarded-For",
                b"x-forwarded-for",
                b"X-Long-Name",
                b"Connection"
            ]
        );
        let a: Vec<Known> = fields.each_known().map(|(k, _, _)| k).collect();
        let b: Vec<Known> = map.each_known().map(|(k, _, _)| k).collect();
        let mut sorted = a.clone();
        sorted.sort_by_key(|k| *k as u8);
        let mut b_sorted = b;
        b_sorted.sort_by_key(|k| *k as u8);
        assert_eq!(sorted, b_sorted);
        assert_eq!(a[0], Known::Host);
        assert_eq!(a[3], Known::Other);
    }
}
