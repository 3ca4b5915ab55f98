//! Property tests for credential extraction and stripping (see the list in `props`).

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use osir_gateway::error::GatewayError;
use osir_gateway::pipeline::credential::{extract, strip_key_param, Credential};
use proptest::prelude::*;
use proptest::sample::select;

use super::CASES;

const QUERY_TOKENS: &[&str] = &[
    "api_key",
    "api%5Fkey",
    "api%5fkey",
    "%61pi_key",
    "API_KEY",
    "apikey",
    "api_key%00",
    "api%255Fkey",
    "=",
    "=",
    "&",
    "&",
    "a",
    "1",
    "%",
    "%zz",
    "%FF",
    "%C3%A9",
    "osir_live_abc",
    "+",
    ";",
    "[]",
    "key",
    "_",
];

const AUTH_TOKENS: &[&str] = &[
    "Bearer",
    "bearer",
    "BEARER",
    "Basic",
    " ",
    " ",
    "\t",
    "osir_live_",
    "abc",
    ",",
    "=",
    "é",
    "\u{80}",
    "Bearer ",
    "Bearer  ",
    "x",
];

fn query() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop::collection::vec(select(QUERY_TOKENS), 0..10).prop_map(|t| t.concat()))
}

fn auth_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..40),
        prop::collection::vec(select(AUTH_TOKENS), 0..6).prop_map(|t| t.concat().into_bytes()),
    ]
}

fn decodes_to_api_key(name: &str) -> bool {
    percent_encoding::percent_decode_str(name).eq(b"api_key".iter().copied())
}

fn piece_name(piece: &str) -> &str {
    piece.split_once('=').map_or(piece, |(n, _)| n)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn credentials_are_exactly_one_or_refused(
        auths in prop::collection::vec(auth_value(), 0..3),
        query in query(),
        query_key in any::<bool>(),
    ) {
        let mut headers = HeaderMap::new();
        for a in &auths {
            if let Ok(v) = HeaderValue::from_bytes(a) {
                headers.append(AUTHORIZATION, v);
            }
        }
        let n_auth = headers.get_all(AUTHORIZATION).iter().count();
        let n_query = if query_key {
            query.as_deref().map_or(0, |q| q.split('&').filter(|p| decodes_to_api_key(piece_name(p))).count())
        } else {
            0
        };
        let got = extract(&headers, query.as_deref(), query_key);
        match (n_auth, n_query) {
            (0, 0) => prop_assert_eq!(got, Ok(None)),
            (1, 0) => prop_assert!(matches!(got, Ok(Some(Credential::Bearer(_) | Credential::Unusable))), "{got:?}"),
            (0, 1) => prop_assert!(matches!(got, Ok(Some(Credential::Query(_) | Credential::Unusable))), "{got:?}"),
            _ => prop_assert_eq!(got, Err(GatewayError::AmbiguousCredentials)),
        }
        if let Ok(Some(Credential::Bearer(token))) = extract(&headers, query.as_deref(), query_key) {
            let value = headers.get(AUTHORIZATION).unwrap().as_bytes();
            prop_assert!(value.len() > 7 && value[..7].eq_ignore_ascii_case(b"bearer "), "{value:?}");
            prop_assert!(!token.is_empty() && token.is_ascii());
            prop_assert!(!token.starts_with([' ', '\t']) && !token.ends_with([' ', '\t']));
        }
    }

    #[test]
    fn stripping_cuts_every_api_key_and_keeps_the_rest(q in prop::collection::vec(select(QUERY_TOKENS), 0..12).prop_map(|t| t.concat())) {
        let pieces: Vec<&str> = q.split('&').collect();
        let kept: Vec<&str> = pieces.iter().copied().filter(|p| !decodes_to_api_key(piece_name(p))).collect();
        let want = if kept.len() == pieces.len() {
            (!q.is_empty()).then(|| q.clone())
        } else if kept.is_empty() {
            None
        } else {
            Some(kept.join("&"))
        };
        let got = strip_key_param(&q).map(|c| c.into_owned());
        prop_assert_eq!(got, want);
    }
}
