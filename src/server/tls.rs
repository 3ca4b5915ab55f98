//! TLS on the public listener: loading the certificate, and swapping it
//! without a restart.
//!
//! Certificates expire and are renewed (ACME, an internal CA) while the
//! gateway keeps serving. [`TlsAcceptor`] holds the current rustls config in
//! an [`ArcSwap`]: each handshake loads it once, so a reload makes every
//! *new* handshake present the new certificate, while connections that
//! already finished their handshake keep their session and carry on
//! untouched. A certificate that cannot be loaded is refused and the old one
//! keeps serving; [`crate::app::reload::Reloader::reload`] makes that refuse the whole config
//! reload, so certificate and config change together or not at all.
//!
//! The handshake runs under `server.tls.handshake_timeout` and in the
//! connection's own task (see [`crate::server`]), so a client that connects
//! and stalls holds one connection slot for a bounded time and never blocks
//! accepting others. ALPN offers `h2` and `http/1.1`; the connection builder
//! then serves whichever protocol the client speaks.
//!
//! The crypto provider (ring) is passed explicitly: nothing here depends on a
//! process-wide default provider being installed.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::config::TlsConfig;

/// Accepts TLS connections with the newest successfully loaded certificate.
pub struct TlsAcceptor {
    /// Swapped whole by [`TlsAcceptor::reload`]; each handshake loads it once,
    /// so the certificate and the handshake timeout always belong together.
    current: ArcSwap<Loaded>,
}

/// One successfully loaded `[server.tls]`.
struct Loaded {
    rustls: Arc<ServerConfig>,
    handshake_timeout: Duration,
}

impl crate::state::CertificateReload for Arc<TlsAcceptor> {
    fn reload(&self, cfg: &TlsConfig) -> Result<(), String> {
        TlsAcceptor::reload(self, cfg)
    }
}

impl TlsAcceptor {
    /// Loads the certificate and key named by `cfg`; the error names the
    /// file and what is wrong with it, for the operator to fix at startup.
    pub fn new(cfg: &TlsConfig) -> Result<TlsAcceptor, String> {
        Ok(TlsAcceptor {
            current: ArcSwap::from_pointee(Loaded {
                rustls: load_server_config(cfg)?,
                handshake_timeout: cfg.handshake_timeout,
            }),
        })
    }

    /// Loads `cfg`'s certificate and key again (the files may have been
    /// renewed in place, or the paths changed) and uses them for new
    /// handshakes. On error nothing changes: the old certificate keeps
    /// serving. Open connections are never affected.
    pub fn reload(&self, cfg: &TlsConfig) -> Result<(), String> {
        let rustls = load_server_config(cfg)?;
        self.current.store(Arc::new(Loaded {
            rustls,
            handshake_timeout: cfg.handshake_timeout,
        }));
        Ok(())
    }

    /// Runs the server side of the handshake on `stream`, giving up after
    /// the handshake timeout (`io::ErrorKind::TimedOut`) so a stalled client
    /// cannot hold its connection slot for long.
    pub async fn accept(&self, stream: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        let loaded = self.current.load_full();
        let acceptor = tokio_rustls::TlsAcceptor::from(loaded.rustls.clone());
        match tokio::time::timeout(loaded.handshake_timeout, acceptor.accept(stream)).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no TLS handshake within {:?} (server.tls.handshake_timeout)",
                    loaded.handshake_timeout
                ),
            )),
        }
    }
}

/// Builds the rustls server config for `cfg`: the PEM certificate chain
/// (leaf first) and private key (PKCS#8, PKCS#1 RSA or SEC1 EC), ALPN `h2`
/// and `http/1.1`. Errors name the field, the file and the problem, because
/// an operator reads them when the gateway refuses to start or reload.
pub fn load_server_config(cfg: &TlsConfig) -> Result<Arc<ServerConfig>, String> {
    let certs = read_certs(&cfg.cert)?;
    let key = read_key(&cfg.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // Checked on its own first so a bad key is blamed on the key file, not
    // on the certificate/key pair.
    if let Err(e) = provider.key_provider.load_private_key(key.clone_key()) {
        return Err(format!(
            "server.tls.key: {}: unusable private key: {e}",
            cfg.key.display()
        ));
    }
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("server.tls: no usable TLS protocol versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => format!(
                "server.tls.key: {}: private key does not match the certificate in {}",
                cfg.key.display(),
                cfg.cert.display()
            ),
            e => format!(
                "server.tls.cert: {}: unusable certificate: {e}",
                cfg.cert.display()
            ),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_file(field: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path)
        .map_err(|e| format!("server.tls.{field}: cannot read {}: {e}", path.display()))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_file("cert", path)?;
    let certs = <CertificateDer<'static> as rustls_pki_types::pem::PemObject>::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("server.tls.cert: {}: invalid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "server.tls.cert: {}: no certificate in file (expected a PEM \"BEGIN CERTIFICATE\" block)",
            path.display()
        ));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = read_file("key", path)?;
    match <PrivateKeyDer<'static> as rustls_pki_types::pem::PemObject>::from_pem_slice(&pem) {
        Ok(key) => Ok(key),
        Err(rustls_pki_types::pem::Error::NoItemsFound) => Err(format!(
            "server.tls.key: {}: no private key in file (expected a PEM \"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\" block)",
            path.display()
        )),
        Err(e) => Err(format!(
            "server.tls.key: {}: invalid PEM: {e}",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Files {
            Files {
                dir: tempfile::tempdir().expect("tempdir"),
            }
        }

        fn write(&self, name: &str, text: &str) -> std::path::PathBuf {
            let p = self.dir.path().join(name);
            std::fs::write(&p, text).expect("write");
            p
        }

        fn cfg(&self, cert: &str, key: &str) -> TlsConfig {
            TlsConfig {
                listen: "127.0.0.1:0".parse().expect("addr"),
                cert: self.dir.path().join(cert),
                key: self.dir.path().join(key),
                handshake_timeout: Duration::from_secs(1),
            }
        }
    }

    fn self_signed() -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
        (c.cert.pem(), c.key_pair.serialize_pem())
    }

    #[test]
    fn loads_a_matching_pair_with_alpn() {
        let f = Files::new();
        let (cert, key) = self_signed();
        f.write("c.pem", &cert);
        f.write("k.pem", &key);
        let sc = load_server_config(&f.cfg("c.pem", "k.pem")).expect("loads");
        assert_eq!(
            sc.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let f = Files::new();
        let (cert, key) = self_signed();
        let (_, other_key) = self_signed();
        f.write("c.pem", &cert);
        f.write("k.pem", &key);
        f.write("other.pem", &other_key);
        f.write("empty.pem", "not pem at all\n");

        let err = |c: &str, k: &str| load_server_config(&f.cfg(c, k)).expect_err("should fail");

        let e = err("missing.pem", "k.pem");
        assert!(e.starts_with("server.tls.cert: cannot read "), "{e}");
        assert!(e.contains("missing.pem"), "{e}");

        let e = err("c.pem", "missing.pem");
        assert!(e.starts_with("server.tls.key: cannot read "), "{e}");

        let e = err("empty.pem", "k.pem");
        assert!(e.contains("empty.pem: no certificate in file"), "{e}");

        // A key file holding only a certificate has no key.
        let e = err("c.pem", "c.pem");
        assert!(e.contains("c.pem: no private key in file"), "{e}");

        let e = err("c.pem", "other.pem");
        assert!(
            e.contains("other.pem: private key does not match the certificate in"),
            "{e}"
        );
        assert!(e.contains("c.pem"), "{e}");
    }

    #[test]
    fn failed_reload_keeps_the_old_certificate() {
        let f = Files::new();
        let (cert, key) = self_signed();
        f.write("c.pem", &cert);
        f.write("k.pem", &key);
        let acceptor = TlsAcceptor::new(&f.cfg("c.pem", "k.pem")).expect("loads");
        let before = acceptor.current.load_full();
        assert!(acceptor.reload(&f.cfg("c.pem", "missing.pem")).is_err());
        assert!(Arc::ptr_eq(&before, &acceptor.current.load_full()));
        acceptor.reload(&f.cfg("c.pem", "k.pem")).expect("reloads");
        assert!(!Arc::ptr_eq(&before, &acceptor.current.load_full()));
    }
}
