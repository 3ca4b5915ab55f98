//! Look-alike and ambiguous paths (issue 13, class 2): encoded C1 controls,
//! code points that NFKC normalisation changes (so a normalising upstream
//! reads `.`, `/` or `\` where the gateway saw another character), encoded
//! `?` and `#`, and segments ending in `.` or whitespace are refused with
//! 400 `invalid_path` before routing and never reach the upstream. Attacks
//! aim at the public `/v1/status` route, so a bypass would show as a 200.

use crate::support::client::raw_get;
use crate::support::gateway::TestGateway;
use crate::support::keys::memory_store;
use crate::support::upstream::RecordingUpstream;

async fn setup() -> (RecordingUpstream, TestGateway) {
    let up = RecordingUpstream::start("up").await;
    let gw = TestGateway::builder()
        .upstream(&up)
        .store(memory_store())
        .start()
        .await;
    (up, gw)
}

#[tokio::test]
async fn look_alike_and_ambiguous_paths_are_refused() {
    let (up, gw) = setup().await;
    let cases: &[(&str, &[u8])] = &[
        // C1 controls, encoded (raw non-ASCII is refused already).
        ("C1 first", b"/v1/status/a%c2%80b"),
        ("C1 NEL", b"/v1/status/a%C2%85"),
        ("C1 last", b"/v1/status/%c2%9f"),
        // Characters NFKC folds to '.', '/' or '\'.
        (
            "fullwidth full stop",
            b"/v1/status/%ef%bc%8e%ef%bc%8e/billing",
        ),
        (
            "fullwidth solidus",
            b"/v1/status%ef%bc%8f..%ef%bc%8fbilling",
        ),
        ("fullwidth reverse solidus", b"/v1/status/%ef%bc%bc"),
        ("one dot leader", b"/v1/status/%e2%80%a4%e2%80%a4/billing"),
        ("two dot leader", b"/v1/status/%e2%80%a5"),
        ("small full stop", b"/v1/status/%ef%b9%92"),
        ("vulgar fraction one half", b"/v1/status/a%c2%bdb"),
        ("ligature fi", b"/v1/status/%ef%ac%81le"),
        ("superscript two", b"/v1/status/x%c2%b2"),
        ("fullwidth letters", b"/v1/%ef%bd%93tatus"),
        ("no-break space", b"/v1/status/a%c2%a0b"),
        ("ideographic space", b"/v1/status/a%e3%80%80"),
        ("Kelvin sign", b"/v1/status/%e2%84%aa"),
        // Not NFKC as a sequence: e + combining acute composes to é.
        ("decomposed e acute", b"/v1/status/cafe%cc%81"),
        // Encoded '?' and '#': a decoding upstream cuts the path there.
        ("encoded question mark", b"/v1/domains/transfers%3f"),
        ("encoded question mark upper", b"/v1/status%3F/x"),
        ("encoded hash", b"/v1/status/x%23y"),
        ("encoded hash upper", b"/v1/status%23"),
        // Segments ending in a dot or whitespace.
        ("trailing dot mid", b"/v1/domains/transfers./x"),
        ("trailing dot last", b"/v1/status/x."),
        ("three dots", b"/v1/status/..."),
        ("four dots", b"/v1/status/..../x"),
        ("encoded trailing dot", b"/v1/status/x%2e/y"),
        ("encoded trailing space", b"/v1/status/x%20/y"),
        ("trailing space last", b"/v1/status/x%20"),
        ("dot then space", b"/v1/status%2e%20"),
        ("trailing ogham space", b"/v1/status/x%e1%9a%80"),
        ("trailing line separator", b"/v1/status/x%e2%80%a8"),
    ];
    for (name, target) in cases {
        let r = raw_get(gw.addr, target).await;
        assert_eq!(r.status, 400, "{name}: {}", r.text());
        r.assert_error(400, "invalid_path");
    }
    let reached: Vec<String> = up.requests().into_iter().map(|r| r.target).collect();
    assert!(reached.is_empty(), "reached the upstream: {reached:?}");
}

#[tokio::test]
async fn ordinary_unicode_and_dots_still_pass_byte_for_byte() {
    let (up, gw) = setup().await;
    let cases: &[&[u8]] = &[
        b"/v1/status/caf%C3%A9",
        b"/v1/status/%E6%97%A5%E6%9C%AC",
        b"/v1/status/a.b",
        b"/v1/status/.well-known",
        b"/v1/status/x..y",
        b"/v1/status/a%20b",
        b"/v1/status/example.com/",
        b"/v1/status/%e2%88%95",
    ];
    for (i, target) in cases.iter().enumerate() {
        let r = raw_get(gw.addr, target).await;
        let shown = String::from_utf8_lossy(target);
        assert_eq!(r.status, 200, "{shown}: {}", r.text());
        assert_eq!(up.count(), i + 1);
        assert_eq!(up.last().target.as_bytes(), *target, "{shown}");
    }
}
