//! Hostile input, §2 credential ambiguity (see the list in `hostile`).

use bytes::Bytes;
use http::Method;

use crate::support::client::{bearer, h2_client, send_with};
use crate::support::expect::Bench;
use crate::support::gateway::TestGateway;

use super::{check, Want};

const PASS: Want = Want::Pass;
const INVALID: Want = Want::Refused(401, "invalid_api_key");
const MISSING: Want = Want::Refused(401, "missing_api_key");
const MISPLACED: Want = Want::Refused(400, "misplaced_api_key");
const AMBIGUOUS: Want = Want::Refused(400, "ambiguous_credentials");

/// Each byte of `s` percent-encoded.
fn encode_all(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

#[tokio::test]
async fn authorization_header_variants() {
    let b = Bench::build(TestGateway::builder()).await;
    let (k, id) = b.secret(&["domains:read"], &[]).await;
    let huge = "a".repeat(8000);
    // The header line, from the value on.
    let auth = |v: &str| format!("Authorization: {v}").into_bytes();
    let bytes = |parts: &[&[u8]]| parts.concat();
    let cases: Vec<(&str, Vec<u8>, Want)> = vec![
        ("plain", auth(&format!("Bearer {k}")), PASS),
        ("two spaces", auth(&format!("Bearer  {k}")), PASS),
        ("tab after the space", auth(&format!("Bearer \t{k}")), PASS),
        ("trailing tab", auth(&format!("Bearer {k}\t")), PASS),
        ("leading tab", auth(&format!("\tBearer {k}")), PASS),
        (
            "lower case",
            format!("authorization: bearer {k}").into(),
            PASS,
        ),
        ("tab as separator", auth(&format!("Bearer\t{k}")), INVALID),
        ("no scheme", auth(&k), INVALID),
        ("scheme only", auth("Bearer"), INVALID),
        ("empty value", b"Authorization:".to_vec(), INVALID),
        ("equals sign", auth(&format!("Bearer={k}")), INVALID),
        ("colon", auth(&format!("Bearer:{k}")), INVALID),
        ("two tokens", auth(&format!("Bearer {k} {k}")), INVALID),
        (
            "comma list",
            auth(&format!("Bearer {k}, Bearer {k}")),
            INVALID,
        ),
        ("other scheme", auth(&format!("Token {k}")), INVALID),
        ("scheme prefix", auth(&format!("Bearerx {k}")), INVALID),
        (
            "encoded token",
            auth(&format!("Bearer {}", encode_all(&k))),
            INVALID,
        ),
        ("key plus junk", auth(&format!("Bearer {k}{huge}")), INVALID),
        ("8000 characters", auth(&format!("Bearer {huge}")), INVALID),
        (
            "UTF-8 after the key",
            auth(&format!("Bearer {k}é")),
            INVALID,
        ),
        (
            "Greek omicron",
            auth(&format!("Bearer {}", k.replacen('o', "ο", 1))),
            INVALID,
        ),
        (
            "Latin-1 byte",
            bytes(&[&auth(&format!("Bearer {k}")), b"\xe9"]),
            INVALID,
        ),
        ("non-ASCII scheme", auth(&format!("Beärer {k}")), INVALID),
        (
            "NUL in the value",
            bytes(&[&auth(&format!("Bearer {k}")), b"\0"]),
            Want::Bare(400),
        ),
        (
            "one empty, one good",
            bytes(&[b"Authorization:\r\n", &auth(&format!("Bearer {k}"))]),
            AMBIGUOUS,
        ),
        (
            "two cases of the name",
            bytes(&[
                &auth(&format!("Bearer {k}")),
                format!("\r\nAUTHORIZATION: Bearer {k}").as_bytes(),
            ]),
            AMBIGUOUS,
        ),
        (
            "Proxy-Authorization",
            format!("Proxy-Authorization: Bearer {k}").into(),
            MISPLACED,
        ),
        ("X-Api-Key", format!("X-Api-Key: {k}").into(), MISPLACED),
        (
            "Authorization_",
            format!("Authorization_: Bearer {k}").into(),
            MISPLACED,
        ),
    ];
    for (name, header, want) in &cases {
        let before = b.up.count();
        let r = b.raw("/v1/domains/x", &[header]).await;
        check(name, *want, &r, &b.up, before, &id);
    }
    // A value past max_header_bytes is a 431 before it is even looked at.
    let before = b.up.count();
    let over = format!("Authorization: Bearer {}", "a".repeat(70 * 1024));
    let r = b.raw("/v1/domains/x", &[over.as_bytes()]).await;
    check(
        "70 KiB",
        Want::Refused(431, "headers_too_large"),
        &r,
        &b.up,
        before,
        &id,
    );
    // Over HTTP/2, two Authorization fields are two credentials too.
    let auth = bearer(&k);
    let r = send_with(
        &h2_client(),
        Method::GET,
        &b.gw.url("/v1/domains/x"),
        &[("authorization", &auth), ("authorization", &auth)],
        Bytes::new(),
    )
    .await;
    check(
        "HTTP/2 pair",
        Want::Refused(400, "ambiguous_credentials"),
        &r,
        &b.up,
        before,
        &id,
    );
}

#[tokio::test]
async fn api_key_parameter_spellings() {
    let b = Bench::build(TestGateway::builder()).await;
    let (k, id) = b.secret(&["domains:read"], &[]).await;
    let auth = format!("Authorization: Bearer {k}");
    let no: &[&[u8]] = &[];
    let with_header: &[&[u8]] = &[auth.as_bytes()];
    let (ok, missing, invalid, ambiguous) = (PASS, MISSING, INVALID, AMBIGUOUS);
    let cases: Vec<(String, &[&[u8]], Want)> = vec![
        // Spellings that decode to api_key are the credential, and are cut.
        (format!("api_key={k}"), no, ok),
        (format!("api%5Fkey={k}"), no, ok),
        (format!("api%5fkey={k}"), no, ok),
        (format!("%61pi_key={k}"), no, ok),
        (format!("{}={k}", encode_all("api_key")), no, ok),
        (format!("a=1&api%5Fkey={k}&b=2"), no, ok),
        (format!("api_key={}", encode_all(&k)), no, ok),
        // Two of them, however spelled, or one with the header: ambiguous.
        (format!("api_key={k}&api%5Fkey={k}"), no, ambiguous),
        (format!("%61pi_key={k}&api_key={k}"), no, ambiguous),
        (format!("api_key={k}&api_key="), no, ambiguous),
        (format!("api_key&api_key={k}"), no, ambiguous),
        (format!("api%5Fkey={k}"), with_header, ambiguous),
        ("api_key=".to_owned(), with_header, ambiguous),
        // A credential that cannot be a key.
        ("api_key".to_owned(), no, invalid),
        ("api_key=".to_owned(), no, invalid),
        (format!("api_key={k}%00"), no, invalid),
        ("api_key=%FF%FE".to_owned(), no, invalid),
        ("api_key=%C3%A9".to_owned(), no, invalid),
        (format!("api_key=%20{k}"), no, invalid),
        (format!("api_key={k}+"), no, invalid),
        (format!("api_key=Bearer%20{k}"), no, invalid),
        // Ordinary parameters: not credentials; a key in one is misplaced
        // (issue 13), with or without the header.
        (format!("API_KEY={k}"), no, MISPLACED),
        (format!("Api_Key={k}"), no, MISPLACED),
        (format!("apikey={k}"), no, MISPLACED),
        (format!("api-key={k}"), no, MISPLACED),
        (format!("api+key={k}"), no, MISPLACED),
        (format!("api_key%00={k}"), no, MISPLACED),
        (format!("api_key%20={k}"), no, MISPLACED),
        (format!("api_key[]={k}"), no, MISPLACED),
        (format!("api%255Fkey={k}"), no, MISPLACED),
        (format!("x=1;api_key={k}"), no, MISPLACED),
        (format!("API_KEY={k}"), with_header, MISPLACED),
        // Without a key in them they are forwarded as they are.
        ("API_KEY=1".to_owned(), no, missing),
        ("api%255Fkey=1&apikey=2".to_owned(), with_header, ok),
    ];
    for (query, headers, want) in &cases {
        let before = b.up.count();
        let r = b.raw(&format!("/v1/domains/x?{query}"), headers).await;
        check(query, *want, &r, &b.up, before, &id);
    }
    // Ordinary parameters reach the upstream byte for byte.
    let seen = b.up.last();
    assert_eq!(seen.target, "/v1/domains/x?api%255Fkey=1&apikey=2");
}

#[tokio::test]
async fn api_key_spellings_are_cut_even_when_query_keys_are_off() {
    let b = Bench::build(TestGateway::builder().extra("[auth]\nquery_key = false")).await;
    let (k, id) = b.secret(&["domains:read"], &[]).await;
    let auth = format!("Authorization: Bearer {k}");
    for query in [
        format!("api_key={k}"),
        format!("%61pi_key={k}&x=1"),
        format!("x=1&{}={k}", encode_all("api_key")),
        format!("api_key={k}&api%5fkey={k}"),
    ] {
        let before = b.up.count();
        let r = b
            .raw(&format!("/v1/domains/x?{query}"), &[auth.as_bytes()])
            .await;
        check(&query, Want::Pass, &r, &b.up, before, &id);
    }
    let before = b.up.count();
    let r = b.raw(&format!("/v1/domains/x?api_key={k}"), &[]).await;
    check(
        "no header",
        Want::Refused(401, "missing_api_key"),
        &r,
        &b.up,
        before,
        &id,
    );
}
