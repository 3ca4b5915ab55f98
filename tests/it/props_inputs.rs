//! Property tests of the key-management inputs: arbitrary command lines
//! through the CLI's own parsing and `keys` operations, and arbitrary JSON
//! bodies through the admin API. Nothing may panic; every refusal is an
//! error with a message (CLI) or a 4xx in the contract's JSON shape (API).

use http::Method;
use osir_gateway::cli::run_keys_args;
use osir_gateway::keys::Env;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};

use crate::support::client::{random_hex, send};
use crate::support::gateway::{config, TestGateway};
use crate::support::keys::{create_key, memory_store};
use crate::support::set_test_env;
use crate::support::upstream::RecordingUpstream;

const CASES: u32 = 192;

/// Durations as people (and fuzzers) write them: numbers of any size, any
/// unit or none, signs, spaces, fractions.
fn duration() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            "[0-9]{1,25}",
            select(vec!["ms", "s", "m", "h", "d", "", "y", "w"])
        )
            .prop_map(|(n, u)| format!("{n}{u}")),
        select(vec![
            "36525d",
            "36526d",
            "0s",
            "-1d",
            "1.5h",
            " 1d",
            "1d ",
            "",
            "d",
            "9223372036854775807ms",
        ])
        .prop_map(str::to_owned),
        any::<String>(),
    ]
}

fn token(id: String) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(vec![
            "create", "list", "show", "update", "revoke", "rotate", "--name", "--env",
            "--scope", "--allow-ip", "--account", "--expires-in", "--grace", "--json",
            "--clear-ips", "--no-expiry", "--count", "live", "test", "domains:read", "vps:*",
            "*", "nope:read", "10.0.0.0/8", "::ffff:1.2.3.4", "2001:db8::/129", "acct_1",
            "3", "0", "100000",
        ])
        .prop_map(str::to_owned),
        2 => duration(),
        1 => Just(id),
        1 => any::<String>(),
    ]
}

#[test]
fn arbitrary_command_lines_never_panic() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = memory_store();
    let (_, rec) = rt.block_on(create_key(&store, Env::Live, &["domains:read"], &[]));
    let args = (
        select(vec!["create", "list", "show", "update", "revoke", "rotate"]),
        prop::collection::vec(token(rec.id.clone()), 0..8),
    )
        .prop_map(|(cmd, rest)| {
            let mut v = vec!["keys".to_owned(), cmd.to_owned()];
            v.extend(rest);
            v
        });
    // Well-formed commands with arbitrary values, so the cases get past
    // the argument parser into the key operations.
    let value = || prop_oneof![duration(), token(rec.id.clone())];
    let shaped = prop_oneof![
        (value(), value(), value(), value()).prop_map(|(name, scope, ip, exp)| {
            ["keys", "create", "--name"]
                .iter()
                .map(|s| (*s).to_owned())
                .chain([name, "--scope".into(), scope, "--allow-ip".into(), ip])
                .chain(["--expires-in".into(), exp, "--json".into()])
                .collect::<Vec<String>>()
        }),
        value().prop_map({
            let id = rec.id.clone();
            move |g| {
                vec![
                    "keys".into(),
                    "rotate".into(),
                    id.clone(),
                    "--grace".into(),
                    g,
                ]
            }
        }),
        (value(), value()).prop_map({
            let id = rec.id.clone();
            move |(n, a)| {
                vec![
                    "keys".into(),
                    "update".into(),
                    id.clone(),
                    "--name".into(),
                    n,
                    "--account".into(),
                    a,
                ]
            }
        }),
    ];
    let args = prop_oneof![args, shaped];
    // The shared test config: its routes name the resources a scope may use.
    let cfg = crate::support::gateway::parse(&crate::support::gateway::config(
        "http://127.0.0.1:9",
        None,
        "",
    ));
    let mut runner = TestRunner::new(RunnerConfig::with_cases(CASES));
    runner
        .run(&args, |args| {
            let out = rt.block_on(run_keys_args(&store, &cfg, &args));
            if let Err(msg) = &out {
                prop_assert!(!msg.trim().is_empty(), "{args:?}: empty error");
            }
            Ok(())
        })
        .unwrap();
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        duration().prop_map(Value::String),
        select(vec![
            "live",
            "test",
            "domains:read",
            "*",
            "10.0.0.1",
            "acct"
        ])
        .prop_map(|s| Value::String(s.to_owned())),
        prop::collection::vec(
            prop_oneof![
                select(vec!["domains:read", "vps:*", "x", "10.0.0.0/8", "::1"])
                    .prop_map(str::to_owned),
                any::<String>(),
            ],
            0..4
        )
        .prop_map(|v| Value::Array(v.into_iter().map(Value::String).collect())),
    ]
}

fn body() -> impl Strategy<Value = String> {
    let field = select(vec![
        "name",
        "env",
        "scopes",
        "allowed_ips",
        "account",
        "expires_in",
        "grace",
        "extra",
    ]);
    prop_oneof![
        4 => prop::collection::btree_map(field, json_value(), 0..7).prop_map(|m| {
            let obj: serde_json::Map<String, serde_json::Value> =
                m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            serde_json::Value::Object(obj).to_string()
        }),
        1 => any::<String>(),
    ]
}

#[test]
fn arbitrary_admin_api_bodies_never_panic_or_answer_5xx() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let var = format!("OSIR_TEST_ADMIN_{}", random_hex(8).to_uppercase());
    let token = format!("props-{}", random_hex(8));
    set_test_env(&var, &token);
    let auth = format!("Bearer {token}");
    let store = memory_store();
    let (up, gw, id) = rt.block_on(async {
        let up = RecordingUpstream::start("up").await;
        let toml = config(&up.url(), None, "").replace(
            "listen = \"127.0.0.1:2\"",
            &format!("listen = \"127.0.0.1:2\"\ntoken_env = \"{var}\""),
        );
        let gw = TestGateway::builder()
            .toml(&toml)
            .store(store.clone())
            .start()
            .await;
        let (_, rec) = create_key(&store, Env::Live, &["domains:read"], &[]).await;
        (up, gw, rec.id)
    });
    let call = (
        select(vec![
            (Method::POST, "/keys".to_owned()),
            (Method::PATCH, format!("/keys/{id}")),
            (Method::POST, format!("/keys/{id}/rotate")),
            (Method::POST, "/keys/nope/rotate".to_owned()),
            (Method::PATCH, "/keys/nope".to_owned()),
        ]),
        body(),
    );
    let mut runner = TestRunner::new(RunnerConfig::with_cases(CASES));
    runner
        .run(&call, |((method, path), body)| {
            let h = [
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ];
            let r = rt.block_on(send(method.clone(), &gw.admin_url(&path), &h, body.clone()));
            let status = r.status.as_u16();
            prop_assert!(
                matches!(status, 200 | 201 | 400 | 404),
                "{method} {path} {body:?}: {status} {}",
                r.text()
            );
            if status >= 400 {
                prop_assert!(r.json()["error"]["code"].is_string(), "{}", r.text());
            }
            Ok(())
        })
        .unwrap();
    drop(gw);
    drop(up);
}
