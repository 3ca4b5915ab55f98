//! Who is calling: the client IP that `allowed_ips` is checked against.
//!
//! The TCP peer is the client, unless the peer is a trusted proxy: then
//! `X-Forwarded-For` is read from the right (the end our own proxies
//! appended), trusted hops are skipped, and the first untrusted valid address
//! is the client. Everything left of that was written by the client and is
//! worthless. A hop that does not parse (garbage, zone ids, ports) ends the
//! walk: the last trusted hop reached is then the best we know.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::http1::field::Known;
use crate::keys::canonical_ip;
use crate::pipeline::head::Fields;

/// The client's address, canonical (IPv4-mapped IPv6 becomes IPv4).
pub fn client_ip<F: Fields>(peer: IpAddr, headers: &F, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical_ip(peer);
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let mut best = peer;
    // Header lines in order, then hops right to left across all of them.
    for line in headers.values(Known::XForwardedFor).rev() {
        for hop in line.rsplit(|&c| c == b',') {
            let Some(ip) = parse_hop(hop) else {
                return best;
            };
            if !is_trusted(ip, trusted) {
                return ip;
            }
            best = ip;
        }
    }
    best
}

/// Is `ip` inside a trusted proxy range? (`ip` must be canonical.)
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|n| n.contains(&ip))
}

fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(hop)
        .ok()?
        .trim_matches(|c| c == ' ' || c == '\t');
    s.parse::<IpAddr>().ok().map(canonical_ip)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http::HeaderMap;

    fn h(lines: &[&str]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for l in lines {
            m.append("x-forwarded-for", l.parse().unwrap());
        }
        m
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_the_headers_say() {
        let t: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            client_ip(ip("1.2.3.4"), &h(&["9.9.9.9"]), &t),
            ip("1.2.3.4")
        );
        assert_eq!(client_ip(ip("1.2.3.4"), &h(&[]), &[]), ip("1.2.3.4"));
    }

    #[test]
    fn trusted_peer_reads_from_the_right() {
        let t: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        let peer = ip("10.0.0.1");
        assert_eq!(
            client_ip(peer, &h(&["6.6.6.6, 5.5.5.5, 10.0.0.2"]), &t),
            ip("5.5.5.5")
        );
        assert_eq!(
            client_ip(peer, &h(&["6.6.6.6", "5.5.5.5"]), &t),
            ip("5.5.5.5")
        );
        assert_eq!(
            client_ip(peer, &h(&["5.5.5.5,10.1.1.1", "10.0.0.3"]), &t),
            ip("5.5.5.5")
        );
        // Garbage stops the walk at the last trusted hop.
        assert_eq!(
            client_ip(peer, &h(&["5.5.5.5, garbage, 10.0.0.9"]), &t),
            ip("10.0.0.9")
        );
        assert_eq!(client_ip(peer, &h(&["fe80::1%eth0"]), &t), peer);
        assert_eq!(client_ip(peer, &h(&[]), &t), peer);
        // Mapped addresses are IPv4.
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), &h(&["::ffff:5.5.5.5"]), &t),
            ip("5.5.5.5")
        );
        assert_eq!(
            client_ip(ip("::1"), &h(&["2001:db8::7"]), &t),
            ip("2001:db8::7")
        );
    }
}
