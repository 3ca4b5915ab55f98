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

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use osir_gateway::key::Env;
use osir_gateway::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::client::{bearer, h2_client, raw_exchange, send_with, Reply};
use crate::support::gateway::{config, parse, TestGateway};
use crate::support::h2wire::{self, H2Conn};
use crate::support::keys::{create_key, memory_store};
use crate::support::upstream::{Recorded, RecordingUpstream};

const DEADLINE: Duration = Duration::from_secs(5);

struct Bench {
    up: RecordingUpstream,
    gw: TestGateway,
    store: Store,
}

impl Bench {
    async fn start(extra: &str, edit: impl FnOnce(&mut osir_gateway::config::Config)) -> Bench {
        let up = RecordingUpstream::start("up").await;
        let store = memory_store();
        let mut cfg = parse(&config(&up.url(), None, extra));
        edit(&mut cfg);
        let gw = TestGateway::start_with(cfg, store.clone()).await;
        Bench { up, gw, store }
    }

    async fn key(&self, ips: &[&str]) -> (String, String) {
        let (key, rec) = create_key(&self.store, Env::Live, &["domains:read"], ips).await;
        (key, rec.id)
    }

    /// A raw HTTP/1.1 GET: the exact bytes of `target` and `headers`
    /// (each line without its CRLF).
    async fn raw(&self, target: &str, headers: &[&[u8]]) -> Reply {
        let mut req = format!("GET {target} HTTP/1.1\r\nHost: {}\r\n", self.gw.addr).into_bytes();
        for h in headers {
            req.extend_from_slice(h);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"\r\n");
        raw_exchange(self.gw.addr, &req).await
    }
}

const PASS: Want = Want::Pass;
const INVALID: Want = Want::Refused(401, "invalid_api_key");
const MISSING: Want = Want::Refused(401, "missing_api_key");
const AMBIGUOUS: Want = Want::Refused(400, "ambiguous_credentials");
const MISPLACED: Want = Want::Refused(400, "misplaced_api_key");

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

/// Each byte of `s` percent-encoded.
fn encode_all(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

// ---- §2 credentials -------------------------------------------------------

#[tokio::test]
async fn authorization_header_variants() {
    let b = Bench::start("", |_| {}).await;
    let (k, id) = b.key(&[]).await;
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
    let b = Bench::start("", |_| {}).await;
    let (k, id) = b.key(&[]).await;
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
    let b = Bench::start("[auth]\nquery_key = false", |_| {}).await;
    let (k, id) = b.key(&[]).await;
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

// ---- §3 client addresses ----------------------------------------------------

/// Asserts the gateway took the client to be `client`: a key allowed only
/// there passes, one allowed only at `not` gets 403 `ip_not_allowed`.
async fn client_is(b: &Bench, name: &str, headers: &[&[u8]], client: &str, not: &str) {
    let (inside, id) = b.key(&[client]).await;
    let (outside, _) = b.key(&[not]).await;
    for (key, want) in [
        (&outside, Want::Refused(403, "ip_not_allowed")),
        (&inside, Want::Pass),
    ] {
        let auth = format!("Authorization: Bearer {key}");
        let mut h: Vec<&[u8]> = vec![auth.as_bytes()];
        h.extend_from_slice(headers);
        let before = b.up.count();
        let r = b.raw("/v1/domains/x", &h).await;
        let id = if matches!(want, Want::Pass) {
            id.as_str()
        } else {
            ""
        };
        check(name, want, &r, &b.up, before, id);
    }
}

#[tokio::test]
async fn spoofed_client_addresses_from_an_untrusted_peer() {
    let b = Bench::start("", |_| {}).await;
    let spoof = "203.0.113.7";
    let cases: Vec<String> = vec![
        format!("X-Forwarded-For: {spoof}"),
        format!("X-Forwarded-For: {spoof}, 198.51.100.1"),
        format!("X-Forwarded-For: {spoof}\r\nX-Forwarded-For: {spoof}"),
        format!("x-forwarded-for: ::ffff:{spoof}"),
        "X-Forwarded-For: 2001:db8::1".to_owned(),
        format!("X-Real-IP: {spoof}"),
        format!("Forwarded: for={spoof}"),
        format!("Forwarded: for=\"[2001:db8::1]\";proto=https, for={spoof}"),
        format!("True-Client-IP: {spoof}"),
        format!("CF-Connecting-IP: {spoof}"),
        format!("X-Client-IP: {spoof}"),
        format!("X-Originating-IP: {spoof}"),
        format!("Client-IP: {spoof}"),
        format!("X-Cluster-Client-IP: {spoof}"),
        format!("Fastly-Client-IP: {spoof}"),
        format!("X-Forwarded: for={spoof}"),
        format!("X_Forwarded_For: {spoof}"),
    ];
    for h in &cases {
        client_is(&b, h, &[h.as_bytes()], "127.0.0.1", "203.0.113.0/24").await;
    }
    let seen = b.up.last();
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
}

#[tokio::test]
async fn odd_forwarded_for_hops_from_a_trusted_proxy() {
    let b = Bench::start(
        "[auth]\ntrusted_proxies = [\"127.0.0.1/32\", \"10.0.0.0/8\"]",
        |_| {},
    )
    .await;
    // (X-Forwarded-For, the client it must name, an address it must not).
    let thousand = format!("{}203.0.113.7", "198.51.100.1, ".repeat(1000));
    let cases: Vec<(String, &str, &str)> = vec![
        // Hops that are not plain addresses stop the walk at the peer.
        ("010.0.0.1".into(), "127.0.0.1", "8.0.0.0/8"),
        ("203.000.113.007".into(), "127.0.0.1", "203.0.113.0/24"),
        ("0xcb007107".into(), "127.0.0.1", "203.0.113.0/24"),
        ("0xcb.0.0x71.07".into(), "127.0.0.1", "203.0.113.0/24"),
        ("3405803783".into(), "127.0.0.1", "203.0.113.0/24"),
        ("203.7".into(), "127.0.0.1", "203.0.0.0/16"),
        ("203.0.113.7:8080".into(), "127.0.0.1", "203.0.113.0/24"),
        ("[2001:db8::1]:443".into(), "127.0.0.1", "2001:db8::/32"),
        ("203.0.113.7%eth0".into(), "127.0.0.1", "203.0.113.0/24"),
        ("203.0.113.7/32".into(), "127.0.0.1", "203.0.113.0/24"),
        ("203.0.113.7;evil".into(), "127.0.0.1", "203.0.113.0/24"),
        ("_hidden".into(), "127.0.0.1", "203.0.113.0/24"),
        (
            "203.0.113.7 198.51.100.1".into(),
            "127.0.0.1",
            "198.51.100.0/24",
        ),
        // Whitespace around a hop is fine; case of hex digits too.
        ("\t203.0.113.7\t".into(), "203.0.113.7", "127.0.0.1"),
        ("  203.0.113.7  ".into(), "203.0.113.7", "127.0.0.1"),
        ("2001:DB8::A".into(), "2001:db8::a", "127.0.0.1"),
        // Mapped addresses are IPv4, also when trusted.
        ("::ffff:203.0.113.7".into(), "203.0.113.0/24", "::/0"),
        ("::FFFF:CB00:7107".into(), "203.0.113.7", "::/0"),
        (
            "203.0.113.7, ::ffff:10.1.2.3".into(),
            "203.0.113.7",
            "10.0.0.0/8",
        ),
        // Trusted hops on the right are skipped; the client is the first
        // untrusted one, however long the list.
        (
            "203.0.113.7, 10.1.1.1, 10.2.2.2".into(),
            "203.0.113.7",
            "10.0.0.0/8",
        ),
        (thousand, "203.0.113.7", "198.51.100.1"),
        // Whatever the client wrote left of a proxy's hop is ignored.
        ("127.0.0.1, 203.0.113.7".into(), "203.0.113.7", "127.0.0.1"),
    ];
    for (xff, client, not) in &cases {
        let h = format!("X-Forwarded-For: {xff}");
        let name = format!("XFF {}", &xff[..xff.len().min(60)]);
        client_is(&b, &name, &[h.as_bytes()], client, not).await;
    }
}

// ---- §4 identity headers ------------------------------------------------------

#[tokio::test]
async fn identity_headers_in_every_spelling_are_replaced_or_dropped() {
    let b = Bench::start("", |_| {}).await;
    let (k, id) = b.key(&[]).await;
    let forged: Vec<&str> = vec![
        "X-OSIR-KEY-ID: forged",
        "x-osir-key-id: forged",
        "X-Osir-Key-Id: forged\r\nX-Osir-Key-Id: forged-too",
        "X-Osir-Key_Id: forged",
        "X_Osir_Key_Id: forged",
        "x-osir_key-id: forged",
        "X-Osir-Account: acct_victim",
        "X-OSIR-ACCOUNT: acct_victim",
        "X-Osir-Env: live",
        "X-Osir-Scopes: *",
        "X-Osir-Admin: true",
        "Connection: X-Osir-Key-Id\r\nX-Osir-Key-Id: forged",
        "Connection: keep-alive, x-osir-scopes",
    ];
    let auth = format!("Authorization: Bearer {k}");
    for h in &forged {
        // On a private route: only the gateway's own values.
        let before = b.up.count();
        let r = b
            .raw("/v1/domains/x", &[auth.as_bytes(), h.as_bytes()])
            .await;
        check(h, Want::Pass, &r, &b.up, before, &id);
        let seen = b.up.last();
        let osir: Vec<(String, String)> = seen
            .headers
            .iter()
            .filter(|(n, _)| n.as_str().starts_with("x-osir") || n.as_str().starts_with("x_osir"))
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        let mut want = vec![
            ("x-osir-key-id".to_owned(), id.clone()),
            ("x-osir-env".to_owned(), "live".to_owned()),
            ("x-osir-scopes".to_owned(), "domains:read".to_owned()),
        ];
        let mut got = osir.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{h}");

        // On a public route, with no key: none at all.
        let before = b.up.count();
        let r = b.raw("/v1/status", &[h.as_bytes()]).await;
        assert_eq!(r.status, 200, "{h}: {}", r.text());
        assert_eq!(b.up.count(), before + 1);
        let seen = b.up.last();
        let leaked: Vec<&str> = seen
            .headers
            .keys()
            .map(|n| n.as_str())
            .filter(|n| n.contains("osir"))
            .collect();
        assert!(leaked.is_empty(), "{h}: reached the upstream: {leaked:?}");
    }

    // Over HTTP/2 as well (names are lower-case there by rule).
    let c = h2_client();
    let auth = bearer(&k);
    for (name, value) in [
        ("x-osir-key-id", "forged"),
        ("x-osir-key_id", "forged"),
        ("x-osir-account", "acct_victim"),
    ] {
        let r = send_with(
            &c,
            Method::GET,
            &b.gw.url("/v1/domains/x"),
            &[("authorization", &auth), (name, value)],
            Bytes::new(),
        )
        .await;
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        let seen = b.up.last();
        assert_eq!(seen.header("x-osir-key-id"), Some(id.as_str()));
        assert!(seen.headers.get("x-osir-key_id").is_none());
        assert!(seen.headers.get("x-osir-account").is_none());
        assert_eq!(seen.headers.get_all("x-osir-key-id").iter().count(), 1);
    }
}

// ---- §6 resource exhaustion -------------------------------------------------------

/// Connects over HTTP/2 and waits for the server's SETTINGS (answered).
async fn h2_ready(gw: &TestGateway) -> H2Conn {
    let mut c = H2Conn::connect(gw.addr).await;
    let settings = c
        .until(DEADLINE, |f| {
            f.kind == h2wire::SETTINGS && f.flags & h2wire::ACK == 0
        })
        .await;
    assert!(settings.is_some(), "no SETTINGS from the server");
    c
}

#[tokio::test]
async fn http2_rapid_reset_is_cut_off() {
    let b = Bench::start("", |_| {}).await;
    let mut c = h2_ready(&b.gw).await;
    let streams = 2000u32;
    let mut burst = Vec::new();
    for i in 0..streams {
        let id = 1 + 2 * i;
        let block = h2wire::request_block("GET", "/v1/status", "localhost", &[]);
        burst.extend(h2wire::frame_bytes(
            h2wire::HEADERS,
            h2wire::END_HEADERS | h2wire::END_STREAM,
            id,
            &block,
        ));
        burst.extend(h2wire::frame_bytes(
            h2wire::RST_STREAM,
            0,
            id,
            &h2wire::CANCEL.to_be_bytes(),
        ));
    }
    // The server may hang up mid-burst.
    let _ = c.write(&burst).await;
    let (frames, closed) = c.drain(DEADLINE).await;
    let goaway = frames.iter().find(|f| f.kind == h2wire::GOAWAY);
    assert_eq!(
        goaway.and_then(|f| f.error_code()),
        Some(h2wire::ENHANCE_YOUR_CALM),
        "no GOAWAY(ENHANCE_YOUR_CALM); closed: {closed}"
    );
    assert!(closed, "the connection stayed open");
    // Almost none of the streams did upstream work.
    let reached = b.up.count();
    println!("rapid reset: {reached} of {streams} streams reached the upstream");
    assert!(
        reached < 100,
        "{reached} of {streams} reset streams reached the upstream"
    );
    // Others are served as before.
    let r = crate::support::client::get(&b.gw.url("/v1/status"), &[]).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn http2_continuation_floods_are_cut_off() {
    let b = Bench::start("", |_| {}).await;
    let mut c = h2_ready(&b.gw).await;
    let block = h2wire::request_block("GET", "/v1/status", "localhost", &[]);
    let mut flood = h2wire::frame_bytes(h2wire::HEADERS, h2wire::END_STREAM, 1, &block);
    for i in 0..1000 {
        let mut field = Vec::new();
        h2wire::literal(&mut field, &format!("x-flood-{i}"), b"1");
        flood.extend(h2wire::frame_bytes(h2wire::CONTINUATION, 0, 1, &field));
    }
    let _ = c.write(&flood).await;
    let (frames, closed) = c.drain(DEADLINE).await;
    let goaway = frames.iter().find(|f| f.kind == h2wire::GOAWAY);
    assert!(
        goaway.is_some() && closed,
        "not cut off: {frames:?}, closed: {closed}"
    );
    assert_eq!(b.up.count(), 0);
}

#[tokio::test]
async fn http2_stream_limit_is_enforced() {
    let b = Bench::start("", |c| c.server.http2.max_concurrent_streams = 3).await;
    let mut c = h2_ready(&b.gw).await;
    let settings = c.server_settings.clone().unwrap().settings();
    assert!(
        settings.contains(&(h2wire::MAX_CONCURRENT_STREAMS, 3)),
        "{settings:?}"
    );
    // Three slow streams fill the limit; a fourth is refused.
    for id in [1, 3, 5] {
        c.get(id, "/v1/status", &[("x-test-delay-ms", "600")]).await;
    }
    c.get(7, "/v1/status", &[]).await;
    let mut refused = None;
    let mut done = Vec::new();
    let end = Instant::now() + DEADLINE;
    while done.len() < 3 && Instant::now() < end {
        let Some(f) = c.next(DEADLINE).await else {
            break;
        };
        if f.kind == h2wire::RST_STREAM && f.stream == 7 {
            refused = f.error_code();
        }
        if (f.kind == h2wire::DATA || f.kind == h2wire::HEADERS)
            && f.flags & h2wire::END_STREAM != 0
        {
            assert_ne!(f.stream, 7, "the stream over the limit was served");
            done.push(f.stream);
        }
    }
    assert_eq!(refused, Some(h2wire::REFUSED_STREAM));
    done.sort();
    assert_eq!(done, [1, 3, 5]);
    assert_eq!(b.up.count(), 3);
}

#[tokio::test]
async fn connections_over_the_limit_wait_to_be_accepted() {
    let b = Bench::start("", |c| c.server.max_connections = 2).await;
    let req = format!("GET /v1/status HTTP/1.1\r\nHost: {}\r\n\r\n", b.gw.addr);
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(b.gw.addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        open.push(s);
    }
    // A third client is left in the backlog while both stay open...
    let mut third = TcpStream::connect(b.gw.addr).await.unwrap();
    third.write_all(req.as_bytes()).await.unwrap();
    let mut buf = [0u8; 1024];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf)).await;
    assert!(early.is_err(), "served past max_connections: {early:?}");
    assert_eq!(b.up.count(), 2);
    // ... and served as soon as one of them goes.
    drop(open.pop());
    let n = tokio::time::timeout(DEADLINE, third.read(&mut buf))
        .await
        .expect("never accepted after a slot freed")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
}
