//! Property tests for the parsers that face the network and the operator:
//! the canonical path check, credential extraction and stripping, client-IP
//! resolution, and config parsing. Each runs a few hundred generated cases
//! (failures are shrunk and saved under `tests/proptest-regressions/`).
//!
//! - The path check never panics; what it accepts it accepts again with the
//!   same result, the decoded form holds no dot segment, empty segment,
//!   backslash, `;`, `%` or control character, and an upstream that
//!   re-encodes it gets the same reading.
//! - Credential extraction never panics, never yields more than one
//!   credential, and agrees with a reference model of "exactly one or 400";
//!   stripping removes every parameter that decodes to `api_key` and keeps
//!   the rest in order, byte for byte.
//! - `client_ip` never panics and names the peer or an address written in
//!   X-Forwarded-For, and only the peer when the peer is not trusted.
//! - `Config::from_toml` never panics on arbitrary text, on TOML-shaped
//!   noise, or on mutations of the sample `gateway.toml`, and is
//!   deterministic.

use std::net::IpAddr;
use std::path::Path;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use ipnet::IpNet;
use osir_gateway::config::Config;
use osir_gateway::error::GatewayError;
use osir_gateway::keys::canonical_ip;
use osir_gateway::pipeline::client_ip::{client_ip, is_trusted};
use osir_gateway::pipeline::credential::{extract, strip_key_param, Credential};
use osir_gateway::pipeline::path::check;
use proptest::prelude::*;
use proptest::sample::select;

const CASES: u32 = 512;
const CONFIG_CASES: u32 = 256;

// ---- the path check ---------------------------------------------------------

const PATH_TOKENS: &[&str] = &[
    "/", "/", "/", ".", "..", "...", "%2e", "%2E", "%2f", "%2F", "%5c", "%5C", "\\", ";", "%3b",
    "%25", "%00", "%0a", "%7f", "%7F", "\u{1}", "\u{7f}", "a", "v1", "domains", "status", "%41",
    "%61", "%c3%a9", "%C3%A9", "%ff", "%c3", "%e2%82", "~", "-", "_", "é", "%", "%2", "%zz", " ",
    "*", ":", "@", "!", "$", "&", "'", "(", ")", "+", ",", "=",
];

fn token_path() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        prop::collection::vec(select(PATH_TOKENS), 0..14),
    )
        .prop_map(|(slash, tokens)| {
            let body = tokens.concat();
            if slash {
                format!("/{body}")
            } else {
                body
            }
        })
}

/// Percent-encodes everything but unreserved characters and `/`, as an
/// upstream or client library normalising a path might.
fn reencode(decoded: &str) -> String {
    decoded
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn check_path(raw: &str) -> Result<(), TestCaseError> {
    let Ok(c) = check(raw) else {
        return Ok(());
    };
    prop_assert_eq!(c.raw, raw);
    let again = check(c.raw).map_err(|e| TestCaseError::fail(format!("{e}")))?;
    prop_assert_eq!(&again.decoded, &c.decoded);
    let d: &str = &c.decoded;
    prop_assert!(d.starts_with('/'), "{d:?}");
    for bad in ["//", "/./", "/../", "\\", ";", "%"] {
        prop_assert!(!d.contains(bad), "{raw:?} decoded to {d:?}");
    }
    prop_assert!(!d.ends_with("/.") && !d.ends_with("/.."), "{d:?}");
    prop_assert!(!d.chars().any(char::is_control), "{d:?}");
    let by_hand: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
    prop_assert_eq!(by_hand, d.as_bytes());
    // Re-encoded, it reads the same.
    let re = reencode(d);
    let re_checked = check(&re).map_err(|e| TestCaseError::fail(format!("{re:?}: {e}")))?;
    prop_assert_eq!(&re_checked.decoded, &c.decoded);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn path_check_on_arbitrary_text(raw in any::<String>()) {
        check_path(&raw)?;
    }

    #[test]
    fn path_check_on_token_soup(raw in token_path()) {
        check_path(&raw)?;
    }
}

#[test]
fn path_token_soup_reaches_both_outcomes() {
    // Guard against a generator that only ever makes refusals.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..2000 {
        let p = token_path().new_tree(&mut runner).unwrap().current();
        if check(&p).is_ok() {
            ok += 1;
        } else {
            refused += 1;
        }
    }
    assert!(ok > 50 && refused > 50, "ok {ok}, refused {refused}");
}

// ---- credentials ------------------------------------------------------------

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

// ---- client IP ----------------------------------------------------------------

const NETS: &[&str] = &[
    "127.0.0.0/8",
    "10.0.0.0/8",
    "0.0.0.0/0",
    "::/0",
    "::1/128",
    "203.0.113.0/24",
    "2001:db8::/32",
    "192.168.1.1/32",
];

const HOP_JUNK: &[&str] = &[
    "",
    " ",
    "\t",
    "garbage",
    "unknown",
    "1.2.3.4:80",
    "[::1]",
    "fe80::1%eth0",
    "010.1.1.1",
    "1.2.3",
    "0x7f000001",
    "::ffff:",
    "1.2.3.4/8",
    "_",
    "for=1.2.3.4",
];

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<IpAddr>(),
        select(
            &[
                "127.0.0.1",
                "10.1.2.3",
                "203.0.113.7",
                "::1",
                "::ffff:10.1.2.3",
                "::ffff:203.0.113.7",
                "2001:db8::1",
                "192.168.1.1",
            ][..]
        )
        .prop_map(|s| s.parse().unwrap()),
    ]
}

fn hop() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (ip(), select(&["", " ", "\t", "  "][..]), select(&["", " ", "\t"][..]))
            .prop_map(|(ip, l, r)| format!("{l}{ip}{r}")),
        1 => select(HOP_JUNK).prop_map(str::to_owned),
    ]
}

fn xff_line() -> impl Strategy<Value = String> {
    prop::collection::vec(hop(), 0..6).prop_map(|hops| hops.join(","))
}

fn hop_ip(hop: &str) -> Option<IpAddr> {
    hop.trim_matches(|c| c == ' ' || c == '\t')
        .parse()
        .ok()
        .map(canonical_ip)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn client_ip_is_the_peer_or_a_written_hop(
        peer in ip(),
        nets in prop::collection::vec(select(NETS), 0..4),
        lines in prop::collection::vec(xff_line(), 0..4),
    ) {
        let trusted: Vec<IpNet> = nets.iter().map(|n| n.parse().unwrap()).collect();
        let mut headers = HeaderMap::new();
        for l in &lines {
            if let Ok(v) = HeaderValue::from_str(l) {
                headers.append("x-forwarded-for", v);
            }
        }
        let got = client_ip(peer, &headers, &trusted);
        let peer = canonical_ip(peer);
        prop_assert_eq!(got, canonical_ip(got), "not canonical");
        if !is_trusted(peer, &trusted) {
            prop_assert_eq!(got, peer);
        } else if got != peer {
            let written: Vec<IpAddr> = lines.iter().flat_map(|l| l.split(',')).filter_map(hop_ip).collect();
            prop_assert!(written.contains(&got), "{got} not in {lines:?}");
        }
    }
}

// ---- config ----------------------------------------------------------------------

const SAMPLE: &str = include_str!("../../gateway.toml");

const TOML_TOKENS: &[&str] = &[
    "[server]\n",
    "[server.http2]\n",
    "[server.tls]\n",
    "[admin]\n",
    "[store]\n",
    "[cache]\n",
    "[auth]\n",
    "[log]\n",
    "[usage]\n",
    "[upstreams.a]\n",
    "[upstreams.\"b c\"]\n",
    "[[routes]]\n",
    "listen = ",
    "url = ",
    "prefix = ",
    "upstream = ",
    "resource = ",
    "public = ",
    "max_body = ",
    "ttl = ",
    "capacity = ",
    "trusted_proxies = ",
    "scopes = ",
    "backend = ",
    "path = ",
    "max_header_bytes = ",
    "workers = ",
    "max_connections = ",
    "\"127.0.0.1:0\"",
    "\"[::1]:99999\"",
    "\"http://127.0.0.1:1\"",
    "\"redis://x\"",
    "\"file\"",
    "\"/v1/a\"",
    "\"/\"",
    "\"a\"",
    "\"\"",
    "\"1s\"",
    "\"0s\"",
    "\"1.5s\"",
    "\"99999999999999d\"",
    "\"10MiB\"",
    "\"8EiB\"",
    "\"-1\"",
    "0",
    "-1",
    "9223372036854775807",
    "1e308",
    "true",
    "[\"10.0.0.0/33\"]",
    "[]",
    "{ GET = \"*\" }",
    "{ DELETE = \"a:b:c\" }",
    "\n",
    "\n",
    "=",
    "\"",
    "[",
    "]",
    "{",
    "}",
    "#",
    "é",
    "\u{0}",
];

/// One edit of a text: delete a range, insert junk, or duplicate a line.
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, String),
    DuplicateLine(usize),
    SwapLines(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 0usize..40).prop_map(|(at, n)| Edit::Delete(at, n)),
        (
            any::<usize>(),
            prop_oneof![select(TOML_TOKENS).prop_map(str::to_owned), any::<String>()]
        )
            .prop_map(|(at, s)| Edit::Insert(at, s)),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
    ]
}

fn apply(text: &str, edit: &Edit) -> String {
    let char_at = |at: usize| {
        let n = text.chars().count().max(1);
        text.char_indices()
            .nth(at % n)
            .map_or(text.len(), |(i, _)| i)
    };
    match edit {
        Edit::Delete(at, n) => {
            let start = char_at(*at);
            let end = text[start..]
                .char_indices()
                .nth(*n)
                .map_or(text.len(), |(i, _)| start + i);
            format!("{}{}", &text[..start], &text[end..])
        }
        Edit::Insert(at, s) => {
            let i = char_at(*at);
            format!("{}{s}{}", &text[..i], &text[i..])
        }
        Edit::DuplicateLine(at) => {
            let mut lines: Vec<&str> = text.lines().collect();
            if !lines.is_empty() {
                let i = at % lines.len();
                lines.insert(i, lines[i]);
            }
            lines.join("\n")
        }
        Edit::SwapLines(a, b) => {
            let mut lines: Vec<&str> = text.lines().collect();
            if !lines.is_empty() {
                let n = lines.len();
                lines.swap(a % n, b % n);
            }
            lines.join("\n")
        }
    }
}

fn parses_deterministically(text: &str) -> Result<(), TestCaseError> {
    let a = Config::from_toml(text, Path::new("/etc/osir"));
    let b = Config::from_toml(text, Path::new("/etc/osir"));
    prop_assert_eq!(a, b);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CONFIG_CASES))]

    #[test]
    fn config_parsing_survives_arbitrary_text(text in any::<String>()) {
        parses_deterministically(&text)?;
    }

    #[test]
    fn config_parsing_survives_toml_shaped_noise(tokens in prop::collection::vec(select(TOML_TOKENS), 0..40)) {
        parses_deterministically(&tokens.concat())?;
    }

    #[test]
    fn config_parsing_survives_mutations_of_the_sample(edits in prop::collection::vec(edit(), 1..6)) {
        let text = edits.iter().fold(SAMPLE.to_owned(), |t, e| apply(&t, e));
        parses_deterministically(&text)?;
    }
}

#[test]
fn sample_mutations_reach_both_outcomes() {
    // The mutation test starts from a valid file, and its edits leave some
    // files valid and make others invalid (not only syntax errors).
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    assert!(Config::from_toml(SAMPLE, Path::new("/etc/osir")).is_ok());
    let mut runner = TestRunner::deterministic();
    let (mut ok, mut semantic, mut syntax) = (0, 0, 0);
    for _ in 0..500 {
        let e = edit().new_tree(&mut runner).unwrap().current();
        match Config::from_toml(&apply(SAMPLE, &e), Path::new("/etc/osir")) {
            Ok(_) => ok += 1,
            Err(errs) if errs.0.iter().all(|p| p.path != "config") => semantic += 1,
            Err(_) => syntax += 1,
        }
    }
    assert!(
        ok > 20 && semantic > 20 && syntax > 20,
        "ok {ok}, semantic {semantic}, syntax {syntax}"
    );
}
