//! `keys create --count N`.

use osir_gateway::keys::looks_like_key;
use serde_json::Value;

use crate::support::keys::{body, CliConfig};
use crate::support::redis::RedisServer;

use super::strings;

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
