//! Property tests for the canonical path check (see the list in `props`).

use osir_gateway::pipeline::path::check;
use proptest::prelude::*;
use proptest::sample::select;

use super::CASES;

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
