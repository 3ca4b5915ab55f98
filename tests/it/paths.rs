//! The canonical path check from outside (CONTRACT §3, HOSTILE §1): every
//! class of path that an upstream could read differently from the gateway
//! is refused with 400 `invalid_path` before routing, and never reaches the
//! upstream. Attacks are aimed mostly at the public `/v1/status` route, so a
//! bypass would show up as a forwarded request (and a 200), not as a 401.
//! Paths that pass are forwarded byte for byte and routed by their decoded
//! form.
//!
//! Requests go over raw TCP so the exact bytes reach the gateway, whatever a
//! well-behaved client would normalise or refuse to send.

use crate::support::client::{get, h2_client, raw_get, send_with};
use crate::support::gateway::TestGateway;

/// Sends each target and asserts the gateway's own 400 `invalid_path`, then
/// that nothing reached the upstream.
async fn assert_all_refused(targets: &[&[u8]]) {
    let (up, gw) = TestGateway::builder().start_with_upstream().await;
    for t in targets {
        let r = raw_get(gw.addr, t).await;
        assert_eq!(
            r.status,
            400,
            "{:?} was not refused: {}",
            String::from_utf8_lossy(t),
            r.text()
        );
        r.assert_error(400, "invalid_path");
    }
    let reached: Vec<String> = up.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(up.count(), 0, "reached the upstream: {reached:?}");
}

#[tokio::test]
async fn dot_dot_segments_raw_and_encoded() {
    assert_all_refused(&[
        b"/v1/status/../billing/invoices",
        b"/v1/status/..",
        b"/v1/domains/../status",
        b"/../v1/status",
        b"/v1/../v1/status",
        b"/v1/status/%2e%2e/billing",
        b"/v1/status/%2E%2e/billing",
        b"/v1/status/%2E%2E",
        b"/v1/status/.%2e/billing",
        b"/v1/status/%2e./billing",
    ])
    .await;
}

#[tokio::test]
async fn single_dot_segments() {
    assert_all_refused(&[
        b"/v1/status/./x",
        b"/v1/status/.",
        b"/./v1/status",
        b"/v1/./status",
        b"/v1/status/%2e/x",
        b"/v1/status/%2E",
    ])
    .await;
}

#[tokio::test]
async fn encoded_slashes_and_backslashes() {
    assert_all_refused(&[
        b"/v1/status/..%2fbilling",
        b"/v1/status/..%2Fbilling",
        b"/v1/status%2f..%2fbilling",
        b"/v1/status/a%2Fb",
        b"/v1/status/..%5cbilling",
        b"/v1/status/..%5Cbilling",
        b"/v1/status/a%5cb",
    ])
    .await;
}

#[tokio::test]
async fn raw_backslashes() {
    assert_all_refused(&[
        b"/v1/status\\..\\billing",
        b"/v1/status/a\\b",
        b"/v1/status/..\\",
        b"/v1/status/\\",
    ])
    .await;
}

#[tokio::test]
async fn path_parameters_raw_and_encoded() {
    assert_all_refused(&[
        b"/v1/status/..;/billing",
        b"/v1/status;jsessionid=abc",
        b"/v1/status/x;a=b",
        b"/v1/status/;",
        b"/v1/status/%3b",
        b"/v1/status%3Bx",
        b"/v1/status/..%3b/billing",
    ])
    .await;
}

#[tokio::test]
async fn empty_segments_leading_and_middle() {
    assert_all_refused(&[
        b"//v1/status",
        b"/v1//status",
        b"/v1/status//x",
        b"/v1/status/x//",
        b"/v1/status///",
    ])
    .await;
}

#[tokio::test]
async fn double_encoding_and_any_encoded_percent() {
    assert_all_refused(&[
        b"/v1/status/%252e%252e/billing",
        b"/v1/status/%252E%252E",
        b"/v1/status/%252f",
        b"/v1/status/%25",
        b"/v1/status/%2541",
        b"/v1/status/100%25",
    ])
    .await;
}

#[tokio::test]
async fn encoded_nul_and_controls() {
    assert_all_refused(&[
        b"/v1/status/%00",
        b"/v1/status/a%00.json",
        b"/v1/status/%0a",
        b"/v1/status/%0D%0AX-Injected:%201",
        b"/v1/status/%09",
        b"/v1/status/%1f",
        b"/v1/status/%7f",
        b"/v1/status/%7F",
    ])
    .await;
}

/// Raw controls, and raw bytes that are not UTF-8, are refused by the HTTP
/// parser itself, before the gateway's pipeline: still a 400 and still
/// nothing forwarded (that bare 400 has no JSON body: the parser made it).
#[tokio::test]
async fn raw_controls_and_raw_invalid_utf8() {
    let (up, gw) = TestGateway::builder().start_with_upstream().await;
    for t in [
        &b"/v1/status/a\x00b"[..],
        b"/v1/status/a\x01b",
        b"/v1/status/a\tb",
        b"/v1/status/a\x7fb",
        b"/v1/status/\xff",
        b"/v1/status/\xc0\xaf",
        b"/v1/status/caf\xe9",
    ] {
        let r = raw_get(gw.addr, t).await;
        assert_eq!(
            r.status,
            400,
            "{:?}: {}",
            String::from_utf8_lossy(t),
            r.text()
        );
        if !r.body.is_empty() {
            r.assert_error(400, "invalid_path");
        }
    }
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn bad_percent_escapes() {
    assert_all_refused(&[
        b"/v1/status/%",
        b"/v1/status/%2",
        b"/v1/status/a%",
        b"/v1/status/%zz",
        b"/v1/status/%g0",
        b"/v1/status/%%",
        b"/v1/status/%-1",
    ])
    .await;
}

#[tokio::test]
async fn invalid_utf8_once_decoded() {
    assert_all_refused(&[
        b"/v1/status/%ff",
        b"/v1/status/%c3",
        b"/v1/status/%c3%28",
        // Overlong encodings of '/' and '.', the classic decoder bypass.
        b"/v1/status/%c0%af",
        b"/v1/status/%e0%80%af",
        b"/v1/status/%c0%ae%c0%ae",
        // A UTF-16 surrogate encoded as UTF-8.
        b"/v1/status/%ed%a0%80",
    ])
    .await;
}

/// Raw non-ASCII that is valid UTF-8 gets through the parser; the check
/// refuses it (only percent-encoded UTF-8 is accepted).
#[tokio::test]
async fn raw_non_ascii() {
    assert_all_refused(&[
        b"/v1/status/caf\xc3\xa9",
        b"/v1/st\xc3\xa4tus",
        // Fullwidth solidus and full stop: NFKC-normalising upstreams read
        // them as '/' and '.'.
        b"/v1/status/\xef\xbc\x8f..\xef\xbc\x8fbilling",
        b"/v1/status/\xef\xbc\x8e\xef\xbc\x8e",
        // Right-to-left override.
        b"/v1/status/\xe2\x80\xae",
    ])
    .await;
}

/// HTTP/2 carries the path in `:path`; the same check applies.
#[tokio::test]
async fn http2_paths_get_the_same_check() {
    let (up, gw) = TestGateway::builder().start_with_upstream().await;
    let c = h2_client();
    for p in [
        "/v1/status/%2e%2e/billing",
        "/v1/status/..%2fx",
        "/v1/status/%25",
    ] {
        let r = send_with(&c, http::Method::GET, &gw.url(p), &[], bytes::Bytes::new()).await;
        r.assert_error(400, "invalid_path");
    }
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn harmless_paths_are_forwarded_byte_for_byte() {
    let (up, gw) = TestGateway::builder().start_with_upstream().await;
    for p in [
        "/v1/status/a..b",
        "/v1/status/.well-known",
        "/v1/status/file%2ejson",
        "/v1/status/caf%C3%A9",
        "/v1/status/caf%c3%a9",
        "/v1/status/a%20b",
        "/v1/status/",
        "/v1/%73tatus",
    ] {
        let r = raw_get(gw.addr, p.as_bytes()).await;
        assert_eq!(r.status, 200, "{p}: {}", r.text());
        assert_eq!(up.last().target, p);
    }
    assert_eq!(up.count(), 8);
}

/// Routing sees the decoded path, so an encoded letter cannot dodge a
/// private route's key check: `/v1/%64omains/x` is `/v1/domains/x`.
#[tokio::test]
async fn encoded_paths_are_routed_by_their_decoded_form() {
    let (up, gw) = TestGateway::builder().start_with_upstream().await;
    for p in [
        "/v1/%64omains/x",
        "/v1/%64%6f%6d%61%69%6e%73",
        "/v1/bill%69ng",
    ] {
        let r = get(&gw.url(p), &[]).await;
        r.assert_error(401, "missing_api_key");
    }
    // Decoding to an unknown route stays unknown.
    get(&gw.url("/v1/%44omains"), &[])
        .await
        .assert_error(404, "route_not_found");
    assert_eq!(up.count(), 0);
}
