//! Every answer the gateway makes itself, in one place.
//!
//! Each cause is a variant; its status, its contract code (which is also the
//! `reason` label of `osir_gateway_requests_total`) and its message come from
//! exhaustive matches with no catch-all arm, so a new cause cannot ship
//! without a deliberate answer. No variant carries a key or a raw path.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::record::Scope;

/// A request the gateway answers itself instead of forwarding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The path failed the canonical check.
    #[error("the request path is not allowed")]
    InvalidPath,
    /// More than one credential was sent.
    #[error("send exactly one credential: one Authorization header or one api_key parameter")]
    AmbiguousCredentials,
    /// A well-formed key somewhere other than `Authorization` or `api_key`.
    #[error("an API key was found in {0}; send keys only as Authorization: Bearer <key> (or as the api_key query parameter where enabled), never elsewhere")]
    MisplacedApiKey(crate::misplaced::Place),
    /// Malformed request (absolute-form with a foreign authority, Upgrade,
    /// bad admin input). The text names what was wrong, never a secret.
    #[error("{0}")]
    InvalidRequest(String),
    /// CONNECT, `OPTIONS *`, or a method with no scope mapping.
    #[error("this method is not allowed here")]
    MethodNotAllowed,
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
    UpstreamUnavailable,
    /// Store down and the key not cached.
    #[error("the key store is unavailable; retry shortly")]
    KeyStoreUnavailable(Duration),
    /// Upstream did not send a response head in time.
    #[error("the upstream service did not answer in time")]
    UpstreamTimeout,
    /// Admin API: no key with this id.
    #[error("no API key with this id")]
    KeyNotFound,
    /// Admin API: missing or wrong admin token.
    #[error("a valid admin token is required")]
    AdminUnauthorized,
    /// Admin API: the store or the process failed; the text is safe to show.
    #[error("{0}")]
    Internal(String),
}

impl GatewayError {
    /// The HTTP status of this answer.
    pub fn status(&self) -> StatusCode {
        use GatewayError::*;
        match self {
            InvalidPath | AmbiguousCredentials | MisplacedApiKey(_) | InvalidRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            MissingApiKey | InvalidApiKey | ExpiredApiKey | RevokedApiKey | AdminUnauthorized => {
                StatusCode::UNAUTHORIZED
            }
            IpNotAllowed | InsufficientScope(_) => StatusCode::FORBIDDEN,
            RouteNotFound | KeyNotFound => StatusCode::NOT_FOUND,
            RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            KeyStoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The contract's error code, also the metrics `reason` label.
    pub fn code(&self) -> &'static str {
        use GatewayError::*;
        match self {
            InvalidPath => "invalid_path",
            AmbiguousCredentials => "ambiguous_credentials",
            MisplacedApiKey(_) => "misplaced_api_key",
            InvalidRequest(_) => "invalid_request",
            MethodNotAllowed => "method_not_allowed",
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
            UpstreamUnavailable => "upstream_unavailable",
            KeyStoreUnavailable(_) => "key_store_unavailable",
            UpstreamTimeout => "upstream_timeout",
            KeyNotFound => "key_not_found",
            AdminUnauthorized => "unauthorized",
            Internal(_) => "internal_error",
        }
    }

    /// `Retry-After` seconds, for the answers that invite a retry.
    fn retry_after(&self) -> Option<Duration> {
        use GatewayError::*;
        match self {
            RateLimited(d) | KeyStoreUnavailable(d) => Some(*d),
            InvalidPath | AmbiguousCredentials | MisplacedApiKey(_) | InvalidRequest(_)
            | MethodNotAllowed | PayloadTooLarge | HeadersTooLarge | MissingApiKey
            | InvalidApiKey | ExpiredApiKey | RevokedApiKey | IpNotAllowed
            | InsufficientScope(_) | RouteNotFound | UpstreamUnavailable | UpstreamTimeout
            | KeyNotFound | AdminUnauthorized | Internal(_) => None,
        }
    }

    /// The JSON error body of the contract, §6.
    pub fn body(&self, request_id: &str) -> Bytes {
        // Written directly (one buffer, no intermediate JSON tree): refusals
        // are the gateway's cheapest answers and should stay so. Every
        // dynamic part goes through serde_json's string escaping.
        let mut out = Vec::with_capacity(160);
        out.extend_from_slice(b"{\"error\":{\"code\":\"");
        out.extend_from_slice(self.code().as_bytes());
        out.extend_from_slice(b"\",\"message\":");
        let mut ser = serde_json::Serializer::new(&mut out);
        // Writing into a Vec cannot fail. Texts that can quote client input
        // have any key-shaped run replaced by its hint.
        let _ = match self {
            GatewayError::InvalidRequest(text) | GatewayError::Internal(text) => {
                serde::Serializer::serialize_str(&mut ser, &crate::misplaced::redact(text))
            }
            _ => serde::Serializer::collect_str(&mut ser, self),
        };
        out.extend_from_slice(b",\"request_id\":");
        let _ = serde_json::to_writer(&mut out, request_id);
        out.extend_from_slice(b"}}");
        Bytes::from(out)
    }

    /// The whole response (without `X-Request-Id`, which the caller adds to
    /// every response alike).
    pub fn to_response(&self, request_id: &str) -> Response<Full<Bytes>> {
        let mut resp = Response::new(Full::new(self.body(request_id)));
        *resp.status_mut() = self.status();
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self.status() == StatusCode::UNAUTHORIZED {
            h.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"osir\""),
            );
        }
        if let Some(d) = self.retry_after() {
            h.insert(RETRY_AFTER, HeaderValue::from(d.as_secs().max(1)));
        }
        resp
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::record::Action;

    #[test]
    fn bodies_escape_what_they_quote() {
        let e = GatewayError::InvalidRequest("name: \"x\"\n\\ bad".into());
        let v: serde_json::Value = serde_json::from_slice(&e.body("r\"1")).unwrap();
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
        let r = GatewayError::KeyStoreUnavailable(Duration::from_secs(2)).to_response("x");
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[RETRY_AFTER], "2");
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
    }

    #[test]
    fn quoted_client_text_shows_keys_only_as_hints() {
        let k = crate::key::ApiKey::generate(crate::key::Env::Live).unwrap();
        let secret = k.expose_secret();
        for e in [
            GatewayError::InvalidRequest(format!("unknown scope {secret:?}")),
            GatewayError::Internal(format!("x{secret}y")),
        ] {
            let body = String::from_utf8(e.body("r").to_vec()).unwrap();
            assert!(!body.contains(&secret[10..]), "{body}");
            assert!(body.contains(&k.hint()), "{body}");
        }
    }
}
