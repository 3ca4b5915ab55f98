//! Attributable access log (issue 14): every line of a request whose key
//! was identified carries the key's id, account and env, refusals included;
//! a refusal made before the key is identified carries none of them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use osir_gateway::config::AccessLog as AccessLogConfig;
use osir_gateway::keys::Env;
use osir_gateway::keys::{KeyRecord, Timestamp};
use osir_gateway::manage::KeyService;

use crate::support::client::{bearer, get};
use crate::support::eventually;
use crate::support::gateway::TestGateway;
use crate::support::keys::{body, create, memory_store, new_key};
use crate::support::upstream::RecordingUpstream;

/// Points the gateway's access log at a fresh file.
fn log_to_file(gw: &TestGateway) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let log =
        osir_gateway::pipeline::access_log::AccessLog::open(&AccessLogConfig::File(path.clone()))
            .unwrap();
    gw.gw.access_log.store(log.map(Arc::new));
    (dir, path)
}

/// The first `n` lines of the log, once written.
async fn lines(path: &Path, n: usize) -> Vec<serde_json::Value> {
    let mut text = String::new();
    let complete = eventually(Duration::from_secs(5), || {
        text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines().count() >= n
    })
    .await;
    assert!(complete, "wanted {n} lines, the log has:\n{text}");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A live key of account `acct_7` with these grants.
async fn account_key(
    store: &osir_gateway::store::Store,
    scopes: &[&str],
    ips: &[&str],
    expires_in: Option<Duration>,
) -> (String, KeyRecord) {
    let mut new = new_key(Env::Live, scopes, ips);
    new.account = Some("acct_7".into());
    new.expires_in = expires_in;
    create(store, new).await
}

fn assert_attributed(line: &serde_json::Value, status: u16, reason: &str, rec: &KeyRecord) {
    assert_eq!(line["status"], status, "{line}");
    assert_eq!(line["reason"], reason, "{line}");
    assert_eq!(line["key_id"], rec.id.as_str(), "{line}");
    assert_eq!(line["account"], "acct_7", "{line}");
    assert_eq!(line["env"], "live", "{line}");
    assert_eq!(line["client_ip"], "127.0.0.1", "{line}");
}

#[tokio::test]
async fn refusals_of_an_identified_key_name_it() {
    let up = RecordingUpstream::start("up").await;
    let store = memory_store();
    let gw = TestGateway::builder()
        .upstream(&up)
        .store(store.clone())
        .start()
        .await;
    let (_dir, path) = log_to_file(&gw);

    let (ok_key, ok_rec) = account_key(&store, &["domains:read"], &[], None).await;
    let (revoked, revoked_rec) = account_key(&store, &["domains:read"], &[], None).await;
    KeyService::new(&store)
        .revoke(&revoked_rec.id)
        .await
        .unwrap();
    let (expired, expired_rec) = account_key(
        &store,
        &["domains:read"],
        &[],
        Some(Duration::from_millis(1)),
    )
    .await;
    let expires_at = expired_rec.expires_at.unwrap();
    assert!(eventually(Duration::from_secs(5), || Timestamp::now() > expires_at).await);
    let (fenced, fenced_rec) = account_key(&store, &["domains:read"], &["192.0.2.1"], None).await;

    let cases: [(&str, &String, u16, &str, &KeyRecord); 5] = [
        ("/v1/domains/a", &ok_key, 200, "ok", &ok_rec),
        ("/v1/vps/a", &ok_key, 403, "insufficient_scope", &ok_rec),
        (
            "/v1/domains/a",
            &revoked,
            401,
            "revoked_api_key",
            &revoked_rec,
        ),
        (
            "/v1/domains/a",
            &expired,
            401,
            "expired_api_key",
            &expired_rec,
        ),
        ("/v1/domains/a", &fenced, 403, "ip_not_allowed", &fenced_rec),
    ];
    for (p, key, status, _, _) in &cases {
        let r = get(&gw.url(p), &[("authorization", &bearer(key))]).await;
        assert_eq!(r.status, *status, "{p}: {}", r.text());
    }
    let logged = lines(&path, cases.len()).await;
    for (line, (_, _, status, reason, rec)) in logged.iter().zip(&cases) {
        assert_attributed(line, *status, reason, rec);
    }
    let text = std::fs::read_to_string(&path).unwrap();
    for key in [&ok_key, &revoked, &expired, &fenced] {
        assert!(!text.contains(body(key)), "a key leaked:\n{text}");
    }
}

#[tokio::test]
async fn refusals_before_the_key_is_identified_name_no_key() {
    let up = RecordingUpstream::start("up").await;
    let store = memory_store();
    // One unknown key per client IP per minute: the second guess is refused
    // before any lookup, so that refusal cannot know whose key it was.
    let extra = "[auth]\nfailed_lookup_budget = 1\nfailed_lookup_window = \"60s\"\n";
    let gw = TestGateway::builder()
        .upstream(&up)
        .extra(extra)
        .store(store.clone())
        .start()
        .await;
    let (_dir, path) = log_to_file(&gw);

    let (known, _) = account_key(&store, &["domains:read"], &[], None).await;
    let unknown = osir_gateway::keys::ApiKey::generate(Env::Live).unwrap();
    let cases = [
        (unknown.expose_secret().to_owned(), 401, "invalid_api_key"),
        // A real key, never cached here: the exhausted budget refuses it
        // before the lookup that would have identified it.
        (known.clone(), 429, "rate_limited"),
        ("osir_live_nonsense".to_owned(), 401, "invalid_api_key"),
    ];
    for (key, status, _) in &cases {
        let r = get(&gw.url("/v1/domains/a"), &[("authorization", &bearer(key))]).await;
        assert_eq!(r.status, *status, "{}", r.text());
    }
    let logged = lines(&path, cases.len()).await;
    for (line, (_, status, reason)) in logged.iter().zip(&cases) {
        assert_eq!(line["status"], *status, "{line}");
        assert_eq!(line["reason"], *reason, "{line}");
        for field in ["key_id", "account", "env"] {
            assert!(line[field].is_null(), "{field} in {line}");
        }
        assert_eq!(line["client_ip"], "127.0.0.1", "{line}");
    }
}

#[tokio::test]
async fn a_cached_key_stays_attributed_after_the_budget_is_spent() {
    // The other side of the rule above: a key the gateway has identified
    // (cached) is not subject to the unknown-key budget, so its lines stay
    // attributed even after the client IP has spent its budget.
    let up = RecordingUpstream::start("up").await;
    let store = memory_store();
    let extra = "[auth]\nfailed_lookup_budget = 1\nfailed_lookup_window = \"60s\"\n";
    let gw = TestGateway::builder()
        .upstream(&up)
        .extra(extra)
        .store(store.clone())
        .start()
        .await;
    let (_dir, path) = log_to_file(&gw);
    let (known, rec) = account_key(&store, &["domains:read"], &[], None).await;
    let auth = [("authorization", bearer(&known))];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(n, v)| (*n, v.as_str())).collect();
    assert_eq!(get(&gw.url("/v1/domains/a"), &auth).await.status, 200);
    for _ in 0..2 {
        let guess = osir_gateway::keys::ApiKey::generate(Env::Live).unwrap();
        get(
            &gw.url("/v1/domains/a"),
            &[("authorization", &bearer(guess.expose_secret()))],
        )
        .await;
    }
    assert_eq!(get(&gw.url("/v1/vps/a"), &auth).await.status, 403);
    let logged = lines(&path, 4).await;
    assert_eq!(logged[2]["reason"], "rate_limited");
    assert_attributed(&logged[0], 200, "ok", &rec);
    assert_attributed(&logged[3], 403, "insufficient_scope", &rec);
}
