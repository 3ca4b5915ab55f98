//! Connections per peer IP (`server.max_connections_per_ip`), counted at
//! accept time.
//!
//! `server.max_connections` bounds the whole listener; without a per-IP cap
//! one client opening that many idle connections locks every other client
//! out. At accept only the TCP peer is known (X-Forwarded-For comes with the
//! first request), so the peer is what is counted: behind a load balancer
//! every client shares its address, which is why the default is large. The
//! limit is read at each accept, so a reload applies to new connections.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;

/// Open connections per peer IP.
#[derive(Default)]
pub struct PerIp {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; dropping it frees its place.
pub struct Slot {
    owner: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    /// Takes a place for `ip` if it holds fewer than `limit` connections.
    pub fn try_take(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<Slot> {
        let ip = crate::keys::canonical_ip(ip);
        let mut open = self.open.lock();
        let n = open.entry(ip).or_insert(0);
        if *n >= limit {
            if *n == 0 {
                open.remove(&ip);
            }
            return None;
        }
        *n += 1;
        Some(Slot {
            owner: self.clone(),
            ip,
        })
    }

    /// Connections `ip` holds now.
    pub fn open(&self, ip: IpAddr) -> usize {
        let ip = crate::keys::canonical_ip(ip);
        self.open.lock().get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock();
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                // Idle addresses leave the map, so it never outgrows the
                // connections actually open.
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn places_are_per_ip_and_freed_on_drop() {
        let p = Arc::new(PerIp::default());
        let a: IpAddr = [192, 0, 2, 1].into();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let b: IpAddr = [192, 0, 2, 2].into();
        let one = p.try_take(a, 2).unwrap();
        let two = p.try_take(mapped, 2).unwrap();
        assert!(p.try_take(a, 2).is_none());
        assert!(p.try_take(b, 2).is_some());
        drop(one);
        assert_eq!(p.open(a), 1);
        let _three = p.try_take(a, 2).unwrap();
        drop(two);
        assert_eq!(p.open(a), 1);
        assert!(p.open.lock().get(&b).is_none());
    }
}
