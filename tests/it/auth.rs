//! API keys end to end (contract §4, §6, §7): which credentials are
//! accepted, every refusal and its code, the order of checks, scopes, the
//! identity the upstream receives (and that no client can forge it), test
//! keys, and updates and rotation taking effect. The core cases run against
//! both an in-memory store and a real Redis store.

use std::time::Duration;

use http::Method;
use osir_gateway::keys::Timestamp;
use osir_gateway::keys::{ApiKey, Env};
use osir_gateway::manage::{parse_ips, parse_scopes, Changes, KeyService};
use osir_gateway::store::Store;

use crate::support::client::bearer;
use crate::support::eventually_async;
use crate::support::expect::{allowed, names_scope, outcome, refused, Bench};
use crate::support::gateway::{config, TestGateway};
use crate::support::keys::{bad_checksum, create, create_key, memory_store, new_key, redis_store};
use crate::support::redis::RedisServer;
use crate::support::upstream::RecordingUpstream;

const GET: Method = Method::GET;
const DELETE: Method = Method::DELETE;

/// Accepted and refused credentials, and what an allowed call forwards.
async fn credentials(store: Store) {
    let b = Bench::start(store, "").await;
    let mut new = new_key(Env::Live, &["domains:read", "billing:write"], &[]);
    new.account = Some("acct_42".into());
    let (key, rec) = create(&b.store, new).await;
    let auth = bearer(&key);

    let seen = b.pass(GET, "/v1/domains/x", &auth).await;
    assert_eq!(seen.header("x-osir-key-id"), Some(rec.id.as_str()));
    assert_eq!(seen.header("x-osir-account"), Some("acct_42"));
    assert_eq!(seen.header("x-osir-env"), Some("live"));
    let scopes = seen.header("x-osir-scopes");
    assert_eq!(scopes, Some("domains:read billing:write"));
    assert!(
        seen.headers.get("authorization").is_none(),
        "the credential was forwarded"
    );
    for scheme in ["Bearer", "bearer", "BEARER"] {
        b.pass(GET, "/v1/domains", &format!("{scheme} {key}")).await;
    }

    let p = "/v1/domains/x";
    let unknown = ApiKey::generate(Env::Live).unwrap();
    for auth in [
        format!("Basic {key}"),
        bearer("osir_live_abc"),
        bearer(&key.to_uppercase()),
        bearer(&key.replacen("osir_live_", "osir_prod_", 1)),
        bearer(&format!("{}-{}", &key[..20], &key[21..])),
        bearer(&bad_checksum(&key)),
        bearer(unknown.expose_secret()),
        bearer(&"a".repeat(4000)),
    ] {
        b.deny(GET, p, &auth, 401, "invalid_api_key").await;
    }
    b.deny(GET, p, "", 401, "missing_api_key").await;
    let (gw, u) = (&b.gw, [&b.up]);
    let two = [
        ("authorization", auth.as_str()),
        ("authorization", auth.as_str()),
    ];
    refused(gw, &u, GET, p, &two, 400, "ambiguous_credentials").await;
    let q = format!("{p}?api_key={key}");
    b.deny(GET, &q, &auth, 400, "ambiguous_credentials").await;
    let q = format!("{p}?api_key={key}&api_key={key}");
    b.deny(GET, &q, "", 400, "ambiguous_credentials").await;
    b.deny(GET, &format!("{p}?api_key="), "", 401, "invalid_api_key")
        .await;

    // The query key works and is cut out; the rest is kept byte for byte.
    let seen = b
        .pass(GET, &format!("{p}?a=1&api_key={key}&b=%20&&c"), "")
        .await;
    assert_eq!(seen.target, "/v1/domains/x?a=1&b=%20&&c");
    assert_eq!(seen.header("x-osir-key-id"), Some(rec.id.as_str()));
    let seen = b.pass(GET, &format!("{p}?api_key={key}"), "").await;
    assert_eq!(seen.target, "/v1/domains/x");
}

/// Expiry, revocation and scopes, each on its own key.
async fn grants(store: Store) {
    let b = Bench::start(store, "").await;
    let svc = KeyService::new(&b.store);

    let mut new = new_key(Env::Live, &["domains:read"], &[]);
    // A zero lifetime is refused at creation; one millisecond is not.
    new.expires_in = Some(Duration::from_millis(1));
    let (expired, rec) = create(&b.store, new).await;
    let expires_at = rec.expires_at.unwrap();
    while osir_gateway::keys::Timestamp::now() <= expires_at {
        tokio::task::yield_now().await;
    }
    b.deny(
        GET,
        "/v1/domains",
        &bearer(&expired),
        401,
        "expired_api_key",
    )
    .await;

    let (revoked, id) = b.key(&["domains:read"], &[]).await;
    svc.revoke(&id).await.unwrap();
    b.deny(GET, "/v1/domains", &revoked, 401, "revoked_api_key")
        .await;

    let (reader, _) = b.key(&["domains:read", "billing:write"], &[]).await;
    let r = b
        .deny(GET, "/v1/vps/1", &reader, 403, "insufficient_scope")
        .await;
    names_scope(&r, "vps:read");

    let (vps_all, _) = b.key(&["vps:*"], &[]).await;
    for m in [GET, Method::POST, Method::PUT, Method::PATCH, DELETE] {
        b.pass(m, "/v1/vps/1", &vps_all).await;
    }
    b.deny(GET, "/v1/domains", &vps_all, 403, "insufficient_scope")
        .await;

    let (star, _) = b.key(&["*"], &[]).await;
    b.pass(GET, "/v1/domains", &star).await;
    b.pass(DELETE, "/v1/billing/inv/1", &star).await;

    // Actions are independent: write does not imply read (or delete).
    let (writer, _) = b.key(&["domains:write"], &[]).await;
    let r = b
        .deny(GET, "/v1/domains", &writer, 403, "insufficient_scope")
        .await;
    names_scope(&r, "domains:read");
    b.pass(Method::POST, "/v1/domains", &writer).await;
    let r = b
        .deny(DELETE, "/v1/domains/x", &writer, 403, "insufficient_scope")
        .await;
    names_scope(&r, "domains:delete");

    // The billing route overrides DELETE to need billing:write.
    b.pass(DELETE, "/v1/billing/inv/1", &reader).await;
    let (deleter, _) = b.key(&["billing:delete", "billing:read"], &[]).await;
    let r = b
        .deny(
            DELETE,
            "/v1/billing/inv/1",
            &deleter,
            403,
            "insufficient_scope",
        )
        .await;
    names_scope(&r, "billing:write");
}

/// The first failing check answers, in the contract's order (§6).
async fn check_order(store: Store) {
    let b = Bench::start(store, "").await;
    let (revoked, id) = b.key(&["domains:read"], &["10.0.0.0/8"]).await;
    KeyService::new(&b.store).revoke(&id).await.unwrap();
    // path before everything, route before credentials
    b.deny(
        GET,
        "/v1/domains/%2e%2e/billing",
        &revoked,
        400,
        "invalid_path",
    )
    .await;
    b.deny(GET, "/v2/nothing", &revoked, 404, "route_not_found")
        .await;
    b.deny(GET, "/v2/nothing", "Basic x", 404, "route_not_found")
        .await;
    b.deny(GET, "/v2/nothing", "", 404, "route_not_found").await;
    // credential format before lookup
    let two = [
        ("authorization", "Basic x"),
        ("authorization", revoked.as_str()),
    ];
    refused(
        &b.gw,
        &[&b.up],
        GET,
        "/v1/domains",
        &two,
        400,
        "ambiguous_credentials",
    )
    .await;
    // lookup (revoked) before IP
    b.deny(GET, "/v1/domains", &revoked, 401, "revoked_api_key")
        .await;
    // IP before scope
    let (fenced, _) = b.key(&["domains:read"], &["10.0.0.0/8"]).await;
    b.deny(GET, "/v1/vps", &fenced, 403, "ip_not_allowed").await;
}

async fn on_redis<F, Fut>(case: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let redis = RedisServer::start();
    case(redis_store(&redis).await).await;
}

#[tokio::test]
async fn credentials_memory() {
    credentials(memory_store()).await;
}

#[tokio::test]
async fn credentials_redis() {
    on_redis(credentials).await;
}

#[tokio::test]
async fn grants_memory() {
    grants(memory_store()).await;
}

#[tokio::test]
async fn grants_redis() {
    on_redis(grants).await;
}

#[tokio::test]
async fn check_order_memory() {
    check_order(memory_store()).await;
}

#[tokio::test]
async fn check_order_redis() {
    on_redis(check_order).await;
}

#[tokio::test]
async fn query_keys_off_are_not_credentials_and_never_forwarded() {
    let b = Bench::start(memory_store(), "[auth]\nquery_key = false").await;
    let (key, _) = create_key(&b.store, Env::Live, &["domains:read"], &[]).await;
    b.deny(
        GET,
        &format!("/v1/domains?api_key={key}"),
        "",
        401,
        "missing_api_key",
    )
    .await;
    // Not a credential, so no ambiguity with the header; still cut out.
    let q = format!("/v1/domains?x=1&api_key={key}&api%5Fkey={key}");
    let seen = b.pass(GET, &q, &bearer(&key)).await;
    assert_eq!(seen.target, "/v1/domains?x=1");
}

#[tokio::test]
async fn identity_headers_cannot_be_forged_or_removed() {
    let b = Bench::start(memory_store(), "").await;
    let (key, rec) = create_key(&b.store, Env::Test, &["domains:read"], &[]).await;
    let auth = bearer(&key);
    let forged = [
        ("authorization", auth.as_str()),
        ("x-osir-key-id", "forged"),
        ("x-osir-key_id", "forged"),
        ("x-osir-account", "acct_victim"),
        ("x-osir-env", "live"),
        ("x-osir-scopes", "*"),
        ("x-osir-extra", "1"),
        ("connection", "X-Osir-Key-Id, X-Osir-Env"),
    ];
    let seen = allowed(&b.gw, &b.up, GET, "/v1/domains", &forged).await;
    let all = |name: &str| -> Vec<&str> {
        seen.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    };
    assert_eq!(all("x-osir-key-id"), [rec.id.as_str()]);
    assert_eq!(all("x-osir-env"), ["test"]);
    assert_eq!(all("x-osir-scopes"), ["domains:read"]);
    assert!(
        all("x-osir-account").is_empty(),
        "a key without an account got one"
    );
    let osir = seen
        .headers
        .keys()
        .filter(|k| k.as_str().starts_with("x-osir"));
    assert_eq!(osir.count(), 3, "{:?}", seen.headers);
}

#[tokio::test]
async fn test_keys_go_to_the_test_upstream() {
    let store = memory_store();
    let live_up = RecordingUpstream::start("live").await;
    let test_up = RecordingUpstream::start("sandbox").await;
    let toml = config(&live_up.url(), Some(&test_up.url()), "");
    let gw = TestGateway::builder()
        .toml(&toml)
        .store(store.clone())
        .start()
        .await;
    let (live, _) = create_key(&store, Env::Live, &["vps:read"], &[]).await;
    let (test, _) = create_key(&store, Env::Test, &["vps:read"], &[]).await;
    let h = bearer(&test);
    let seen = allowed(&gw, &test_up, GET, "/v1/vps/1", &[("authorization", &h)]).await;
    assert_eq!(seen.header("x-osir-env"), Some("test"));
    let h = bearer(&live);
    let seen = allowed(&gw, &live_up, GET, "/v1/vps/1", &[("authorization", &h)]).await;
    assert_eq!(seen.header("x-osir-env"), Some("live"));
    assert_eq!((live_up.count(), test_up.count()), (1, 1));
    let url = format!("/v1/vps/1?api_key={test}");
    let ups = [&live_up, &test_up];
    refused(
        &gw,
        &ups,
        Method::POST,
        &url,
        &[],
        403,
        "insufficient_scope",
    )
    .await;
}

fn changes(scopes: &[&str], ips: Option<&[&str]>) -> Changes {
    let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    Changes {
        name: None,
        scopes: (!scopes.is_empty()).then(|| parse_scopes(&owned(scopes)).unwrap()),
        allowed_ips: ips.map(|i| parse_ips(&owned(i)).unwrap()),
        ..Changes::default()
    }
}

/// Updates take effect on the next requests (within the contract's 1 s),
/// and rotation keeps the old key for exactly its grace.
async fn updates_and_rotation(store: Store) {
    let b = Bench::start(store, "").await;
    let svc = KeyService::new(&b.store);
    let (auth, id) = b.key(&["domains:read"], &[]).await;
    b.pass(GET, "/v1/domains", &auth).await;
    let h = [("authorization", auth.as_str())];
    let until = |path: &'static str, want: &'static str| {
        let (gw, h) = (&b.gw, &h);
        eventually_async(Duration::from_secs(1), move || async move {
            outcome(gw, GET, path, h).await.1 == want
        })
    };

    svc.update(&id, changes(&["vps:read"], None)).await.unwrap();
    assert!(
        until("/v1/domains", "insufficient_scope").await,
        "scopes not updated within 1 s"
    );
    b.pass(GET, "/v1/vps", &auth).await;
    svc.update(&id, changes(&[], Some(&["10.0.0.0/8"])))
        .await
        .unwrap();
    assert!(
        until("/v1/vps", "ip_not_allowed").await,
        "IPs not updated within 1 s"
    );
    svc.update(&id, changes(&[], Some(&["127.0.0.1"])))
        .await
        .unwrap();
    assert!(until("/v1/vps", "ok").await, "IPs not updated within 1 s");

    let rotated = svc.rotate(&id, Duration::from_secs(1)).await.unwrap();
    b.pass(GET, "/v1/vps", &bearer(rotated.key.expose_secret()))
        .await;
    let (_, old) = b.store.get(&id).await.unwrap().unwrap();
    let grace_end = old.expires_at.expect("the rotated key has no expiry");
    // Until the grace ends the old key works; from then on it is expired.
    let (gw, h) = (&b.gw, &h);
    let expired = eventually_async(Duration::from_secs(5), move || async move {
        let sent = Timestamp::now();
        let (status, code) = outcome(gw, GET, "/v1/vps", h).await;
        if code == "ok" {
            assert!(sent < grace_end, "the old key worked after its grace ended");
            return false;
        }
        assert_eq!((status, code.as_str()), (401, "expired_api_key"));
        assert!(
            Timestamp::now() >= grace_end,
            "the old key expired before its grace ended"
        );
        true
    })
    .await;
    assert!(expired, "the old key never expired");
}

#[tokio::test]
async fn updates_and_rotation_memory() {
    updates_and_rotation(memory_store()).await;
}

#[tokio::test]
async fn updates_and_rotation_redis() {
    on_redis(updates_and_rotation).await;
}
