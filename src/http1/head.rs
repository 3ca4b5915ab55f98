//! HTTP/1.1 request heads, parsed strictly.
//!
//! `httparse` finds the request line and the header fields; this module then
//! refuses everything a front proxy must not guess about, because a gateway
//! and the upstream behind it reading one byte stream two ways is how
//! requests are smuggled:
//!
//! - bare LF line endings (only CRLF ends a line) and obs-fold continuation
//!   lines;
//! - a `Content-Length` that is not plain digits (`+5`, `0x5`, ` 5`, `5,5`),
//!   has a leading zero (`005`), overflows, or appears twice;
//! - `Transfer-Encoding` other than exactly one `chunked` (`gzip, chunked`,
//!   `chunked, chunked`, `identity`, `xchunked`, a vertical tab …), and
//!   `Transfer-Encoding` together with `Content-Length`, or on HTTP/1.0;
//! - no `Host`, or two, on HTTP/1.1; an absolute-form target whose scheme is
//!   not `http` or `https`;
//! - a version other than HTTP/1.0 or HTTP/1.1.
//!
//! What passes has one meaning: [`BodyFraming`] says exactly how the body
//! is delimited, and the upstream is given that framing, never the client's
//! spelling of it.

pub use super::field::{Field, Known, KnownSet, Span};
use super::Framing;

/// The most header fields a request may have.
pub const MAX_HEADERS: usize = 100;

/// How a request body is delimited, as the gateway will forward it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (no `Content-Length`, no `Transfer-Encoding`, or length 0).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head. Names and values are ranges into the buffer it
/// was parsed from, so nothing is copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// Bytes of the head, the blank line included: the body starts here.
    pub len: usize,
    /// The method, as sent (case-sensitive, a token).
    pub method: Span,
    /// The request target, as sent.
    pub target: Span,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Header fields in order (values without the surrounding whitespace).
    pub headers: Vec<Field>,
    /// The [`Known`] names among them.
    pub known: KnownSet,
    /// How the body is delimited.
    pub body: BodyFraming,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
}

/// Parses a request head from the start of `buf`. `Ok(None)`: the head is
/// not complete yet (read more, within the caller's size limit).
pub fn parse(buf: &[u8]) -> Result<Option<RequestHead>, Framing> {
    parse_reusing(buf, Vec::new())
}

/// [`parse`], filling `spans` (cleared first) for the head's fields, so a
/// connection can hand back the vector of its last head and parse without
/// allocating.
pub fn parse_reusing(buf: &[u8], mut spans: Vec<Field>) -> Result<Option<RequestHead>, Framing> {
    // Left uninitialised: httparse writes only the fields it finds (no
    // 100-field memset per head).
    let mut fields = [std::mem::MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Framing::TooManyHeaders),
        Err(httparse::Error::Version) => return Err(version_error(first_line(buf))),
        Err(
            httparse::Error::HeaderName
            | httparse::Error::HeaderValue
            | httparse::Error::NewLine
            | httparse::Error::Status
            | httparse::Error::Token,
        ) => return Err(line_error(buf)),
    };
    let head = &buf[..len];
    if bare_lf_in(head) {
        return Err(Framing::BareLf);
    }
    let (Some(method), Some(target), Some(minor_version)) = (req.method, req.path, req.version)
    else {
        return Err(Framing::RequestLine);
    };
    spans.clear();
    spans.reserve(req.headers.len());
    let mut headers = spans;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    let mut hosts = 0u32;
    let mut close = false;
    let mut keep_alive_10 = false;
    let mut expect_continue = false;
    let mut known = KnownSet::default();
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        let value = trim(h.value);
        let k = Known::of(name);
        known.add(k);
        match k {
            Known::ContentLength => {
                if length.is_some() {
                    return Err(Framing::DuplicateLength);
                }
                length = Some(content_length(value)?);
            }
            Known::TransferEncoding => {
                if transfer_encoding {
                    return Err(Framing::TransferEncoding);
                }
                transfer_encoding = true;
                chunked = value.eq_ignore_ascii_case(b"chunked");
                if !chunked {
                    return Err(Framing::TransferEncoding);
                }
            }
            Known::Host => hosts += 1,
            Known::Connection => {
                for token in value.split(|b| *b == b',').map(trim) {
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        keep_alive_10 = true;
                    }
                }
            }
            Known::Expect => {
                if !value.eq_ignore_ascii_case(b"100-continue") {
                    return Err(Framing::Expect);
                }
                expect_continue = true;
            }
            _ => {}
        }
        headers.push(Field::new(buf, name, value, k));
    }
    if chunked && length.is_some() {
        return Err(Framing::LengthWithChunked);
    }
    // HTTP/1.0 has no chunked coding; a 1.0 request claiming it is either
    // a confused client or a smuggling probe (hyper refuses it too).
    if chunked && minor_version == 0 {
        return Err(Framing::TransferEncoding);
    }
    if minor_version == 1 && hosts != 1 {
        return Err(if hosts == 0 {
            Framing::MissingHost
        } else {
            Framing::DuplicateHost
        });
    }
    if hosts > 1 {
        return Err(Framing::DuplicateHost);
    }
    check_target(method, target)?;
    let body = match (chunked, length) {
        (true, _) => BodyFraming::Chunked,
        (false, Some(0) | None) => BodyFraming::Empty,
        (false, Some(n)) => BodyFraming::Length(n),
    };
    let keep_alive = !close && (minor_version == 1 || keep_alive_10);
    Ok(Some(RequestHead {
        len,
        method: Span::within(buf, method.as_bytes()),
        target: Span::within(buf, target.as_bytes()),
        minor_version,
        headers,
        known,
        body,
        keep_alive,
        expect_continue,
    }))
}

/// The target must be one of the forms a proxy can forward unambiguously,
/// read the way `http::Uri` (and so hyper) reads it: origin-form (`/…`),
/// absolute-form with http or https, `*`, or authority-form for CONNECT
/// (which the pipeline then answers 405). A fragment (`#`) is refused: an
/// upstream would drop it, so the path authorised would not be the path
/// served. (Parsing with `http::Uri` copies the target; the engine's own
/// byte table is the planned replacement, checked by the same oracle.)
fn check_target(method: &str, target: &str) -> Result<(), Framing> {
    if target == "*" {
        return Ok(());
    }
    // The common case without a copy: an origin-form target of bytes that
    // `http::Uri` holds unchanged in a path and in a query alike.
    if target.starts_with('/') && target.bytes().all(plain_target_byte) {
        return Ok(());
    }
    if target.contains('#') {
        return Err(Framing::Target);
    }
    let uri = http::Uri::try_from(target).map_err(|_| Framing::Target)?;
    // The target must read back byte for byte as `http::Uri` holds it: a
    // form it normalises (`http://a` without a path becoming `http://a/`)
    // is one the upstream may read differently.
    let same = |held: &str| held == target;
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => {
            if same(&uri.to_string()) {
                Ok(())
            } else {
                Err(Framing::Target)
            }
        }
        Some(_) => Err(Framing::Scheme),
        None if target.starts_with('/') => {
            if uri.path_and_query().is_some_and(|pq| same(pq.as_str())) {
                Ok(())
            } else {
                Err(Framing::Target)
            }
        }
        None if method == "CONNECT" && uri.authority().is_some() => Ok(()),
        None => Err(Framing::Target),
    }
}

/// Bytes every origin-form target may hold as they are (RFC 3986
/// unreserved, sub-delims other than those `http::Uri` treats specially,
/// `%`, `/`, `?`, `:`, `@`): a target of only these parses to itself.
fn plain_target_byte(b: u8) -> bool {
    PLAIN_TARGET[usize::from(b)]
}

/// [`plain_target_byte`] as a table, one load per byte of the target.
static PLAIN_TARGET: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'/'
                    | b'?'
                    | b'='
                    | b'&'
                    | b'%'
                    | b'+'
                    | b':'
                    | b'@'
                    | b'!'
                    | b'$'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b','
                    | b';'
            );
        b += 1;
    }
    t
};

/// Plain decimal digits, no sign, no leading zero (except `0` itself), no
/// overflow.
pub(crate) fn content_length(v: &[u8]) -> Result<u64, Framing> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) || (v.len() > 1 && v[0] == b'0') {
        return Err(Framing::ContentLength);
    }
    v.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or(Framing::ContentLength)
    })
}

pub(crate) fn trim(v: &[u8]) -> &[u8] {
    let ws = |b: &u8| matches!(b, b' ' | b'\t');
    // Most values have nothing to trim: two byte checks.
    match (v.first(), v.last()) {
        (Some(f), Some(l)) if !ws(f) && !ws(l) => return v,
        (None, _) | (_, None) => return v,
        _ => {}
    }
    let start = v.iter().position(|b| !ws(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !ws(b)).map_or(start, |i| i + 1);
    &v[start..end.max(start)]
}

/// A `\n` not preceded by `\r` anywhere in the head (up to the first
/// `CRLF CRLF`, or in all of `buf` when there is none). One `memchr` pass:
/// a head has a line feed per line, and each is checked once.
fn has_bare_lf(buf: &[u8]) -> bool {
    let end = memchr::memmem::find(buf, b"\r\n\r\n").map_or(buf.len(), |i| i + 4);
    bare_lf_in(&buf[..end])
}

/// Which line of a head that httparse refused is at fault (the error path
/// only): a bare LF anywhere in the head, else the request line when it is
/// refused on its own (parsed again as a head with no fields), else a
/// header line.
fn line_error(buf: &[u8]) -> Framing {
    if has_bare_lf(buf) {
        return Framing::BareLf;
    }
    let line = first_line(buf);
    let mut alone = Vec::with_capacity(line.len() + 4);
    alone.extend_from_slice(line);
    alone.extend_from_slice(b"\r\n\r\n");
    let mut none: [httparse::Header<'_>; 0] = [];
    match httparse::Request::new(&mut none).parse(&alone) {
        Ok(_) => Framing::Header,
        Err(httparse::Error::Version) => version_error(line),
        Err(_) => Framing::RequestLine,
    }
}

/// The request line of `buf`, after the empty lines httparse skips before
/// it, without its line end.
fn first_line(buf: &[u8]) -> &[u8] {
    let mut rest = buf;
    while let Some(after) = rest.strip_prefix(b"\r\n") {
        rest = after;
    }
    memchr::memmem::find(rest, b"\r\n").map_or(rest, |i| &rest[..i])
}

/// Why httparse refused the version of `line`: an unsupported version
/// when the line ends in an `HTTP/` token of its own (`HTTP/2.0`), else a
/// malformed line (`GET /a b HTTP/1.1`, whose target holds a space, reads
/// `b` as the version).
fn version_error(line: &[u8]) -> Framing {
    let mut parts = line.splitn(3, |b| *b == b' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(_), Some(version))
            if version.starts_with(b"HTTP/") && !version.contains(&b' ') =>
        {
            Framing::Version
        }
        _ => Framing::RequestLine,
    }
}

/// A `\n` not preceded by `\r` anywhere in `head`.
fn bare_lf_in(head: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', head).any(|i| i == 0 || head[i - 1] != b'\r')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> RequestHead {
        parse(raw.as_bytes()).unwrap().unwrap()
    }

    fn refused(raw: &str) -> Framing {
        parse(raw.as_bytes()).unwrap_err()
    }

    #[test]
    fn a_plain_request_parses_without_copying() {
        let raw = "GET /v1/domains?x=1 HTTP/1.1\r\nHost: a\r\nX-A:  v  \r\n\r\nBODY";
        let h = ok(raw);
        assert_eq!(h.method.of(raw.as_bytes()), b"GET");
        assert_eq!(h.target.of(raw.as_bytes()), b"/v1/domains?x=1");
        assert_eq!(h.headers[1].value.of(raw.as_bytes()), b"v");
        assert_eq!(h.headers[0].known, Known::Host);
        assert!(h.known.has(Known::Host) && !h.known.has(Known::Authorization));
        assert_eq!(&raw.as_bytes()[h.len..], b"BODY");
        assert_eq!(h.body, BodyFraming::Empty);
        assert!(h.keep_alive && !h.expect_continue);
    }

    #[test]
    fn partial_heads_ask_for_more() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap(), None);
        assert_eq!(parse(b"GE").unwrap(), None);
    }

    #[test]
    fn framing_is_exact() {
        let h = ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n");
        assert_eq!(h.body, BodyFraming::Length(12));
        let h = ok("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(h.body, BodyFraming::Chunked);
        let h = ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(h.body, BodyFraming::Empty);
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        let cases: &[(&str, Framing)] = &[
            ("Content-Length: +5", Framing::ContentLength),
            ("Content-Length: 005", Framing::ContentLength),
            ("Content-Length: 0x5", Framing::ContentLength),
            ("Content-Length: 5, 5", Framing::ContentLength),
            ("Content-Length: -1", Framing::ContentLength),
            (
                "Content-Length: 99999999999999999999",
                Framing::ContentLength,
            ),
            (
                "Content-Length: 5\r\nContent-Length: 5",
                Framing::DuplicateLength,
            ),
            (
                "Content-Length: 5\r\nContent-Length: 6",
                Framing::DuplicateLength,
            ),
            (
                "Transfer-Encoding: gzip, chunked",
                Framing::TransferEncoding,
            ),
            (
                "Transfer-Encoding: chunked, chunked",
                Framing::TransferEncoding,
            ),
            ("Transfer-Encoding: identity", Framing::TransferEncoding),
            ("Transfer-Encoding: xchunked", Framing::TransferEncoding),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
                Framing::TransferEncoding,
            ),
            (
                "Transfer-Encoding: chunked\r\nContent-Length: 3",
                Framing::LengthWithChunked,
            ),
            ("Expect: 200-ok", Framing::Expect),
            ("Host: b", Framing::DuplicateHost),
        ];
        for (extra, want) in cases {
            let raw = format!("POST / HTTP/1.1\r\nHost: a\r\n{extra}\r\n\r\n");
            assert_eq!(parse(raw.as_bytes()), Err(*want), "{extra:?}");
        }
    }

    #[test]
    fn line_shapes_are_refused() {
        assert_eq!(refused("GET / HTTP/1.1\nHost: a\r\n\r\n"), Framing::BareLf);
        assert_eq!(refused("GET / HTTP/1.1\r\nHost: a\n\r\n"), Framing::BareLf);
        assert_eq!(
            refused("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n"),
            Framing::Header
        );
        assert_eq!(refused("GET / HTTP/1.1\r\n\r\n"), Framing::MissingHost);
        for line in [
            "GET  / HTTP/1.1",
            "G\u{1}T / HTTP/1.1",
            "GET /\u{7f} HTTP/1.1",
            " GET / HTTP/1.1",
            "\r\nG\u{1}T / HTTP/1.1",
        ] {
            assert_eq!(
                refused(&format!("{line}\r\nHost: a\r\n\r\n")),
                Framing::RequestLine,
                "{line:?}"
            );
        }
        for field in ["Bad Name: x", "X: a\u{0}b", "Host : a", ": empty"] {
            assert_eq!(
                refused(&format!("\r\nGET / HTTP/1.1\r\n{field}\r\n\r\n")),
                Framing::Header,
                "{field:?} after an empty line"
            );
            assert_eq!(
                refused(&format!("GET / HTTP/1.1\r\n{field}\r\n\r\n")),
                Framing::Header,
                "{field:?}"
            );
        }
        for line in ["GET / HTTP/2.0", "GET / HTTP/1.2", "\r\nGET / HTTP/3"] {
            assert_eq!(
                refused(&format!("{line}\r\nHost: a\r\n\r\n")),
                Framing::Version,
                "{line:?}"
            );
        }
        // A space in the target leaves httparse a version of `b`: the line
        // is what is wrong.
        for line in ["GET /a b HTTP/1.1", "GET / HTTP/1.1 x", "GET / http/1.1"] {
            assert_eq!(
                refused(&format!("{line}\r\nHost: a\r\n\r\n")),
                Framing::RequestLine,
                "{line:?}"
            );
        }
        assert_eq!(
            refused("GET ftp://a/x HTTP/1.1\r\nHost: a\r\n\r\n"),
            Framing::Scheme
        );
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            refused(&format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n")),
            Framing::TooManyHeaders
        );
    }

    #[test]
    fn connection_semantics() {
        assert!(!ok("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!ok("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(ok("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
        assert!(ok("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n").expect_continue);
    }
}
