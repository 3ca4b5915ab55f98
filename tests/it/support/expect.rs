//! Assertions on a request through a gateway: what the client got back and
//! what the upstreams did (or did not) receive.

use bytes::Bytes;
use http::Method;
use osir_gateway::keys::Env;
use osir_gateway::store::Store;

use std::time::Duration;

use super::client::{bearer, get, get_until, raw_exchange, send, Reply};
use super::gateway::{Builder, TestGateway};
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

/// `GET /v1/domains/x` with `key` as the bearer token.
pub async fn call(gw: &TestGateway, key: &str) -> Reply {
    get(&gw.url("/v1/domains/x"), &[("authorization", &bearer(key))]).await
}

/// Polls [`call`] until the answer has `status`, for up to `deadline`;
/// returns the last answer.
pub async fn until_status(gw: &TestGateway, key: &str, status: u16, deadline: Duration) -> Reply {
    let auth = bearer(key);
    get_until(
        &gw.url("/v1/domains/x"),
        &[("authorization", &auth)],
        status,
        deadline,
    )
    .await
}

/// A gateway in front of one recording upstream, over its store, with
/// short ways to ask it things.
/// Destructured, bind `up` (as `up: _up` if unused): a field left to
/// `..` is dropped at once, and a dropped upstream stops answering.
pub struct Bench {
    pub up: RecordingUpstream,
    pub gw: TestGateway,
    pub store: Store,
}

impl Bench {
    /// The shared test config plus `extra`, over `store`, once the store's
    /// watcher reports the store up.
    pub async fn start(store: Store, extra: &str) -> Bench {
        Bench::build(TestGateway::builder().store(store).extra(extra).watched()).await
    }

    /// The gateway `builder` describes, in front of a new recording
    /// upstream `up`.
    pub async fn build(builder: Builder<'_>) -> Bench {
        let (up, gw) = builder.start_with_upstream().await;
        let store = gw.store.clone();
        Bench { up, gw, store }
    }

    /// A live key: its `Authorization` value and its id.
    pub async fn key(&self, scopes: &[&str], ips: &[&str]) -> (String, String) {
        let (key, id) = self.secret(scopes, ips).await;
        (bearer(&key), id)
    }

    /// A live key: the key itself and its id.
    pub async fn secret(&self, scopes: &[&str], ips: &[&str]) -> (String, String) {
        let (key, rec) = create_key(&self.store, Env::Live, scopes, ips).await;
        (key, rec.id)
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

    /// A raw HTTP/1.1 GET: the exact bytes of `target` and `headers`
    /// (each line without its CRLF).
    pub async fn raw(&self, target: &str, headers: &[&[u8]]) -> Reply {
        let mut req = format!("GET {target} HTTP/1.1\r\nHost: {}\r\n", self.gw.addr).into_bytes();
        for h in headers {
            req.extend_from_slice(h);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"\r\n");
        raw_exchange(self.gw.addr, &req).await
    }

    /// Asserts that the gateway takes the client of this request (`headers`
    /// besides the key) to be inside `inside` and outside `outside`: a key
    /// limited to `inside` passes, one limited to `outside` gets 403.
    /// Returns what the upstream received.
    pub async fn client_is(
        &self,
        headers: &[(&str, &str)],
        inside: &[&str],
        outside: &[&str],
    ) -> Recorded {
        let (out_key, _) = create_key(&self.store, Env::Live, &["domains:read"], outside).await;
        let auth = bearer(&out_key);
        let mut h = vec![("authorization", auth.as_str())];
        h.extend_from_slice(headers);
        refused(
            &self.gw,
            &[&self.up],
            Method::GET,
            "/v1/domains",
            &h,
            403,
            "ip_not_allowed",
        )
        .await;
        let (in_key, _) = create_key(&self.store, Env::Live, &["domains:read"], inside).await;
        let auth = bearer(&in_key);
        let mut h = vec![("authorization", auth.as_str())];
        h.extend_from_slice(headers);
        allowed(&self.gw, &self.up, Method::GET, "/v1/domains", &h).await
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
