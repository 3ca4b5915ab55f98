//! The size of a request head, as `server.max_header_bytes` counts it.
//!
//! A head over the limit is answered 431 `headers_too_large` with the
//! contract's JSON body before anything else is looked at. The size is that
//! of the head written as HTTP/1.1 (`METHOD target HTTP/1.1`, one
//! `name: value` line per field, the blank line), so for an HTTP/1.1 client
//! it is the bytes it sent, and an HTTP/2 request of the same content counts
//! the same.
//!
//! hyper holds a head in a buffer a quarter larger than the limit (see
//! [`crate::server::hyper_head_limit`]) so that heads a little over the limit
//! reach this check; a head that overflows even that buffer, or has more
//! than 100 fields, is answered by hyper itself: a bare 431 without a body,
//! then the connection is closed. Over HTTP/2, a header block over
//! `server.http2.max_header_list_size` is likewise refused by the HTTP/2
//! layer (431 and a stream reset).

use http::request::Parts;

/// `" HTTP/1.1\r\n"` after the target, and the blank line ending the head.
const FIXED: usize = " HTTP/1.1\r\n".len() + "\r\n".len();

/// The request head's size in bytes, written as HTTP/1.1.
pub(crate) fn size(parts: &Parts) -> usize {
    let uri = &parts.uri;
    let mut target = uri.path_and_query().map_or(1, |pq| pq.as_str().len());
    if let Some(authority) = uri.authority() {
        // Absolute form: `scheme://authority` before the path.
        target += uri.scheme_str().map_or(0, str::len) + "://".len() + authority.as_str().len();
    }
    let fields: usize = parts
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + ": ".len() + value.len() + "\r\n".len())
        .sum();
    parts.method.as_str().len() + " ".len() + target + FIXED + fields
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_http1_wire_form() {
        let wire = "GET /v1/domains?a=1 HTTP/1.1\r\nhost: example\r\nx-pad: 0123456789\r\n\r\n";
        let req = http::Request::get("/v1/domains?a=1")
            .header("host", "example")
            .header("x-pad", "0123456789")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        assert_eq!(size(&parts), wire.len());
    }

    #[test]
    fn absolute_form_counts_the_authority() {
        let wire = "GET http://example/x HTTP/1.1\r\n\r\n";
        let (parts, ()) = http::Request::get("http://example/x")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(size(&parts), wire.len());
    }
}
