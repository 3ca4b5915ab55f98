//! Certificate hot reload: new handshakes only, and a bad certificate
//! refused.

use crate::support::upstream::RecordingUpstream;

use super::{start, TestCa, TlsClient, TlsDir};

#[tokio::test]
async fn reload_gives_new_handshakes_the_new_certificate_and_keeps_open_connections() {
    let up = RecordingUpstream::start("up").await;
    let ca = TestCa::new();
    let (first, second) = (ca.leaf(), ca.leaf());
    let dir = TlsDir::new(&first);
    let gw = start(&up, &dir, "10s").await;
    let addr = gw.tls.unwrap();
    let connector = ca.connector(&[b"h2", b"http/1.1"]);
    let h1 = ca.connector(&[b"http/1.1"]);

    let mut before_h2 = TlsClient::connect(addr, &connector).await;
    let mut before_h1 = TlsClient::connect(addr, &h1).await;
    assert_eq!(before_h2.peer_cert, first.der);
    assert_eq!(before_h2.get("/v1/status").await.status, 200);
    assert_eq!(before_h1.get("/v1/status").await.status, 200);

    dir.install(&second);
    let generation = gw
        .reloader(&dir.config_path())
        .reload()
        .expect("reload with a renewed certificate");
    assert_eq!(generation, 2);

    let mut after = TlsClient::connect(addr, &connector).await;
    assert_eq!(
        after.peer_cert, second.der,
        "a new handshake must present the renewed certificate"
    );
    assert_eq!(after.get("/v1/status").await.status, 200);

    // Connections from before the reload carry on, on their old session.
    assert_eq!(before_h2.get("/v1/status?again").await.status, 200);
    assert_eq!(before_h1.get("/v1/status?again").await.status, 200);
    assert_eq!(before_h2.peer_cert, first.der);
}

#[tokio::test]
async fn a_bad_certificate_refuses_the_reload_and_the_old_one_keeps_serving() {
    let up = RecordingUpstream::start("up").await;
    let ca = TestCa::new();
    let (good, other) = (ca.leaf(), ca.leaf());
    let dir = TlsDir::new(&good);
    let gw = start(&up, &dir, "10s").await;
    let addr = gw.tls.unwrap();
    let connector = ca.connector(&[b"h2", b"http/1.1"]);
    let failures = gw.gw.metrics.config_reloads.with_label_values(&["failure"]);

    // A renewed certificate with the wrong key (a half-finished renewal).
    std::fs::write(&dir.cert, &other.cert_pem).unwrap();
    let err = gw
        .reloader(&dir.config_path())
        .reload()
        .expect_err("mismatched key must be refused");
    assert!(err.contains("does not match"), "{err}");
    assert!(
        err.contains(&dir.key.display().to_string()),
        "the error must name the key file: {err}"
    );
    assert_eq!(failures.get(), 1);
    assert_eq!(
        gw.gw.snapshot.load().generation,
        1,
        "the old config keeps serving"
    );

    // A certificate file that is not PEM at all.
    std::fs::write(&dir.cert, "garbage\n").unwrap();
    let err = gw
        .reloader(&dir.config_path())
        .reload()
        .expect_err("non-PEM certificate must be refused");
    assert!(err.contains("no certificate"), "{err}");
    assert!(err.contains(&dir.cert.display().to_string()), "{err}");
    assert_eq!(failures.get(), 2);

    let mut c = TlsClient::connect(addr, &connector).await;
    assert_eq!(c.peer_cert, good.der, "the old certificate keeps serving");
    assert_eq!(c.get("/v1/status").await.status, 200);
    assert_eq!(gw.gw.snapshot.load().generation, 1);
}
