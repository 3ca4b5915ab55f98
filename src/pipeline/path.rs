//! The canonical path check: the first stage every request passes.
//!
//! Gateways get bypassed when they authorise one reading of a path and the
//! upstream acts on another (`/v1/domains/..%2fbilling`). The defence is to
//! accept only paths that every reasonable decoder reads the same way, and to
//! forward those bytes unchanged. So a path is refused when it has:
//! dot segments (`.`, `..`, raw or percent-encoded), empty segments (`//`),
//! encoded `/` or `\`, a raw `\`, `;` (raw or encoded: path parameters),
//! `%25` (double encoding), NUL or controls (raw or encoded, C1 controls
//! U+0080–U+009F included), encoded `?` or `#` (`%3F`, `%23`: an upstream
//! that decodes before splitting would cut the path there), a segment
//! ending in `.` or whitespace (Windows and some servers trim those, so
//! `transfers./x` would act as `transfers/x`), bad `%` escapes, raw
//! non-ASCII, bytes that are not UTF-8 once decoded, or a decoded code point
//! that Unicode NFKC normalisation would change (fullwidth `．` `／` `＼`,
//! the one-dot leader `․`, ligatures, superscripts: anything a normalising
//! upstream would read as another character), or a decoded path that is not
//! in NFKC form as a whole.
//!
//! What passes is both what routing sees (decoded, see [`CheckedPath`]) and
//! what the upstream receives (the raw bytes, untouched).

use std::borrow::Cow;

pub use crate::error::PathError;

/// A path that passed the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedPath<'a> {
    /// The bytes the client sent; forwarded as they are.
    pub raw: &'a str,
    /// Percent-decoded form, used for routing so that `/v1/%64omains` is
    /// routed where the upstream will act on it. Borrowed when nothing was
    /// encoded (the common case: no allocation).
    pub decoded: Cow<'a, str>,
}

/// Checks a request path (without the query) and returns it with its
/// decoded form.
pub fn check(raw: &str) -> Result<CheckedPath<'_>, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let mut has_escape = false;
    // One pass over the bytes, segment by segment (the leading '/' is
    // skipped): what a segment holds is checked as it is read, what it is
    // as a whole at the '/' that ends it.
    let sb = &bytes[1..];
    let mut seg = Segment::default();
    let mut j = 0;
    while j < sb.len() {
        let c = sb[j];
        let d = if c == b'/' {
            seg.end(false)?;
            seg = Segment::default();
            j += 1;
            continue;
        } else if c == b'%' {
            has_escape = true;
            let (Some(h), Some(l)) = (
                sb.get(j + 1).and_then(|&b| hex(b)),
                sb.get(j + 2).and_then(|&b| hex(b)),
            ) else {
                return Err(PathError::BadEscape);
            };
            j += 3;
            let d = (h << 4) | l;
            if matches!(d, b'/' | b'\\' | b'%' | b';' | b'?' | b'#') {
                return Err(PathError::Forbidden);
            }
            d
        } else {
            j += 1;
            if c >= 0x80 {
                return Err(PathError::NotUtf8);
            }
            // A raw `?` or `#` cannot be part of a request's path (the
            // target's query and fragment start there); refused like
            // their encoded forms, so a decoded path always re-encodes
            // to one that passes.
            if matches!(c, b'\\' | b';' | b'?' | b'#') {
                return Err(PathError::Forbidden);
            }
            c
        };
        if d < 0x20 || d == 0x7f {
            return Err(PathError::Control);
        }
        if d != b'.' {
            seg.dots_only = false;
        }
        seg.decoded_len += 1;
        seg.last_byte = d;
    }
    seg.end(true)?;
    if !has_escape {
        return Ok(CheckedPath {
            raw,
            decoded: Cow::Borrowed(raw),
        });
    }
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
    let Ok(decoded) = String::from_utf8(decoded) else {
        return Err(PathError::NotUtf8);
    };
    if !decoded.is_ascii() {
        check_unicode(&decoded)?;
    }
    Ok(CheckedPath {
        raw,
        decoded: Cow::Owned(decoded),
    })
}

/// What the path checker knows of the segment it is reading.
struct Segment {
    dots_only: bool,
    decoded_len: usize,
    last_byte: u8,
}

impl Default for Segment {
    fn default() -> Segment {
        Segment {
            dots_only: true,
            decoded_len: 0,
            last_byte: 0,
        }
    }
}

impl Segment {
    /// The checks of a whole segment; `last`: it ends the path.
    fn end(&self, last: bool) -> Result<(), PathError> {
        if self.decoded_len == 0 {
            // Only a single trailing slash ("/v1/domains/") or the root path.
            return if last {
                Ok(())
            } else {
                Err(PathError::EmptySegment)
            };
        }
        if self.dots_only && self.decoded_len <= 2 {
            return Err(PathError::DotSegment);
        }
        if matches!(self.last_byte, b'.' | b' ') {
            return Err(PathError::TrailingDotOrSpace);
        }
        Ok(())
    }
}

/// The rules only non-ASCII text can break (reached only through escapes,
/// since raw non-ASCII is refused): C1 controls, code points NFKC would
/// change, and segments ending in Unicode whitespace.
fn check_unicode(decoded: &str) -> Result<(), PathError> {
    use unicode_normalization::UnicodeNormalization;
    for c in decoded.chars() {
        if ('\u{80}'..='\u{9f}').contains(&c) {
            return Err(PathError::Control);
        }
        if !c.is_ascii() && !c.nfkc().eq(std::iter::once(c)) {
            return Err(PathError::NotNormalized);
        }
    }
    if decoded
        .split('/')
        .any(|seg| seg.chars().next_back().is_some_and(char::is_whitespace))
    {
        return Err(PathError::TrailingDotOrSpace);
    }
    // Each code point is stable; so must their sequence be (a base letter
    // and a combining mark that NFKC would compose).
    if !unicode_normalization::is_nfkc(decoded) {
        return Err(PathError::NotNormalized);
    }
    Ok(())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_paths_pass_unchanged() {
        for p in [
            "/",
            "/v1/domains",
            "/v1/domains/",
            "/v1/domains/example.com",
            "/v1/a-b_c~d",
            "/v1/x..y",
            "/v1/.well",
            "/v1/a.b/c",
        ] {
            let c = check(p).unwrap();
            assert_eq!(c.raw, p);
            assert_eq!(c.decoded, p);
            assert!(matches!(c.decoded, Cow::Borrowed(_)));
        }
    }

    #[test]
    fn encoded_paths_decode_for_routing() {
        let c = check("/v1/%64omains/caf%C3%A9").unwrap();
        assert_eq!(c.raw, "/v1/%64omains/caf%C3%A9");
        assert_eq!(c.decoded, "/v1/domains/café");
        assert_eq!(check("/v1/file%2ejson").unwrap().decoded, "/v1/file.json");
    }

    #[test]
    fn attacks_are_refused() {
        use PathError::*;
        let cases = [
            ("/v1/domains/../billing/invoices", DotSegment),
            ("/v1/domains/./x", DotSegment),
            ("/v1/domains/..", DotSegment),
            ("/v1/domains/.", DotSegment),
            ("/v1/domains/%2e%2e/billing", DotSegment),
            ("/v1/domains/%2E%2E/billing", DotSegment),
            ("/v1/domains/.%2e/billing", DotSegment),
            ("/v1/domains/%2e/billing", DotSegment),
            ("/v1/domains/..%2fbilling", Forbidden),
            ("/v1/domains/..%2Fbilling", Forbidden),
            ("/v1/domains/..;/billing", Forbidden),
            ("/v1/domains;x=1", Forbidden),
            ("/v1/domains%3bx", Forbidden),
            ("/v1//billing", EmptySegment),
            ("//v1/billing", EmptySegment),
            ("/v1/domains/%252e%252e/billing", Forbidden),
            ("/v1/domains/%25", Forbidden),
            ("/v1/domains\\..\\billing", Forbidden),
            ("/v1/domains/..%5cbilling", Forbidden),
            ("/v1/domains/%5C", Forbidden),
            ("/v1/domains/%00", Control),
            ("/v1/domains/%0a", Control),
            ("/v1/domains/%7f", Control),
            ("/v1/domains/a\u{1}b", Control),
            ("/v1/domains/%", BadEscape),
            ("/v1/domains/%2", BadEscape),
            ("/v1/domains/%zz", BadEscape),
            ("/v1/domains/%ff", NotUtf8),
            ("/v1/domains/%c3", NotUtf8),
            ("/v1/domains/é", NotUtf8),
            ("", NotAbsolute),
            ("v1/domains", NotAbsolute),
            ("*", NotAbsolute),
        ];
        for (p, want) in cases {
            assert_eq!(check(p), Err(want), "{p:?}");
        }
    }

    #[test]
    fn look_alikes_and_ambiguous_segments_are_refused() {
        use PathError::*;
        let cases = [
            ("/v1/a%c2%80", Control),
            ("/v1/a%c2%9f", Control),
            ("/v1/%ef%bc%8e%ef%bc%8e/x", NotNormalized),
            ("/v1/%ef%bc%8f", NotNormalized),
            ("/v1/%ef%bc%bc", NotNormalized),
            ("/v1/%e2%80%a4", NotNormalized),
            ("/v1/cafe%cc%81", NotNormalized),
            ("/v1/transfers%3f", Forbidden),
            ("/v1/x%23", Forbidden),
            ("/v1/x?", Forbidden),
            ("/v1/x#y", Forbidden),
            ("/v1/transfers./x", TrailingDotOrSpace),
            ("/v1/...", TrailingDotOrSpace),
            ("/v1/x%20", TrailingDotOrSpace),
            ("/v1/x%2e", TrailingDotOrSpace),
            ("/v1/x%e2%80%a8/y", TrailingDotOrSpace),
        ];
        for (p, want) in cases {
            assert_eq!(check(p), Err(want), "{p:?}");
        }
        assert!(check("/v1/a%20b/caf%C3%A9").is_ok());
    }
}
