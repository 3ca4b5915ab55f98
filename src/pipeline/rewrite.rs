//! Forwarding: header hygiene on the way to the upstream and back. The
//! exchange itself and the connection pool are in `crate::pipeline::upstream`.
//!
//! Hygiene is applied as the upstream head is written, and no client header
//! can forge or delete what the gateway says (HOSTILE §4): hop-by-hop headers
//! and every header named in `Connection` stay behind, as do client-sent
//! `X-Osir-*`, `X-Forwarded-*`, `Forwarded`, `X-Real-IP`, `X-Request-Id`, any
//! name with `_` (upstreams that map `_` to `-` would read `X-Osir-Key_Id` as
//! ours), the credential, and the method and URL override headers some
//! frameworks honour ([`OVERRIDES`]: a `domains:read` GET must not run as a
//! DELETE, or on another path). The gateway's own fields
//! ([`GatewayFields`]) follow the client's kept ones in the same head; no
//! header map is edited or allocated for them.

use std::borrow::Cow;
use std::net::IpAddr;

use http::header::HeaderValue;
use http::uri::PathAndQuery;

use crate::error::{BadRequest, GatewayError};
use crate::http1::field::{Field, Known};
use crate::pipeline::head::Fields;

/// Is this a hop-by-hop header (RFC 9110 §7.6.1, plus the `Proxy-*`
/// family), named as sent (any case)?
fn is_hop_by_hop_name(n: &[u8]) -> bool {
    Known::of(n).is_hop_by_hop()
}

/// Method and URL override headers: frameworks that honour them would act
/// on another method or path than the one authorised.
pub(crate) const OVERRIDES: [&str; 10] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-method",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-override-url",
    "x-envoy-original-path",
    "x-envoy-original-method",
];

/// Headers a client must never get to the upstream, named as sent (any
/// case) and recognised as `known` ([`Known::of`]).
fn forbidden(known: Known, n: &[u8]) -> bool {
    match known {
        // Hop-by-hop, the credential, and two of the gateway's own.
        Known::Authorization
        | Known::Connection
        | Known::TransferEncoding
        | Known::Upgrade
        | Known::XForwardedFor
        | Known::XRequestId
        | Known::OtherHopByHop => true,
        Known::ContentLength | Known::Date | Known::Expect | Known::Host => false,
        Known::Other => {
            let starts =
                |p: &str| n.len() >= p.len() && n[..p.len()].eq_ignore_ascii_case(p.as_bytes());
            let is = |p: &str| n.eq_ignore_ascii_case(p.as_bytes());
            (starts("x-")
                && (OVERRIDES.iter().any(|o| is(o))
                    || starts("x-osir-")
                    || starts("x-forwarded-")
                    || is("x-real-ip")))
                || is("forwarded")
                // The settings of a declined h2c upgrade (RFC 9113 §3.2.1
                // makes them connection-specific).
                || is("http2-settings")
                || memchr::memchr(b'_', n).is_some()
        }
    }
}

/// The names a `Connection` field lists, other than hop-by-hop ones (which
/// go anyway), kept without allocating for the usual few.
struct Listed<'a> {
    first: [&'a [u8]; 4],
    count: usize,
    more: Vec<&'a [u8]>,
}

impl<'a> Listed<'a> {
    fn of(values: impl Iterator<Item = &'a [u8]>) -> Listed<'a> {
        let mut l = Listed {
            first: [&[]; 4],
            count: 0,
            more: Vec::new(),
        };
        for value in values {
            for token in value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                if token.is_empty() || is_hop_by_hop_name(token) {
                    continue;
                }
                if l.count < l.first.len() {
                    l.first[l.count] = token;
                    l.count += 1;
                } else {
                    l.more.push(token);
                }
            }
        }
        l
    }

    /// Does the list name `name` (any case)?
    fn names(&self, name: &[u8]) -> bool {
        self.count > 0
            && self.first[..self.count]
                .iter()
                .chain(&self.more)
                .any(|t| t.eq_ignore_ascii_case(name))
    }
}

/// Request hygiene, applied as the upstream head is written: which of the
/// client's fields go on. Every field named in `Connection` stays behind
/// (as `Connection` itself does), and every one [`forbidden`]
/// names. Nothing is removed and nothing is allocated.
pub(crate) struct ClientFields<'h> {
    connection: Listed<'h>,
}

impl<'h> ClientFields<'h> {
    pub(crate) fn of<F: Fields>(fields: &'h F) -> Self {
        ClientFields {
            connection: Listed::of(fields.values(Known::Connection)),
        }
    }

    /// May this client field (named as sent, recognised as `known`) be
    /// forwarded?
    pub(crate) fn keeps(&self, known: Known, name: &[u8]) -> bool {
        !forbidden(known, name) && !self.connection.names(name)
    }
}

/// What the key said about its caller, for the upstream.
pub(crate) struct IdentityFields<'a> {
    pub(crate) key_id: &'a [u8],
    pub(crate) account: Option<&'a [u8]>,
    pub(crate) env: &'static str,
    pub(crate) scopes: &'a [u8],
}

/// The gateway's own request fields, written straight into the upstream
/// head after the client's kept ones (so no client field can forge or
/// delete them: hygiene drops every client spelling of these names).
pub(crate) struct GatewayFields<'a> {
    /// The `X-Forwarded-For` chain to extend (only from trusted proxies).
    pub(crate) chain: Option<Cow<'a, [u8]>>,
    /// The TCP peer, appended to the chain.
    pub(crate) peer: IpAddr,
    /// `http` or `https`.
    pub(crate) proto: &'static str,
    pub(crate) request_id: &'a HeaderValue,
    /// `X-Osir-*`, on routes that take a key.
    pub(crate) identity: Option<IdentityFields<'a>>,
}

impl GatewayFields<'_> {
    /// Appends `name: value\r\n` lines.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"x-forwarded-for: ");
        if let Some(c) = &self.chain {
            out.extend_from_slice(c);
            out.extend_from_slice(b", ");
        }
        write_ip(out, self.peer);
        out.extend_from_slice(b"\r\nx-forwarded-proto: ");
        out.extend_from_slice(self.proto.as_bytes());
        out.extend_from_slice(b"\r\nx-request-id: ");
        out.extend_from_slice(self.request_id.as_bytes());
        out.extend_from_slice(b"\r\n");
        if let Some(id) = &self.identity {
            out.extend_from_slice(b"x-osir-key-id: ");
            out.extend_from_slice(id.key_id);
            if let Some(a) = id.account {
                out.extend_from_slice(b"\r\nx-osir-account: ");
                out.extend_from_slice(a);
            }
            out.extend_from_slice(b"\r\nx-osir-env: ");
            out.extend_from_slice(id.env.as_bytes());
            out.extend_from_slice(b"\r\nx-osir-scopes: ");
            out.extend_from_slice(id.scopes);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// An address as `Display` writes it; IPv4 without the formatter.
fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(digits.format(octet).as_bytes());
            }
        }
        IpAddr::V6(v6) => {
            // Writing into a Vec cannot fail.
            let _ = std::io::Write::write_fmt(out, format_args!("{v6}"));
        }
    }
}

/// Response hygiene on an upstream's head as it was read: drops the
/// hop-by-hop fields and those the upstream named in `Connection`, keeping
/// the rest in order. `raw` is the head the spans index.
pub(crate) fn keep_forwardable_response_fields(raw: &[u8], fields: &mut Vec<Field>) {
    let connection = Listed::of(
        fields
            .iter()
            .filter(|f| f.known == Known::Connection)
            .map(|f| f.value.of(raw)),
    );
    fields.retain(|f| !f.known.is_hop_by_hop() && !connection.names(f.name.of(raw)));
}

/// The client's X-Forwarded-For lines joined, to extend when the peer is a
/// trusted proxy.
pub(crate) fn incoming_chain<F: Fields>(headers: &F) -> Option<Cow<'_, [u8]>> {
    let mut it = headers.values(Known::XForwardedFor);
    let first = it.next()?;
    let Some(second) = it.next() else {
        return Some(Cow::Borrowed(first));
    };
    let mut b = first.to_vec();
    for v in std::iter::once(second).chain(it) {
        b.extend_from_slice(b", ");
        b.extend_from_slice(v);
    }
    Some(Cow::Owned(b))
}

/// The path-and-query the client sent, split; the query may be rewritten.
pub(crate) fn split_target(pq: Option<&PathAndQuery>) -> (&str, Option<&str>) {
    match pq {
        Some(pq) => (pq.path(), pq.query()),
        None => ("/", None),
    }
}

/// Refuses a `_method` query parameter (name matched decoded and in any
/// case) naming a method other than the request's own: frameworks that
/// honour it would run a GET authorised as a read as, say, a DELETE.
pub(crate) fn check_method_param(
    query: Option<&str>,
    method: &http::Method,
) -> Result<(), GatewayError> {
    let Some(query) = query else {
        return Ok(());
    };
    for piece in query.split('&') {
        let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
        // Cheap first: a name spelling `_method` has at least 7 bytes.
        if name.len() < 7 || !decodes_to_ignoring_case(name, b"_method") {
            continue;
        }
        if !decodes_to_ignoring_case(value, method.as_str().as_bytes()) {
            return Err(GatewayError::InvalidRequest(BadRequest::MethodOverride));
        }
    }
    Ok(())
}

/// Does `raw`, percent-decoded, equal `want` ignoring ASCII case? No allocation.
fn decodes_to_ignoring_case(raw: &str, want: &[u8]) -> bool {
    percent_encoding::percent_decode_str(raw)
        .map(|b| b.to_ascii_lowercase())
        .eq(want.iter().map(u8::to_ascii_lowercase))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http::HeaderMap;

    /// The request fields as the upstream head gets them.
    fn forwarded<F: Fields>(h: &F, fields: &GatewayFields) -> String {
        let keep = ClientFields::of(h);
        let mut out = Vec::new();
        for (k, n, v) in h.each_known() {
            if keep.keeps(k, n) {
                out.extend_from_slice(n);
                out.extend_from_slice(b": ");
                out.extend_from_slice(v);
                out.extend_from_slice(b"\r\n");
            }
        }
        fields.write(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn fields<'a>(
        chain: Option<Cow<'a, [u8]>>,
        peer: &str,
        id: &'a HeaderValue,
    ) -> GatewayFields<'a> {
        GatewayFields {
            chain,
            peer: peer.parse().unwrap(),
            proto: "http",
            request_id: id,
            identity: None,
        }
    }

    #[test]
    fn response_hygiene_drops_hop_by_hop_and_connection_named_fields() {
        let raw = b"Connection: keep-alive, X-A,, x-b , X-C, X-D, X-E\r\n\
X-A: 1\r\nServer: n\r\nX-B: 2\r\nKeep-Alive: t=5\r\nX-C: 3\r\nX-D: 4\r\n\
X-E: 5\r\nX-F: 6\r\nTE: x\r\nProxy-Authenticate: y\r\n";
        let text = std::str::from_utf8(raw).unwrap();
        let mut fields: Vec<Field> = text
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(": ").unwrap();
                Field::new(raw, n.as_bytes(), v.as_bytes(), Known::of(n.as_bytes()))
            })
            .collect();
        keep_forwardable_response_fields(raw, &mut fields);
        let kept: Vec<&str> = fields
            .iter()
            .map(|f| std::str::from_utf8(f.name.of(raw)).unwrap())
            .collect();
        assert_eq!(kept, ["Server", "X-F"]);
    }

    #[test]
    fn every_override_name_is_in_the_x_family() {
        // `forbidden` looks the overrides up only for `x-` names.
        for n in OVERRIDES {
            assert!(n.starts_with("x-"), "{n}");
            assert!(forbidden(Known::of(n.as_bytes()), n.as_bytes()), "{n}");
            let up = n.to_uppercase();
            assert!(forbidden(Known::of(up.as_bytes()), up.as_bytes()), "{n}");
        }
    }

    #[test]
    fn hygiene_removes_forgeries_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("connection", "keep-alive, X-Osir-Key-Id, x-custom"),
            ("x-custom", "1"),
            ("x-osir-key-id", "forged"),
            ("x-osir-key_id", "forged"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-host", "evil"),
            ("forwarded", "for=6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("authorization", "Bearer x"),
            ("proxy-authorization", "x"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("transfer-encoding", "chunked"),
            ("x-request-id", "forged"),
            ("accept", "application/json"),
        ] {
            h.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let id = HeaderValue::from_static("rid");
        assert_eq!(
            forwarded(&h, &fields(None, "1.2.3.4", &id)),
            "accept: application/json\r\n\
             x-forwarded-for: 1.2.3.4\r\n\
             x-forwarded-proto: http\r\n\
             x-request-id: rid\r\n"
        );
    }

    #[test]
    fn hygiene_reads_names_as_sent_in_any_case() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Custom\r\n\
x-CUSTOM: 1\r\nX-OSIR-KEY-ID: forged\r\nX-Forwarded-For: 6.6.6.6\r\n\
Authorization: Bearer x\r\nHTTP2-Settings: AAAA\r\nUpgrade: h2c\r\n\
X-HTTP-Method-Override: DELETE\r\nX-Request-ID: forged\r\nAccept: */*\r\n\r\n";
        let head = crate::http1::head::parse(raw).unwrap().unwrap();
        let h = crate::pipeline::head::RawFields::new(raw, &head.headers, head.known);
        let id = HeaderValue::from_static("rid");
        assert_eq!(
            forwarded(&h, &fields(None, "1.2.3.4", &id)),
            "Host: a\r\nAccept: */*\r\n\
             x-forwarded-for: 1.2.3.4\r\n\
             x-forwarded-proto: http\r\n\
             x-request-id: rid\r\n"
        );
    }

    #[test]
    fn identity_fields_follow_the_forwarding_ones() {
        let id = HeaderValue::from_static("r");
        let mut f = fields(None, "::ffff:10.0.0.1", &id);
        f.identity = Some(IdentityFields {
            key_id: b"key_1",
            account: Some(b"acct_9"),
            env: "live",
            scopes: b"domains:read",
        });
        assert_eq!(
            forwarded(&HeaderMap::new(), &f),
            "x-forwarded-for: ::ffff:10.0.0.1\r\n\
             x-forwarded-proto: http\r\n\
             x-request-id: r\r\n\
             x-osir-key-id: key_1\r\n\
             x-osir-account: acct_9\r\n\
             x-osir-env: live\r\n\
             x-osir-scopes: domains:read\r\n"
        );
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "1.2.3.4",
            "255.255.255.255",
            "10.200.3.45",
            "::1",
            "2001:db8::7",
        ] {
            let mut out = Vec::new();
            write_ip(&mut out, ip.parse().unwrap());
            assert_eq!(out, ip.as_bytes());
        }
    }

    #[test]
    fn trusted_chains_are_extended() {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "5.5.5.5".parse().unwrap());
        h.append("x-forwarded-for", "10.0.0.2".parse().unwrap());
        let chain = incoming_chain(&h);
        let id = HeaderValue::from_static("r");
        let mut f = fields(chain, "10.0.0.1", &id);
        f.proto = "https";
        let out = forwarded(&h, &f);
        assert!(
            out.starts_with("x-forwarded-for: 5.5.5.5, 10.0.0.2, 10.0.0.1\r\n"),
            "{out}"
        );
        assert!(out.contains("x-forwarded-proto: https\r\n"), "{out}");
    }
}
