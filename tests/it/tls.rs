//! The TLS listener: HTTP/1.1 and HTTP/2 (by ALPN) through a real TLS
//! client, certificate hot reload (new handshakes only), a refused bad
//! certificate, the handshake timeout, and `run` refusing a missing
//! certificate.
//!
//! Certificates are made at test time with rcgen: one test CA the client
//! trusts, and leaf certificates for `localhost`/127.0.0.1 signed by it, so
//! two leaves are both trusted and tell apart by their DER.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use osir_gateway::config::Config;
use osir_gateway::store::{memory::MemoryStore, Store};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::support::gateway::{config, TestGateway};
use crate::support::upstream::RecordingUpstream;

/// A test CA that signs leaf certificates for localhost and 127.0.0.1.
struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A PEM certificate and key, and the certificate's DER to compare with
/// what a client was shown.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl TestCa {
    fn new() -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "osir-gateway test CA");
        let cert = params.self_signed(&key).unwrap();
        TestCa { cert, key }
    }

    fn leaf(&self) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// A TLS client trusting only this CA, offering `alpn` in that order.
    fn connector(&self, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.der().clone()).unwrap();
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
    }
}

/// The certificate and key files the gateway reads, in a temp dir that
/// also holds the config file (for reload through `app::reload::reload`).
struct TlsDir {
    dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

impl TlsDir {
    fn new(leaf: &Leaf) -> TlsDir {
        let dir = tempfile::tempdir().unwrap();
        let t = TlsDir {
            cert: dir.path().join("gateway.pem"),
            key: dir.path().join("gateway.key"),
            dir,
        };
        t.install(leaf);
        t
    }

    /// Writes `leaf` over the certificate and key files (a renewal in place).
    fn install(&self, leaf: &Leaf) {
        std::fs::write(&self.cert, &leaf.cert_pem).unwrap();
        std::fs::write(&self.key, &leaf.key_pem).unwrap();
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("gateway.toml")
    }

    /// The shared test config plus `[server.tls]` for these files, written
    /// to disk and loaded from there, as `run` would.
    fn write_config(&self, up: &str, handshake_timeout: &str) -> Config {
        let extra = format!(
            "[server.tls]\nlisten = \"127.0.0.1:3\"\ncert = {:?}\nkey = {:?}\nhandshake_timeout = \"{handshake_timeout}\"\n",
            self.cert.display().to_string(),
            self.key.display().to_string(),
        );
        std::fs::write(self.config_path(), config(up, None, &extra)).unwrap();
        Config::load(&self.config_path()).unwrap_or_else(|e| panic!("test config invalid:\n{e}"))
    }
}

/// One client connection over TLS, HTTP/1.1 or HTTP/2 as ALPN decided.
struct TlsClient {
    peer_cert: CertificateDer<'static>,
    sender: Sender,
    host: String,
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

struct TlsReply {
    status: StatusCode,
    version: Version,
    body: Bytes,
}

impl TlsClient {
    async fn connect(addr: SocketAddr, connector: &tokio_rustls::TlsConnector) -> TlsClient {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let tls: TlsStream<TcpStream> =
            tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
                .await
                .expect("TLS handshake timed out")
                .expect("TLS handshake failed");
        let (_, session) = tls.get_ref();
        let peer_cert = session
            .peer_certificates()
            .expect("the server sent no certificate")[0]
            .clone();
        let h2 = session.alpn_protocol() == Some(b"h2".as_slice());
        let io = TokioIo::new(tls);
        let sender = if h2 {
            let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
            tokio::spawn(conn);
            Sender::H2(sender)
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            Sender::H1(sender)
        };
        TlsClient {
            peer_cert,
            sender,
            host: format!("localhost:{}", addr.port()),
        }
    }

    async fn get(&mut self, path: &str) -> TlsReply {
        let send = async {
            match &mut self.sender {
                Sender::H1(s) => {
                    let req = Request::get(path)
                        .header("host", &self.host)
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    s.ready().await?;
                    s.send_request(req).await
                }
                Sender::H2(s) => {
                    let req = Request::get(format!("https://{}{path}", self.host))
                        .version(Version::HTTP_2)
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    s.ready().await?;
                    s.send_request(req).await
                }
            }
        };
        let resp = tokio::time::timeout(Duration::from_secs(10), send)
            .await
            .expect("request timed out")
            .expect("request failed");
        let status = resp.status();
        let version = resp.version();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        TlsReply {
            status,
            version,
            body,
        }
    }
}

async fn start(up: &RecordingUpstream, dir: &TlsDir, handshake_timeout: &str) -> TestGateway {
    let cfg = dir.write_config(&up.url(), handshake_timeout);
    TestGateway::start_tls(cfg, Store::new(MemoryStore::new())).await
}

#[tokio::test]
async fn http1_and_http2_over_tls_forward_as_https() {
    let up = RecordingUpstream::start("up").await;
    let ca = TestCa::new();
    let leaf = ca.leaf();
    let dir = TlsDir::new(&leaf);
    let gw = start(&up, &dir, "10s").await;
    let addr = gw.tls.unwrap();

    let mut c = TlsClient::connect(addr, &ca.connector(&[b"http/1.1"])).await;
    assert_eq!(c.peer_cert, leaf.der);
    let r = c.get("/v1/status?via=h1").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.version, Version::HTTP_11);
    let seen = up.last();
    assert_eq!(seen.target, "/v1/status?via=h1");
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));

    let mut c2 = TlsClient::connect(addr, &ca.connector(&[b"h2", b"http/1.1"])).await;
    let r = c2.get("/v1/status?via=h2").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.version, Version::HTTP_2, "ALPN h2 must give HTTP/2");
    let seen = up.last();
    assert_eq!(seen.target, "/v1/status?via=h2");
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));

    // Both connections count under their own listener label, and stop
    // counting once closed.
    let open = gw.gw.metrics.open_connections.with_label_values(&["tls"]);
    assert_eq!(open.get(), 2);
    drop(c);
    drop(c2);
    let closed = crate::support::eventually(Duration::from_secs(5), || open.get() == 0).await;
    assert!(
        closed,
        "open_connections{{listener=\"tls\"}} stayed at {}",
        open.get()
    );

    // The plain listener still says http.
    let r = crate::support::client::get(&gw.url("/v1/status"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.last().header("x-forwarded-proto"), Some("http"));
}

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
    let generation = osir_gateway::app::run::reload(&gw.gw, &dir.config_path())
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
    let err = osir_gateway::app::run::reload(&gw.gw, &dir.config_path())
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
    let err = osir_gateway::app::run::reload(&gw.gw, &dir.config_path())
        .expect_err("non-PEM certificate must be refused");
    assert!(err.contains("no certificate"), "{err}");
    assert!(err.contains(&dir.cert.display().to_string()), "{err}");
    assert_eq!(failures.get(), 2);

    let mut c = TlsClient::connect(addr, &connector).await;
    assert_eq!(c.peer_cert, good.der, "the old certificate keeps serving");
    assert_eq!(c.get("/v1/status").await.status, 200);
    assert_eq!(gw.gw.snapshot.load().generation, 1);
}

/// Reads until the server closes the connection (EOF or reset), or
/// `deadline` passes; returns whether it closed.
async fn closed_by_server(stream: &mut TcpStream, deadline: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let end = tokio::time::Instant::now() + deadline;
    loop {
        match tokio::time::timeout_at(end, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn a_silent_client_is_closed_after_the_handshake_timeout() {
    let up = RecordingUpstream::start("up").await;
    let ca = TestCa::new();
    let dir = TlsDir::new(&ca.leaf());
    let gw = start(&up, &dir, "300ms").await;
    let open = gw.gw.metrics.open_connections.with_label_values(&["tls"]);

    let mut silent = TcpStream::connect(gw.tls.unwrap()).await.unwrap();
    assert!(
        closed_by_server(&mut silent, Duration::from_secs(5)).await,
        "a client that never starts its handshake must be closed"
    );
    let released = crate::support::eventually(Duration::from_secs(5), || open.get() == 0).await;
    assert!(released, "the stalled connection is still counted as open");
}

#[tokio::test]
async fn a_stalled_handshake_does_not_hold_up_other_clients() {
    let up = RecordingUpstream::start("up").await;
    let ca = TestCa::new();
    let leaf = ca.leaf();
    let dir = TlsDir::new(&leaf);
    // Long enough that the stalled client is still stalled while the
    // second one is served.
    let gw = start(&up, &dir, "60s").await;
    let addr = gw.tls.unwrap();

    let mut stalled = Vec::new();
    for _ in 0..3 {
        stalled.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut c = TlsClient::connect(addr, &ca.connector(&[b"h2", b"http/1.1"])).await;
    assert_eq!(c.get("/v1/status").await.status, 200);
    assert_eq!(c.peer_cert, leaf.der);
    drop(stalled);
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Runs `osir-gateway -c config run`, expecting it to exit on its own; a
/// gateway that starts serving instead is killed after a deadline.
fn run_binary(config: &Path) -> (Option<i32>, String) {
    let log = config.with_extension("stderr");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_osir-gateway"))
        .arg("-c")
        .arg(config)
        .arg("run")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let end = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the gateway did not exit: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code(), std::fs::read_to_string(&log).unwrap())
}

#[test]
fn run_refuses_to_start_without_a_usable_certificate() {
    let ca = TestCa::new();
    let (leaf, other) = (ca.leaf(), ca.leaf());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateway.pem"), &leaf.cert_pem).unwrap();
    std::fs::write(dir.path().join("gateway.key"), &leaf.key_pem).unwrap();
    std::fs::write(dir.path().join("other.key"), &other.key_pem).unwrap();
    let write = |cert: &str, key: &str| {
        let text = format!(
            r#"[server]
listen = "{}"
[server.tls]
listen = "{}"
cert = "{cert}"
key = "{key}"
[admin]
listen = "{}"
[store]
backend = "file"
path = "keys.json"
[upstreams.a]
url = "http://127.0.0.1:7001"
[[routes]]
prefix = "/v1/a"
upstream = "a"
resource = "a"
"#,
            free_addr(),
            free_addr(),
            free_addr(),
        );
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, text).unwrap();
        path
    };

    // `check` does not open certificate files; `run` must refuse to start.
    let (code, stderr) = run_binary(&write("missing.pem", "gateway.key"));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("server.tls.cert"), "{stderr}");
    assert!(
        stderr.contains(&dir.path().join("missing.pem").display().to_string()),
        "{stderr}"
    );

    let (code, stderr) = run_binary(&write("gateway.pem", "other.key"));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("does not match"), "{stderr}");
    assert!(
        stderr.contains(&dir.path().join("other.key").display().to_string()),
        "{stderr}"
    );
}
