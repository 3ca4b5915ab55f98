//! A parsed head's fields: where each name and value is in the buffer, and
//! what the name is when it is one the gateway looks for.
//!
//! Each name is recognised once, as the head is parsed ([`Known::of`]),
//! and a head keeps the set of names it holds ([`KnownSet`]), so the stages
//! that ask for `Authorization`, `Connection` or `X-Forwarded-For` compare
//! one byte per field, or nothing at all when the name is absent (most
//! requests carry no `Connection`, `Upgrade` or `X-Request-Id`).

/// A range of the parsed buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Offset of the first byte.
    pub start: usize,
    /// Offset one past the last byte.
    pub end: usize,
}

impl Span {
    /// The bytes this span covers in `buf`.
    pub fn of<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        &buf[self.start..self.end]
    }

    pub(crate) fn within(buf: &[u8], part: &[u8]) -> Span {
        let start = part.as_ptr() as usize - buf.as_ptr() as usize;
        Span {
            start,
            end: start + part.len(),
        }
    }
}

/// One field of a parsed head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// The name, as sent.
    pub name: Span,
    /// The value, without the surrounding whitespace.
    pub value: Span,
    /// What the name is, when the gateway looks for it.
    pub known: Known,
}

impl Field {
    pub(crate) fn new(buf: &[u8], name: &[u8], value: &[u8], known: Known) -> Field {
        Field {
            name: Span::within(buf, name),
            value: Span::within(buf, value),
            known,
        }
    }
}

/// The field names the gateway looks for (any case), and the hop-by-hop
/// ones (RFC 9110 §7.6.1, plus the `Proxy-*` family) it never forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Known {
    /// Any other name.
    Other,
    /// `Authorization`.
    Authorization,
    /// `Connection`.
    Connection,
    /// `Content-Length`.
    ContentLength,
    /// `Date`.
    Date,
    /// `Expect`.
    Expect,
    /// `Host`.
    Host,
    /// `Transfer-Encoding`.
    TransferEncoding,
    /// `Upgrade`.
    Upgrade,
    /// `X-Forwarded-For`.
    XForwardedFor,
    /// `X-Request-Id`.
    XRequestId,
    /// `TE`, `Trailer`, `Keep-Alive` and every `Proxy-*` name: hop-by-hop
    /// fields no stage reads.
    OtherHopByHop,
}

impl Known {
    /// The names [`Known::as_str`] spells, in order (`Other` and
    /// `OtherHopByHop` have no one spelling).
    pub const NAMED: [Known; 10] = [
        Known::Authorization,
        Known::Connection,
        Known::ContentLength,
        Known::Date,
        Known::Expect,
        Known::Host,
        Known::TransferEncoding,
        Known::Upgrade,
        Known::XForwardedFor,
        Known::XRequestId,
    ];

    /// What `name` (any case) is. By length first: most names are none of
    /// these, and are told so by one comparison or two.
    pub fn of(name: &[u8]) -> Known {
        let is = |k: &[u8]| name.eq_ignore_ascii_case(k);
        let known = match name.len() {
            2 if is(b"te") => Known::OtherHopByHop,
            4 if is(b"host") => Known::Host,
            4 if is(b"date") => Known::Date,
            6 if is(b"expect") => Known::Expect,
            7 if is(b"upgrade") => Known::Upgrade,
            7 if is(b"trailer") => Known::OtherHopByHop,
            10 if is(b"connection") => Known::Connection,
            10 if is(b"keep-alive") => Known::OtherHopByHop,
            12 if is(b"x-request-id") => Known::XRequestId,
            13 if is(b"authorization") => Known::Authorization,
            14 if is(b"content-length") => Known::ContentLength,
            15 if is(b"x-forwarded-for") => Known::XForwardedFor,
            17 if is(b"transfer-encoding") => Known::TransferEncoding,
            _ => Known::Other,
        };
        if known == Known::Other
            && name
                .get(..6)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"proxy-"))
        {
            return Known::OtherHopByHop;
        }
        known
    }

    /// The name in lower case (`""` for `Other` and `OtherHopByHop`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Known::Other | Known::OtherHopByHop => "",
            Known::Authorization => "authorization",
            Known::Connection => "connection",
            Known::ContentLength => "content-length",
            Known::Date => "date",
            Known::Expect => "expect",
            Known::Host => "host",
            Known::TransferEncoding => "transfer-encoding",
            Known::Upgrade => "upgrade",
            Known::XForwardedFor => "x-forwarded-for",
            Known::XRequestId => "x-request-id",
        }
    }

    /// Is a field of this name hop-by-hop (never forwarded, either way)?
    pub const fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            Known::Connection | Known::TransferEncoding | Known::Upgrade | Known::OtherHopByHop
        )
    }

    const fn bit(self) -> u16 {
        1 << self as u8
    }
}

/// The [`Known`] names a head holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KnownSet(u16);

impl KnownSet {
    /// Notes a field of this name.
    pub fn add(&mut self, known: Known) {
        self.0 |= known.bit();
    }

    /// Does the head hold a field of this name?
    pub fn has(self, known: Known) -> bool {
        self.0 & known.bit() != 0
    }

    /// The set of a head's fields.
    pub fn of(fields: &[Field]) -> KnownSet {
        let mut set = KnownSet::default();
        for f in fields {
            set.add(f.known);
        }
        set
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_recognised_in_any_case_and_only_whole() {
        for k in Known::NAMED {
            let name = k.as_str();
            assert_eq!(Known::of(name.as_bytes()), k, "{name}");
            assert_eq!(Known::of(name.to_uppercase().as_bytes()), k, "{name}");
            let longer = format!("{name}x");
            assert_eq!(Known::of(longer.as_bytes()), Known::Other, "{longer}");
            assert_eq!(
                Known::of(&name.as_bytes()[..name.len() - 1]),
                Known::Other,
                "{name}"
            );
        }
        for n in [
            "TE",
            "Trailer",
            "keep-alive",
            "Proxy-Authorization",
            "proxy-x",
        ] {
            assert_eq!(Known::of(n.as_bytes()), Known::OtherHopByHop, "{n}");
            assert!(Known::of(n.as_bytes()).is_hop_by_hop(), "{n}");
        }
        for n in ["", "proxy", "x-te", "server", "x-osir-key-id"] {
            assert_eq!(Known::of(n.as_bytes()), Known::Other, "{n}");
        }
        for (k, hop) in [
            (Known::Connection, true),
            (Known::TransferEncoding, true),
            (Known::Upgrade, true),
            (Known::Host, false),
            (Known::Authorization, false),
        ] {
            assert_eq!(k.is_hop_by_hop(), hop, "{k:?}");
        }
    }

    #[test]
    fn a_set_holds_what_was_added() {
        let mut set = KnownSet::default();
        assert!(Known::NAMED.iter().all(|k| !set.has(*k)));
        set.add(Known::Host);
        set.add(Known::XRequestId);
        for k in Known::NAMED {
            assert_eq!(
                set.has(k),
                matches!(k, Known::Host | Known::XRequestId),
                "{k:?}"
            );
        }
    }
}
