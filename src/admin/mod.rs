//! The admin listener: health, readiness, metrics, and the key API.
//!
//! `/healthz` answers while the process serves; `/readyz` once config is
//! loaded and listeners are up, with the store's state in its body;
//! `/metrics` in Prometheus text format. The key API (contract §11) is off
//! unless `[admin] token_env` names a variable holding a token; every call
//! then needs `Authorization: Bearer <token>`, compared in constant time.
//! It calls the same [`KeyService`] as the CLI. `/openapi.json` describes
//! the key API (see [`openapi`]).
//!
//! Over 400 lines: every admin route and handler is here. The next split is
//! by resource (health and metrics, keys, audit), as `error.rs` already is.

pub(crate) mod error;
mod openapi;

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Deserialize;

use crate::keys::Actor;
use crate::manage::{self, Changes, KeyService, NewKey};
use crate::state::Gateway;
use error::AdminError;

/// Admin request bodies are small JSON objects.
const MAX_ADMIN_BODY: usize = 64 * 1024;

/// The window `admin.failed_token_budget` counts failures over.
use crate::state::ADMIN_FAILURE_WINDOW as FAILURE_WINDOW;

/// Answers one admin request from `peer`. HEAD is answered wherever GET
/// is, with the GET answer's status and headers (its `Content-Length`
/// included) and no body.
pub(crate) async fn handle(
    gw: &Gateway,
    mut req: Request<Incoming>,
    peer: IpAddr,
) -> Response<Full<Bytes>> {
    let request_id = gw
        .request_ids
        .for_request(req.headers().get("x-request-id").map(|v| v.as_bytes()));
    let peer = crate::keys::canonical_ip(peer);
    let head = req.method() == Method::HEAD;
    if head {
        *req.method_mut() = Method::GET;
    }
    let mut resp = match route(gw, req, peer).await {
        Ok(r) => r,
        Err(e) => e.to_response(request_id.to_str().unwrap_or("")),
    };
    resp.headers_mut().insert("x-request-id", request_id);
    if head {
        let len = http_body::Body::size_hint(resp.body()).exact().unwrap_or(0);
        resp.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(len));
        *resp.body_mut() = Full::new(Bytes::new());
    }
    resp
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

async fn route(
    gw: &Gateway,
    req: Request<Incoming>,
    peer: IpAddr,
) -> Result<Response<Full<Bytes>>, AdminError> {
    let path = req.uri().path().to_owned();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/healthz") => Ok(Response::new(Full::new(Bytes::from_static(b"ok\n")))),
        (&Method::GET, "/readyz") => {
            let started = gw.ready.load(Ordering::SeqCst);
            let snap = gw.snapshot.load();
            // Serving while changes cannot reach us would keep revoked keys
            // alive: not ready, and say why.
            let feed_problem = gw.cache.feed_problem();
            let ready = started && feed_problem.is_none();
            let status_text = match (started, &feed_problem) {
                (false, _) => "starting",
                (true, Some(_)) => "feed_down",
                (true, None) => "ready",
            };
            let v = serde_json::json!({
                "status": status_text,
                "config_generation": snap.generation,
                "store": {
                    "backend": gw.cache.store().backend_name(),
                    "up": gw.cache.store_is_up(),
                },
                "feed": {
                    "up": feed_problem.is_none(),
                    "reason": feed_problem,
                },
                "usage": {
                    "writable": gw.cache.usage_problem().is_none(),
                    "reason": gw.cache.usage_problem(),
                },
            });
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            Ok(json(status, &v))
        }
        (&Method::GET, "/metrics") => {
            gw.cache.publish_sizes();
            if let Some(log) = gw.access_log.load().as_deref() {
                log.report_dropped(&gw.metrics.access_log_dropped);
            }
            let mut r = Response::new(Full::new(Bytes::from(gw.metrics.render())));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            Ok(r)
        }
        (&Method::GET, "/openapi.json") => {
            // Served without the token, but only while the key API is on.
            if admin_token(gw).is_none() {
                return Err(AdminError::RouteNotFound);
            }
            let resources = gw.snapshot.load().config.known_resources();
            Ok(json(StatusCode::OK, &openapi::document(&resources)))
        }
        (_, "/openapi.json") => Err(AdminError::MethodNotAllowed("GET, HEAD")),
        (_, p) if p == "/keys" || p.starts_with("/keys/") || p == "/audit" => {
            authenticate(gw, &req, peer)?;
            let actor = Actor::Api {
                token: gw.snapshot.load().config.admin.token_name.clone(),
                ip: peer,
            };
            let answer = if p == "/audit" {
                audit_api(gw, &req, actor).await
            } else {
                keys_api(gw, req, &path, actor).await
            };
            answer.inspect_err(|e| {
                // Only a failed store call answers key_store_unavailable here.
                if matches!(e, AdminError::StoreUnavailable(_)) {
                    gw.metrics.store_errors.inc(crate::metrics::StoreOp::Admin);
                }
            })
        }
        _ => Err(AdminError::RouteNotFound),
    }
}

/// The admin token, from the variable `[admin] token_env` names.
fn admin_token(gw: &Gateway) -> Option<String> {
    let snap = gw.snapshot.load();
    let var = snap.config.admin.token_env.as_ref()?;
    std::env::var(var).ok().filter(|t| !t.is_empty())
}

/// Checks the admin token. Exactly one `Authorization` header, `Bearer`
/// and the token: two headers are refused whatever they hold (never "the
/// first wins"). Each failure is charged to the client IP; an IP past
/// `admin.failed_token_budget` failures in [`FAILURE_WINDOW`] gets 429 for
/// every key API call until its window ends, the right token included, so
/// guessing is slowed to the budget per minute.
fn authenticate(gw: &Gateway, req: &Request<Incoming>, peer: IpAddr) -> Result<(), AdminError> {
    // Off unless configured: answer as if the API were not there.
    let Some(token) = admin_token(gw) else {
        return Err(AdminError::RouteNotFound);
    };
    let budget = gw.snapshot.load().config.admin.failed_token_budget;
    if let Some(retry) = gw.admin_failures.check(peer, budget, FAILURE_WINDOW) {
        gw.metrics.admin_rate_limited.inc();
        if LIMIT_LOG.admit(std::time::Instant::now()).is_some() {
            tracing::warn!(client_ip = %peer, budget, "admin API: too many failed token attempts; refusing this client's calls (logged at most once a minute)");
        }
        return Err(AdminError::RateLimited(retry));
    }
    let mut values = req.headers().get_all(AUTHORIZATION).iter();
    let first = values.next();
    let presented = if values.next().is_some() {
        None
    } else {
        first
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
    };
    match presented {
        Some(t) if constant_time_eq(t.as_bytes(), token.as_bytes()) => Ok(()),
        _ => {
            gw.admin_failures.record_failure(peer);
            gw.metrics.admin_auth_failures.inc();
            Err(AdminError::Unauthorized)
        }
    }
}

/// At most one "too many failed token attempts" line per window, however
/// many calls are refused.
static LIMIT_LOG: crate::diag::Throttle = crate::diag::Throttle::new(FAILURE_WINDOW);

/// Compares without an early exit, so timing tells nothing about the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, &x) in a.iter().enumerate() {
        diff |= x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0);
    }
    diff == 0
}

async fn read_json<T: for<'de> Deserialize<'de>>(req: Request<Incoming>) -> Result<T, AdminError> {
    let body = Limited::new(req.into_body(), MAX_ADMIN_BODY)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                AdminError::BodyTooLarge {
                    limit: MAX_ADMIN_BODY,
                }
            } else {
                AdminError::BodyUnreadable(e.into())
            }
        })?
        .to_bytes();
    let body = if body.is_empty() {
        Bytes::from_static(b"{}")
    } else {
        body
    };
    // Every body is a JSON object: serde would also read a struct from an
    // array (`[]`), which no client means.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(AdminError::BadBody(
            <serde_json::Error as serde::de::Error>::custom("expected a JSON object"),
        ));
    }
    serde_json::from_slice(&body).map_err(AdminError::BadBody)
}

/// `"field": null` as `Some(None)`, an absent field as `None`.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A field that may be absent but not `null`.
fn not_null<T>(field: &'static str, v: Option<Option<T>>) -> Result<Option<T>, AdminError> {
    match v {
        Some(None) => Err(AdminError::Invalid(manage::KeyOpError::Invalid {
            field,
            message: "must not be null (leave the field out to keep it)".into(),
        })),
        Some(Some(t)) => Ok(Some(t)),
        None => Ok(None),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    #[serde(default)]
    allow_unknown_scope: bool,
    name: String,
    #[serde(default)]
    env: Option<String>,
    scopes: Vec<String>,
    #[serde(default)]
    allowed_ips: Vec<String>,
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    expires_in: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    // `null` is refused for these (see `not_null`): it would read as "no
    // change" while a client sending it means something else.
    #[serde(default, deserialize_with = "present")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    scopes: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    allowed_ips: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    expires_in: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    account: Option<Option<String>>,
    #[serde(default)]
    allow_unknown_scope: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    #[serde(default)]
    grace: Option<String>,
}

/// The query string's `name=value` pairs, percent-decoded; a name given
/// twice or not among `known` is refused.
fn query_params<'a>(
    req: &Request<Incoming>,
    known: &[&'a str],
) -> Result<std::collections::HashMap<&'a str, String>, AdminError> {
    let mut out = std::collections::HashMap::new();
    for pair in req.uri().query().unwrap_or("").split('&') {
        if pair.is_empty() {
            continue;
        }
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |t: &str| {
            percent_encoding::percent_decode_str(&t.replace('+', " "))
                .decode_utf8()
                .map(|c| c.into_owned())
        };
        let (Ok(name), Ok(value)) = (decode(name), decode(value)) else {
            return Err(AdminError::BadQuery("query: not UTF-8".into()));
        };
        let Some(known) = known.iter().find(|k| **k == name) else {
            return Err(AdminError::BadQuery(format!(
                "query: unknown parameter {name:?} (known: {})",
                known.join(", ")
            )));
        };
        if out.insert(*known, value).is_some() {
            return Err(AdminError::BadQuery(format!(
                "query: {name} is given twice"
            )));
        }
    }
    Ok(out)
}

async fn audit_api(
    gw: &Gateway,
    req: &Request<Incoming>,
    actor: Actor,
) -> Result<Response<Full<Bytes>>, AdminError> {
    if req.method() != Method::GET {
        return Err(AdminError::MethodNotAllowed("GET, HEAD"));
    }
    let q = query_params(req, &["key", "since", "limit", "cursor"])?;
    let query = manage::audit_query(
        q.get("key").map(String::as_str),
        q.get("since").map(String::as_str),
        q.get("limit").map(String::as_str),
        q.get("cursor").map(String::as_str),
    )?;
    let store = gw.cache.store().clone();
    let page = KeyService::as_actor(&store, actor).audit(&query).await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::to_value(&page).unwrap_or_default(),
    ))
}

async fn keys_api(
    gw: &Gateway,
    req: Request<Incoming>,
    path: &str,
    actor: Actor,
) -> Result<Response<Full<Bytes>>, AdminError> {
    let store = gw.cache.store().clone();
    let known = gw.snapshot.load().config.known_resources();
    // A new scope must name a resource some route names, unless the body
    // says `allow_unknown_scope`.
    let svc = |allow_unknown: bool| {
        KeyService::as_actor(&store, actor.clone())
            .known_resources((!allow_unknown).then(|| known.clone()))
    };
    let rest: Vec<&str> = path
        .trim_start_matches("/keys")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let method = req.method().clone();
    match (method, rest.as_slice()) {
        (Method::POST, []) => {
            let b: CreateBody = read_json(req).await?;
            let new = NewKey {
                name: b.name,
                env: manage::parse_env(b.env.as_deref().unwrap_or("test"))?,
                scopes: manage::parse_scopes(&b.scopes)?,
                allowed_ips: manage::parse_ips(&b.allowed_ips)?,
                account: b.account,
                expires_in: b
                    .expires_in
                    .map(|d| manage::parse_duration("expires_in", &d))
                    .transpose()?,
            };
            let issued = svc(b.allow_unknown_scope).create(new).await?;
            Ok(json(
                StatusCode::CREATED,
                &manage::record_json(&issued.record, None, Some(&issued.key)),
            ))
        }
        (Method::GET, []) => {
            let q = query_params(&req, &["limit", "cursor", "account", "env", "status"])?;
            let text = |name: &str| q.get(name).map(String::as_str);
            let (query, paged) = manage::list_query(
                text("account"),
                text("env"),
                text("status"),
                text("limit"),
                text("cursor"),
            )?;
            let page = svc(false).list_page(&query).await?;
            let records: Vec<_> = page
                .records
                .iter()
                .map(|r| manage::record_json(r, None, None))
                .collect();
            // Without paging parameters: the plain array of records, as
            // always; with them, the page and where the next one starts.
            let v = if paged {
                serde_json::json!({
                    "keys": records,
                    "next_cursor": page.next_cursor.map(|c| c.to_string()),
                })
            } else {
                serde_json::Value::Array(records)
            };
            let mut resp = json(StatusCode::OK, &v);
            // One bad record hides no other: the readable ones are listed,
            // the others named (by id) in a header and in the log.
            if !page.corrupt.is_empty() {
                let ids: Vec<String> = page
                    .corrupt
                    .iter()
                    .map(|e| {
                        tracing::error!(error = %e, "key record cannot be listed");
                        match e {
                            crate::store::StoreError::Corrupt { what, .. } => what.clone(),
                            other => other.to_string(),
                        }
                    })
                    .collect();
                if let Ok(v) = HeaderValue::from_str(&ids.join(" ")) {
                    resp.headers_mut().insert("x-osir-corrupt-keys", v);
                }
            }
            Ok(resp)
        }
        (Method::GET, [id]) => {
            let (r, u) = svc(false).show(id).await?;
            Ok(json(
                StatusCode::OK,
                &manage::record_json(&r, Some(&u), None),
            ))
        }
        (Method::PATCH, [id]) => {
            let id = (*id).to_owned();
            let b: PatchBody = read_json(req).await?;
            let changes = Changes {
                name: not_null("name", b.name)?,
                scopes: not_null("scopes", b.scopes)?
                    .map(|s| manage::parse_scopes(&s))
                    .transpose()?,
                allowed_ips: not_null("allowed_ips", b.allowed_ips)?
                    .map(|s| manage::parse_ips(&s))
                    .transpose()?,
                expires_in: b
                    .expires_in
                    .map(|e| {
                        e.map(|d| manage::parse_duration("expires_in", &d))
                            .transpose()
                    })
                    .transpose()?,
                account: b.account,
            };
            let r = svc(b.allow_unknown_scope).update(&id, changes).await?;
            Ok(json(StatusCode::OK, &manage::record_json(&r, None, None)))
        }
        (Method::DELETE, [id]) => {
            svc(false).revoke(id).await?;
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            Ok(r)
        }
        (Method::POST, [id, "rotate"]) => {
            let id = (*id).to_owned();
            let b: RotateBody = read_json(req).await?;
            let grace = match b.grace {
                Some(g) => manage::parse_duration("grace", &g)?,
                None => Duration::from_secs(24 * 3600),
            };
            let issued = svc(false).rotate(&id, grace).await?;
            Ok(json(
                StatusCode::CREATED,
                &manage::record_json(&issued.record, None, Some(&issued.key)),
            ))
        }
        (_, []) => Err(AdminError::MethodNotAllowed("GET, HEAD, POST")),
        (_, [_]) => Err(AdminError::MethodNotAllowed("GET, HEAD, PATCH, DELETE")),
        (_, [_, "rotate"]) => Err(AdminError::MethodNotAllowed("POST")),
        _ => Err(AdminError::RouteNotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret1"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
