//! `keys` create, list, show, update, revoke and rotate, on a file and a
//! Redis store.

use osir_gateway::keys::looks_like_key;
use osir_gateway::keys::Timestamp;

use crate::support::keys::{body, CliConfig};
use crate::support::redis::RedisServer;

use super::{no_secret, show, strings};

fn lifecycle(cfg: &CliConfig) {
    let made = cfg
        .run(&[
            "keys",
            "create",
            "--name",
            "ci",
            "--scope",
            "domains:read",
            "--json",
        ])
        .ok();
    let v = made.json();
    let (id, key) = (
        v["id"].as_str().unwrap().to_owned(),
        v["key"].as_str().unwrap().to_owned(),
    );
    assert!(
        looks_like_key(&key) && key.starts_with("osir_test_"),
        "default env is test: {key}"
    );
    assert_eq!(v["env"], "test");
    assert_eq!(strings(&v["scopes"]), ["domains:read"]);
    assert_eq!(
        v["hint"].as_str().unwrap(),
        format!("osir_test_…{}", &key[38..])
    );
    assert!(
        made.stderr.contains("shown once"),
        "no warning on stderr: {made:?}"
    );

    let made = cfg
        .run(&[
            "keys",
            "create",
            "--name",
            "deploy",
            "--env",
            "live",
            "--scope",
            "vps:*",
            "billing:read",
        ])
        .ok();
    let shown: Vec<&str> = made
        .stdout
        .split_whitespace()
        .filter(|w| looks_like_key(w))
        .collect();
    assert_eq!(
        shown.len(),
        1,
        "the key must be printed exactly once: {made:?}"
    );
    let live = shown[0].to_owned();
    assert!(live.starts_with("osir_live_"));
    assert!(
        !made.stderr.is_empty() && !made.stderr.contains(body(&live)),
        "{made:?}"
    );
    let live_id = made
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("id:"))
        .unwrap()
        .trim()
        .to_owned();
    let keys = [key.as_str(), live.as_str()];

    let list = cfg.run(&["keys", "list", "--json"]).ok();
    no_secret(&list, &keys);
    let all = list.json();
    let ids: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str(), live_id.as_str()]);
    assert!(all
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r.get("key").is_none()));
    let text = cfg.run(&["keys", "list"]).ok();
    no_secret(&text, &keys);
    assert!(
        text.stdout.contains(&id) && text.stdout.contains(&live_id),
        "{text:?}"
    );

    let v = show(cfg, &id, &keys);
    assert_eq!(v["id"], id.as_str());
    assert!(v["usage"].is_object(), "show --json has no usage: {v}");
    assert_eq!(v["usage"]["total"], 0);
    no_secret(&cfg.run(&["keys", "show", &id]).ok(), &keys);

    cfg.run(&[
        "keys",
        "update",
        &id,
        "--scope",
        "domains:*",
        "vps:read",
        "--allow-ip",
        "10.0.0.0/8",
        "192.0.2.1",
        "--name",
        "renamed",
    ])
    .ok();
    let v = show(cfg, &id, &keys);
    assert_eq!(strings(&v["scopes"]), ["domains:*", "vps:read"]);
    assert_eq!(strings(&v["allowed_ips"]), ["10.0.0.0/8", "192.0.2.1/32"]);
    assert_eq!(v["name"], "renamed");
    cfg.run(&["keys", "update", &id, "--clear-ips"]).ok();
    let v = show(cfg, &id, &keys);
    assert!(strings(&v["allowed_ips"]).is_empty());
    assert_eq!(
        strings(&v["scopes"]),
        ["domains:*", "vps:read"],
        "--clear-ips changed the scopes"
    );

    let rotated = cfg
        .run(&["keys", "rotate", &live_id, "--grace", "1h", "--json"])
        .ok();
    let r = rotated.json();
    let new_key = r["key"].as_str().unwrap();
    assert!(
        looks_like_key(new_key) && new_key.starts_with("osir_live_") && !keys.contains(&new_key)
    );
    assert_ne!(r["id"], live_id.as_str());
    assert_eq!(strings(&r["scopes"]), ["vps:*", "billing:read"]);
    let old = show(cfg, &live_id, &keys);
    let ends = Timestamp::parse(
        old["expires_at"]
            .as_str()
            .expect("old key has no expires_at"),
    )
    .unwrap();
    let in_an_hour = Timestamp::now().0 + 3_600_000;
    assert!(
        (in_an_hour - 120_000..=in_an_hour).contains(&ends.0),
        "grace 1h, old key expires at {ends}"
    );
    assert!(old["revoked_at"].is_null());

    let revoked = cfg.run(&["keys", "revoke", &id]).ok();
    assert!(revoked.stdout.contains(&id), "{revoked:?}");
    assert!(show(cfg, &id, &keys)["revoked_at"].is_string());
    assert_eq!(
        cfg.run(&["keys", "list", "--json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn lifecycle_file() {
    let cfg = CliConfig::file_store();
    lifecycle(&cfg);
    let stored = std::fs::read_to_string(cfg.keys_file()).unwrap();
    assert!(
        !stored.contains("\"key\""),
        "the key file holds a key field"
    );
}

#[test]
fn lifecycle_redis() {
    let redis = RedisServer::start();
    lifecycle(&CliConfig::redis_store(&redis.url()));
}
