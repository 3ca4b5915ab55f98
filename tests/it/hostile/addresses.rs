//! Hostile input, §3 client addresses (see the list in `hostile`).

use crate::support::expect::Bench;
use crate::support::gateway::TestGateway;

use super::{check, Want};

/// Asserts the gateway took the client to be `client`: a key allowed only
/// there passes, one allowed only at `not` gets 403 `ip_not_allowed`.
async fn client_is(b: &Bench, name: &str, headers: &[&[u8]], client: &str, not: &str) {
    let (inside, id) = b.secret(&["domains:read"], &[client]).await;
    let (outside, _) = b.secret(&["domains:read"], &[not]).await;
    for (key, want) in [
        (&outside, Want::Refused(403, "ip_not_allowed")),
        (&inside, Want::Pass),
    ] {
        let auth = format!("Authorization: Bearer {key}");
        let mut h: Vec<&[u8]> = vec![auth.as_bytes()];
        h.extend_from_slice(headers);
        let before = b.up.count();
        let r = b.raw("/v1/domains/x", &h).await;
        let id = if matches!(want, Want::Pass) {
            id.as_str()
        } else {
            ""
        };
        check(name, want, &r, &b.up, before, id);
    }
}

#[tokio::test]
async fn spoofed_client_addresses_from_an_untrusted_peer() {
    let b = Bench::build(TestGateway::builder()).await;
    let spoof = "203.0.113.7";
    let cases: Vec<String> = vec![
        format!("X-Forwarded-For: {spoof}"),
        format!("X-Forwarded-For: {spoof}, 198.51.100.1"),
        format!("X-Forwarded-For: {spoof}\r\nX-Forwarded-For: {spoof}"),
        format!("x-forwarded-for: ::ffff:{spoof}"),
        "X-Forwarded-For: 2001:db8::1".to_owned(),
        format!("X-Real-IP: {spoof}"),
        format!("Forwarded: for={spoof}"),
        format!("Forwarded: for=\"[2001:db8::1]\";proto=https, for={spoof}"),
        format!("True-Client-IP: {spoof}"),
        format!("CF-Connecting-IP: {spoof}"),
        format!("X-Client-IP: {spoof}"),
        format!("X-Originating-IP: {spoof}"),
        format!("Client-IP: {spoof}"),
        format!("X-Cluster-Client-IP: {spoof}"),
        format!("Fastly-Client-IP: {spoof}"),
        format!("X-Forwarded: for={spoof}"),
        format!("X_Forwarded_For: {spoof}"),
    ];
    for h in &cases {
        client_is(&b, h, &[h.as_bytes()], "127.0.0.1", "203.0.113.0/24").await;
    }
    let seen = b.up.last();
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
}

#[tokio::test]
async fn odd_forwarded_for_hops_from_a_trusted_proxy() {
    let b = Bench::build(
        TestGateway::builder()
            .extra("[auth]\ntrusted_proxies = [\"127.0.0.1/32\", \"10.0.0.0/8\"]"),
    )
    .await;
    // (X-Forwarded-For, the client it must name, an address it must not).
    let thousand = format!("{}203.0.113.7", "198.51.100.1, ".repeat(1000));
    let cases: Vec<(String, &str, &str)> = vec![
        // Hops that are not plain addresses stop the walk at the peer.
        ("010.0.0.1".into(), "127.0.0.1", "8.0.0.0/8"),
        ("203.000.113.007".into(), "127.0.0.1", "203.0.113.0/24"),
        ("0xcb007107".into(), "127.0.0.1", "203.0.113.0/24"),
        ("0xcb.0.0x71.07".into(), "127.0.0.1", "203.0.113.0/24"),
        ("3405803783".into(), "127.0.0.1", "203.0.113.0/24"),
        ("203.7".into(), "127.0.0.1", "203.0.0.0/16"),
        ("203.0.113.7:8080".into(), "127.0.0.1", "203.0.113.0/24"),
        ("[2001:db8::1]:443".into(), "127.0.0.1", "2001:db8::/32"),
        ("203.0.113.7%eth0".into(), "127.0.0.1", "203.0.113.0/24"),
        ("203.0.113.7/32".into(), "127.0.0.1", "203.0.113.0/24"),
        ("203.0.113.7;evil".into(), "127.0.0.1", "203.0.113.0/24"),
        ("_hidden".into(), "127.0.0.1", "203.0.113.0/24"),
        (
            "203.0.113.7 198.51.100.1".into(),
            "127.0.0.1",
            "198.51.100.0/24",
        ),
        // Whitespace around a hop is fine; case of hex digits too.
        ("\t203.0.113.7\t".into(), "203.0.113.7", "127.0.0.1"),
        ("  203.0.113.7  ".into(), "203.0.113.7", "127.0.0.1"),
        ("2001:DB8::A".into(), "2001:db8::a", "127.0.0.1"),
        // Mapped addresses are IPv4, also when trusted.
        ("::ffff:203.0.113.7".into(), "203.0.113.0/24", "::/0"),
        ("::FFFF:CB00:7107".into(), "203.0.113.7", "::/0"),
        (
            "203.0.113.7, ::ffff:10.1.2.3".into(),
            "203.0.113.7",
            "10.0.0.0/8",
        ),
        // Trusted hops on the right are skipped; the client is the first
        // untrusted one, however long the list.
        (
            "203.0.113.7, 10.1.1.1, 10.2.2.2".into(),
            "203.0.113.7",
            "10.0.0.0/8",
        ),
        (thousand, "203.0.113.7", "198.51.100.1"),
        // Whatever the client wrote left of a proxy's hop is ignored.
        ("127.0.0.1, 203.0.113.7".into(), "203.0.113.7", "127.0.0.1"),
    ];
    for (xff, client, not) in &cases {
        let h = format!("X-Forwarded-For: {xff}");
        let name = format!("XFF {}", &xff[..xff.len().min(60)]);
        client_is(&b, &name, &[h.as_bytes()], client, not).await;
    }
}
