//! Assertions on a request through a gateway: what the client got back and
//! what the upstreams did (or did not) receive.

use bytes::Bytes;
use http::Method;
use osir_gateway::keys::Env;
use osir_gateway::store::Store;

use super::client::{bearer, send, Reply};
use super::gateway::{config, TestGateway};
use super::keys::create_key;
use super::upstream::{Recorded, RecordingUpstream};

/// Sends the request and asserts the gateway refused it with `status` and
/// the contract error `code`, as JSON, with `WWW-Authenticate` on a 401, and
/// that none of `ups` received anything.
pub async fn refused(
    gw: &TestGateway,
    ups: &[&RecordingUpstream],
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    status: u16,
    code: &str,
) -> Reply {
    let before: Vec<usize> = ups.iter().map(|u| u.count()).collect();
    let r = send(method.clone(), &gw.url(path), headers, Bytes::new()).await;
    let what = format!("{method} {path}");
    assert_eq!(r.status.as_u16(), status, "{what}: {}", r.text());
    assert_eq!(r.code(), code, "{what}: {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
    if status == 401 {
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"osir\""),
            "{what}"
        );
    }
    let after: Vec<usize> = ups.iter().map(|u| u.count()).collect();
    assert_eq!(
        before, after,
        "{what}: a refused request reached an upstream"
    );
    r
}

/// Sends the request, asserts a 200 from `up` (one more request there) and
/// returns what `up` received.
pub async fn allowed(
    gw: &TestGateway,
    up: &RecordingUpstream,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Recorded {
    let before = up.count();
    let r = send(method.clone(), &gw.url(path), headers, Bytes::new()).await;
    assert_eq!(r.status, 200, "{method} {path}: {}", r.text());
    assert_eq!(
        r.header("x-upstream"),
        Some(up.name),
        "{method} {path}: answered by the wrong upstream"
    );
    assert_eq!(up.count(), before + 1, "{method} {path}");
    up.last()
}

/// The status and error code of one request (`"ok"` for a success), for
/// polling until a change lands.
pub async fn outcome(
    gw: &TestGateway,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let r = send(method, &gw.url(path), headers, Bytes::new()).await;
    let code = if r.status.is_success() {
        "ok".to_owned()
    } else {
        r.code()
    };
    (r.status.as_u16(), code)
}

/// A gateway (the shared test config plus `extra`) in front of one
/// recording upstream, over `store`, with short ways to ask it things.
pub struct Bench {
    pub up: RecordingUpstream,
    pub gw: TestGateway,
    pub store: Store,
}

impl Bench {
    pub async fn start(store: Store, extra: &str) -> Bench {
        let up = RecordingUpstream::start("up").await;
        let gw = TestGateway::start(&config(&up.url(), None, extra), store.clone()).await;
        gw.wait_store_watched().await;
        Bench { up, gw, store }
    }

    /// A live key: its `Authorization` value and its id.
    pub async fn key(&self, scopes: &[&str], ips: &[&str]) -> (String, String) {
        let (key, rec) = create_key(&self.store, Env::Live, scopes, ips).await;
        (bearer(&key), rec.id)
    }

    /// [`allowed`]; `auth` is the whole Authorization value, "" sends none.
    pub async fn pass(&self, m: Method, path: &str, auth: &str) -> Recorded {
        let h = [("authorization", auth)];
        let h: &[(&str, &str)] = if auth.is_empty() { &[] } else { &h };
        allowed(&self.gw, &self.up, m, path, h).await
    }

    /// [`refused`]; `auth` as for [`Bench::pass`].
    pub async fn deny(&self, m: Method, path: &str, auth: &str, status: u16, code: &str) -> Reply {
        let h = [("authorization", auth)];
        let h: &[(&str, &str)] = if auth.is_empty() { &[] } else { &h };
        refused(&self.gw, &[&self.up], m, path, h, status, code).await
    }
}

/// Asserts a 403's message names the scope that was required.
pub fn names_scope(r: &Reply, scope: &str) {
    let msg = r.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(msg.contains(scope), "the 403 does not name {scope}: {msg}");
}
