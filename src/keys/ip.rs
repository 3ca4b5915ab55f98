//! Addresses as keys restrict them: allowed-IP entries (an address or a
//! CIDR) and canonical client addresses, both with IPv4-mapped IPv6 turned
//! into IPv4 so an IPv4 CIDR matches a mapped peer.

use std::net::IpAddr;

use ipnet::IpNet;

/// Parses an allowed-IP entry: a single address (a /32 or /128) or a CIDR.
/// IPv4-mapped IPv6 is turned into IPv4, because client addresses are too;
/// host bits after the prefix are cleared.
pub fn parse_ip_or_cidr(text: &str) -> Result<IpNet, String> {
    let bad = || format!("invalid IP or CIDR {text:?}");
    let net = if text.contains('/') {
        text.parse::<IpNet>().map_err(|_| bad())?
    } else {
        IpNet::from(text.parse::<IpAddr>().map_err(|_| bad())?)
    };
    Ok(canonical_net(net))
}

fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if let Some(v4) = v6.addr().to_ipv4_mapped() {
            if v6.prefix_len() >= 96 {
                if let Ok(n) = ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96) {
                    return IpNet::V4(n.trunc());
                }
            }
        }
    }
    net.trunc()
}

/// Canonical client address: IPv4-mapped IPv6 becomes IPv4 (so IPv4 CIDRs
/// match it; ipnet's cross-family `contains` is always false).
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    #[test]
    fn ip_entries_are_canonical() {
        assert_eq!(
            parse_ip_or_cidr("1.2.3.4").unwrap().to_string(),
            "1.2.3.4/32"
        );
        assert_eq!(
            parse_ip_or_cidr("10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_ip_or_cidr("::ffff:1.2.3.4").unwrap().to_string(),
            "1.2.3.4/32"
        );
        assert_eq!(
            parse_ip_or_cidr("::ffff:10.0.0.0/104").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_ip_or_cidr("2001:db8::/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        for bad in ["", "1.2.3", "10.0.0.0/33", "fe80::1%eth0", "host.example"] {
            assert!(parse_ip_or_cidr(bad).is_err(), "{bad:?}");
        }
    }
}
