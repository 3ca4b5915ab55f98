//! Upstream response heads, parsed with `httparse`.
//!
//! Only what the gateway must know is read: the status, the fields (as
//! spans, copied nowhere), how the body is delimited and whether the
//! connection may carry another exchange. The rules are RFC 9112 §6.3's, in
//! its order: a response to HEAD, a 1xx, 204 or 304 has no body whatever
//! its fields say; `Transfer-Encoding` wins over `Content-Length` (and then
//! the connection is not reused, since the upstream framed ambiguously);
//! a `Transfer-Encoding` whose last coding is not `chunked` runs to the end
//! of the connection; so does a response with neither field. A
//! `Content-Length` that is not plain digits, or two that differ, make the
//! response unreadable (502).

use super::field::{Field, Known};
use super::head::{content_length, trim};

/// The most header fields an upstream response may have.
pub const MAX_HEADERS: usize = 100;

/// How an upstream response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked coding.
    Chunked,
    /// Until the upstream closes the connection.
    Close,
}

/// A parsed response head; spans index the buffer it was parsed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    /// Bytes of the head, the blank line included.
    pub len: usize,
    /// The status code.
    pub status: u16,
    /// Header fields in order (values trimmed), hop-by-hop ones included.
    pub headers: Vec<Field>,
    /// The `Content-Length` it gave, whatever the framing (a HEAD or 304
    /// answer keeps the length it names).
    pub length: Option<u64>,
    /// How the body is delimited.
    pub framing: ResponseFraming,
    /// Whether the connection may carry another exchange afterwards.
    pub keep_alive: bool,
}

/// Why a response head cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadResponse {
    /// Not an HTTP/1.x response head.
    #[error("malformed response head")]
    Malformed,
    /// A `Content-Length` that is not plain digits, or two that differ.
    #[error("malformed Content-Length in the response")]
    Length,
    /// More than [`MAX_HEADERS`] fields.
    #[error("too many header fields in the response")]
    TooManyHeaders,
    /// `101 Switching Protocols`, which the gateway never asks for.
    #[error("unexpected protocol switch")]
    Switch,
}

/// Parses a response head from the start of `buf`; `Ok(None)`: incomplete.
/// `head_request`: the request was HEAD, so no body follows.
pub fn parse(buf: &[u8], head_request: bool) -> Result<Option<ResponseHead>, BadResponse> {
    parse_reusing(buf, head_request, Vec::new())
}

/// [`parse`], filling `fields` (cleared first), so an upstream connection
/// can hand back the vector of its last answer and parse without
/// allocating.
pub fn parse_reusing(
    buf: &[u8],
    head_request: bool,
    mut headers: Vec<Field>,
) -> Result<Option<ResponseHead>, BadResponse> {
    // Left uninitialised: httparse writes only the fields it finds (no
    // 100-field clear per answer).
    let mut fields = [std::mem::MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        buf,
        &mut fields,
    ) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(BadResponse::TooManyHeaders),
        Err(_) => return Err(BadResponse::Malformed),
    };
    let (Some(minor), Some(status)) = (resp.version, resp.code) else {
        return Err(BadResponse::Malformed);
    };
    if status == 101 {
        return Err(BadResponse::Switch);
    }
    headers.clear();
    headers.reserve(resp.headers.len());
    let mut length: Option<u64> = None;
    let mut transfer: Option<bool> = None;
    let mut close = false;
    let mut keep_alive_10 = false;
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        let value = trim(h.value);
        let k = Known::of(name);
        match k {
            Known::ContentLength => {
                let n = content_length(value).map_err(|_| BadResponse::Length)?;
                if length.is_some_and(|m| m != n) {
                    return Err(BadResponse::Length);
                }
                length = Some(n);
            }
            Known::TransferEncoding => {
                let last = value.rsplit(|b| *b == b',').next().map_or(&[][..], trim);
                transfer = Some(last.eq_ignore_ascii_case(b"chunked"));
            }
            Known::Connection => {
                for token in value.split(|b| *b == b',').map(trim) {
                    close |= token.eq_ignore_ascii_case(b"close");
                    keep_alive_10 |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            _ => {}
        }
        headers.push(Field::new(buf, name, value, k));
    }
    let bodiless = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    let framing = match (bodiless, transfer, length) {
        (true, _, _) => ResponseFraming::Empty,
        (false, Some(true), _) => ResponseFraming::Chunked,
        (false, Some(false), _) => ResponseFraming::Close,
        (false, None, Some(0)) => ResponseFraming::Empty,
        (false, None, Some(n)) => ResponseFraming::Length(n),
        (false, None, None) => ResponseFraming::Close,
    };
    let keep_alive = !close
        && (minor == 1 || keep_alive_10)
        && framing != ResponseFraming::Close
        && !(transfer.is_some() && length.is_some());
    Ok(Some(ResponseHead {
        len,
        status,
        headers,
        length,
        framing,
        keep_alive,
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ok(raw: &str, head: bool) -> ResponseHead {
        parse(raw.as_bytes(), head).unwrap().unwrap()
    }

    #[test]
    fn heads_of_many_fields_parse_up_to_the_bound() {
        let head = |n: usize| {
            let mut raw = String::from("HTTP/1.1 200 OK\r\n");
            for i in 0..n - 1 {
                raw.push_str(&format!("x-f{i}: {i}\r\n"));
            }
            raw.push_str("content-length: 2\r\n\r\nok");
            raw
        };
        for n in [1, 24, 25, MAX_HEADERS] {
            let h = ok(&head(n), false);
            assert_eq!(
                (h.headers.len(), h.framing),
                (n, ResponseFraming::Length(2)),
                "{n}"
            );
        }
        assert!(matches!(
            parse(head(MAX_HEADERS + 1).as_bytes(), false),
            Err(BadResponse::TooManyHeaders)
        ));
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let h = ok("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", false);
        assert_eq!(
            (h.framing, h.keep_alive),
            (ResponseFraming::Length(5), true)
        );
        assert_eq!(
            &"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"[h.len..],
            "hello"
        );
        let h = ok("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", true);
        assert_eq!(h.framing, ResponseFraming::Empty);
        let h = ok(
            "HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n",
            false,
        );
        assert_eq!(h.framing, ResponseFraming::Empty);
        let h = ok(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
            false,
        );
        assert_eq!((h.framing, h.keep_alive), (ResponseFraming::Chunked, true));
        let h = ok(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n",
            false,
        );
        assert_eq!((h.framing, h.keep_alive), (ResponseFraming::Chunked, false));
        let h = ok("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n", false);
        assert_eq!((h.framing, h.keep_alive), (ResponseFraming::Close, false));
        let h = ok("HTTP/1.1 200 OK\r\n\r\n", false);
        assert_eq!((h.framing, h.keep_alive), (ResponseFraming::Close, false));
        let h = ok(
            "HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: 0\r\n\r\n",
            false,
        );
        assert_eq!((h.framing, h.keep_alive), (ResponseFraming::Empty, false));
        let h = ok("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n", false);
        assert!(!h.keep_alive);
        assert_eq!(ok("HTTP/1.1 100 Continue\r\n\r\n", false).status, 100);
    }

    #[test]
    fn unusable_heads_are_refused() {
        for (raw, want) in [
            (
                "HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n",
                BadResponse::Length,
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
                BadResponse::Length,
            ),
            ("HTTP/1.1 101 Switching\r\n\r\n", BadResponse::Switch),
            ("HTTP/9 200 OK\r\n\r\n", BadResponse::Malformed),
        ] {
            assert_eq!(parse(raw.as_bytes(), false).unwrap_err(), want, "{raw}");
        }
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\ncont", false).unwrap(), None);
        // Two equal lengths are one length.
        let h = ok(
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nok",
            false,
        );
        assert_eq!(h.framing, ResponseFraming::Length(2));
    }
}
