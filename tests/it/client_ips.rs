//! Client IP and `allowed_ips` (contract §5, §7; HOSTILE §3): the client is
//! the TCP peer unless that peer is a trusted proxy, whose X-Forwarded-For
//! is read from the right; X-Real-IP and Forwarded are never believed;
//! IPv4-mapped addresses count as IPv4; and the upstream's X-Forwarded-For
//! is the trusted chain plus the peer, or only the peer.

use osir_gateway::keys::Env;

use crate::support::expect::Bench;
use crate::support::gateway::TestGateway;
use crate::support::keys::{create_key, memory_store};

const TRUST_LOCAL: &str = "[auth]\ntrusted_proxies = [\"127.0.0.1/32\"]";

async fn bench(extra: &str, bind: &str) -> Bench {
    Bench::build(TestGateway::builder().extra(extra).bind(bind)).await
}

#[tokio::test]
async fn allowed_ips_v4_single_and_cidr() {
    let b = bench("", "127.0.0.1:0").await;
    b.client_is(&[], &["127.0.0.1"], &["10.0.0.0/8"]).await;
    b.client_is(&[], &["127.0.0.0/8"], &["127.0.0.2"]).await;
    let seen = b
        .client_is(
            &[],
            &["10.0.0.0/8", "127.0.0.1"],
            &["192.0.2.0/24", "10.0.0.1"],
        )
        .await;
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    // An IPv6 list never admits an IPv4 peer.
    b.client_is(&[], &["0.0.0.0/0"], &["::/0"]).await;
}

#[tokio::test]
async fn ipv6_peer() {
    let b = bench("", "[::1]:0").await;
    assert!(b.gw.addr.is_ipv6());
    let seen = b
        .client_is(&[], &["::1/128"], &["127.0.0.1", "10.0.0.0/8"])
        .await;
    assert_eq!(seen.header("x-forwarded-for"), Some("::1"));
    b.client_is(&[], &["::1"], &["::2", "0.0.0.0/0"]).await;
}

#[tokio::test]
async fn ipv4_mapped_addresses_are_ipv4() {
    // A record written with a mapped address is stored as IPv4.
    let store = memory_store();
    let (_, rec) = create_key(&store, Env::Live, &["domains:read"], &["::ffff:127.0.0.1"]).await;
    assert_eq!(rec.allowed_ips[0].to_string(), "127.0.0.1/32");
    let b = bench("", "127.0.0.1:0").await;
    b.client_is(&[], &["::ffff:127.0.0.1"], &["::ffff:10.0.0.1"])
        .await;

    // A peer reported as ::ffff:127.0.0.1 (IPv4 on an IPv6 socket) is
    // 127.0.0.1 for allowed_ips, trusted proxies and X-Forwarded-For.
    let b = bench("", "[::ffff:127.0.0.1]:0").await;
    let mapped = match b.gw.addr.ip() {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some(),
        std::net::IpAddr::V4(_) => false,
    };
    assert!(mapped, "the listener is not IPv4-mapped: {}", b.gw.addr);
    let seen = b
        .client_is(&[], &["127.0.0.0/8"], &["::1", "::ffff:10.0.0.0/104"])
        .await;
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    let b = bench(TRUST_LOCAL, "[::ffff:127.0.0.1]:0").await;
    let seen = b
        .client_is(
            &[("x-forwarded-for", "::ffff:203.0.113.7")],
            &["203.0.113.0/24"],
            &["127.0.0.1"],
        )
        .await;
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("::ffff:203.0.113.7, 127.0.0.1")
    );
}

#[tokio::test]
async fn trusted_proxy_forwarded_for_names_the_client() {
    let b = bench(TRUST_LOCAL, "127.0.0.1:0").await;
    let xff = [("x-forwarded-for", "203.0.113.7")];
    let seen = b.client_is(&xff, &["203.0.113.0/24"], &["127.0.0.1"]).await;
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.7, 127.0.0.1")
    );
    let xff = [("x-forwarded-for", "2001:db8::7")];
    b.client_is(&xff, &["2001:db8::/32"], &["127.0.0.1"]).await;
    // Without the header the trusted peer is the client.
    b.client_is(&[], &["127.0.0.1"], &["203.0.113.0/24"]).await;
}

#[tokio::test]
async fn untrusted_peer_forwarded_for_is_ignored() {
    let b = bench("[auth]\ntrusted_proxies = [\"10.0.0.0/8\"]", "127.0.0.1:0").await;
    let xff = [
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-for", "10.0.0.1"),
    ];
    let seen = b
        .client_is(&xff, &["127.0.0.1"], &["203.0.113.0/24", "10.0.0.0/8"])
        .await;
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.headers.get_all("x-forwarded-for").iter().count(), 1);
}

#[tokio::test]
async fn forwarded_for_is_read_from_the_right() {
    let b = bench(
        "[auth]\ntrusted_proxies = [\"127.0.0.1/32\", \"10.0.0.0/8\"]",
        "127.0.0.1:0",
    )
    .await;
    // The leftmost hop is whatever the client wrote.
    let xff = [("x-forwarded-for", "203.0.113.7, 198.51.100.1")];
    let seen = b
        .client_is(&xff, &["198.51.100.1"], &["203.0.113.0/24"])
        .await;
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.7, 198.51.100.1, 127.0.0.1")
    );
    // Trusted hops on the right are skipped.
    let xff = [("x-forwarded-for", "203.0.113.7, 198.51.100.1, 10.1.2.3")];
    b.client_is(&xff, &["198.51.100.1"], &["10.0.0.0/8", "203.0.113.7"])
        .await;
    // Several lines are one list, in order.
    let xff = [
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-for", "198.51.100.1, 10.9.9.9"),
    ];
    let seen = b
        .client_is(&xff, &["198.51.100.1"], &["203.0.113.7", "10.0.0.0/8"])
        .await;
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.7, 198.51.100.1, 10.9.9.9, 127.0.0.1")
    );
    let xff = [
        ("x-forwarded-for", "198.51.100.1"),
        ("x-forwarded-for", "203.0.113.7"),
    ];
    b.client_is(&xff, &["203.0.113.7"], &["198.51.100.1"]).await;
    // Garbage left of the client does not matter.
    let xff = [("x-forwarded-for", "garbage, 203.0.113.7")];
    b.client_is(&xff, &["203.0.113.7"], &["127.0.0.1"]).await;
}

#[tokio::test]
async fn garbage_hops_never_name_a_client() {
    let b = bench(
        "[auth]\ntrusted_proxies = [\"127.0.0.1/32\", \"10.0.0.0/8\"]",
        "127.0.0.1:0",
    )
    .await;
    // A hop that does not parse stops the walk at the last trusted address:
    // nothing written left of it can be chosen.
    for bad in [
        "203.0.113.7, garbage",
        "203.0.113.7, 203.0.113.8:443",
        "203.0.113.7, fe80::1%eth0",
        "203.0.113.7, fe80::1%25eth0",
        "203.0.113.7, [2001:db8::1]",
        "203.0.113.7, unknown",
        "203.0.113.7, ",
        "203.0.113.7,,",
        "203.0.113.7, 203.0.113.0/24",
    ] {
        b.client_is(
            &[("x-forwarded-for", bad)],
            &["127.0.0.1"],
            &["203.0.113.0/24"],
        )
        .await;
    }
    let xff = [("x-forwarded-for", "203.0.113.7, garbage, 10.0.0.5")];
    b.client_is(&xff, &["10.0.0.5"], &["203.0.113.0/24", "127.0.0.1"])
        .await;
}

#[tokio::test]
async fn real_ip_and_forwarded_are_never_believed() {
    let b = bench(TRUST_LOCAL, "127.0.0.1:0").await;
    let spoof = [
        ("x-real-ip", "203.0.113.7"),
        ("forwarded", "for=203.0.113.7;proto=https"),
        ("x-forwarded-host", "evil.example"),
        ("x_forwarded_for", "203.0.113.7"),
    ];
    let seen = b
        .client_is(&spoof, &["127.0.0.1"], &["203.0.113.0/24"])
        .await;
    for gone in [
        "x-real-ip",
        "forwarded",
        "x-forwarded-host",
        "x_forwarded_for",
    ] {
        assert!(
            seen.headers.get(gone).is_none(),
            "{gone} reached the upstream"
        );
    }
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
}
