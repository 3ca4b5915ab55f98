//! Request ids: the thread that ties a client's report to our logs.
//!
//! A client's own `X-Request-Id` is kept when it is 1–128 characters of
//! `[A-Za-z0-9._-]` (safe in logs and headers) and holds nothing shaped like
//! an API key (the id is echoed in answers and written to the access log);
//! anything else is replaced.
//! New ids are a per-process random prefix plus a counter: unique across
//! gateways, cheap (no syscall, no lock), and sortable within a process.

use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderValue;

/// Makes request ids for one gateway process.
pub struct RequestIds {
    /// The prefix, already in hex: only the counter is written per id.
    prefix: [u8; 12],
    counter: AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        RequestIds::new()
    }
}

impl RequestIds {
    /// A generator with a random 48-bit prefix.
    pub fn new() -> RequestIds {
        let mut b = [0u8; 8];
        // Without randomness ids are still unique within this process.
        let _ = getrandom::getrandom(&mut b);
        let mut prefix = [0u8; 12];
        write_hex(&mut prefix, u64::from_le_bytes(b) & 0xffff_ffff_ffff);
        RequestIds {
            prefix,
            counter: AtomicU64::new(0),
        }
    }

    /// The client's id if acceptable, else a new one.
    pub fn for_request(&self, client: Option<&[u8]>) -> HeaderValue {
        if let Some(v) = client {
            if is_valid(v) && !crate::keys::misplaced::holds_key(v, false) {
                if let Ok(v) = HeaderValue::from_bytes(v) {
                    return v;
                }
            }
        }
        self.next()
    }

    /// A new id: 12 hex digits of prefix, 12 of counter.
    pub fn next(&self) -> HeaderValue {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 24];
        buf[..12].copy_from_slice(&self.prefix);
        write_hex(&mut buf[12..], n & 0xffff_ffff_ffff);
        // Hex digits are always a valid header value.
        HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static("0"))
    }
}

/// The low `out.len()` hex digits of `v`, lower case, two per step
/// (`out.len()` is even).
fn write_hex(out: &mut [u8], mut v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for pair in out.rchunks_exact_mut(2) {
        let b = (v & 0xff) as usize;
        pair[0] = HEX[b >> 4];
        pair[1] = HEX[b & 15];
        v >>= 8;
    }
}

/// 1–128 characters of `[A-Za-z0-9._-]`.
pub(crate) fn is_valid(id: &[u8]) -> bool {
    (1..=128).contains(&id.len())
        && id
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_good_client_ids_and_replaces_bad_ones() {
        let ids = RequestIds::new();
        let good = HeaderValue::from_static("abc-123_X.y");
        assert_eq!(ids.for_request(Some(good.as_bytes())), good);
        let long = "a".repeat(129);
        for bad in ["", "a b", "a/b", "x\"y", long.as_str()] {
            let v = HeaderValue::from_str(bad).ok();
            let got = ids.for_request(v.as_ref().map(HeaderValue::as_bytes));
            assert_ne!(got.as_bytes(), bad.as_bytes());
            assert!(is_valid(got.as_bytes()));
        }
    }

    #[test]
    fn hex_is_the_low_digits_in_lower_case() {
        for v in [0u64, 1, 0xabc, 0x0123_4567_89ab, u64::MAX] {
            let mut out = [0u8; 12];
            write_hex(&mut out, v);
            assert_eq!(
                out,
                *format!("{:012x}", v & 0xffff_ffff_ffff).as_bytes(),
                "{v:x}"
            );
        }
    }

    #[test]
    fn new_ids_are_unique() {
        let ids = RequestIds::new();
        let a = ids.next();
        let b = ids.next();
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
    }
}
