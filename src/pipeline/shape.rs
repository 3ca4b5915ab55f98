//! The request's shape, checked before anything else: the size of its head
//! (as `server.max_header_bytes` counts it), methods that are never
//! forwarded, upgrades, and the target's authority against `Host`.
//!
//! # Head size
//!
//! A head over the limit is answered 431 `headers_too_large` with the
//! contract's JSON body before anything else is looked at. The size is that
//! of the head written as HTTP/1.1 (`METHOD target HTTP/1.1`, one
//! `name: value` line per field, the blank line), so for an HTTP/1.1 client
//! it is the bytes it sent, and an HTTP/2 request of the same content counts
//! the same.
//!
//! The HTTP/1.1 engine reads a head up to a quarter more than the limit
//! (`crate::server::h1`) so that heads a little over it reach this check
//! and are counted as written; a head that overflows even that, or has more
//! than 100 fields, is answered 431 `headers_too_large` by the engine itself
//! (same JSON body), then the connection is closed. Over HTTP/2, a header
//! block over `server.http2.max_header_list_size` is refused by the HTTP/2
//! layer (431 and a stream reset).

use http::Method;

use crate::error::{BadRequest, GatewayError};
use crate::http1::field::Known;
use crate::pipeline::head::{Fields, Head};

/// `" HTTP/1.1\r\n"` after the target, and the blank line ending the head.
const FIXED: usize = " HTTP/1.1\r\n".len() + "\r\n".len();

/// The request head's size in bytes, written as HTTP/1.1.
pub(crate) fn size<F: Fields>(head: &Head<F>) -> usize {
    let uri = &head.uri;
    let mut target = uri.path_and_query().map_or(1, |pq| pq.as_str().len());
    if let Some(authority) = uri.authority() {
        // Absolute form: `scheme://authority` before the path.
        target += uri.scheme_str().map_or(0, str::len) + "://".len() + authority.as_str().len();
    }
    let fields: usize = head
        .fields
        .each()
        .map(|(name, value)| name.len() + ": ".len() + value.len() + "\r\n".len())
        .sum();
    head.method.as_str().len() + " ".len() + target + FIXED + fields
}

/// Request-shape checks that come before anything else (contract §3).
/// An HTTP/1.1 offer to upgrade to h2c (what `curl --http2` sends to a
/// plain port) is declined by ignoring it, as RFC 9113 allows: the request
/// is answered as HTTP/1.1 and the offer is not forwarded (`Upgrade` and
/// `HTTP2-Settings` are hop-by-hop, so hygiene drops both). Any other
/// upgrade is refused.
pub(crate) fn check<F: Fields>(req: &Head<F>) -> Result<(), GatewayError> {
    if req.method == Method::CONNECT || req.method == Method::TRACE {
        return Err(GatewayError::MethodNotAllowed(
            crate::pipeline::route::ALLOWED_METHODS,
        ));
    }
    if req.uri.path() == "*" || (req.uri.path().is_empty() && req.method == Method::OPTIONS) {
        return Err(GatewayError::MethodNotAllowed(
            crate::pipeline::route::ALLOWED_METHODS,
        ));
    }
    if req.fields.has(Known::Upgrade)
        && (req.version != http::Version::HTTP_11 || !only_h2c(&req.fields))
    {
        return Err(GatewayError::InvalidRequest(BadRequest::Upgrade));
    }
    if let (Some(authority), Some(host)) = (req.uri.authority(), req.fields.first(Known::Host)) {
        if !authority.as_str().as_bytes().eq_ignore_ascii_case(host) {
            return Err(GatewayError::InvalidRequest(BadRequest::AuthorityMismatch));
        }
    }
    if req.fields.values(Known::Host).nth(1).is_some() {
        return Err(GatewayError::InvalidRequest(BadRequest::DuplicateHost));
    }
    Ok(())
}

/// Does every `Upgrade` value offer only `h2c`?
fn only_h2c<F: Fields>(h: &F) -> bool {
    let mut offers = h
        .values(Known::Upgrade)
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
        .peekable();
    offers.peek().is_some() && offers.all(|t| t.eq_ignore_ascii_case(b"h2c"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn head(p: http::request::Parts) -> Head<http::HeaderMap> {
        Head {
            method: p.method,
            uri: p.uri,
            version: p.version,
            fields: p.headers,
        }
    }

    #[test]
    fn counts_the_http1_wire_form() {
        let wire = "GET /v1/domains?a=1 HTTP/1.1\r\nhost: example\r\nx-pad: 0123456789\r\n\r\n";
        let req = http::Request::get("/v1/domains?a=1")
            .header("host", "example")
            .header("x-pad", "0123456789")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        assert_eq!(size(&head(parts)), wire.len());
    }

    #[test]
    fn absolute_form_counts_the_authority() {
        let wire = "GET http://example/x HTTP/1.1\r\n\r\n";
        let (parts, ()) = http::Request::get("http://example/x")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(size(&head(parts)), wire.len());
    }
}
