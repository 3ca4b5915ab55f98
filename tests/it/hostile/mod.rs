//! Hostile input, table-driven (HOSTILE §2, §3, §4, §6), filling the gaps
//! the per-feature files leave:
//!
//! - §2 credential ambiguity: huge, non-ASCII and oddly spaced
//!   Authorization values, other places a key might hide, and every
//!   spelling of the `api_key` parameter. Decided: only a parameter whose
//!   name *decodes* to exactly `api_key` is a credential (`api%5Fkey` is
//!   one; `API_KEY` is an ordinary parameter), and no parameter that decodes
//!   to `api_key` is ever forwarded. Only a space separates the scheme from
//!   the token; spaces and tabs around the token are optional whitespace.
//! - §3 client addresses: spoofing headers from an untrusted peer, and odd
//!   X-Forwarded-For hops (octal-looking, hex, integer, short forms, zones,
//!   ports, a thousand hops) from a trusted one.
//! - §4 identity headers in every case and spelling, on private and public
//!   routes, over HTTP/1.1 and HTTP/2.
//! - §6 HTTP/2 rapid reset, CONTINUATION floods, the stream limit, and the
//!   connection limit.
//!
//! Every refusal is checked to reach no upstream.

use crate::support::client::Reply;
use crate::support::upstream::{Recorded, RecordingUpstream};

mod addresses;
mod credentials;
mod exhaustion;
mod identity;

/// What a case must get.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// Forwarded with the key's identity.
    Pass,
    /// The gateway's own JSON error.
    Refused(u16, &'static str),
    /// Refused below the gateway's pipeline (hyper's bare answer).
    Bare(u16),
}

/// Asserts `r` is what `want` says; for a pass, that exactly one request
/// reached the upstream and it carries no credential; for a refusal, none.
fn check(name: &str, want: Want, r: &Reply, up: &RecordingUpstream, before: usize, id: &str) {
    match want {
        Want::Pass => {
            assert_eq!(r.status, 200, "{name}: {}", r.text());
            assert_eq!(up.count(), before + 1, "{name}");
            let seen = up.last();
            assert_eq!(seen.header("x-osir-key-id"), Some(id), "{name}");
            no_credential_forwarded(name, &seen);
        }
        Want::Refused(status, code) => {
            assert_eq!(r.status, status, "{name}: {}", r.text());
            r.assert_error(status, code);
            if status == 401 {
                assert_eq!(
                    r.header("www-authenticate"),
                    Some("Bearer realm=\"osir\""),
                    "{name}"
                );
            }
            assert_eq!(
                up.count(),
                before,
                "{name}: a refused request reached the upstream"
            );
        }
        Want::Bare(status) => {
            assert_eq!(r.status, status, "{name}: {}", r.text());
            assert_eq!(
                up.count(),
                before,
                "{name}: a refused request reached the upstream"
            );
        }
    }
}

/// No Authorization header, and no query parameter whose name decodes to
/// `api_key`.
fn no_credential_forwarded(name: &str, seen: &Recorded) {
    assert!(seen.headers.get("authorization").is_none(), "{name}");
    let query = seen.target.split_once('?').map_or("", |(_, q)| q);
    for piece in query.split('&') {
        let pname = piece.split_once('=').map_or(piece, |(n, _)| n);
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(pname).collect();
        assert_ne!(decoded, b"api_key", "{name}: forwarded {:?}", seen.target);
    }
}
