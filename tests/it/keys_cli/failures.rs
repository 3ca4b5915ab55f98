//! `keys` failures: exit 1 with one clear line, 2 for a usage error, no
//! password echoed.

use crate::support::keys::CliConfig;
use crate::support::redis::RedisServer;

use super::strings;

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
