//! `[store] password_env`: the Redis password comes from an environment
//! variable, so `gateway.toml` holds no secret. Against a `--requirepass`
//! server (the default user) and an ACL user (user in the URL, password
//! from the variable); an unset or empty variable, or a URL that also
//! holds a password, is refused at start with a message naming the
//! variable and never the password.

use std::time::Duration;

use osir_gateway::keys::Env;
use osir_gateway::manage::KeyService;
use osir_gateway::store::redis::{connect_with, RedisOptions};
use osir_gateway::store::Store;

use crate::support::expect::{call, until_status, Bench};
use crate::support::keys::create_key;
use crate::support::redis::RedisServer;
use crate::support::set_test_env;

/// A variable name no other test uses.
pub fn var_name(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("OSIR_TEST_{what}_{}_{nanos}", std::process::id())
}

fn options(var: &str) -> RedisOptions {
    RedisOptions {
        password_env: Some(var.to_owned()),
        ..RedisOptions::new(Duration::from_secs(1))
    }
}

async fn refusal(url: &str, options: &RedisOptions) -> String {
    match connect_with(url, options).await {
        Ok(_) => panic!("connected although it should not"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_requirepass_server_is_opened_with_the_password_from_the_environment() {
    const PASSWORD: &str = "pw-from-env-4f1c9e";
    let redis = RedisServer::start_with(&["--requirepass", PASSWORD]);
    let var = var_name("REDIS_PW");

    // Unset: refused, naming the variable.
    let err = refusal(&redis.url(), &options(&var)).await;
    assert!(err.contains(&var) && err.contains("not set"), "{err}");
    // Empty: refused too.
    set_test_env(&var, "");
    let err = refusal(&redis.url(), &options(&var)).await;
    assert!(err.contains(&var) && err.contains("empty"), "{err}");
    // A wrong password is refused, and never quoted.
    set_test_env(&var, "not-the-password-77");
    let err = refusal(&redis.url(), &options(&var)).await;
    assert!(!err.contains("not-the-password-77"), "{err}");

    set_test_env(&var, PASSWORD);
    let store = Store::new(
        connect_with(&redis.url(), &options(&var))
            .await
            .unwrap_or_else(|e| panic!("the password from {var} did not open the store: {e}")),
    );
    let bench = Bench::start(store.clone(), "").await;
    let (key, rec) = create_key(&store, Env::Live, &["domains:read"], &[]).await;
    assert_eq!(call(&bench.gw, &key).await.status, 200);
    KeyService::new(&store).revoke(&rec.id).await.unwrap();
    let r = until_status(&bench.gw, &key, 401, Duration::from_secs(1)).await;
    assert_eq!(
        r.status.as_u16(),
        401,
        "the revoke did not reach the gateway"
    );

    // A URL with a password and password_env: one way only.
    let both = format!("redis://:{PASSWORD}@127.0.0.1:{}/0", redis.port);
    let err = refusal(&both, &options(&var)).await;
    assert!(
        err.contains("give the password one way only") && !err.contains(PASSWORD),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_acl_user_from_the_url_gets_its_password_from_the_environment() {
    const PASSWORD: &str = "acl-pw-from-env-93b2";
    let redis = RedisServer::start();
    redis.cli(&[
        "ACL",
        "SETUSER",
        "gw",
        "on",
        &format!(">{PASSWORD}"),
        "~*",
        "&*",
        "+@all",
    ]);
    let var = var_name("REDIS_ACL_PW");
    set_test_env(&var, PASSWORD);
    let url = format!("redis://gw@127.0.0.1:{}/0", redis.port);
    let store = Store::new(
        connect_with(&url, &options(&var))
            .await
            .unwrap_or_else(|e| panic!("user gw with the password from {var}: {e}")),
    );
    let (key, rec) = create_key(&store, Env::Live, &["domains:read"], &[]).await;
    let bench = Bench::start(store.clone(), "").await;
    assert_eq!(call(&bench.gw, &key).await.status, 200);
    // Commands really run as gw.
    let clients = redis.cli(&["CLIENT", "LIST"]);
    assert!(clients.contains("user=gw"), "{clients}");
    KeyService::new(&store).revoke(&rec.id).await.unwrap();
    let r = until_status(&bench.gw, &key, 401, Duration::from_secs(1)).await;
    assert_eq!(r.status.as_u16(), 401);

    // The same user with a wrong password in the variable: refused, and
    // neither password is quoted.
    let wrong = var_name("REDIS_ACL_WRONG");
    set_test_env(&wrong, "wrong-acl-pw-11");
    let err = refusal(&url, &options(&wrong)).await;
    assert!(
        !err.contains("wrong-acl-pw-11") && !err.contains(PASSWORD),
        "{err}"
    );
}
