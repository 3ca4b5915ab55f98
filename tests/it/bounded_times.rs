//! Bounded times: every duration input is at most 100 years, through the
//! CLI and the admin API; a stored record with an out-of-range or
//! unparsable time is reported as corrupt by id (exit 1, or 500 with the
//! JSON error), never a panic, and never hides the other records.

use http::Method;
use osir_gateway::keys::Env;

use crate::support::client::{random_hex, send};
use crate::support::gateway::{config, TestGateway};
use crate::support::keys::{create_key, redis_store, CliConfig};
use crate::support::redis::RedisServer;
use crate::support::set_test_env;
use crate::support::upstream::RecordingUpstream;

fn record_count(redis: &RedisServer) -> usize {
    redis
        .cli(&["SCARD", "osir:ids"])
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn far_future_expiries_through_the_cli_are_refused_or_shown() {
    let redis = RedisServer::start();
    let cli = CliConfig::redis_store(&redis.url());
    let create = |expires: &str| {
        cli.run(&[
            "keys",
            "create",
            "--name",
            "far",
            "--env",
            "live",
            "--scope",
            "domains:read",
            "--expires-in",
            expires,
            "--json",
        ])
    };
    for too_far in [
        "3000000d",
        "36526d",
        "99999999999999999999d",
        "18446744073709551615ms",
    ] {
        let run = create(too_far);
        assert_eq!(run.code, 1, "{too_far}: {run:?}");
        assert!(
            run.stderr.contains("expires-in"),
            "{too_far}: {}",
            run.stderr
        );
        assert!(!run.stdout.contains("osir_"), "a key was printed: {run:?}");
        assert!(!run.stderr.contains("panicked"), "{run:?}");
    }
    assert_eq!(record_count(&redis), 0, "a refused create stored a key");

    // The longest allowed expiry works end to end, and every command can
    // show the record.
    let made = create("36525d").ok().json();
    let id = made["id"].as_str().unwrap().to_owned();
    let year: i64 = made["expires_at"].as_str().unwrap()[..4].parse().unwrap();
    assert!((2120..=2130).contains(&year), "{made}");
    cli.run(&["keys", "list"]).ok();
    cli.run(&["keys", "list", "--json"]).ok();
    cli.run(&["keys", "show", &id]).ok();
    let run = cli.run(&["keys", "rotate", &id, "--grace", "3000000d"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("grace"), "{}", run.stderr);
    let rotated = cli
        .run(&["keys", "rotate", &id, "--grace", "36525d", "--json"])
        .ok();
    assert!(rotated.json()["key"].as_str().is_some(), "{rotated:?}");
}

async fn admin_gateway(redis: &RedisServer) -> (TestGateway, String) {
    let up = RecordingUpstream::start("up").await;
    let var = format!("OSIR_TEST_ADMIN_{}", random_hex(8).to_uppercase());
    let token = format!("bounded-{}", random_hex(8));
    set_test_env(&var, &token);
    let toml = config(&up.url(), None, "").replace(
        "listen = \"127.0.0.1:2\"",
        &format!("listen = \"127.0.0.1:2\"\ntoken_env = \"{var}\""),
    );
    let gw = TestGateway::builder()
        .toml(&toml)
        .store(redis_store(redis).await)
        .start()
        .await;
    std::mem::forget(up);
    (gw, format!("Bearer {token}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_future_expiries_through_the_admin_api_are_refused_or_shown() {
    let redis = RedisServer::start();
    let (gw, auth) = admin_gateway(&redis).await;
    let h = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    for too_far in ["3000000d", "36526d", "99999999999999999999d"] {
        let body = format!(
            r#"{{"name":"far","env":"live","scopes":["domains:read"],"expires_in":"{too_far}"}}"#
        );
        let r = send(Method::POST, &gw.admin_url("/keys"), &h, body).await;
        r.assert_error(400, "invalid_request");
        assert!(r.text().contains("expires_in"), "{}", r.text());
    }
    assert_eq!(record_count(&redis), 0);
    let body = r#"{"name":"far","env":"live","scopes":["domains:read"],"expires_in":"36525d"}"#;
    let r = send(Method::POST, &gw.admin_url("/keys"), &h, body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let r = send(Method::GET, &gw.admin_url("/keys"), &h, "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let rotate = gw.admin_url(&format!("/keys/{id}/rotate"));
    let r = send(Method::POST, &rotate, &h, r#"{"grace":"3000000d"}"#).await;
    r.assert_error(400, "invalid_request");
    assert!(r.text().contains("grace"), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_times_are_named_by_id_and_hide_no_other_record() {
    let redis = RedisServer::start();
    let store = redis_store(&redis).await;
    let (_, good) = create_key(&store, Env::Live, &["domains:read"], &[]).await;
    let (_, far) = create_key(&store, Env::Live, &["domains:read"], &[]).await;
    let (_, junk) = create_key(&store, Env::Live, &["domains:read"], &[]).await;
    let hash_of = |id: &str| {
        redis
            .cli(&["GET", &format!("osir:id:{id}")])
            .trim()
            .to_owned()
    };
    // Past year 9999 (what used to panic every listing), and not a number.
    redis.cli(&[
        "HSET",
        &format!("osir:key:{}", hash_of(&far.id)),
        "expires_at",
        "92233720368547758",
    ]);
    redis.cli(&[
        "HSET",
        &format!("osir:key:{}", hash_of(&junk.id)),
        "revoked_at",
        "soon",
    ]);

    let cli = CliConfig::redis_store(&redis.url());
    let run = tokio::task::block_in_place(|| cli.run(&["keys", "list", "--json"]));
    assert_eq!(run.code, 1, "{run:?}");
    let listed: Vec<String> = run
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, vec![good.id.clone()]);
    assert!(
        run.stderr.contains(&far.id) && run.stderr.contains("expires_at"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&junk.id) && run.stderr.contains("revoked_at"),
        "{}",
        run.stderr
    );
    let run = tokio::task::block_in_place(|| cli.run(&["keys", "show", &far.id]));
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("corrupt key record") && run.stderr.contains(&far.id));
    for args in [
        vec!["keys", "revoke", far.id.as_str()],
        vec!["keys", "rotate", far.id.as_str()],
    ] {
        let run = tokio::task::block_in_place(|| cli.run(&args));
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        assert!(!run.stderr.contains("panicked"), "{run:?}");
    }

    let (gw, auth) = admin_gateway(&redis).await;
    let h = [("authorization", auth.as_str())];
    let r = send(Method::GET, &gw.admin_url("/keys"), &h, "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json().as_array().map(Vec::len), Some(1), "{}", r.text());
    let named = r.header("x-osir-corrupt-keys").unwrap_or("").to_owned();
    assert!(
        named.contains(&far.id) && named.contains(&junk.id),
        "{named}"
    );
    let r = send(
        Method::GET,
        &gw.admin_url(&format!("/keys/{}", far.id)),
        &h,
        "",
    )
    .await;
    r.assert_error(500, "corrupt_key_record");
    assert!(r.text().contains(&far.id), "{}", r.text());
}
