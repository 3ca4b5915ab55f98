//! TLS material for throwaway Redis servers and sentinels: a test CA made
//! with rcgen and one leaf for `localhost`/127.0.0.1 signed by it, written
//! to a temp dir as PEM files redis-server and the gateway both read.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// `ca.pem`, `server.pem` and `server.key` in a temp dir, removed on drop.
pub struct TlsFiles {
    _dir: tempfile::TempDir,
    /// The CA certificate: what `[store] tls_ca` names.
    pub ca: PathBuf,
    /// The server certificate (SANs `localhost`, 127.0.0.1).
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// A fresh CA and server certificate, shared by every server of a test.
    pub fn new() -> Arc<TlsFiles> {
        let dir = tempfile::tempdir().expect("temp dir for TLS files");
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "osir-gateway redis test CA");
        let ca = params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let files = TlsFiles {
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("server.pem"),
            key: dir.path().join("server.key"),
            _dir: dir,
        };
        std::fs::write(&files.ca, ca.pem()).unwrap();
        std::fs::write(&files.cert, leaf.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        Arc::new(files)
    }

    /// The redis-server options that serve TLS only, on `port`, with these
    /// files; replication (and a sentinel's links) over TLS too.
    pub fn server_args(&self, port: u16) -> Vec<String> {
        vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            self.cert.display().to_string(),
            "--tls-key-file".into(),
            self.key.display().to_string(),
            "--tls-ca-cert-file".into(),
            self.ca.display().to_string(),
            "--tls-auth-clients".into(),
            "no".into(),
            "--tls-replication".into(),
            "yes".into(),
        ]
    }

    /// The same, as lines of a config file (for sentinels).
    pub fn conf_lines(&self, port: u16) -> String {
        format!(
            "port 0\ntls-port {port}\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\ntls-auth-clients no\ntls-replication yes\n",
            self.cert.display(),
            self.key.display(),
            self.ca.display()
        )
    }

    /// The redis-cli options that reach such a server.
    pub fn cli_args(&self) -> Vec<String> {
        vec![
            "--tls".into(),
            "--cacert".into(),
            self.ca.display().to_string(),
        ]
    }
}
