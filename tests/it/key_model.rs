//! One key model for the CLI (the real binary) and the admin API (a real
//! socket), issue 14: rotation links both records, expiry and account can
//! be changed, a no-op update is a usage error, listing pages and filters,
//! and a scope naming a resource no route names is refused unless forced.

use http::Method;
use serde_json::{json, Value};

use crate::support::client::{random_hex, send};
use crate::support::gateway::{config, TestGateway};
use crate::support::keys::{cli_config, redis_store, CliConfig};
use crate::support::redis::RedisServer;
use crate::support::upstream::RecordingUpstream;

/// Routes naming the resources `domains` and `vps`, and `billing` only
/// through a per-method scope.
const ROUTES: &str = r#"
[upstreams.up]
url = "http://127.0.0.1:9"
[[routes]]
prefix = "/v1/domains"
upstream = "up"
resource = "domains"
[[routes]]
prefix = "/v1/vps"
upstream = "up"
resource = "vps"
[[routes]]
prefix = "/v1/billing"
upstream = "up"
resource = "domains"
scopes = { DELETE = "billing:write" }
"#;

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

fn create(cfg: &CliConfig, args: &[&str]) -> Value {
    let mut all = vec!["keys", "create", "--name", "m", "--json"];
    all.extend_from_slice(args);
    cfg.run(&all).ok().json()
}

fn cli_model(cfg: &CliConfig) {
    // Unknown resources are refused, naming the known ones; forcing works;
    // `*` and `resource:*` forms are fine.
    let typo = cfg.run(&["keys", "create", "--name", "t", "--scope", "domain:read"]);
    assert_eq!(typo.code, 1, "{typo:?}");
    assert_eq!(typo.stderr.trim_end().lines().count(), 1, "{typo:?}");
    for known in ["billing", "domains", "vps"] {
        assert!(typo.stderr.contains(known), "{typo:?}");
    }
    assert!(typo.stdout.is_empty());
    create(cfg, &["--scope", "domain:read", "--allow-unknown-scope"]);
    create(
        cfg,
        &["--scope", "*", "--scope", "vps:*", "--scope", "*:read"],
    );
    create(cfg, &["--scope", "billing:write"]);

    // Update: expiry, no expiry, account; a no-op is a usage error (2).
    let a = create(
        cfg,
        &[
            "--scope",
            "domains:read",
            "--account",
            "acct_a",
            "--env",
            "live",
        ],
    );
    let id = a["id"].as_str().unwrap().to_owned();
    let noop = cfg.run(&["keys", "update", &id]);
    assert_eq!(noop.code, 2, "{noop:?}");
    assert!(noop.stderr.contains("nothing to change"), "{noop:?}");
    let v = cfg
        .run(&["keys", "update", &id, "--expires-in", "2d", "--json"])
        .ok()
        .json();
    assert!(v["expires_at"].is_string(), "{v}");
    let v = cfg
        .run(&[
            "keys",
            "update",
            &id,
            "--no-expiry",
            "--account",
            "acct_b",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(v["expires_at"], Value::Null, "{v}");
    assert_eq!(v["account"], "acct_b");
    let both = cfg.run(&["keys", "update", &id, "--no-expiry", "--expires-in", "1d"]);
    assert_eq!(both.code, 2, "{both:?}");
    let bad = cfg.run(&["keys", "update", &id, "--scope", "nosuch:read"]);
    assert_eq!(bad.code, 1, "{bad:?}");

    // Rotation links both records, in the store and in every output.
    let rot = cfg.run(&["keys", "rotate", &id, "--json"]).ok().json();
    let new_id = rot["id"].as_str().unwrap().to_owned();
    assert_eq!(rot["replaces"], id.as_str());
    let old = cfg.run(&["keys", "show", &id, "--json"]).ok().json();
    assert_eq!(old["replaced_by"], new_id.as_str());
    let new = cfg.run(&["keys", "show", &new_id, "--json"]).ok().json();
    assert_eq!(new["replaces"], id.as_str());
    assert!(new.get("replaced_by").is_none());
    let text = cfg.run(&["keys", "show", &id]).ok().stdout;
    assert!(text.contains(&format!("replaced_by: {new_id}")), "{text}");

    // Filters and pages.
    cfg.run(&["keys", "revoke", &new_id]).ok();
    let all = ids(&cfg.run(&["keys", "list", "--json"]).ok().json());
    assert_eq!(all.len(), 5);
    let mine = ids(&cfg
        .run(&["keys", "list", "--account", "acct_b", "--json"])
        .ok()
        .json());
    assert_eq!(mine, [id.clone(), new_id.clone()]);
    let live = ids(&cfg
        .run(&["keys", "list", "--env", "live", "--json"])
        .ok()
        .json());
    assert_eq!(live, [id.clone(), new_id.clone()]);
    let revoked = ids(&cfg
        .run(&["keys", "list", "--status", "revoked", "--json"])
        .ok()
        .json());
    assert_eq!(revoked, [new_id.as_str()]);
    let active = ids(&cfg
        .run(&["keys", "list", "--status", "active", "--json"])
        .ok()
        .json());
    assert_eq!(active.len(), 4);
    let bad = cfg.run(&["keys", "list", "--status", "gone"]);
    assert_eq!(bad.code, 1, "{bad:?}");
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut args = vec!["keys", "list", "--limit", "4", "--json"];
        if let Some(c) = &cursor {
            args.extend(["--cursor", c.as_str()]);
        }
        let page = cfg.run(&args).ok().json();
        paged.extend(ids(&page["keys"]));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(paged, all);
}

#[test]
fn cli_key_model_redis() {
    let redis = RedisServer::start();
    cli_model(&CliConfig::new(&cli_config(
        &format!("backend = \"redis\"\nurl = \"{}\"", redis.url()),
        ROUTES,
    )));
}

#[test]
fn cli_key_model_file() {
    cli_model(&CliConfig::new(&cli_config(
        "backend = \"file\"\npath = \"keys.json\"",
        ROUTES,
    )));
}

#[tokio::test]
async fn api_key_model_matches_the_cli() {
    let redis = RedisServer::start();
    let store = redis_store(&redis).await;
    let up = RecordingUpstream::start("up").await;
    let var = format!("OSIR_TEST_ADMIN_{}", random_hex(8).to_uppercase());
    crate::support::set_test_env(&var, "model-admin-token");
    let toml = config(&up.url(), None, "").replace(
        "listen = \"127.0.0.1:2\"",
        &format!("listen = \"127.0.0.1:2\"\ntoken_env = \"{var}\""),
    );
    let gw = TestGateway::builder()
        .toml(&toml)
        .store(store.clone())
        .start()
        .await;
    let auth = [("authorization", "Bearer model-admin-token")];
    let call = |m: Method, path: &str, body: Option<Value>| {
        let url = gw.admin_url(path);
        async move {
            send(
                m,
                &url,
                &auth,
                body.map(|b| b.to_string()).unwrap_or_default(),
            )
            .await
        }
    };

    // Unknown resource: 400 naming the known ones; forced: 201.
    let r = call(
        Method::POST,
        "/keys",
        Some(json!({"name": "t", "scopes": ["domain:read"]})),
    )
    .await;
    r.assert_error(400, "invalid_request");
    assert!(
        r.text().contains("domains") && r.text().contains("billing"),
        "{}",
        r.text()
    );
    let r = call(
        Method::POST,
        "/keys",
        Some(json!({"name": "t", "scopes": ["domain:read"], "allow_unknown_scope": true})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());

    let r = call(
        Method::POST,
        "/keys",
        Some(json!({"name": "a", "env": "live", "scopes": ["domains:read"], "account": "acct_a"})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_owned();

    // PATCH {} is 400; expiry as a string, then null; account.
    let path = format!("/keys/{id}");
    let r = call(Method::PATCH, &path, Some(json!({}))).await;
    r.assert_error(400, "invalid_request");
    assert!(r.text().contains("nothing to change"), "{}", r.text());
    let r = call(Method::PATCH, &path, Some(json!({"expires_in": "2d"}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["expires_at"].is_string());
    let r = call(
        Method::PATCH,
        &path,
        Some(json!({"expires_in": null, "account": "acct_b"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["expires_at"], Value::Null);
    assert_eq!(r.json()["account"], "acct_b");
    let r = call(Method::PATCH, &path, Some(json!({"account": null}))).await;
    assert!(r.json().get("account").is_none(), "{}", r.text());
    let r = call(
        Method::PATCH,
        &path,
        Some(json!({"scopes": ["nosuch:read"]})),
    )
    .await;
    r.assert_error(400, "invalid_request");
    let r = call(Method::PATCH, "/keys/key_nope", Some(json!({"name": "x"}))).await;
    r.assert_error(404, "key_not_found");

    // Rotation: both records link each other.
    let r = call(Method::POST, &format!("{path}/rotate"), None).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let new_id = r.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(r.json()["replaces"], id.as_str());
    let old = call(Method::GET, &path, None).await.json();
    assert_eq!(old["replaced_by"], new_id.as_str());

    // Plain array without paging parameters; filters; pages.
    let all = ids(&call(Method::GET, "/keys", None).await.json());
    assert_eq!(all.len(), 3);
    let live = ids(&call(Method::GET, "/keys?env=live", None).await.json());
    assert_eq!(live, [id.clone(), new_id.clone()]);
    let r = call(Method::DELETE, &format!("/keys/{new_id}"), None).await;
    assert_eq!(r.status, 204);
    let revoked = ids(&call(Method::GET, "/keys?status=revoked", None).await.json());
    assert_eq!(revoked, [new_id.as_str()]);
    let none = ids(&call(Method::GET, "/keys?account=acct_b", None).await.json());
    assert!(none.is_empty(), "the account was removed: {none:?}");
    let p1 = call(Method::GET, "/keys?limit=2", None).await.json();
    assert_eq!(ids(&p1["keys"]), all[..2]);
    let c = p1["next_cursor"].as_str().unwrap().to_owned();
    let p2 = call(Method::GET, &format!("/keys?limit=2&cursor={c}"), None)
        .await
        .json();
    assert_eq!(ids(&p2["keys"]), all[2..]);
    assert_eq!(p2["next_cursor"], Value::Null);
    for q in [
        "limit=0",
        "limit=x",
        "cursor=nope",
        "status=gone",
        "env=prod",
        "colour=red",
        "account=",
        "env=live&env=test",
    ] {
        let r = call(Method::GET, &format!("/keys?{q}"), None).await;
        r.assert_error(400, "invalid_request");
    }

    // What schemathesis found: null is not "no change"; a revoked key
    // cannot be rotated (409); a lifetime past year 9999 is clamped.
    let r = call(
        Method::PATCH,
        &path,
        Some(json!({"name": null, "account": "x"})),
    )
    .await;
    r.assert_error(400, "invalid_request");
    assert!(r.text().contains("name"), "{}", r.text());
    let r = call(Method::POST, &format!("/keys/{new_id}/rotate"), None).await;
    r.assert_error(409, "conflict");
    let r = call(Method::POST, &format!("{path}/rotate"), Some(json!([]))).await;
    r.assert_error(400, "invalid_request");
    assert!(r.text().contains("JSON object"), "{}", r.text());
    let r = call(
        Method::POST,
        "/keys",
        Some(json!({"name": "far", "scopes": ["*"], "expires_in": "999999999d", "env": null})),
    )
    .await;
    // Lifetimes are bounded (at most 100 years, issue 12), named by field.
    r.assert_error(400, "invalid_request");
    assert!(r.text().contains("expires_in"), "{}", r.text());
    let r = call(
        Method::POST,
        "/keys",
        Some(json!({"name": "far", "scopes": ["*"], "expires_in": "36525d", "env": null})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["env"], "test");
    gw.shutdown().await;
}

#[tokio::test]
async fn openapi_json_is_served_without_the_token_while_the_api_is_on() {
    let up = RecordingUpstream::start("up").await;
    let off = TestGateway::builder()
        .toml(&config(&up.url(), None, ""))
        .store(crate::support::keys::memory_store())
        .start()
        .await;
    crate::support::client::get(&off.admin_url("/openapi.json"), &[])
        .await
        .assert_error(404, "route_not_found");
    off.shutdown().await;

    let var = format!("OSIR_TEST_ADMIN_{}", random_hex(8).to_uppercase());
    crate::support::set_test_env(&var, "openapi-admin-token");
    let toml = config(&up.url(), None, "").replace(
        "listen = \"127.0.0.1:2\"",
        &format!("listen = \"127.0.0.1:2\"\ntoken_env = \"{var}\""),
    );
    let gw = TestGateway::builder()
        .toml(&toml)
        .store(crate::support::keys::memory_store())
        .start()
        .await;
    let r = crate::support::client::get(&gw.admin_url("/openapi.json"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let pattern = doc["components"]["schemas"]["Scope"]["pattern"]
        .as_str()
        .unwrap();
    assert!(pattern.contains("(billing|domains|vps))"), "{pattern}");
    // The repository's document is the one served (narrowed).
    let repo: Value = serde_json::from_str(include_str!("../../docs/openapi.json")).unwrap();
    assert_eq!(doc["paths"], repo["paths"]);
    let r = send(Method::POST, &gw.admin_url("/openapi.json"), &[], "").await;
    assert_eq!(r.status, 405);
    gw.shutdown().await;
}
