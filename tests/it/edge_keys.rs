//! Keys sent in the wrong place (issue 13, class 1): a well-formed,
//! checksum-valid key anywhere in the target other than the `api_key`
//! parameter, or in any header other than `Authorization`, is refused with
//! 400 `misplaced_api_key`, never forwarded, never written to the access
//! log, and counted by place. Key-shaped text that is not a key (bad
//! checksum) passes but is written to the access log only as its hint.

use std::time::Duration;

use bytes::Bytes;
use http::Method;
use osir_gateway::config::AccessLog as AccessLogConfig;
use osir_gateway::keys::Env;
use osir_gateway::pipeline::access_log::AccessLog;

use crate::support::client::{bearer, h2_client, raw_exchange, send_with, Reply};
use crate::support::eventually;
use crate::support::gateway::TestGateway;
use crate::support::keys::{bad_checksum, body, create_key, memory_store};
use crate::support::upstream::RecordingUpstream;

struct Edge {
    up: RecordingUpstream,
    gw: TestGateway,
    key: String,
    test_key: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn start() -> Edge {
    let up = RecordingUpstream::start("up").await;
    let store = memory_store();
    let gw = TestGateway::builder()
        .upstream(&up)
        .store(store.clone())
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let writer = AccessLog::open(&AccessLogConfig::File(log.clone()))
        .unwrap()
        .unwrap();
    gw.gw.access_log.store(Some(std::sync::Arc::new(writer)));
    let (key, _) = create_key(&store, Env::Live, &["domains:read"], &[]).await;
    let (test_key, _) = create_key(&store, Env::Test, &["domains:read"], &[]).await;
    Edge {
        up,
        gw,
        key,
        test_key,
        log,
        _dir: dir,
    }
}

impl Edge {
    async fn raw(&self, target: &str, headers: &[String]) -> Reply {
        let mut req = format!("GET {target} HTTP/1.1\r\nHost: {}\r\n", self.gw.addr);
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        raw_exchange(self.gw.addr, req.as_bytes()).await
    }

    fn misplaced(&self) -> String {
        String::from_utf8(self.gw.gw.metrics.render()).unwrap()
    }

    /// Waits for `lines` access-log lines and returns the file.
    async fn log_with(&self, lines: usize) -> String {
        let path = self.log.clone();
        let ok = eventually(Duration::from_secs(5), || {
            std::fs::read_to_string(&path).is_ok_and(|t| t.lines().count() >= lines)
        })
        .await;
        assert!(ok, "the access log never reached {lines} lines");
        std::fs::read_to_string(&self.log).unwrap()
    }
}

fn encode_all(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// Asserts a 400 `misplaced_api_key` whose message names `place` and holds
/// no key, and that the upstream saw nothing.
fn assert_misplaced(name: &str, r: &Reply, place: &str, keys: &[&str], up: &RecordingUpstream) {
    assert_eq!(r.status, 400, "{name}: {}", r.text());
    r.assert_error(400, "misplaced_api_key");
    let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(msg.contains(place), "{name}: {msg:?} does not name {place}");
    assert!(msg.contains("Authorization"), "{name}: {msg:?}");
    for k in keys {
        assert!(!r.text().contains(body(k)), "{name}: the key is in {r:?}");
        let rid = r.header("x-request-id").unwrap_or("");
        assert!(!rid.contains(body(k)), "{name}: the key is the request id");
    }
    assert_eq!(
        up.count(),
        0,
        "{name}: a misplaced key reached the upstream"
    );
}

#[tokio::test]
async fn keys_in_other_parameters_or_the_path_are_refused() {
    let e = start().await;
    let (k, t) = (e.key.clone(), e.test_key.clone());
    let auth = format!("Authorization: {}", bearer(&k));
    let cases: Vec<(String, Vec<String>, &str)> = vec![
        // The near-miss names.
        (format!("/v1/domains/x?API_KEY={k}"), vec![], "API_KEY"),
        (format!("/v1/domains/x?apikey={k}"), vec![], "apikey"),
        (format!("/v1/domains/x?api-key={k}"), vec![], "api-key"),
        (format!("/v1/domains/x?api_key[]={k}"), vec![], "api_key[]"),
        (format!("/v1/domains/x?x=1;api_key={k}"), vec![], "\"x\""),
        (format!("/v1/domains/x?api_key%3D{k}"), vec![], "api_key="),
        (format!("/v1/domains/{k}"), vec![], "path"),
        // Our own: other spellings, encodings and places in the target.
        (format!("/v1/domains/x?Api_Key={k}"), vec![], "Api_Key"),
        (format!("/v1/domains/x?key={k}"), vec![], "\"key\""),
        (format!("/v1/domains/x?token=Bearer%20{k}"), vec![], "token"),
        (
            format!("/v1/domains/x?x={}", encode_all(&k)),
            vec![],
            "\"x\"",
        ),
        (format!("/v1/domains/x?{k}"), vec![], "query parameter"),
        (format!("/v1/domains/x?{k}=1"), vec![], "query parameter"),
        (format!("/v1/domains/x?a=1&b={k}xyz"), vec![], "\"b\""),
        (format!("/v1/domains/x?t={t}"), vec![], "\"t\""),
        (format!("/v1/domains/{}", encode_all(&k)), vec![], "path"),
        (format!("/v1/domains/a-{k}-b/c"), vec![], "path"),
        (format!("/v1/status?x={k}"), vec![], "\"x\""),
        (format!("/nowhere/{k}"), vec![], "path"),
        (format!("http://{k}/v1/domains/x"), vec![], "host"),
        // Sent properly as well as misplaced: still refused.
        (
            format!("/v1/domains/x?apikey={k}"),
            vec![auth.clone()],
            "apikey",
        ),
        (format!("/v1/domains/{t}"), vec![auth.clone()], "path"),
    ];
    for (target, headers, place) in &cases {
        let r = e.raw(target, headers).await;
        assert_misplaced(target, &r, place, &[&k, &t], &e.up);
    }
    let metrics = e.misplaced();
    assert!(
        metrics.contains("osir_gateway_misplaced_keys_total{place=\"path\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("osir_gateway_misplaced_keys_total{place=\"query\"} 16"),
        "{metrics}"
    );
    assert!(
        metrics.contains("osir_gateway_misplaced_keys_total{place=\"authority\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("reason=\"misplaced_api_key\",route=\"none\",status=\"400\"} 22"),
        "{metrics}"
    );
    let log = e.log_with(cases.len()).await;
    assert!(!log.contains(body(&k)) && !log.contains(body(&t)), "{log}");
    assert_eq!(log.matches("misplaced_api_key").count(), cases.len());
}

#[tokio::test]
async fn keys_in_other_headers_are_refused() {
    let e = start().await;
    let k = e.key.clone();
    let cases: Vec<(String, &str)> = vec![
        (format!("X-Api-Key: {k}"), "x-api-key"),
        (format!("Api-Key: {k}"), "api-key"),
        (
            format!("Proxy-Authorization: Bearer {k}"),
            "proxy-authorization",
        ),
        (format!("Cookie: session=1; api_key={k}"), "cookie"),
        (format!("X-Auth-Token: {k}"), "x-auth-token"),
        (
            format!("Referer: https://example.com/?api_key={k}"),
            "referer",
        ),
        (format!("User-Agent: curl {k}"), "user-agent"),
        (format!("X-Forwarded-For: {k}"), "x-forwarded-for"),
        (format!("Authorization_: Bearer {k}"), "authorization_"),
        (format!("Authorisation: Bearer {k}"), "authorisation"),
        (format!("X-Osir-Key-Id: {k}"), "x-osir-key-id"),
        (
            format!("Referer: https://example.com/?k={}", encode_all(&k)),
            "referer",
        ),
        (format!("Cookie: k=osir%5F{}", &k[5..]), "cookie"),
        // Echoed in answers and logs if it were kept as the request id.
        (format!("X-Request-Id: {k}"), "x-request-id"),
    ];
    let auth = format!("Authorization: {}", bearer(&k));
    for (header, place) in &cases {
        for with_auth in [false, true] {
            let mut headers = vec![header.clone()];
            if with_auth {
                headers.push(auth.clone());
            }
            let r = e.raw("/v1/domains/x", &headers).await;
            assert_misplaced(header, &r, place, &[&k], &e.up);
        }
    }
    // Over HTTP/2 too.
    let r = send_with(
        &h2_client(),
        Method::GET,
        &e.gw.url("/v1/domains/x"),
        &[("x-api-key", &k)],
        Bytes::new(),
    )
    .await;
    assert_misplaced("HTTP/2 x-api-key", &r, "x-api-key", &[&k], &e.up);
    let metrics = e.misplaced();
    let want = format!(
        "osir_gateway_misplaced_keys_total{{place=\"header\"}} {}",
        cases.len() * 2 + 1
    );
    assert!(metrics.contains(&want), "{metrics}");
    let log = e.log_with(cases.len() * 2 + 1).await;
    assert!(!log.contains(body(&k)), "{log}");
}

#[tokio::test]
async fn keys_in_their_places_pass_and_look_alikes_are_redacted_in_the_log() {
    let e = start().await;
    let k = e.key.clone();
    let bad = bad_checksum(&k);
    let cases: Vec<(String, Vec<String>)> = vec![
        (
            "/v1/domains/x".into(),
            vec![format!("Authorization: {}", bearer(&k))],
        ),
        (format!("/v1/domains/x?api_key={k}&a=1"), vec![]),
        (
            format!("/v1/domains/x?api%5Fkey={}", encode_all(&k)),
            vec![],
        ),
        // Key-shaped but with a wrong checksum: not a key, so not refused,
        // but logged only as its hint.
        (
            format!("/v1/domains/{bad}?q={bad}"),
            vec![
                format!("Authorization: {}", bearer(&k)),
                format!("X-Note: {bad}"),
                format!("X-Request-Id: {bad}"),
            ],
        ),
    ];
    for (i, (target, headers)) in cases.iter().enumerate() {
        let r = e.raw(target, headers).await;
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        assert_eq!(e.up.count(), i + 1);
    }
    let seen = e.up.last();
    assert_eq!(seen.target, format!("/v1/domains/{bad}?q={bad}"));
    let log = e.log_with(cases.len()).await;
    assert!(!log.contains(body(&k)), "{log}");
    assert!(!log.contains(body(&bad)), "{log}");
    assert!(log.contains("osir_live_…"), "{log}");
}

#[tokio::test]
async fn without_checksum_verification_shape_alone_is_a_key() {
    let up = RecordingUpstream::start("up").await;
    let gw = TestGateway::builder()
        .upstream(&up)
        .extra("[auth]\nverify_checksum = false")
        .store(memory_store())
        .start()
        .await;
    let shaped = "osir_live_a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6";
    let r = raw_exchange(
        gw.addr,
        format!("GET /v1/status?apikey={shaped} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .await;
    assert_misplaced("unchecked shape", &r, "apikey", &[shaped], &up);
}

// ---- properties of the scan ---------------------------------------------------

mod props {
    use osir_gateway::keys::misplaced::{find, redact, Place};
    use osir_gateway::keys::{ApiKey, Env};
    use proptest::prelude::*;

    /// A key written with each byte either as is or percent-encoded (either
    /// case of hex digit), as `mask` says.
    fn encoded(key: &str, mask: &[u8]) -> String {
        key.bytes()
            .zip(mask.iter().cycle())
            .map(|(b, m)| match m % 3 {
                0 => (b as char).to_string(),
                1 => format!("%{b:02x}"),
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// However the key is encoded and whatever surrounds it, a key in
        /// a parameter other than api_key, or in the path, is found; and
        /// redaction never leaves its body.
        #[test]
        fn a_key_is_found_however_written(
            mask in proptest::collection::vec(any::<u8>(), 1..8),
            before in "[a-z0-9=_%.-]{0,12}",
            after in "[a-z0-9=_%.-]{0,12}",
            name in "[a-zA-Z_]{1,8}",
        ) {
            let key = ApiKey::generate(Env::Test).unwrap();
            let text = encoded(key.expose_secret(), &mask);
            let query = format!("{name}x={before}{text}{after}");
            prop_assert!(matches!(find("/v1/x", Some(&query), std::iter::empty(), true), Some(Place::Query(_))), "{}", query);
            let path = format!("/v1/{before}{text}{after}");
            prop_assert_eq!(find(&path, None, std::iter::empty(), true), Some(Place::Path));
            let raw = format!("{before}{}{after}", key.expose_secret());
            let shown = redact(&raw);
            prop_assert!(!shown.contains(&key.expose_secret()[10..]));
        }

        /// Text with no key in it is never refused.
        #[test]
        fn no_key_no_refusal(query in "[a-z0-9=&_%;.-]{0,80}", path in "/[a-z0-9_%.-]{0,60}") {
            prop_assert_eq!(find(&path, Some(&query), std::iter::empty(), true), None);
        }
    }
}
