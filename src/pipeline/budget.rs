//! The failed-lookup budget: a per-client-IP limit on unknown keys.
//!
//! Random, well-formed keys with valid checksums pass the format check, so
//! each one would cost a store lookup. The negative cache stops repeats; this
//! stops variety: a client IP that presented `budget` unknown keys within
//! `window` gets 429 `rate_limited` (with `Retry-After`) for any key that is
//! not already cached, until its window ends. Cached keys still work from
//! that IP (the hit path never consults this), and other IPs are unaffected.
//!
//! Clients are grouped as an address plan gives them out: an IPv4 address
//! is one client (/32), an IPv6 client is its whole prefix (`/64` by
//! default, `auth.failed_lookup_ipv6_prefix`), since one host can pick any
//! of 2^64 addresses in its /64. The counters live in a bounded moka cache
//! keyed by that group, so a flood from many addresses cannot grow memory
//! without bound.
//!
//! Keys the cache has seen valid never reach this budget (see
//! [`crate::lookup::cache::KeyCache::known`]), so a flushed or evicted
//! cache never turns a client's real keys into 429s.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The budget group of a (canonical) client address: IPv4 as is, IPv6
/// with every bit past `ipv6_prefix` cleared.
pub(crate) fn client_group(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let bits = u32::from(ipv6_prefix.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    }
}

/// Counters of one IP within its current window.
#[derive(Debug)]
struct Window {
    started: Instant,
    failures: AtomicU32,
}

/// Per-IP budgets of failed key lookups.
pub struct FailedLookups {
    windows: moka::sync::Cache<IpAddr, Arc<Window>>,
}

impl FailedLookups {
    /// Tracks at most `capacity` client IPs; each entry lives one `window`.
    pub fn new(capacity: u64, window: Duration) -> FailedLookups {
        FailedLookups {
            windows: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(window.max(Duration::from_millis(1)))
                .build(),
        }
    }

    /// `Some(retry_after)` when `ip` has used up its budget. Checked before
    /// a lookup, charged after one that found nothing: lookups already in
    /// flight when the budget runs out still complete, so the store may see
    /// up to (budget + that IP's concurrent lookups) per window. Charging up
    /// front instead would cap a legitimate client's concurrent first uses
    /// of its keys at the budget (measured: `bench/run.sh` store-path).
    pub fn check(&self, ip: IpAddr, budget: u32, window: Duration) -> Option<Duration> {
        let w = self.windows.get(&ip)?;
        if w.failures.load(Ordering::Relaxed) < budget {
            return None;
        }
        Some(
            window
                .saturating_sub(w.started.elapsed())
                .max(Duration::from_secs(1)),
        )
    }

    /// Counts one unknown key presented by `ip`.
    pub fn record_failure(&self, ip: IpAddr) {
        let w = self.windows.get_with(ip, || {
            Arc::new(Window {
                started: Instant::now(),
                failures: AtomicU32::new(0),
            })
        });
        w.failures.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_per_ip() {
        let f = FailedLookups::new(100, Duration::from_secs(60));
        let win = Duration::from_secs(60);
        let a: IpAddr = [192, 0, 2, 1].into();
        let b: IpAddr = [192, 0, 2, 2].into();
        for _ in 0..3 {
            assert!(f.check(a, 3, win).is_none());
            f.record_failure(a);
        }
        let retry = f.check(a, 3, win);
        assert!(retry.is_some_and(|d| d >= Duration::from_secs(1) && d <= win));
        assert!(f.check(b, 3, win).is_none());
    }

    #[test]
    fn ipv6_clients_are_grouped_by_prefix_and_ipv4_by_address() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a = client_group(ip("2001:db8:1:2:aaaa::1"), 64);
        assert_eq!(a, ip("2001:db8:1:2::"));
        assert_eq!(client_group(ip("2001:db8:1:2:ffff:1:2:3"), 64), a);
        assert_ne!(client_group(ip("2001:db8:1:3::1"), 64), a);
        assert_eq!(client_group(ip("2001:db8:1:3::1"), 48), ip("2001:db8:1::"));
        assert_eq!(client_group(ip("2001:db8::1"), 128), ip("2001:db8::1"));
        assert_eq!(client_group(ip("192.0.2.7"), 64), ip("192.0.2.7"));
        assert_ne!(client_group(ip("192.0.2.8"), 64), ip("192.0.2.7"));
        // One budget for a whole /64: addresses across it spend it together.
        let f = FailedLookups::new(100, Duration::from_secs(60));
        let win = Duration::from_secs(60);
        for i in 0..3u16 {
            let g = client_group(ip(&format!("2001:db8:1:2:{i:x}::{i:x}")), 64);
            assert!(f.check(g, 3, win).is_none());
            f.record_failure(g);
        }
        assert!(f.check(a, 3, win).is_some());
    }
}
