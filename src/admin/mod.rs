//! The admin listener: health, readiness, metrics, and the key API.
//!
//! `/healthz` answers while the process serves; `/readyz` once config is
//! loaded and listeners are up, with the store's state in its body;
//! `/metrics` in Prometheus text format. The key API (contract §11) is off
//! unless `[admin] token_env` names a variable holding a token; every call
//! then needs `Authorization: Bearer <token>`, compared in constant time.
//! It calls the same [`KeyService`] as the CLI.

pub(crate) mod error;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Deserialize;

use crate::manage::{self, Changes, KeyService, NewKey};
use crate::state::Gateway;
use error::AdminError;

/// Admin request bodies are small JSON objects.
const MAX_ADMIN_BODY: usize = 64 * 1024;

/// Answers one admin request. HEAD is answered wherever GET is, with the
/// GET answer's status and headers (its `Content-Length` included) and no
/// body.
pub(crate) async fn handle(gw: &Gateway, mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    let request_id = gw
        .request_ids
        .for_request(req.headers().get("x-request-id"));
    let head = req.method() == Method::HEAD;
    if head {
        *req.method_mut() = Method::GET;
    }
    let mut resp = match route(gw, req).await {
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

async fn route(gw: &Gateway, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, AdminError> {
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
        (_, p) if p == "/keys" || p.starts_with("/keys/") => {
            authenticate(gw, &req)?;
            keys_api(gw, req, &path).await.inspect_err(|e| {
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

fn authenticate(gw: &Gateway, req: &Request<Incoming>) -> Result<(), AdminError> {
    // Off unless configured: answer as if the API were not there.
    let Some(token) = admin_token(gw) else {
        return Err(AdminError::RouteNotFound);
    };
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    match presented {
        Some(t) if constant_time_eq(t.as_bytes(), token.as_bytes()) => Ok(()),
        _ => Err(AdminError::Unauthorized),
    }
}

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
    serde_json::from_slice(&body).map_err(AdminError::BadBody)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
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
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    allowed_ips: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    #[serde(default)]
    grace: Option<String>,
}

async fn keys_api(
    gw: &Gateway,
    req: Request<Incoming>,
    path: &str,
) -> Result<Response<Full<Bytes>>, AdminError> {
    let store = gw.cache.store().clone();
    let svc = KeyService::new(&store);
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
            let issued = svc.create(new).await?;
            Ok(json(
                StatusCode::CREATED,
                &manage::record_json(&issued.record, None, Some(&issued.key)),
            ))
        }
        (Method::GET, []) => {
            let all = svc.list().await?;
            let v: Vec<_> = all
                .records
                .iter()
                .map(|r| manage::record_json(r, None, None))
                .collect();
            let mut resp = json(StatusCode::OK, &serde_json::Value::Array(v));
            // One bad record hides no other: the readable ones are listed,
            // the others named (by id) in a header and in the log.
            if !all.corrupt.is_empty() {
                let ids: Vec<String> = all
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
            let (r, u) = svc.show(id).await?;
            Ok(json(
                StatusCode::OK,
                &manage::record_json(&r, Some(&u), None),
            ))
        }
        (Method::PATCH, [id]) => {
            let id = (*id).to_owned();
            let b: PatchBody = read_json(req).await?;
            let changes = Changes {
                name: b.name,
                scopes: b.scopes.map(|s| manage::parse_scopes(&s)).transpose()?,
                allowed_ips: b.allowed_ips.map(|s| manage::parse_ips(&s)).transpose()?,
            };
            let r = svc.update(&id, changes).await?;
            Ok(json(StatusCode::OK, &manage::record_json(&r, None, None)))
        }
        (Method::DELETE, [id]) => {
            svc.revoke(id).await?;
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
            let issued = svc.rotate(&id, grace).await?;
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
