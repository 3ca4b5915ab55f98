//! The `keys` commands of the real binary (contract §10), against a Redis
//! store and a file store: create (shown once), list and show (never a
//! secret), update, revoke and rotate, and the exit statuses: 1 with one
//! clear line for a failure, 2 for a usage error, no password ever echoed.

use osir_gateway::keys::looks_like_key;
use osir_gateway::keys::Timestamp;
use serde_json::Value;

use crate::support::keys::{body, CliConfig, CliRun};
use crate::support::redis::RedisServer;

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

/// Asserts the run printed none of `keys`, whole or as a 32-char body.
fn no_secret(run: &CliRun, keys: &[&str]) {
    for k in keys {
        for text in [&run.stdout, &run.stderr] {
            assert!(!text.contains(body(k)), "a key was printed: {run:?}");
        }
    }
}

fn show(cfg: &CliConfig, id: &str, keys: &[&str]) -> Value {
    let run = cfg.run(&["keys", "show", id, "--json"]).ok();
    no_secret(&run, keys);
    run.json()
}

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

/// Exit 1, nothing on stdout, exactly one line on stderr mentioning `needle`.
fn fails(cfg: &CliConfig, args: &[&str], needle: &str) {
    let run = cfg.run(args);
    assert_eq!(run.code, 1, "{args:?}: {run:?}");
    assert!(run.stdout.is_empty(), "{args:?}: {run:?}");
    assert_eq!(
        run.stderr.trim_end().lines().count(),
        1,
        "{args:?}: not one line: {run:?}"
    );
    assert!(
        run.stderr.contains(needle),
        "{args:?}: stderr does not name {needle:?}: {run:?}"
    );
    assert!(!run.stderr.contains("panicked"), "{run:?}");
}

fn failures(cfg: &CliConfig) {
    let made = cfg
        .run(&[
            "keys",
            "create",
            "--name",
            "x",
            "--scope",
            "domains:read",
            "--json",
        ])
        .ok()
        .json();
    let id = made["id"].as_str().unwrap();
    let missing = "key_doesnotexist0000000";
    for cmd in ["show", "revoke", "rotate"] {
        fails(cfg, &["keys", cmd, missing], missing);
    }
    fails(cfg, &["keys", "update", missing, "--name", "y"], missing);
    let create = ["keys", "create", "--name", "x", "--scope"];
    fails(
        cfg,
        &[&create[..], &["domains:read", "--allow-ip", "10.0.0.0/33"]].concat(),
        "10.0.0.0/33",
    );
    fails(
        cfg,
        &[&create[..], &["domains:list"]].concat(),
        "domains:list",
    );
    fails(
        cfg,
        &[&create[..], &["domains:read", "--env", "prod"]].concat(),
        "prod",
    );
    fails(
        cfg,
        &["keys", "update", id, "--scope", "Domains:read"],
        "Domains:read",
    );
    fails(
        cfg,
        &["keys", "update", id, "--allow-ip", "300.1.1.1"],
        "300.1.1.1",
    );
    // Nothing was created or changed by the failures.
    let all = cfg.run(&["keys", "list", "--json"]).ok().json();
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
    assert_eq!(strings(&all[0]["scopes"]), ["domains:read"]);

    for usage in [
        &["keys", "create", "--scope", "domains:read"][..],
        &["keys", "create", "--name", "x"],
        &[
            "keys",
            "create",
            "--name",
            "x",
            "--scope",
            "domains:read",
            "--frobnicate",
        ],
        &["keys", "list", "--bogus"],
        &["keys", "explode"],
        &[
            "keys",
            "update",
            id,
            "--allow-ip",
            "10.0.0.1",
            "--clear-ips",
        ],
    ] {
        let run = cfg.run(usage);
        assert_eq!(run.code, 2, "{usage:?}: {run:?}");
        assert!(
            !run.stderr.is_empty() && run.stdout.is_empty(),
            "{usage:?}: {run:?}"
        );
    }
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

#[test]
fn failures_file() {
    failures(&CliConfig::file_store());
}

#[test]
fn failures_redis() {
    let redis = RedisServer::start();
    failures(&CliConfig::redis_store(&redis.url()));
}

#[test]
fn redis_down_is_a_clear_failure_without_the_password() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = CliConfig::redis_store(&format!("redis://:hunter2@127.0.0.1:{port}/0"));
    for args in [
        &["keys", "list"][..],
        &["keys", "list", "--json"],
        &["keys", "create", "--name", "x", "--scope", "domains:read"],
        &["keys", "revoke", "key_abc"],
    ] {
        let run = cfg.run(args);
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        assert_eq!(
            run.stderr.trim_end().lines().count(),
            1,
            "{args:?}: {run:?}"
        );
        assert!(
            run.stderr.contains("redis") && run.stderr.contains(&port.to_string()),
            "{run:?}"
        );
        assert!(!run.stderr.contains("panicked"), "{run:?}");
        assert!(
            !run.stdout.contains("hunter2") && !run.stderr.contains("hunter2"),
            "password leaked: {run:?}"
        );
        assert!(run.stdout.is_empty(), "{run:?}");
    }
}

/// `keys create --count N`: N distinct keys with the same grants, named
/// NAME-1 … NAME-N, one line each; a bad count is a usage error.
fn batch(cfg: &CliConfig) {
    let made = cfg
        .run(&[
            "keys",
            "create",
            "--name",
            "pop",
            "--env",
            "live",
            "--scope",
            "domains:read",
            "--count",
            "5",
            "--json",
        ])
        .ok();
    let lines: Vec<Value> = made
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 5, "{made:?}");
    let mut keys: Vec<&str> = lines.iter().map(|v| v["key"].as_str().unwrap()).collect();
    let mut names: Vec<&str> = lines.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert!(keys
        .iter()
        .all(|k| looks_like_key(k) && k.starts_with("osir_live_")));
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 5, "the keys are not distinct");
    names.sort();
    assert_eq!(names, ["pop-1", "pop-2", "pop-3", "pop-4", "pop-5"]);
    for v in &lines {
        assert_eq!(strings(&v["scopes"]), ["domains:read"]);
    }

    let plain = cfg
        .run(&[
            "keys", "create", "--name", "p", "--scope", "vps:read", "--count", "2",
        ])
        .ok();
    let rows: Vec<Vec<&str>> = plain
        .stdout
        .lines()
        .map(|l| l.split(' ').collect())
        .collect();
    assert_eq!(rows.len(), 2, "{plain:?}");
    for r in &rows {
        assert!(
            r.len() == 2 && r[0].starts_with("key_") && looks_like_key(r[1]),
            "{r:?}"
        );
        assert!(!plain.stderr.contains(body(r[1])), "a key went to stderr");
    }
    let all = cfg.run(&["keys", "list", "--json"]).ok().json();
    assert_eq!(all.as_array().unwrap().len(), 7, "{all}");

    for bad in ["0", "-1", "1000001", "many"] {
        let run = cfg.run(&[
            "keys", "create", "--name", "x", "--scope", "vps:read", "--count", bad,
        ]);
        assert_eq!(run.code, 2, "--count {bad}: {run:?}");
        assert!(run.stdout.is_empty(), "{run:?}");
    }
}

#[test]
fn batch_file() {
    batch(&CliConfig::file_store());
}

#[test]
fn batch_redis() {
    let redis = RedisServer::start();
    batch(&CliConfig::redis_store(&redis.url()));
}
