//! Property tests for client-IP resolution (see the list in `props`).

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue};
use ipnet::IpNet;
use osir_gateway::keys::canonical_ip;
use osir_gateway::pipeline::client_ip::{client_ip, is_trusted};
use proptest::prelude::*;
use proptest::sample::select;

use super::CASES;

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

const HOP_JUNK: &[&str] = &[
    "",
    " ",
    "\t",
    "garbage",
    "unknown",
    "1.2.3.4:80",
    "[::1]",
    "fe80::1%eth0",
    "010.1.1.1",
    "1.2.3",
    "0x7f000001",
    "::ffff:",
    "1.2.3.4/8",
    "_",
    "for=1.2.3.4",
];

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<IpAddr>(),
        select(
            &[
                "127.0.0.1",
                "10.1.2.3",
                "203.0.113.7",
                "::1",
                "::ffff:10.1.2.3",
                "::ffff:203.0.113.7",
                "2001:db8::1",
                "192.168.1.1",
            ][..]
        )
        .prop_map(|s| s.parse().unwrap()),
    ]
}

fn hop() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (ip(), select(&["", " ", "\t", "  "][..]), select(&["", " ", "\t"][..]))
            .prop_map(|(ip, l, r)| format!("{l}{ip}{r}")),
        1 => select(HOP_JUNK).prop_map(str::to_owned),
    ]
}

fn xff_line() -> impl Strategy<Value = String> {
    prop::collection::vec(hop(), 0..6).prop_map(|hops| hops.join(","))
}

fn hop_ip(hop: &str) -> Option<IpAddr> {
    hop.trim_matches(|c| c == ' ' || c == '\t')
        .parse()
        .ok()
        .map(canonical_ip)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn client_ip_is_the_peer_or_a_written_hop(
        peer in ip(),
        nets in prop::collection::vec(select(NETS), 0..4),
        lines in prop::collection::vec(xff_line(), 0..4),
    ) {
        let trusted: Vec<IpNet> = nets.iter().map(|n| n.parse().unwrap()).collect();
        let mut headers = HeaderMap::new();
        for l in &lines {
            if let Ok(v) = HeaderValue::from_str(l) {
                headers.append("x-forwarded-for", v);
            }
        }
        let got = client_ip(peer, &headers, &trusted);
        let peer = canonical_ip(peer);
        prop_assert_eq!(got, canonical_ip(got), "not canonical");
        if !is_trusted(peer, &trusted) {
            prop_assert_eq!(got, peer);
        } else if got != peer {
            let written: Vec<IpAddr> = lines.iter().flat_map(|l| l.split(',')).filter_map(hop_ip).collect();
            prop_assert!(written.contains(&got), "{got} not in {lines:?}");
        }
    }
}
