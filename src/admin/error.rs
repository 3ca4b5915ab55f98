//! The admin listener's own answers: its causes are not the data path's
//! (no key is checked here, an unknown id is not a missing route), but its
//! bodies have the same shape, through [`crate::error::json_response`].

use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::manage::KeyOpError;
use crate::store::StoreError;

/// Why an admin request was not served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AdminError {
    /// No such admin path (also the key API while no token is configured).
    #[error("no route matches this path")]
    RouteNotFound,
    /// A path that exists, with a method it does not take; carries the
    /// `Allow` header value.
    #[error("this method is not allowed here")]
    MethodNotAllowed(&'static str),
    /// Missing or wrong admin token.
    #[error("a valid admin token is required")]
    Unauthorized,
    /// This client IP failed the token check too often; retry after the
    /// given time.
    #[error("too many failed admin token attempts from this address; retry later")]
    RateLimited(Duration),
    /// No key with this id.
    #[error("no API key with this id")]
    KeyNotFound,
    /// A field of the input is wrong; the text names the field and quotes
    /// the bad value.
    #[error("{0}")]
    Invalid(#[source] KeyOpError),
    /// The query string is not what this call takes (the text names the
    /// parameter).
    #[error("{0}")]
    BadQuery(String),
    /// The key is in a state the call cannot act on (rotating a revoked or
    /// expired key): 409.
    #[error("{0}")]
    Conflict(#[source] KeyOpError),
    /// The body is not the JSON this call takes.
    #[error("body: {0}")]
    BadBody(#[source] serde_json::Error),
    /// The body is over the admin API's size limit, or could not be read.
    #[error("body: at most {limit} bytes of JSON")]
    BodyTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The body could not be read (the client broke off or sent bad framing).
    #[error("body: cannot be read")]
    BodyUnreadable(#[source] crate::error::Source),
    /// The store did not answer.
    #[error("the key store is unavailable; retry shortly")]
    StoreUnavailable(#[source] StoreError),
    /// A stored record cannot be read; the message names it and the field.
    #[error("{0}")]
    CorruptRecord(#[source] StoreError),
    /// The operation failed in a way the caller cannot fix (the OS random
    /// source, a batch that stopped part-way); the text is safe to show.
    #[error("{0}")]
    Internal(#[source] KeyOpError),
}

impl From<KeyOpError> for AdminError {
    fn from(e: KeyOpError) -> AdminError {
        match e {
            KeyOpError::NotFound(_) => AdminError::KeyNotFound,
            // The key's own state, not the input, is what is wrong (only
            // rotation names the field `id`, for a revoked or expired key).
            KeyOpError::Invalid { field: "id", .. } => AdminError::Conflict(e),
            KeyOpError::Invalid { .. } | KeyOpError::NothingToChange(_) => AdminError::Invalid(e),
            KeyOpError::Store(s @ StoreError::Corrupt { .. }) => AdminError::CorruptRecord(s),
            KeyOpError::Store(s) => AdminError::StoreUnavailable(s),
            KeyOpError::Random(_) | KeyOpError::Partial { .. } | KeyOpError::Unreadable { .. } => {
                AdminError::Internal(e)
            }
        }
    }
}

impl AdminError {
    fn status(&self) -> StatusCode {
        use AdminError::*;
        match self {
            RouteNotFound | KeyNotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Conflict(_) => StatusCode::CONFLICT,
            Unauthorized => StatusCode::UNAUTHORIZED,
            RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Invalid(_) | BadQuery(_) | BadBody(_) | BodyTooLarge { .. } | BodyUnreadable(_) => {
                StatusCode::BAD_REQUEST
            }
            StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            CorruptRecord(_) | Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The error code in the body (the contract's, where it has one).
    fn code(&self) -> &'static str {
        use AdminError::*;
        match self {
            RouteNotFound => "route_not_found",
            MethodNotAllowed(_) => "method_not_allowed",
            Unauthorized => "unauthorized",
            RateLimited(_) => "rate_limited",
            KeyNotFound => "key_not_found",
            Conflict(_) => "conflict",
            Invalid(_) | BadQuery(_) | BadBody(_) | BodyTooLarge { .. } | BodyUnreadable(_) => {
                "invalid_request"
            }
            StoreUnavailable(_) => "key_store_unavailable",
            CorruptRecord(_) => "corrupt_key_record",
            Internal(_) => "internal_error",
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        use AdminError::*;
        match self {
            StoreUnavailable(_) => Some(Duration::from_secs(1)),
            RateLimited(d) => Some(*d),
            RouteNotFound
            | MethodNotAllowed(_)
            | Unauthorized
            | KeyNotFound
            | Conflict(_)
            | Invalid(_)
            | BadQuery(_)
            | BadBody(_)
            | BodyTooLarge { .. }
            | BodyUnreadable(_)
            | CorruptRecord(_)
            | Internal(_) => None,
        }
    }

    /// The response, in the contract's error shape.
    pub(crate) fn to_response(&self, request_id: &str) -> Response<Full<Bytes>> {
        if let AdminError::StoreUnavailable(e) | AdminError::CorruptRecord(e) = self {
            tracing::error!(error = %e, "admin key operation failed");
        }
        let mut resp = crate::error::json_response(
            self.status(),
            self.code(),
            self,
            request_id,
            self.retry_after(),
        );
        if let AdminError::MethodNotAllowed(allow) = self {
            resp.headers_mut()
                .insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
        }
        resp
    }
}
