//! The request pipeline, top to bottom, in one place:
//!
//! head size → client IP → misplaced keys → request shape and `_method` →
//! path check → route → credential → key lookup → IP policy → scope →
//! rewrite → forward → record.
//!
//! Each stage is a plain function in its own module; this file only fixes
//! their order and turns the outcome into a response. Every response, error
//! or not, gets `X-Request-Id` and is counted by route, method, status and
//! reason.

pub mod access_log;
pub mod authorize;
pub(crate) mod budget;
pub mod client_ip;
pub mod credential;
pub mod head;
pub mod path;
pub(crate) mod request_id;
pub(crate) mod rewrite;
pub mod route;
pub(crate) mod shape;
pub(crate) mod upstream;

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::Bytes;
use http::header::HeaderValue;
use http::Response;
use http_body_util::Either;

use crate::error::{GatewayError, Refusal, UpstreamFailure};
use crate::http1::field::Known;
use crate::keys::misplaced;
use crate::lookup::cache::CachedKey;
use crate::state::{Gateway, Snapshot};
use client_ip::is_trusted;
use credential::strip_key_param;
pub use head::{Fields, Head, RawFields};
use rewrite::{incoming_chain, GatewayFields, IdentityFields};
use route::Route;
use upstream::ResponseBody;

/// Response bodies: the upstream's, streamed, or the gateway's own.
pub type Body = Either<ResponseBody, Refusal>;

/// What the listener knows about the connection a request came on.
#[derive(Clone, Copy, Debug)]
pub struct ConnInfo {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// `http` or `https`, for `X-Forwarded-Proto`.
    pub proto: &'static str,
}

/// What the pipeline learned on the way, for metrics and the access log;
/// filled as stages pass, so an early refusal leaves the rest empty.
#[derive(Default)]
struct Trace<'s> {
    route: Option<&'s Route>,
    client_ip: Option<IpAddr>,
    /// The checked path (set only if it passed the check).
    path: Option<String>,
    /// The query as forwarded (without `api_key`).
    query: Option<String>,
    /// The key, once identified: the one that passed, or the record of one
    /// refused after its lookup (set only when logging, like path and query).
    identity: Option<authorize::Identity>,
    upstream: Option<std::time::Duration>,
    /// When the upstream's answer head was in (it ends the request's clock
    /// too: what follows is building the answer, nanoseconds).
    ended: Option<Instant>,
}

/// Answers one client request. Both engines call this: the HTTP/1.1
/// engine with the fields of the head it parsed and its own body type,
/// hyper's HTTP/2 server with its header map and `Incoming`; nothing here
/// depends on either.
pub async fn handle<F, B>(gw: &Gateway, req: &Head<F>, body: B, conn: ConnInfo) -> Response<Body>
where
    F: Fields,
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let started = Instant::now();
    let snap = gw.snapshot.load_full();
    let request_id = gw
        .request_ids
        .for_request(req.fields.first(Known::XRequestId));
    let method = req.method.clone();
    let bytes_in = content_length(&req.fields);
    let access_log = gw.access_log.load();
    let mut trace = Trace::default();
    let outcome = pipeline(
        gw,
        &snap,
        req,
        body,
        conn,
        &request_id,
        &mut trace,
        access_log.is_some(),
        bytes_in,
    )
    .await;
    // Request ids are validated ASCII, so this cannot fail.
    let rid = request_id.to_str().unwrap_or("");
    let (mut resp, reason) = match outcome {
        Ok(resp) => (resp.map(Either::Left), "ok"),
        Err(e) => (refused(e.refusal(rid)), e.code()),
    };
    let route_label = trace.route.map_or("none", |r| &r.prefix);
    let elapsed = match trace.ended {
        Some(ended) => ended.saturating_duration_since(started),
        None => started.elapsed(),
    };
    gw.metrics.record_request(
        trace.route.map(|r| (&*r.prefix, &r.series)),
        &method,
        resp.status(),
        reason,
        elapsed.as_secs_f64(),
    );
    if let Some(log) = access_log.as_deref() {
        let id = trace.identity.as_deref();
        log.write(&access_log::Entry {
            ts: access_log::now_rfc3339(),
            request_id: rid,
            route: route_label,
            method: method.as_str(),
            path: trace.path.as_deref(),
            query: trace.query.as_deref(),
            status: resp.status().as_u16(),
            reason,
            key_id: id.map(CachedKey::id),
            account: id.and_then(CachedKey::account),
            env: id.map(|i| i.env.as_str()),
            client_ip: trace.client_ip,
            duration_ms: access_log::millis(elapsed),
            upstream_ms: trace.upstream.map(access_log::millis),
            bytes_in,
            bytes_out: response_length(&resp),
        });
    }
    // The id stays with the answer's raw fields: no header map is made
    // for it (unless an upstream head's fields were moved to one already).
    let rest = match resp.body_mut() {
        Either::Left(body) => body.own_request_id(request_id),
        Either::Right(refusal) => {
            refusal.set_request_id(request_id);
            None
        }
    };
    if let Some(id) = rest {
        resp.headers_mut().insert(crate::error::X_REQUEST_ID, id);
    }
    resp
}

#[allow(clippy::too_many_arguments)]
async fn pipeline<'s, F, B>(
    gw: &Gateway,
    snap: &'s Snapshot,
    parts: &Head<F>,
    body: B,
    conn: ConnInfo,
    request_id: &HeaderValue,
    trace: &mut Trace<'s>,
    logging: bool,
    // The request's Content-Length, read once by `handle` for the log too.
    length: Option<u64>,
) -> Result<Response<ResponseBody>, GatewayError>
where
    F: Fields,
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let cfg = &snap.config;
    if shape::size(parts) > cfg.server.max_header_bytes {
        return Err(GatewayError::HeadersTooLarge);
    }
    let client_ip = client_ip::client_ip(conn.peer.ip(), &parts.fields, &cfg.auth.trusted_proxies);
    trace.client_ip = Some(client_ip);
    // A key in the wrong place is refused before anything else looks at,
    // logs or answers with the request's text.
    if let Some(place) =
        misplaced::find_in_request(&parts.uri, parts.fields.each(), cfg.auth.verify_checksum)
    {
        gw.metrics
            .misplaced_keys
            .with_label_values(&[place.label()])
            .inc();
        return Err(GatewayError::MisplacedApiKey(place));
    }
    shape::check(parts)?;

    // The request is only read: the upstream head is written from it and
    // the gateway's own fields, so the path can stay borrowed.
    let (raw_path, query) = rewrite::split_target(parts.uri.path_and_query());
    rewrite::check_method_param(query, &parts.method)?;
    let checked = path::check(raw_path).map_err(GatewayError::InvalidPath)?;
    let stripped_query = query.and_then(strip_key_param);
    if logging {
        trace.path = Some(misplaced::redact(checked.raw).into_owned());
        trace.query = stripped_query
            .as_deref()
            .map(|q| misplaced::redact(q).into_owned());
    }
    let route = snap
        .routes
        .find(&checked.decoded)
        .ok_or(GatewayError::RouteNotFound)?;
    trace.route = Some(route);
    let required = route.required_scope(&parts.method)?;

    // The last clock read, when it is recent enough to start the upstream
    // exchange's clock (the stages between take well under a microsecond).
    let mut clock: Option<Instant> = None;
    let identity = if route.public {
        None
    } else {
        let key = authorize::parse_credential(
            &parts.fields,
            query,
            cfg.auth.query_key,
            cfg.auth.verify_checksum,
        )?;
        // One wall-clock read serves the expiry check and the usage record.
        let now = crate::keys::Timestamp::now();
        let auth_started = Instant::now();
        let budget = authorize::Budget {
            failures: &gw.failed_lookups,
            limit: cfg.auth.failed_lookup_budget,
            window: cfg.auth.failed_lookup_window,
            ipv6_prefix: cfg.auth.failed_lookup_ipv6_prefix,
        };
        let decided = authorize::authorize(
            &gw.cache,
            budget,
            &key,
            client_ip,
            required,
            now,
            auth_started,
        )
        .await;
        let auth_ended = Instant::now();
        clock = Some(auth_ended);
        gw.metrics
            .auth_duration
            .observe((auth_ended - auth_started).as_secs_f64());
        let identity = match decided {
            Ok(identity) => identity,
            Err(refused) => {
                if logging {
                    trace.identity = refused.identity;
                }
                return Err(refused.error);
            }
        };
        gw.usage.record(identity.id(), client_ip, now);
        if logging {
            trace.identity = Some(identity.clone());
        }
        Some(identity)
    };

    if length.is_some_and(|n| n > route.max_body) {
        return Err(GatewayError::PayloadTooLarge);
    }

    let forwarded_path = checked.raw;
    let peer = crate::keys::canonical_ip(conn.peer.ip());
    let chain = if is_trusted(peer, &cfg.auth.trusted_proxies) {
        incoming_chain(&parts.fields)
    } else {
        None
    };
    // The gateway's own fields go straight into the upstream head, behind
    // the client's; hygiene drops every client spelling of them there.
    let fwd = upstream::Forward {
        path: forwarded_path,
        query: stripped_query.as_deref(),
        fields: GatewayFields {
            chain,
            peer,
            proto: conn.proto,
            request_id,
            identity: identity.as_ref().map(|id| IdentityFields {
                key_id: id.key_id.as_bytes(),
                account: id.account.as_ref().map(HeaderValue::as_bytes),
                env: id.env.as_str(),
                scopes: id.scopes_header.as_bytes(),
            }),
        },
    };
    let env = identity.as_ref().map(|id| id.env);
    let upstream = snap
        .upstreams
        .get(route.upstream)
        .ok_or(GatewayError::UpstreamUnavailable(UpstreamFailure::Missing))?;
    let sent = clock.unwrap_or_else(Instant::now);
    let result = upstream
        .send(parts, body, route.max_body, &fwd, env, sent)
        .await;
    let ended = Instant::now();
    upstream.finished(result.is_ok(), sent, ended);
    trace.upstream = Some(ended.saturating_duration_since(sent));
    trace.ended = Some(ended);
    // The upstream's fields stay in its head, already cleaned of hop-by-hop
    // ones (`rewrite::keep_forwardable_response_fields`); see
    // [`headers_into_map`].
    result
}

/// The answer made of a refusal: its status, its body and, kept with it,
/// its fields (see [`headers_into_map`]).
pub fn refused(refusal: Refusal) -> Response<Body> {
    let status = refusal.status();
    let mut resp = Response::new(Either::Right(refusal));
    *resp.status_mut() = status;
    resp
}

/// Moves an answer's fields into its header map: an upstream answer's from
/// its head, behind the gateway's own; a refusal's from the refusal. The
/// HTTP/2 engine needs them there; the HTTP/1.1 engine writes them
/// straight from where they are instead.
pub fn headers_into_map(resp: &mut Response<Body>) {
    match resp.body_mut() {
        Either::Left(body) => {
            if let Some(head) = body.take_raw_head() {
                let fields = head.append_to(resp.headers_mut());
                if let Either::Left(body) = resp.body_mut() {
                    body.recycle_fields(fields);
                }
            }
        }
        Either::Right(_) => {
            let mut map = std::mem::take(resp.headers_mut());
            if let Either::Right(refusal) = resp.body_mut() {
                refusal.move_fields_to(&mut map);
            }
            *resp.headers_mut() = map;
        }
    }
}

/// The answer's `Content-Length`, wherever its fields are.
fn response_length(resp: &Response<Body>) -> Option<u64> {
    match resp.body() {
        Either::Left(body) => body.raw_head().and_then(|h| h.content_length()),
        Either::Right(refusal) => Some(refusal.len()),
    }
    .or_else(|| content_length(resp.headers()))
}

fn content_length<F: Fields>(h: &F) -> Option<u64> {
    std::str::from_utf8(h.first(Known::ContentLength)?)
        .ok()?
        .parse()
        .ok()
}
