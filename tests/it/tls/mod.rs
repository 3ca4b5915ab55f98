//! The TLS listener: HTTP/1.1 and HTTP/2 (by ALPN) through a real TLS
//! client, certificate hot reload (new handshakes only), a refused bad
//! certificate, the handshake timeout, and `run` refusing a missing
//! certificate.
//!
//! Certificates are made at test time with rcgen: one test CA the client
//! trusts, and leaf certificates for `localhost`/127.0.0.1 signed by it, so
//! two leaves are both trusted and tell apart by their DER.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use osir_gateway::config::Config;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::support::gateway::{config, TestGateway};
use crate::support::upstream::RecordingUpstream;

mod listener;
mod reload;
mod run;

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
/// also holds the config file (for reload through `run::reload`).
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
    TestGateway::builder().config(cfg).tls().start().await
}
