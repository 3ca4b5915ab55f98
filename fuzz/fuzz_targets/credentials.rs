//! Credential extraction and stripping (as `credentials_*` and `stripping_*`
//! in tests/it/props.rs).
//!
//! Input: byte 0 holds `query_key` (bit 0), whether there is a query at all
//! (bit 1) and the number of Authorization headers (bits 2-3, 0..=3); the
//! rest is split on `\n`: the first pieces are the header values (invalid
//! ones skipped), what follows is the query string.
//!
//! `extract` never panics and never yields two credentials: more than one
//! header, more than one `api_key` parameter, or one of each is
//! `AmbiguousCredentials`. `strip_key_param` keeps exactly the pieces whose
//! decoded name is not `api_key`, byte for byte and in order.
#![no_main]

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use osir_gateway::pipeline::credential::{extract, strip_key_param, Credential};
use osir_gateway::error::GatewayError;

fn decodes_to_api_key(name: &str) -> bool {
    percent_encoding::percent_decode_str(name).eq(b"api_key".iter().copied())
}

fn piece_name(piece: &str) -> &str {
    piece.split_once('=').map_or(piece, |(n, _)| n)
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let query_key = flags & 1 != 0;
    let has_query = flags & 2 != 0;
    let n_headers = usize::from((flags >> 2) & 3);

    let mut parts = rest.splitn(n_headers + 1, |&b| b == b'\n');
    let mut headers = HeaderMap::new();
    for value in parts.by_ref().take(n_headers) {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.append(AUTHORIZATION, v);
        }
    }
    let query = if has_query {
        match std::str::from_utf8(parts.next().unwrap_or_default()) {
            Ok(q) => Some(q),
            Err(_) => return,
        }
    } else {
        None
    };

    // Reference model: exactly one credential, or a refusal.
    let n_auth = headers.get_all(AUTHORIZATION).iter().count();
    let n_query = match (query_key, query) {
        (true, Some(q)) => q
            .split('&')
            .filter(|p| decodes_to_api_key(piece_name(p)))
            .count(),
        _ => 0,
    };
    let got = extract(&headers, query, query_key);
    match (n_auth, n_query) {
        (0, 0) => assert_eq!(got, Ok(None)),
        (1, 0) => assert!(
            matches!(got, Ok(Some(Credential::Bearer(_) | Credential::Unusable))),
            "{got:?}"
        ),
        (0, 1) => assert!(
            matches!(got, Ok(Some(Credential::Query(_) | Credential::Unusable))),
            "{got:?}"
        ),
        _ => assert_eq!(got, Err(GatewayError::AmbiguousCredentials)),
    }
    match &got {
        Ok(Some(Credential::Bearer(token))) => {
            let value = headers
                .get(AUTHORIZATION)
                .map(HeaderValue::as_bytes)
                .unwrap_or_default();
            assert!(
                value.len() > 7 && value[..7].eq_ignore_ascii_case(b"bearer "),
                "{value:?}"
            );
            assert!(!token.is_empty() && token.is_ascii(), "{token:?}");
            assert!(
                !token.starts_with([' ', '\t']) && !token.ends_with([' ', '\t']),
                "{token:?}"
            );
        }
        Ok(Some(Credential::Query(token))) => assert!(!token.is_empty()),
        _ => {}
    }

    if let Some(q) = query {
        let stripped = strip_key_param(q);
        if let Some(s) = stripped.as_deref() {
            for piece in s.split('&') {
                assert!(
                    !decodes_to_api_key(piece_name(piece)),
                    "{q:?} stripped to {s:?}"
                );
            }
        }
        let pieces: Vec<&str> = q.split('&').collect();
        let kept: Vec<&str> = pieces
            .iter()
            .copied()
            .filter(|p| !decodes_to_api_key(piece_name(p)))
            .collect();
        let want = if kept.len() == pieces.len() {
            (!q.is_empty()).then(|| q.to_owned())
        } else if kept.is_empty() {
            None
        } else {
            Some(kept.join("&"))
        };
        assert_eq!(stripped.map(|c| c.into_owned()), want, "{q:?}");
    }
});
