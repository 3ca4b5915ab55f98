//! Client-IP resolution from X-Forwarded-For (as
//! `client_ip_is_the_peer_or_a_written_hop` in tests/it/props.rs).
//!
//! Input: byte 0 picks the trusted set (one bit per network in `NETS`);
//! byte 1 picks the peer: bit 7 set reads it from the next 4 (bit 6 clear)
//! or 16 (bit 6 set) bytes, otherwise its low bits index `PEERS`; the rest,
//! split on `\n`, are the header lines (invalid ones skipped).
//!
//! `client_ip` never panics, answers a canonical address, answers the peer
//! when the peer is not trusted, and otherwise the peer or an address
//! written in the header.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::{HeaderMap, HeaderValue};
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use osir_gateway::pipeline::client_ip::{client_ip, is_trusted};
use osir_gateway::keys::canonical_ip;

const NETS: &[&str] = &[
    "127.0.0.0/8",
    "10.0.0.0/8",
    "0.0.0.0/0",
    "::/0",
    "::1/128",
    "203.0.113.0/24",
    "2001:db8::/32",
    "192.168.1.1/32",
];

const PEERS: &[&str] = &[
    "127.0.0.1",
    "10.1.2.3",
    "203.0.113.7",
    "::1",
    "::ffff:10.1.2.3",
    "::ffff:203.0.113.7",
    "2001:db8::1",
    "192.168.1.1",
];

fn hop_ip(hop: &[u8]) -> Option<IpAddr> {
    std::str::from_utf8(hop)
        .ok()?
        .trim_matches(|c| c == ' ' || c == '\t')
        .parse()
        .ok()
        .map(canonical_ip)
}

fuzz_target!(|data: &[u8]| {
    let [nets, pick, rest @ ..] = data else {
        return;
    };
    let trusted: Vec<IpNet> = NETS
        .iter()
        .enumerate()
        .filter(|(i, _)| nets & (1 << i) != 0)
        .filter_map(|(_, n)| n.parse().ok())
        .collect();
    let (peer, rest): (IpAddr, &[u8]) = if pick & 0x80 == 0 {
        let Ok(p) = PEERS[usize::from(pick & 7)].parse() else {
            return;
        };
        (p, rest)
    } else if pick & 0x40 == 0 {
        let Some((b, rest)) = rest.split_first_chunk::<4>() else {
            return;
        };
        (Ipv4Addr::from(*b).into(), rest)
    } else {
        let Some((b, rest)) = rest.split_first_chunk::<16>() else {
            return;
        };
        (Ipv6Addr::from(*b).into(), rest)
    };

    let mut headers = HeaderMap::new();
    let mut lines = Vec::new();
    if !rest.is_empty() {
        for line in rest.split(|&b| b == b'\n') {
            if let Ok(v) = HeaderValue::from_bytes(line) {
                headers.append("x-forwarded-for", v);
                lines.push(line);
            }
        }
    }

    let got = client_ip(peer, &headers, &trusted);
    let peer = canonical_ip(peer);
    assert_eq!(got, canonical_ip(got), "not canonical");
    if !is_trusted(peer, &trusted) {
        assert_eq!(got, peer);
    } else if got != peer {
        let written = lines
            .iter()
            .flat_map(|l| l.split(|&b| b == b','))
            .filter_map(hop_ip)
            .any(|ip| ip == got);
        assert!(
            written,
            "{got} is neither the peer {peer} nor written in the header"
        );
    }
});
