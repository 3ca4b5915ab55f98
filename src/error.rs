//! Every answer the gateway's data path makes itself, in one place.
//!
//! Each cause is a variant; its status, its contract code (which is also the
//! `reason` label of `osir_gateway_requests_total`) and its message come from
//! exhaustive matches with no catch-all arm, so a new cause cannot ship
//! without a deliberate answer. A cause keeps what produced it (the path
//! check's finding, the upstream's or the store's error) as its `source()`,
//! for diagnostics; the client sees only the code and the message. No
//! variant carries a key or a raw path. The admin API's own causes are
//! `admin::error::AdminError`, rendered through [`json_response`].
//!
//! Kept in one file on purpose: every cause's status, code and message are
//! exhaustive matches side by side, and the detail enums (`PathError`,
//! `BadRequest`, `Framing`, `UpstreamFailure`) are read with them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderName, HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::keys::{Place, Scope};

/// A cause kept for diagnostics (logs); never shown to the client.
pub type Source = Arc<dyn std::error::Error + Send + Sync>;

/// Why a path was refused; only for logs and tests, the client always gets
/// `invalid_path`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Not origin-form: empty or no leading `/`.
    #[error("path must start with /")]
    NotAbsolute,
    /// `.` or `..`, raw or encoded.
    #[error("dot segment")]
    DotSegment,
    /// `//` somewhere.
    #[error("empty segment")]
    EmptySegment,
    /// `\`, `;`, raw or encoded; or encoded `/` or `%`.
    #[error("forbidden character")]
    Forbidden,
    /// NUL or another control character, raw or encoded.
    #[error("control character")]
    Control,
    /// `%` not followed by two hex digits.
    #[error("bad percent escape")]
    BadEscape,
    /// Raw bytes above 0x7f, or decoded bytes that are not UTF-8.
    #[error("not UTF-8")]
    NotUtf8,
    /// A segment ending in `.` or whitespace (raw or decoded).
    #[error("segment ends in a dot or whitespace")]
    TrailingDotOrSpace,
    /// A decoded code point that NFKC normalisation changes.
    #[error("not in NFKC form")]
    NotNormalized,
}

/// What was malformed about a request (400 `invalid_request`); the text is
/// the message the client reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadRequest {
    /// An `Upgrade` header: the gateway proxies plain requests only.
    #[error("protocol upgrades are not supported")]
    Upgrade,
    /// An absolute-form target naming another host than `Host`.
    #[error("the request target's authority differs from the Host header")]
    AuthorityMismatch,
    /// Two `Host` headers.
    #[error("more than one Host header")]
    DuplicateHost,
    /// A `_method` query parameter naming another method than the
    /// request's: frameworks that honour it would run the request as that.
    #[error("the _method query parameter may not name another method than the request's")]
    MethodOverride,
    /// The checked path and query do not form an upstream URI.
    #[error("the request target cannot be forwarded")]
    Unforwardable,
    /// The HTTP/1.1 framing is malformed or ambiguous.
    #[error(transparent)]
    Framing(Framing),
    /// The request body is malformed or ended before its declared end.
    #[error("the request body is malformed or ended early")]
    Body,
}

pub use crate::http1::Framing;

/// How the upstream failed (502 `upstream_unavailable`).
#[derive(Clone, Debug, thiserror::Error)]
pub enum UpstreamFailure {
    /// No connection could be made (refused, unreachable, connect timeout).
    #[error("cannot connect to the upstream")]
    Connect(#[source] Source),
    /// The connection broke before the response head was complete.
    #[error("the upstream connection broke")]
    Broken(#[source] Source),
    /// Every connection the pool may open (`pool_max`) stayed busy for
    /// all of `pool_wait`.
    #[error("no upstream connection became free in time")]
    Exhausted(#[source] Source),
    /// The route names an upstream the snapshot lacks (a validated config
    /// never does this).
    #[error("the route's upstream is not configured")]
    Missing,
}

/// A request the gateway answers itself instead of forwarding.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    /// The path failed the canonical check.
    #[error("the request path is not allowed")]
    InvalidPath(#[source] PathError),
    /// More than one credential was sent.
    #[error("send exactly one credential: one Authorization header or one api_key parameter")]
    AmbiguousCredentials,
    /// A well-formed key somewhere other than `Authorization` or `api_key`.
    #[error("an API key was found in {0}; send keys only as Authorization: Bearer <key> (or as the api_key query parameter where enabled), never elsewhere")]
    MisplacedApiKey(Place),
    /// Malformed request; the cause says what was wrong, never a secret.
    #[error(transparent)]
    InvalidRequest(BadRequest),
    /// CONNECT, `OPTIONS *`, or a method with no scope mapping; carries the
    /// `Allow` header value (the methods that are allowed there).
    #[error("this method is not allowed here")]
    MethodNotAllowed(&'static str),
    /// Body over the route's limit.
    #[error("the request body is larger than this route accepts")]
    PayloadTooLarge,
    /// Header section over the limit.
    #[error("the request headers are too large")]
    HeadersTooLarge,
    /// No credential on a non-public route.
    #[error("an API key is required: send Authorization: Bearer <key>")]
    MissingApiKey,
    /// Malformed, bad checksum, other scheme, or unknown.
    #[error("the API key is not valid")]
    InvalidApiKey,
    /// Past its `expires_at`.
    #[error("the API key has expired")]
    ExpiredApiKey,
    /// Revoked.
    #[error("the API key has been revoked")]
    RevokedApiKey,
    /// Client IP outside the key's `allowed_ips`.
    #[error("this API key may not be used from this IP address")]
    IpNotAllowed,
    /// The key lacks the route's scope; names the scope that was required.
    #[error("this API key lacks the scope {0}")]
    InsufficientScope(Scope),
    /// No route matches the path.
    #[error("no route matches this path")]
    RouteNotFound,
    /// Over a limit; retry after the given time.
    #[error("too many requests")]
    RateLimited(Duration),
    /// Upstream refused, reset or broke the response.
    #[error("the upstream service is unavailable")]
    UpstreamUnavailable(#[source] UpstreamFailure),
    /// Store down and the key not cached; retry after `retry_after`.
    #[error("the key store is unavailable; retry shortly")]
    KeyStoreUnavailable {
        /// The `Retry-After` the client is given.
        retry_after: Duration,
        /// What the store said.
        #[source]
        source: Source,
    },
    /// Upstream did not send a response head in time.
    #[error("the upstream service did not answer in time")]
    UpstreamTimeout,
}

/// Two errors are equal when they give the same answer: the same code and
/// the same message (sources are diagnostics and are not compared).
impl PartialEq for GatewayError {
    fn eq(&self, other: &GatewayError) -> bool {
        self.code() == other.code() && self.to_string() == other.to_string()
    }
}

impl GatewayError {
    /// The HTTP status of this answer.
    pub fn status(&self) -> StatusCode {
        use GatewayError::*;
        match self {
            InvalidPath(_) | AmbiguousCredentials | MisplacedApiKey(_) | InvalidRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            MissingApiKey | InvalidApiKey | ExpiredApiKey | RevokedApiKey => {
                StatusCode::UNAUTHORIZED
            }
            IpNotAllowed | InsufficientScope(_) => StatusCode::FORBIDDEN,
            RouteNotFound => StatusCode::NOT_FOUND,
            RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            UpstreamUnavailable(_) => StatusCode::BAD_GATEWAY,
            KeyStoreUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The contract's error code, also the metrics `reason` label.
    pub fn code(&self) -> &'static str {
        use GatewayError::*;
        match self {
            InvalidPath(_) => "invalid_path",
            AmbiguousCredentials => "ambiguous_credentials",
            MisplacedApiKey(_) => "misplaced_api_key",
            InvalidRequest(_) => "invalid_request",
            MethodNotAllowed(_) => "method_not_allowed",
            PayloadTooLarge => "payload_too_large",
            HeadersTooLarge => "headers_too_large",
            MissingApiKey => "missing_api_key",
            InvalidApiKey => "invalid_api_key",
            ExpiredApiKey => "expired_api_key",
            RevokedApiKey => "revoked_api_key",
            IpNotAllowed => "ip_not_allowed",
            InsufficientScope(_) => "insufficient_scope",
            RouteNotFound => "route_not_found",
            RateLimited(_) => "rate_limited",
            UpstreamUnavailable(_) => "upstream_unavailable",
            KeyStoreUnavailable { .. } => "key_store_unavailable",
            UpstreamTimeout => "upstream_timeout",
        }
    }

    /// `Retry-After`, for the answers that invite a retry.
    fn retry_after(&self) -> Option<Duration> {
        use GatewayError::*;
        match self {
            RateLimited(d) | KeyStoreUnavailable { retry_after: d, .. } => Some(*d),
            InvalidPath(_)
            | AmbiguousCredentials
            | MisplacedApiKey(_)
            | InvalidRequest(_)
            | MethodNotAllowed(_)
            | PayloadTooLarge
            | HeadersTooLarge
            | MissingApiKey
            | InvalidApiKey
            | ExpiredApiKey
            | RevokedApiKey
            | IpNotAllowed
            | InsufficientScope(_)
            | RouteNotFound
            | UpstreamUnavailable(_)
            | UpstreamTimeout => None,
        }
    }

    /// The JSON error body of the contract, §6.
    pub fn body(&self, request_id: &str) -> Bytes {
        json_body(self.code(), self, request_id)
    }

    /// The answer, as a [`Refusal`] (its `X-Request-Id` is set by the
    /// caller, who owns the id: [`Refusal::set_request_id`]).
    pub fn refusal(&self, request_id: &str) -> Refusal {
        let mut r = Refusal::new(
            self.status(),
            self.code(),
            self,
            request_id,
            self.retry_after(),
        );
        if let GatewayError::MethodNotAllowed(allow) = self {
            r.allow = Some(allow);
        }
        r
    }

    /// The whole response (without `X-Request-Id`, which the caller adds to
    /// every response alike).
    pub fn to_response(&self, request_id: &str) -> Response<Full<Bytes>> {
        self.refusal(request_id).into_response()
    }
}

/// An answer the gateway makes itself: the contract's JSON body and the few
/// fields that go with it, kept without a header map. The HTTP/1.1 engine
/// writes [`Refusal::each_field`] straight into its answer head (a refusal is
/// the cheapest answer there is, and should stay so under a flood of bad
/// keys); HTTP/2 and the admin listener move them into a header map
/// ([`Refusal::move_fields_to`], [`Refusal::into_response`]).
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    /// Taken when sent as the body's one frame.
    body: Option<Bytes>,
    len: u64,
    www_authenticate: bool,
    retry_after: Option<u64>,
    allow: Option<&'static str>,
    request_id: Option<HeaderValue>,
}

/// The field that carries every answer's request id (the gateway's own and
/// the upstream's alike).
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// `WWW-Authenticate` of every 401.
const BEARER_CHALLENGE: &str = "Bearer realm=\"osir\"";

impl Refusal {
    /// The answer `status` with the JSON error body; 401s carry the
    /// `Bearer` challenge, and answers that invite a retry `Retry-After`
    /// (whole seconds, at least 1).
    pub fn new(
        status: StatusCode,
        code: &str,
        message: &dyn std::fmt::Display,
        request_id: &str,
        retry_after: Option<Duration>,
    ) -> Refusal {
        let body = json_body(code, message, request_id);
        Refusal {
            status,
            len: body.len() as u64,
            body: Some(body),
            www_authenticate: status == StatusCode::UNAUTHORIZED,
            retry_after: retry_after.map(|d| d.as_secs().max(1)),
            allow: None,
            request_id: None,
        }
    }

    /// The answer's status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The body's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Is the body empty? (Never, for the contract's shape.)
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The answer's `X-Request-Id`.
    pub fn set_request_id(&mut self, id: HeaderValue) {
        self.request_id = Some(id);
    }

    /// Calls `f` with the name (lower case) and value of each field, in the
    /// order they are written.
    pub fn each_field(&self, mut f: impl FnMut(&'static str, &[u8])) {
        f("content-type", b"application/json");
        if self.www_authenticate {
            f("www-authenticate", BEARER_CHALLENGE.as_bytes());
        }
        if let Some(s) = self.retry_after {
            f("retry-after", itoa::Buffer::new().format(s).as_bytes());
        }
        if let Some(allow) = self.allow {
            f("allow", allow.as_bytes());
        }
        if let Some(id) = &self.request_id {
            f("x-request-id", id.as_bytes());
        }
    }

    /// Moves the fields into `map` (replacing any of the same name); the
    /// refusal keeps only its body.
    pub fn move_fields_to(&mut self, map: &mut HeaderMap) {
        map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if std::mem::take(&mut self.www_authenticate) {
            map.insert(WWW_AUTHENTICATE, HeaderValue::from_static(BEARER_CHALLENGE));
        }
        if let Some(s) = self.retry_after.take() {
            map.insert(RETRY_AFTER, HeaderValue::from(s));
        }
        if let Some(allow) = self.allow.take() {
            map.insert(ALLOW, HeaderValue::from_static(allow));
        }
        if let Some(id) = self.request_id.take() {
            map.insert(X_REQUEST_ID, id);
        }
    }

    /// The answer as a response with a header map and a plain body.
    pub fn into_response(mut self) -> Response<Full<Bytes>> {
        let mut resp = Response::new(Full::new(self.body.take().unwrap_or_default()));
        *resp.status_mut() = self.status;
        self.move_fields_to(resp.headers_mut());
        resp
    }
}

impl http_body::Body for Refusal {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(
            self.get_mut()
                .body
                .take()
                .filter(|b| !b.is_empty())
                .map(|b| Ok(http_body::Frame::data(b))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(Bytes::is_empty)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.len)
    }
}

/// `{"error":{"code","message","request_id"}}`, the one error body shape.
pub fn json_body(code: &str, message: &dyn std::fmt::Display, request_id: &str) -> Bytes {
    // Written directly (one buffer, no intermediate JSON tree or message
    // string): refusals are the gateway's cheapest answers and should stay
    // so. Every dynamic part is escaped as serde_json escapes strings.
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(b"{\"error\":{\"code\":\"");
    out.extend_from_slice(code.as_bytes());
    out.extend_from_slice(b"\",\"message\":\"");
    // Writing into a Vec cannot fail.
    let _ = std::fmt::Write::write_fmt(&mut Escaping(&mut out), format_args!("{message}"));
    out.extend_from_slice(b"\",\"request_id\":");
    json_string(&mut out, request_id);
    out.extend_from_slice(b"}}");
    Bytes::from(out)
}

/// The bytes JSON strings escape: `"`, `\\` and the C0 controls.
static ESCAPED: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = true;
        b += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// `s` as a JSON string.
fn json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    escape_into(out, s);
    out.push(b'"');
}

/// A message formatted straight into the body, escaped on the way.
struct Escaping<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        escape_into(self.0, s);
        Ok(())
    }
}

/// The inside of a JSON string, escaped exactly as serde_json escapes:
/// `\"`, `\\`, the short forms `\b \f \n \r \t`, and `\u00xx` (lower-case
/// hex) for the other C0 controls. Text with nothing to escape (messages
/// and request ids almost always) is checked eight bytes at a time and
/// copied in one piece: every refusal's body passes through here, and a
/// byte-at-a-time scan was most of a 401's body cost.
fn escape_into(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    if !needs_escape(bytes) {
        out.extend_from_slice(bytes);
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !ESCAPED[usize::from(b)] {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]),
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Does any byte of `bytes` need an escape? Eight bytes at a time, then
/// the last few one by one.
fn needs_escape(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    let in_words = words.by_ref().any(|word| {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        word_needs_escape(u64::from_le_bytes(w))
    });
    in_words || words.remainder().iter().any(|b| ESCAPED[usize::from(*b)])
}

/// Does any of the eight bytes of `w` need an escape (a C0 control, `"`
/// or `\\`)? Exact, not a hint: each test below is true exactly when some
/// byte matches (the classic "has a byte less than n" and "has a zero
/// byte" tests, which are exact as a whole for n ≤ 128).
fn word_needs_escape(w: u64) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let has_less_than = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGHS != 0;
    let has = |w: u64, b: u8| has_less_than(w ^ (ONES * u64::from(b)), 1);
    has_less_than(w, 0x20) || has(w, b'"') || has(w, b'\\')
}

/// An error response in the contract's shape: the JSON body, its content
/// type, `WWW-Authenticate` on a 401 and `Retry-After` when given.
pub fn json_response(
    status: StatusCode,
    code: &str,
    message: &dyn std::fmt::Display,
    request_id: &str,
    retry_after: Option<Duration>,
) -> Response<Full<Bytes>> {
    Refusal::new(status, code, message, request_id, retry_after).into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::keys::Action;

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        for s in [
            "",
            "plain text",
            "caf\u{e9} \u{1f600}",
            "a \"quote\" and a \\ backslash",
            "tab\there, newline\n, nul\u{0}, unit sep\u{1f}, del\u{7f}",
        ] {
            let mut out = Vec::new();
            json_string(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
        // every ASCII byte alone, and between text
        for b in 0u8..128 {
            let c = char::from(b);
            for s in [c.to_string(), format!("a{c}b{c}")] {
                let mut out = Vec::new();
                json_string(&mut out, &s);
                assert_eq!(out, serde_json::to_vec(&s).unwrap(), "{s:?}");
            }
        }
    }

    #[test]
    fn every_byte_to_escape_is_found_at_every_place_in_a_word() {
        // The word-at-a-time scan must see an escape wherever it falls in
        // (or after) the eight-byte words, next to any other byte.
        let others: Vec<char> = (0u8..128)
            .map(char::from)
            .chain(['\u{e9}', '\u{1f600}'])
            .collect();
        for len in 1..=19 {
            for at in 0..len {
                for &c in &others {
                    for &fill in &['a', '\u{7f}', '\u{e9}'] {
                        let s: String = (0..len).map(|i| if i == at { c } else { fill }).collect();
                        let mut out = Vec::new();
                        json_string(&mut out, &s);
                        assert_eq!(out, serde_json::to_vec(&s).unwrap(), "{s:?}");
                    }
                }
            }
        }
        // The word test alone: each byte value at each place among bytes
        // that need no escape, next to the ones it could be mistaken for.
        for fill in [0x20u8, 0x21, 0x23, 0x5b, 0x5d, b'a', 0x7f, 0x80, 0xff] {
            for b in 0u8..=255 {
                for at in 0..8 {
                    let mut bytes = [fill; 8];
                    bytes[at] = b;
                    let w = u64::from_le_bytes(bytes);
                    assert_eq!(word_needs_escape(w), ESCAPED[usize::from(b)], "{w:#018x}");
                }
            }
        }
    }

    #[test]
    fn a_message_written_in_pieces_is_escaped_as_a_whole_string() {
        // A Display that writes several pieces, some to escape: the body
        // holds what serde_json makes of the whole formatted text.
        struct Pieces;
        impl std::fmt::Display for Pieces {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let part = "quoted\\";
                write!(f, "a \"{part}\" ")?;
                f.write_str("\n\u{1}end")
            }
        }
        let body = json_body("invalid_request", &Pieces, "rid");
        let want = serde_json::json!({"error": {
            "code": "invalid_request",
            "message": Pieces.to_string(),
            "request_id": "rid",
        }});
        assert_eq!(body, serde_json::to_vec(&want).unwrap());
    }

    #[test]
    fn bodies_escape_what_they_quote() {
        let v: serde_json::Value = serde_json::from_slice(&json_body(
            "invalid_request",
            &"name: \"x\"\n\\ bad",
            "r\"1",
        ))
        .unwrap();
        assert_eq!(v["error"]["message"], "name: \"x\"\n\\ bad");
        assert_eq!(v["error"]["request_id"], "r\"1");
    }

    #[test]
    fn body_has_the_contract_shape() {
        let e = GatewayError::InsufficientScope(Scope::new("domains", Action::Write));
        let v: serde_json::Value = serde_json::from_slice(&e.body("abc")).unwrap();
        assert_eq!(v["error"]["code"], "insufficient_scope");
        assert_eq!(v["error"]["request_id"], "abc");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("domains:write"));
        assert_eq!(e.status(), 403);
    }

    #[test]
    fn unauthorized_carries_challenge_and_store_outage_retry_after() {
        let r = GatewayError::MissingApiKey.to_response("x");
        assert_eq!(r.headers()[WWW_AUTHENTICATE], "Bearer realm=\"osir\"");
        let r = GatewayError::KeyStoreUnavailable {
            retry_after: Duration::from_secs(2),
            source: Arc::new(std::io::Error::other("down")),
        }
        .to_response("x");
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[RETRY_AFTER], "2");
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
    }

    #[test]
    fn method_not_allowed_carries_allow() {
        let r = GatewayError::MethodNotAllowed("GET, HEAD").to_response("x");
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()[ALLOW], "GET, HEAD");
    }

    /// What the HTTP/1.1 engine writes from a refusal is what the header
    /// map of HTTP/2 and the admin listener holds: same fields, same order,
    /// and the body is sent once, with the length it announces.
    #[test]
    fn a_refusal_writes_what_its_header_map_holds() {
        use http_body::Body as _;
        let store = std::io::Error::other("down");
        for e in [
            GatewayError::MissingApiKey,
            GatewayError::InsufficientScope(Scope::new("domains", Action::Read)),
            GatewayError::MethodNotAllowed("GET, HEAD"),
            GatewayError::RateLimited(Duration::from_millis(300)),
            GatewayError::KeyStoreUnavailable {
                retry_after: Duration::from_secs(2),
                source: Arc::new(store),
            },
        ] {
            let mut r = e.refusal("rid-1");
            r.set_request_id(HeaderValue::from_static("rid-1"));
            let mut written = Vec::new();
            r.each_field(|n, v| written.push((n.to_owned(), v.to_vec())));
            let len = r.len();
            assert_eq!(r.size_hint().exact(), Some(len));
            let resp = r.into_response();
            let mapped: Vec<_> = resp
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                .collect();
            assert_eq!(written, mapped, "{e:?}");
            assert_eq!(resp.status(), e.status());
            assert_eq!(resp.into_body().size_hint().exact(), Some(len));

            let mut r = e.refusal("rid-1");
            let body = e.body("rid-1");
            let waker = std::task::Waker::noop();
            let mut cx = std::task::Context::from_waker(waker);
            let mut pinned = std::pin::Pin::new(&mut r);
            let first = pinned.as_mut().poll_frame(&mut cx);
            let std::task::Poll::Ready(Some(Ok(frame))) = first else {
                panic!("no body frame: {e:?}");
            };
            assert_eq!(frame.into_data().unwrap(), body);
            assert!(pinned.is_end_stream());
            assert!(matches!(
                pinned.as_mut().poll_frame(&mut cx),
                std::task::Poll::Ready(None)
            ));
        }
        let mut r = GatewayError::RateLimited(Duration::from_millis(300)).refusal("x");
        let mut fields = Vec::new();
        r.each_field(|n, v| fields.push(format!("{n}: {}", String::from_utf8_lossy(v))));
        assert_eq!(fields, ["content-type: application/json", "retry-after: 1"]);
        let mut map = HeaderMap::new();
        r.move_fields_to(&mut map);
        let mut left = Vec::new();
        r.each_field(|n, _| left.push(n));
        assert_eq!(left, ["content-type"], "moved fields are not written twice");
    }
}
