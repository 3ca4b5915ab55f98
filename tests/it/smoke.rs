//! The harness itself works: a public route forwards, a private one asks
//! for a key, an unknown path is 404.

use crate::support::client::get;
use crate::support::expect::Bench;
use crate::support::gateway::TestGateway;

#[tokio::test]
async fn public_private_and_unknown_routes() {
    let Bench { up, gw, .. } = Bench::build(TestGateway::builder()).await;

    let r = get(&gw.url("/v1/status?x=1"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().target, "/v1/status?x=1");

    let r = get(&gw.url("/v1/domains/x"), &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.code(), "missing_api_key");

    let r = get(&gw.url("/nowhere"), &[]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "route_not_found");
    assert_eq!(up.count(), 1);
}
