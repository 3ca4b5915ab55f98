//! Hostile input, §4 identity headers (see the list in `hostile`).

use bytes::Bytes;
use http::Method;

use crate::support::client::{bearer, h2_client, send_with};
use crate::support::expect::Bench;
use crate::support::gateway::TestGateway;

use super::{check, Want};

#[tokio::test]
async fn identity_headers_in_every_spelling_are_replaced_or_dropped() {
    let b = Bench::build(TestGateway::builder()).await;
    let (k, id) = b.secret(&["domains:read"], &[]).await;
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
