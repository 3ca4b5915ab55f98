//! Method and URL override headers (issue 13, class 3): frameworks that
//! honour them would run a request authorised as a `domains:read` GET as a
//! DELETE, or on another path. The gateway removes them before forwarding,
//! over HTTP/1.1 and HTTP/2, and answers a `_method` query parameter that
//! names another method with 400 `invalid_request`.

use bytes::Bytes;
use http::Method;
use osir_gateway::keys::Env;

use crate::support::client::{bearer, client, h2_client, send_with};
use crate::support::gateway::TestGateway;
use crate::support::keys::{create_key, memory_store};
use crate::support::upstream::RecordingUpstream;

const OVERRIDES: [&str; 11] = [
    "X-HTTP-Method-Override",
    "X-HTTP-Method",
    "X-Method-Override",
    "X-Original-URL",
    "X-Rewrite-URL",
    "X-Original-Method",
    // Our own: other spellings seen in frameworks and proxies.
    "x-http-method-override",
    "X-Original-URI",
    "X-Override-URL",
    "X-Envoy-Original-Path",
    "X-Envoy-Original-Method",
];

#[tokio::test]
async fn override_headers_never_reach_the_upstream() {
    let up = RecordingUpstream::start("up").await;
    let store = memory_store();
    let gw = TestGateway::builder()
        .upstream(&up)
        .store(store.clone())
        .start()
        .await;
    let (k, _) = create_key(&store, Env::Live, &["domains:read"], &[]).await;
    let auth = bearer(&k);
    for c in [client(), h2_client()] {
        for name in OVERRIDES {
            let value = if name.to_ascii_lowercase().contains("method") {
                "DELETE"
            } else {
                "/v1/billing/invoices"
            };
            for path in ["/v1/domains/x", "/v1/status"] {
                let before = up.count();
                let r = send_with(
                    &c,
                    Method::GET,
                    &gw.url(path),
                    &[("authorization", &auth), (name, value), ("x-kept", "1")],
                    Bytes::new(),
                )
                .await;
                assert_eq!(r.status, 200, "{name} on {path}: {}", r.text());
                assert_eq!(up.count(), before + 1);
                let seen = up.last();
                assert_eq!(seen.method, "GET");
                assert!(seen.headers.get(name).is_none(), "{name} was forwarded");
                assert_eq!(seen.header("x-kept"), Some("1"), "{name}");
            }
        }
    }
}

#[tokio::test]
async fn a_method_parameter_naming_another_method_is_refused() {
    let up = RecordingUpstream::start("up").await;
    let store = memory_store();
    let gw = TestGateway::builder()
        .upstream(&up)
        .store(store.clone())
        .start()
        .await;
    let (k, _) = create_key(&store, Env::Live, &["domains:*"], &[]).await;
    let auth = bearer(&k);
    let refused: &[(Method, &str)] = &[
        (Method::GET, "_method=DELETE"),
        (Method::GET, "_method=delete"),
        (Method::GET, "a=1&_method=PUT&b=2"),
        (Method::GET, "%5Fmethod=DELETE"),
        (Method::GET, "_METHOD=PATCH"),
        (Method::GET, "_m%65thod=DELETE"),
        (Method::GET, "_method=DEL%45TE"),
        (Method::GET, "_method="),
        (Method::GET, "_method"),
        (Method::POST, "_method=DELETE"),
        (Method::GET, "_method=GET&_method=DELETE"),
    ];
    for (m, query) in refused {
        for path in ["/v1/domains/x", "/v1/status"] {
            let before = up.count();
            let url = gw.url(&format!("{path}?{query}"));
            let r = send_with(
                &client(),
                m.clone(),
                &url,
                &[("authorization", &auth)],
                Bytes::new(),
            )
            .await;
            assert_eq!(r.status, 400, "{m} {path}?{query}: {}", r.text());
            r.assert_error(400, "invalid_request");
            assert!(r.text().contains("_method"), "{}", r.text());
            assert_eq!(
                up.count(),
                before,
                "{m} {path}?{query} reached the upstream"
            );
        }
    }
    let passed: &[(Method, &str)] = &[
        (Method::GET, "_method=GET"),
        (Method::GET, "_method=get"),
        (Method::POST, "_method=POST"),
        (Method::GET, "x_method=DELETE"),
        (Method::GET, "_methods=DELETE"),
        (Method::GET, "method=DELETE"),
    ];
    for (m, query) in passed {
        let before = up.count();
        let url = gw.url(&format!("/v1/domains/x?{query}"));
        let r = send_with(
            &client(),
            m.clone(),
            &url,
            &[("authorization", &auth)],
            Bytes::new(),
        )
        .await;
        assert_eq!(r.status, 200, "{m} ?{query}: {}", r.text());
        assert_eq!(up.count(), before + 1);
        assert_eq!(up.last().target, format!("/v1/domains/x?{query}"));
    }
}
