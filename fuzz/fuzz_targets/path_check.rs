//! The canonical path check (same invariants as `path_check_*` in
//! tests/it/props.rs): never panics; what it accepts it accepts again with
//! the same result; the decoded form starts with `/` and holds no dot
//! segment, empty segment, `\`, `;`, `%` or control character, equals a
//! plain percent-decode of the raw bytes, and reads the same once
//! re-encoded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use osir_gateway::pipeline::path::check;

/// Percent-encodes everything but unreserved characters and `/`.
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

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(c) = check(raw) else {
        return;
    };
    assert_eq!(c.raw, raw);
    let again = check(c.raw).expect("an accepted path is refused the second time");
    assert_eq!(again, c, "second check differs");

    let d: &str = &c.decoded;
    assert!(d.starts_with('/'), "{raw:?} decoded to {d:?}");
    for bad in ["//", "\\", ";", "%"] {
        assert!(!d.contains(bad), "{raw:?} decoded to {d:?}");
    }
    for seg in d[1..].split('/') {
        assert!(seg != "." && seg != "..", "{raw:?} decoded to {d:?}");
    }
    assert!(!d.chars().any(char::is_control), "{raw:?} decoded to {d:?}");

    let by_hand: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
    assert_eq!(by_hand, d.as_bytes(), "{raw:?}");

    let re = reencode(d);
    let re_checked = check(&re).unwrap_or_else(|e| panic!("{raw:?} re-encoded as {re:?}: {e}"));
    assert_eq!(
        re_checked.decoded, c.decoded,
        "{raw:?} re-encoded as {re:?}"
    );
});
