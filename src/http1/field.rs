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

    /// What `name` (any case) is. By length and first letter first: that
    /// leaves at most one name to compare, and most names are told apart
    /// before any comparison.
    pub fn of(name: &[u8]) -> Known {
        let Some(&first) = name.first() else {
            return Known::Other;
        };
        match (name.len(), first | 0x20) {
            (2, b't') if is(name, b"te") => Known::OtherHopByHop,
            (4, b'h') if is(name, b"host") => Known::Host,
            (4, b'd') if is(name, b"date") => Known::Date,
            (6, b'e') if is(name, b"expect") => Known::Expect,
            (7, b'u') if is(name, b"upgrade") => Known::Upgrade,
            (7, b't') if is(name, b"trailer") => Known::OtherHopByHop,
            (10, b'c') if is(name, b"connection") => Known::Connection,
            (10, b'k') if is(name, b"keep-alive") => Known::OtherHopByHop,
            (12, b'x') if is(name, b"x-request-id") => Known::XRequestId,
            (13, b'a') if is(name, b"authorization") => Known::Authorization,
            (14, b'c') if is(name, b"content-length") => Known::ContentLength,
            (15, b'x') if is(name, b"x-forwarded-for") => Known::XForwardedFor,
            (17, b't') if is(name, b"transfer-encoding") => Known::TransferEncoding,
            (6.., b'p') if is(&name[..6], b"proxy-") => Known::OtherHopByHop,
            _ => Known::Other,
        }
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

/// Is `name` the lower-case `spelled`, in any case? Every byte is compared,
/// without a branch, so the compiler does it several bytes at a time. Under
/// a letter of `spelled`, a byte matches when it equals the letter once its
/// 0x20 bit is set, which only the letter's two cases do; under any other
/// byte, it must be that byte.
fn is<const N: usize>(name: &[u8], spelled: &[u8; N]) -> bool {
    let Ok(name) = <&[u8; N]>::try_from(name) else {
        return false;
    };
    let mut differ = 0u8;
    for (b, l) in name.iter().zip(spelled) {
        let fold = if l.is_ascii_lowercase() { 0x20 } else { 0 };
        differ |= (b | fold) ^ l;
    }
    differ == 0
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

    /// The plain rule `Known::of` must agree with: the whole name compared
    /// with each known spelling, any case; `proxy-` as a prefix.
    fn reference(name: &[u8]) -> Known {
        let lower = name.to_ascii_lowercase();
        let named = Known::NAMED
            .into_iter()
            .find(|k| k.as_str().as_bytes() == lower);
        match (named, &lower[..]) {
            (Some(k), _) => k,
            (None, b"te" | b"trailer" | b"keep-alive") => Known::OtherHopByHop,
            (None, n) if n.starts_with(b"proxy-") => Known::OtherHopByHop,
            _ => Known::Other,
        }
    }

    #[test]
    fn agrees_with_the_plain_rule_on_near_misses() {
        let mut names: Vec<Vec<u8>> = Vec::new();
        let spelled = Known::NAMED.iter().map(|k| k.as_str());
        for base in spelled.chain(["te", "trailer", "keep-alive", "proxy-", "proxy-x"]) {
            let base = base.as_bytes();
            names.push(base.to_vec());
            names.push(base.to_ascii_uppercase());
            for i in 0..base.len() {
                // Each byte changed, to its neighbours and to bytes that
                // differ from it only in the case bit.
                for b in [
                    base[i] ^ 0x20,
                    base[i] + 1,
                    base[i] - 1,
                    b'-',
                    0x80 | base[i],
                ] {
                    let mut n = base.to_vec();
                    n[i] = b;
                    names.push(n);
                }
                names.push(base[..i].to_vec());
            }
        }
        for n in names {
            assert_eq!(
                Known::of(&n),
                reference(&n),
                "{:?}",
                String::from_utf8_lossy(&n)
            );
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
