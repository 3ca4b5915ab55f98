//! The audit trail (issue 14): every key change through the CLI (the real
//! binary) or the admin API (a real socket) is recorded in the store with
//! its actor, action, key id and changed fields, never a secret; it is
//! read newest first, filtered and paged; a change that fails leaves no
//! entry.

use http::Method;
use osir_gateway::keys::{Actor, AuditAction, AuditEntry, AuditQuery, Env, Timestamp};
use osir_gateway::manage::KeyService;
use osir_gateway::store::Store;
use serde_json::{json, Value};

use crate::support::client::{random_hex, send};
use crate::support::gateway::{config, TestGateway};
use crate::support::keys::{body, new_key, redis_store, CliConfig, CliRun};
use crate::support::redis::RedisServer;
use crate::support::upstream::RecordingUpstream;

const WHO: &[(&str, &str)] = &[("USER", "auditor"), ("HOSTNAME", "ops-box")];

fn no_secret(run: &CliRun, key: &str) {
    assert!(
        !run.stdout.contains(body(key)) || run.stdout.contains("\"key\""),
        "{run:?}"
    );
    assert!(
        !run.stderr.contains(body(key)),
        "a key reached stderr: {run:?}"
    );
}

fn entries(v: &Value) -> &Vec<Value> {
    v["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("no entries: {v}"))
}

/// create, update, rotate, revoke through the binary, then read them back.
fn cli_trail(cfg: &CliConfig) {
    let made = cfg
        .run_env(
            &[
                "keys",
                "create",
                "--name",
                "ci",
                "--scope",
                "domains:read",
                "--json",
            ],
            WHO,
        )
        .ok();
    let v = made.json();
    let (id, key) = (
        v["id"].as_str().unwrap().to_owned(),
        v["key"].as_str().unwrap().to_owned(),
    );
    // The entry also goes to the diagnostics log, as one JSON line.
    let line = made
        .stderr
        .lines()
        .find(|l| l.contains("\"action\":\"create\""))
        .unwrap_or_else(|| panic!("no audit line on stderr: {made:?}"));
    let logged: Value = serde_json::from_str(&line[line.find('{').unwrap()..]).unwrap();
    assert_eq!(logged["key_id"], id.as_str());
    assert!(!made.stderr.contains(body(&key)));

    let upd = cfg
        .run_env(&["keys", "update", &id, "--name", "ci-2"], WHO)
        .ok();
    no_secret(&upd, &key);
    let rot = cfg.run_env(&["keys", "rotate", &id, "--json"], WHO).ok();
    let new_id = rot.json()["id"].as_str().unwrap().to_owned();
    let new_key = rot.json()["key"].as_str().unwrap().to_owned();
    cfg.run_env(&["keys", "revoke", &new_id], WHO).ok();

    let all = cfg.run(&["keys", "audit", "--json"]).ok();
    assert!(!all.stdout.contains(body(&key)) && !all.stdout.contains(body(&new_key)));
    let v = all.json();
    let e = entries(&v);
    let seen: Vec<(&str, &str)> = e
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["key_id"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            ("revoke", new_id.as_str()),
            ("rotate", id.as_str()),
            ("create", new_id.as_str()),
            ("update", id.as_str()),
            ("create", id.as_str()),
        ],
        "newest first: {v}"
    );
    for entry in e {
        assert_eq!(
            entry["actor"],
            json!({"via": "cli", "user": "auditor", "host": "ops-box"}),
            "{entry}"
        );
        Timestamp::parse(entry["time"].as_str().unwrap()).unwrap();
    }
    assert_eq!(e[3]["changes"], json!({"name": "ci-2"}));
    assert_eq!(e[2]["changes"]["replaces"], id.as_str());
    assert_eq!(e[1]["changes"]["replaced_by"], new_id.as_str());
    assert!(e[1]["changes"]["expires_at"].is_string());
    assert!(e[0]["changes"]["revoked_at"].is_string());
    assert_eq!(e[4]["changes"]["scopes"], json!(["domains:read"]));
    assert!(e[4]["changes"].get("key").is_none());

    // One key's changes; pages of one, chained by the cursor.
    let mine = cfg.run(&["keys", "audit", &id, "--json"]).ok().json();
    let actions: Vec<&str> = entries(&mine)
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["rotate", "update", "create"]);
    let mut cursor: Option<String> = None;
    let mut paged = Vec::new();
    loop {
        let mut args = vec!["keys", "audit", "--limit", "2", "--json"];
        if let Some(c) = &cursor {
            args.extend(["--cursor", c.as_str()]);
        }
        let page = cfg.run(&args).ok().json();
        assert!(entries(&page).len() <= 2);
        paged.extend(entries(&page).iter().map(|e| e["id"].clone()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let ids: Vec<Value> = e.iter().map(|e| e["id"].clone()).collect();
    assert_eq!(paged, ids);
    // Since a moment in the future: nothing.
    let none = cfg
        .run(&["keys", "audit", "--since", "2099-01-01T00:00:00Z", "--json"])
        .ok()
        .json();
    assert!(entries(&none).is_empty());
    let recent = cfg
        .run(&["keys", "audit", "--since", "1h", "--json"])
        .ok()
        .json();
    assert_eq!(entries(&recent).len(), 5);
    // The human form names the actor; a bad cursor is a clear failure.
    let text = cfg.run(&["keys", "audit", &id]).ok();
    assert!(text.stdout.contains("cli:auditor@ops-box"), "{text:?}");
    let bad = cfg.run(&["keys", "audit", "--cursor", "nope"]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(bad.stderr.contains("cursor"), "{bad:?}");
}

#[test]
fn cli_changes_are_audited_in_redis() {
    let redis = RedisServer::start();
    cli_trail(&CliConfig::redis_store(&redis.url()));
}

#[test]
fn cli_changes_are_audited_in_the_key_file() {
    let cfg = CliConfig::file_store();
    cli_trail(&cfg);
    // The trail is in the same file as the records.
    let doc: Value = serde_json::from_slice(&std::fs::read(cfg.keys_file()).unwrap()).unwrap();
    assert_eq!(doc["audit"].as_array().unwrap().len(), 5);
}

fn entry(key_id: &str) -> AuditEntry {
    AuditEntry {
        id: Default::default(),
        time: Timestamp::now(),
        actor: Actor::local(),
        action: AuditAction::Create,
        key_id: key_id.into(),
        changes: Default::default(),
    }
}

/// A write that fails appends nothing; one that succeeds appends its entry.
async fn change_and_entry_together(store: &Store) {
    let svc = KeyService::new(store);
    let issued = svc
        .create(new_key(Env::Test, &["domains:read"], &[]))
        .await
        .unwrap();
    let all = AuditQuery {
        limit: 100,
        ..AuditQuery::default()
    };
    assert_eq!(store.audit(&all).await.unwrap().entries.len(), 1);
    // Same id again: refused, and no entry.
    let e = store
        .insert_audited(
            &issued.key.hash(),
            &issued.record,
            &entry(&issued.record.id),
        )
        .await;
    assert!(e.is_err());
    // Replacing an id that does not exist: refused, and no entry.
    let mut ghost = issued.record.clone();
    ghost.id = "key_ghost".into();
    assert!(store
        .replace_audited(&ghost, &entry("key_ghost"))
        .await
        .is_err());
    let page = store.audit(&all).await.unwrap();
    assert_eq!(page.entries.len(), 1);
    assert_eq!(page.entries[0].key_id, issued.record.id);
    assert_eq!(page.entries[0].action, AuditAction::Create);
}

#[tokio::test]
async fn a_failed_change_leaves_no_entry() {
    let redis = RedisServer::start();
    change_and_entry_together(&redis_store(&redis).await).await;
    change_and_entry_together(&crate::support::keys::memory_store()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = osir_gateway::store::file::FileStore::open(&dir.path().join("k.json")).unwrap();
    change_and_entry_together(&Store::new(file)).await;
}

#[tokio::test]
async fn api_changes_are_audited_with_the_token_name_and_client_ip() {
    let redis = RedisServer::start();
    let store = redis_store(&redis).await;
    let up = RecordingUpstream::start("up").await;
    let var = format!("OSIR_TEST_ADMIN_{}", random_hex(8).to_uppercase());
    crate::support::set_test_env(&var, "audit-admin-token");
    let toml = config(&up.url(), None, "").replace(
        "listen = \"127.0.0.1:2\"",
        &format!("listen = \"127.0.0.1:2\"\ntoken_env = \"{var}\"\ntoken_name = \"dashboard\""),
    );
    let gw = TestGateway::builder()
        .toml(&toml)
        .store(store.clone())
        .start()
        .await;
    let auth = [("authorization", "Bearer audit-admin-token")];
    let call = |m: Method, path: &str, body: Value| {
        let url = gw.admin_url(path);
        async move { send(m, &url, &auth, body.to_string()).await }
    };

    let r = call(
        Method::POST,
        "/keys",
        json!({"name": "dash", "scopes": ["domains:read"], "account": "acct_1"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let key = r.json()["key"].as_str().unwrap().to_owned();
    let r = call(
        Method::PATCH,
        &format!("/keys/{id}"),
        json!({"scopes": ["vps:*"]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = call(
        Method::POST,
        &format!("/keys/{id}/rotate"),
        json!({"grace": "1h"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let new_id = r.json()["id"].as_str().unwrap().to_owned();
    let r = call(Method::DELETE, &format!("/keys/{id}"), json!({})).await;
    assert_eq!(r.status, 204);

    let r = call(Method::GET, "/audit", Value::Null).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!r.text().contains(body(&key)));
    let v = r.json();
    let e = entries(&v);
    let seen: Vec<(&str, &str)> = e
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["key_id"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            ("revoke", id.as_str()),
            ("rotate", id.as_str()),
            ("create", new_id.as_str()),
            ("update", id.as_str()),
            ("create", id.as_str()),
        ]
    );
    for entry in e {
        assert_eq!(
            entry["actor"],
            json!({"via": "api", "token": "dashboard", "ip": "127.0.0.1"})
        );
    }
    assert_eq!(e[3]["changes"], json!({"scopes": ["vps:*"]}));
    assert_eq!(e[4]["changes"]["account"], "acct_1");

    // Filtered by key, paged by one.
    let r = call(
        Method::GET,
        &format!("/audit?key={new_id}&limit=1"),
        Value::Null,
    )
    .await;
    let v = r.json();
    assert_eq!(entries(&v).len(), 1);
    assert_eq!(v["next_cursor"], Value::Null, "{v}");
    let r = call(Method::GET, "/audit?limit=2", Value::Null).await;
    let first = r.json();
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let r = call(
        Method::GET,
        &format!("/audit?limit=2&cursor={cursor}"),
        Value::Null,
    )
    .await;
    let second = r.json();
    assert_eq!(entries(&second)[0]["id"], e[2]["id"]);

    // Bad parameters are 400 invalid_request naming the parameter.
    for q in [
        "cursor=x",
        "limit=0",
        "limit=many",
        "since=soon",
        "colour=red",
    ] {
        let r = call(Method::GET, &format!("/audit?{q}"), Value::Null).await;
        r.assert_error(400, "invalid_request");
        let name = q.split('=').next().unwrap();
        assert!(r.text().contains(name), "{q}: {}", r.text());
    }
    // The trail needs the token like every key call.
    let r = send(Method::GET, &gw.admin_url("/audit"), &[], "").await;
    assert_eq!(r.status, 401);
    let r = call(Method::POST, "/audit", json!({})).await;
    assert_eq!(r.status, 405);
    gw.shutdown().await;
}
