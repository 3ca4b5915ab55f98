//! Forwarding: header hygiene on the way to the upstream and back. The
//! exchange itself and the connection pool are in `crate::pipeline::upstream`.
//!
//! Hygiene runs before the gateway adds anything, so no client header can
//! forge or delete what the gateway says (HOSTILE §4): hop-by-hop headers and
//! every header named in `Connection` go, as do client-sent `X-Osir-*`,
//! `X-Forwarded-*`, `Forwarded`, `X-Real-IP`, any name with `_` (upstreams
//! that map `_` to `-` would read `X-Osir-Key_Id` as ours), the
//! credential, and the method and URL override headers some frameworks
//! honour ([`OVERRIDES`]: a `domains:read` GET must not run as a DELETE, or
//! on another path). Then the gateway's own headers are added.

use std::net::IpAddr;

use bytes::{BufMut, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;

use crate::error::{BadRequest, GatewayError};
use crate::http1::head::Span;

/// Is this a hop-by-hop header (RFC 9110 §7.6.1, plus the `Proxy-*` family)?
fn is_hop_by_hop(name: &HeaderName) -> bool {
    is_hop_by_hop_name(name.as_str().as_bytes())
}

/// [`is_hop_by_hop`] for a name as sent (any case), such as an upstream's
/// raw response field.
fn is_hop_by_hop_name(n: &[u8]) -> bool {
    [
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ]
    .iter()
    .any(|h| n.eq_ignore_ascii_case(h.as_bytes()))
        || n.get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"proxy-"))
}

/// Method and URL override headers: frameworks that honour them would act
/// on another method or path than the one authorised.
pub(crate) const OVERRIDES: [&str; 10] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-method",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-override-url",
    "x-envoy-original-path",
    "x-envoy-original-method",
];

/// Headers a client must never get to the upstream.
fn is_client_forbidden(name: &HeaderName) -> bool {
    let n = name.as_str();
    is_hop_by_hop(name)
        || OVERRIDES.contains(&n)
        || n.starts_with("x-osir-")
        || n.starts_with("x-forwarded-")
        || n == "forwarded"
        || n == "x-real-ip"
        || n == "authorization"
        || n.contains('_')
}

/// Removes every header listed in `Connection` (before `Connection` itself
/// goes), then every header `forbidden` names. Allocates only when there is
/// something to remove.
fn scrub(headers: &mut HeaderMap, forbidden: fn(&HeaderName) -> bool) {
    let mut doomed: Vec<HeaderName> = Vec::new();
    for v in headers.get_all(header::CONNECTION) {
        for token in v.to_str().unwrap_or("").split(',') {
            if let Ok(n) = HeaderName::from_bytes(token.trim().as_bytes()) {
                doomed.push(n);
            }
        }
    }
    doomed.extend(headers.keys().filter(|n| forbidden(n)).cloned());
    for n in doomed {
        headers.remove(n);
    }
}

/// Request hygiene, then the gateway's forwarding headers. `chain` is the
/// X-Forwarded-For chain to keep (only from trusted proxies), `peer` is
/// appended to it.
pub(crate) fn prepare_request_headers(
    headers: &mut HeaderMap,
    chain: Option<HeaderValue>,
    peer: IpAddr,
    proto: &'static str,
    request_id: &HeaderValue,
) {
    scrub(headers, is_client_forbidden);
    let mut xff = BytesMut::with_capacity(64);
    if let Some(c) = chain {
        xff.put_slice(c.as_bytes());
        xff.put_slice(b", ");
    }
    // Display of an IpAddr never fails into a BytesMut.
    let _ = std::fmt::Write::write_fmt(&mut BytesWriter(&mut xff), format_args!("{peer}"));
    if let Ok(v) = HeaderValue::from_maybe_shared(xff.freeze()) {
        headers.insert(HeaderName::from_static("x-forwarded-for"), v);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(proto),
    );
    headers.insert(HeaderName::from_static("x-request-id"), request_id.clone());
}

struct BytesWriter<'a>(&'a mut BytesMut);

impl std::fmt::Write for BytesWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

/// Response hygiene on an upstream's head as it was read: drops the
/// hop-by-hop fields and those the upstream named in `Connection`, keeping
/// the rest in order. `raw` is the head the spans index.
pub(crate) fn keep_forwardable_response_fields(raw: &[u8], fields: &mut Vec<(Span, Span)>) {
    // The values of `Connection` (almost always one field), kept aside
    // without allocating for the usual few.
    let mut lists = [Span { start: 0, end: 0 }; 4];
    let mut more = Vec::new();
    let mut count = 0;
    for (n, v) in fields.iter() {
        if n.of(raw).eq_ignore_ascii_case(b"connection") {
            if count < lists.len() {
                lists[count] = *v;
                count += 1;
            } else {
                more.push(*v);
            }
        }
    }
    let named = |name: &[u8]| {
        lists[..count]
            .iter()
            .chain(&more)
            .flat_map(|v| v.of(raw).split(|b| *b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(name))
    };
    fields.retain(|(n, _)| {
        let n = n.of(raw);
        !is_hop_by_hop_name(n) && !named(n)
    });
}

/// The client's X-Forwarded-For lines joined, to extend when the peer is a
/// trusted proxy.
pub(crate) fn incoming_chain(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut it = headers.get_all("x-forwarded-for").iter();
    let first = it.next()?;
    let Some(second) = it.next() else {
        return Some(first.clone());
    };
    let mut b = BytesMut::new();
    b.put_slice(first.as_bytes());
    for v in std::iter::once(second).chain(it) {
        b.put_slice(b", ");
        b.put_slice(v.as_bytes());
    }
    HeaderValue::from_maybe_shared(b.freeze()).ok()
}

/// The path-and-query the client sent, split; the query may be rewritten.
pub(crate) fn split_target(pq: Option<&PathAndQuery>) -> (&str, Option<&str>) {
    match pq {
        Some(pq) => (pq.path(), pq.query()),
        None => ("/", None),
    }
}

/// Refuses a `_method` query parameter (name matched decoded and in any
/// case) naming a method other than the request's own: frameworks that
/// honour it would run a GET authorised as a read as, say, a DELETE.
pub(crate) fn check_method_param(
    query: Option<&str>,
    method: &http::Method,
) -> Result<(), GatewayError> {
    let Some(query) = query else {
        return Ok(());
    };
    for piece in query.split('&') {
        let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
        // Cheap first: a name spelling `_method` has at least 7 bytes.
        if name.len() < 7 || !decodes_to_ignoring_case(name, b"_method") {
            continue;
        }
        if !decodes_to_ignoring_case(value, method.as_str().as_bytes()) {
            return Err(GatewayError::InvalidRequest(BadRequest::MethodOverride));
        }
    }
    Ok(())
}

/// Does `raw`, percent-decoded, equal `want` ignoring ASCII case? No allocation.
fn decodes_to_ignoring_case(raw: &str, want: &[u8]) -> bool {
    percent_encoding::percent_decode_str(raw)
        .map(|b| b.to_ascii_lowercase())
        .eq(want.iter().map(u8::to_ascii_lowercase))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hygiene_removes_forgeries_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("connection", "keep-alive, X-Osir-Key-Id, x-custom"),
            ("x-custom", "1"),
            ("x-osir-key-id", "forged"),
            ("x-osir-key_id", "forged"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-host", "evil"),
            ("forwarded", "for=6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("authorization", "Bearer x"),
            ("proxy-authorization", "x"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("transfer-encoding", "chunked"),
            ("accept", "application/json"),
        ] {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let id = HeaderValue::from_static("rid");
        prepare_request_headers(&mut h, None, "1.2.3.4".parse().unwrap(), "http", &id);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        let mut names = names.clone();
        names.sort();
        assert_eq!(
            names,
            [
                "accept",
                "x-forwarded-for",
                "x-forwarded-proto",
                "x-request-id"
            ]
        );
        assert_eq!(h["x-forwarded-for"], "1.2.3.4");
    }

    #[test]
    fn trusted_chains_are_extended() {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "5.5.5.5".parse().unwrap());
        h.append("x-forwarded-for", "10.0.0.2".parse().unwrap());
        let chain = incoming_chain(&h);
        prepare_request_headers(
            &mut h,
            chain,
            "10.0.0.1".parse().unwrap(),
            "https",
            &HeaderValue::from_static("r"),
        );
        assert_eq!(h["x-forwarded-for"], "5.5.5.5, 10.0.0.2, 10.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
    }
}
