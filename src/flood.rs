//! The failed-lookup budget: a per-client-IP limit on unknown keys.
//!
//! Random, well-formed keys with valid checksums pass the format check, so
//! each one would cost a store lookup. The negative cache stops repeats; this
//! stops variety: a client IP that presented `budget` unknown keys within
//! `window` gets 429 `rate_limited` (with `Retry-After`) for any key that is
//! not already cached, until its window ends. Cached keys still work from
//! that IP (the hit path never consults this), and other IPs are unaffected.
//!
//! The counters live in a bounded moka cache keyed by IP, so a flood from
//! many addresses cannot grow memory without bound.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

    /// Charges one key lookup to `ip` before it is made, or answers
    /// `Err(retry_after)` when the budget is spent. Charging first (and
    /// refunding lookups that find their key) keeps concurrent lookups from
    /// overshooting the budget.
    pub fn reserve(&self, ip: IpAddr, budget: u32, window: Duration) -> Result<Charge, Duration> {
        let w = self.windows.get_with(ip, || {
            Arc::new(Window {
                started: Instant::now(),
                failures: AtomicU32::new(0),
            })
        });
        let charged = w
            .failures
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < budget).then_some(n + 1)
            });
        match charged {
            Ok(_) => Ok(Charge { window: Some(w) }),
            Err(_) => Err(window
                .saturating_sub(w.started.elapsed())
                .max(Duration::from_secs(1))),
        }
    }
}

/// One lookup charged to a client IP: refunded when dropped, unless
/// [`Charge::keep`] says the key was unknown.
#[must_use]
pub struct Charge {
    window: Option<Arc<Window>>,
}

impl Charge {
    /// The key was unknown: the charge stands.
    pub fn keep(mut self) {
        self.window = None;
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if let Some(w) = self.window.take() {
            // Found, store error, or the request went away: not a failure.
            let _ = w
                .failures
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_per_ip_and_only_unknown_keys_spend_it() {
        let f = FailedLookups::new(100, Duration::from_secs(60));
        let win = Duration::from_secs(60);
        let a: IpAddr = [192, 0, 2, 1].into();
        let b: IpAddr = [192, 0, 2, 2].into();
        // Lookups that find their key are refunded.
        for _ in 0..10 {
            drop(f.reserve(a, 3, win).unwrap());
        }
        for _ in 0..3 {
            f.reserve(a, 3, win).unwrap().keep();
        }
        let retry = f.reserve(a, 3, win).err();
        assert!(retry.is_some_and(|d| d >= Duration::from_secs(1) && d <= win));
        assert!(f.reserve(b, 3, win).is_ok());
    }

    #[test]
    fn concurrent_lookups_cannot_overshoot() {
        let f = FailedLookups::new(100, Duration::from_secs(60));
        let a: IpAddr = [192, 0, 2, 9].into();
        let held: Vec<Charge> = (0..10)
            .filter_map(|_| f.reserve(a, 4, Duration::from_secs(60)).ok())
            .collect();
        assert_eq!(held.len(), 4);
    }
}
