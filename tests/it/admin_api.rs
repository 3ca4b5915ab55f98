//! The admin key API end to end: its token, and every route from create to
//! revoke, each change reaching the data plane.

use std::time::Duration;

use http::Method;

use crate::support::client::{bearer, get_until, send};
use crate::support::expect::call;
use crate::support::gateway::{config, TestGateway};
use crate::support::keys::{body, memory_store};
use crate::support::upstream::RecordingUpstream;

#[tokio::test]
async fn admin_key_api_end_to_end() {
    let up = RecordingUpstream::start("up").await;
    let store = memory_store();
    let var = format!(
        "OSIR_TEST_ADMIN_{}",
        crate::support::client::random_hex(8).to_uppercase()
    );
    crate::support::set_test_env(&var, "s3cret-admin-token");
    let toml = config(&up.url(), None, "").replace(
        "listen = \"127.0.0.1:2\"",
        &format!("listen = \"127.0.0.1:2\"\ntoken_env = \"{var}\""),
    );
    let gw = TestGateway::builder()
        .toml(&toml)
        .store(store.clone())
        .start()
        .await;
    let auth = "Bearer s3cret-admin-token";
    let json = |v: serde_json::Value| v.to_string();

    // 401 without and with a wrong token.
    let r = send(Method::GET, &gw.admin_url("/keys"), &[], "").await;
    assert_eq!(
        (r.status.as_u16(), r.code().as_str()),
        (401, "unauthorized")
    );
    let r = send(
        Method::GET,
        &gw.admin_url("/keys"),
        &[("authorization", "Bearer nope")],
        "",
    )
    .await;
    assert_eq!(r.status, 401);

    // Create → 201 with the key once.
    let body_ = json(
        serde_json::json!({"name": "dash", "env": "live", "scopes": ["domains:read"], "allowed_ips": ["127.0.0.1"], "account": "acct_9", "expires_in": "30d"}),
    );
    let r = send(
        Method::POST,
        &gw.admin_url("/keys"),
        &[("authorization", auth)],
        body_,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let created = r.json();
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(osir_gateway::keys::looks_like_key(&key));
    assert_eq!(call(&gw, &key).await.status, 200);

    // List and show never carry a secret.
    let r = send(
        Method::GET,
        &gw.admin_url("/keys"),
        &[("authorization", auth)],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(!r.text().contains(body(&key)));
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    let r = send(
        Method::GET,
        &gw.admin_url(&format!("/keys/{id}")),
        &[("authorization", auth)],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.json()["usage"].is_object());
    assert!(!r.text().contains(body(&key)));
    let r = send(
        Method::GET,
        &gw.admin_url("/keys/key_unknown"),
        &[("authorization", auth)],
        "",
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.code().as_str()),
        (404, "key_not_found")
    );

    // Patch scopes → takes effect at once.
    let patch = json(serde_json::json!({"scopes": ["vps:read"]}));
    let r = send(
        Method::PATCH,
        &gw.admin_url(&format!("/keys/{id}")),
        &[("authorization", auth)],
        patch,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let url = gw.url("/v1/domains/x");
    let r = get_until(
        &url,
        &[("authorization", &bearer(&key))],
        403,
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.code().as_str()),
        (403, "insufficient_scope"),
        "the scope change did not take effect within 1 s"
    );

    // 400s name the field.
    for (body_, field) in [
        (
            serde_json::json!({"name": "x", "scopes": ["domains:list"]}),
            "scopes",
        ),
        (
            serde_json::json!({"name": "x", "scopes": ["domains:read"], "allowed_ips": ["10.0.0.0/33"]}),
            "allowed_ips",
        ),
        (
            serde_json::json!({"name": "x", "scopes": ["domains:read"], "env": "prod"}),
            "env",
        ),
    ] {
        let r = send(
            Method::POST,
            &gw.admin_url("/keys"),
            &[("authorization", auth)],
            json(body_),
        )
        .await;
        assert_eq!(
            (r.status.as_u16(), r.code().as_str()),
            (400, "invalid_request")
        );
        let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(msg.starts_with(&format!("{field}:")), "{msg}");
    }
    let r = send(
        Method::POST,
        &gw.admin_url("/keys"),
        &[("authorization", auth)],
        "{not json",
    )
    .await;
    assert_eq!(r.status, 400);

    // Rotate → 201 new key; delete → 204 and the old key is refused.
    let r = send(
        Method::POST,
        &gw.admin_url(&format!("/keys/{id}/rotate")),
        &[("authorization", auth)],
        json(serde_json::json!({"grace": "1h"})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let new_key = r.json()["key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, key);
    let r = send(
        Method::DELETE,
        &gw.admin_url(&format!("/keys/{id}")),
        &[("authorization", auth)],
        "",
    )
    .await;
    assert_eq!(r.status, 204);
    let url = gw.url("/v1/domains/x");
    let r = get_until(
        &url,
        &[("authorization", &bearer(&key))],
        401,
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.code().as_str()),
        (401, "revoked_api_key"),
        "the revocation did not take effect within 1 s"
    );
    let r = send(
        Method::DELETE,
        &gw.admin_url("/keys/key_unknown"),
        &[("authorization", auth)],
        "",
    )
    .await;
    assert_eq!(r.status, 404);
}
