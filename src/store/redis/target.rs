//! What to connect to ([`Target`]): a URL and the [`RedisOptions`] around it (the
//! password from the environment, the TLS roots) turned into redis-rs
//! clients, before anything is dialled. Every check that needs no network
//! is here, so a bad URL, an unset password variable or an unreadable CA
//! file fails at start with the same message for `run` and the `keys`
//! commands.

use std::sync::Arc;
use std::time::Duration;

use ::redis::cluster::ClusterClient;
use ::redis::{Client, ConnectionAddr, ConnectionInfo, ProtocolVersion, TlsCertificates};

use super::conn::Target;
use super::feed::read_deadline;
use super::sentinel::Sentinel;
use super::url::{
    is_cluster, is_sentinel, redact_url, redis_settings, scrub, userinfo, ClusterUrl,
};
use super::{parse_cluster_url, parse_sentinel_url, RedisOptions};
use crate::store::StoreError;

/// A parsed target and what messages may say about it.
pub(super) struct Plan {
    pub(super) target: Target,
    /// The URL without userinfo: the only form that appears in messages.
    pub(super) shown_url: String,
    /// The password (from the URL or the environment), scrubbed from every
    /// message that might echo it.
    pub(super) password: Option<String>,
    /// The ACL user, named in permission errors (`None`: `default`).
    pub(super) username: Option<String>,
    /// For a `rediss` URL, the TLS client the lookup pipe dials with (the
    /// same roots as redis-rs's: `[store] tls_ca`, else the built-in ones).
    pub(super) tls: Option<Arc<rustls::ClientConfig>>,
}

impl Plan {
    /// Parses `url` with `options`: reads the password variable and the CA
    /// file, builds the clients. Dials nothing.
    pub(super) fn new(url: &str, options: &RedisOptions) -> Result<Plan, StoreError> {
        let shown_url = redact_url(url);
        let bad =
            |e: String| StoreError::Unavailable(format!("invalid redis URL {shown_url}: {e}"));
        let env_password = match &options.password_env {
            Some(var) => Some(read_password(var)?),
            None => None,
        };
        let tls = url.starts_with("rediss");
        if tls {
            install_crypto_provider();
        }
        if url.contains("#insecure") {
            return Err(bad(
                "#insecure (no certificate check) is not supported; give the CA with [store] tls_ca"
                    .to_owned(),
            ));
        }
        if options.tls_ca.is_some() && !tls {
            return Err(StoreError::Unavailable(format!(
                "store.tls_ca is set but {shown_url} does not use TLS; use rediss://, rediss+sentinel:// or rediss+cluster://"
            )));
        }
        let ca = match &options.tls_ca {
            Some(path) => Some(read_ca(path)?),
            None => None,
        };
        let pipe_tls = if tls {
            Some(pipe_tls(ca.as_deref()).map_err(bad)?)
        } else {
            None
        };
        let clash = |has_password: bool| -> Result<(), StoreError> {
            match (&options.password_env, has_password) {
                (Some(var), true) => Err(StoreError::Unavailable(format!(
                    "the redis URL {shown_url} holds a password and store.password_env names {var}: give the password one way only"
                ))),
                _ => Ok(()),
            }
        };
        if is_sentinel(url) {
            let mut spec = parse_sentinel_url(url).map_err(|e| bad(e.to_string()))?;
            clash(spec.password.is_some())?;
            if env_password.is_some() {
                spec.password = env_password;
            }
            let sentinel = Sentinel::new(&spec, ca.as_deref()).map_err(bad)?;
            return Ok(Plan {
                target: Target::Sentinel(sentinel),
                shown_url,
                password: spec.password,
                username: spec.username,
                tls: pipe_tls,
            });
        }
        if is_cluster(url) {
            let mut spec = parse_cluster_url(url).map_err(|e| bad(e.to_string()))?;
            clash(spec.password.is_some())?;
            if env_password.is_some() {
                spec.password = env_password;
            }
            let client = cluster_client(&spec, ca.as_deref(), options.timeout, options.timeout)
                .map_err(bad)?;
            let feed = cluster_client(
                &spec,
                ca.as_deref(),
                options.timeout,
                read_deadline(options.timeout),
            )
            .map_err(bad)?;
            return Ok(Plan {
                target: Target::Cluster { client, feed },
                shown_url,
                password: spec.password,
                username: spec.username,
                tls: None,
            });
        }
        let info: ConnectionInfo =
            ::redis::IntoConnectionInfo::into_connection_info(url).map_err(|e| {
                // The driver's message may quote the URL: scrub its userinfo.
                let mut msg = e.to_string();
                if let Some(info) = userinfo(url) {
                    msg = info
                        .split(':')
                        .fold(msg.replace(info, "***"), |m, part| scrub(&m, Some(part)));
                }
                StoreError::Unavailable(format!(
                    "unsupported or invalid redis URL {shown_url}: {msg}"
                ))
            })?;
        let settings = info.redis_settings();
        clash(settings.password().is_some())?;
        let username = settings.username().map(str::to_owned);
        let password = env_password.or_else(|| settings.password().map(str::to_owned));
        let info = info.clone().set_redis_settings(redis_settings(
            settings.db(),
            username.as_deref(),
            password.as_deref(),
        ));
        let scrubbed = |e: ::redis::RedisError| bad(scrub(&e.to_string(), password.as_deref()));
        let client = match (ca, info.addr()) {
            (Some(ca), ConnectionAddr::TcpTls { .. }) => Client::build_with_tls(
                info,
                TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca),
                },
            )
            .map_err(scrubbed)?,
            _ => Client::open(info).map_err(scrubbed)?,
        };
        Ok(Plan {
            target: Target::Single(client),
            shown_url,
            password,
            username,
            tls: pipe_tls,
        })
    }
}

/// A cluster client for `spec`: connections within `connect` (half for
/// each seed, dialled together, so one that never answers does not use
/// up the budget), replies within `response`.
fn cluster_client(
    spec: &ClusterUrl,
    ca: Option<&[u8]>,
    connect: Duration,
    response: Duration,
) -> Result<ClusterClient, String> {
    let nodes = spec
        .nodes
        .iter()
        .map(|(h, p)| spec.node_info(h.clone(), *p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut builder = ClusterClient::builder(nodes)
        .connection_timeout(connect / 2)
        .response_timeout(response)
        .use_protocol(ProtocolVersion::RESP2);
    if let Some(ca) = ca {
        builder = builder.certs(TlsCertificates {
            client_tls: None,
            root_cert: Some(ca.to_vec()),
        });
    }
    builder
        .build()
        .map_err(|e| scrub(&e.to_string(), spec.password.as_deref()))
}

/// The password in the variable `var`: an unset or empty one is an error
/// naming the variable (never a value).
fn read_password(var: &str) -> Result<String, StoreError> {
    match std::env::var(var) {
        Ok(p) if !p.is_empty() => Ok(p),
        Ok(_) => Err(StoreError::Unavailable(format!(
            "store.password_env: the environment variable {var} is empty; it must hold the redis password"
        ))),
        Err(std::env::VarError::NotPresent) => Err(StoreError::Unavailable(format!(
            "store.password_env: the environment variable {var} is not set; it must hold the redis password"
        ))),
        Err(std::env::VarError::NotUnicode(_)) => Err(StoreError::Unavailable(format!(
            "store.password_env: the environment variable {var} is not valid UTF-8"
        ))),
    }
}

/// The lookup pipe's TLS client: trusts the certificates of `ca` (PEM, as
/// [`read_ca`] checked it), or the built-in (Mozilla) roots, as redis-rs
/// does for the other connections; `ring`, TLS 1.2 and 1.3, no client
/// certificate.
fn pipe_tls(ca: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(pem) => {
            for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("store.tls_ca: invalid PEM: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("store.tls_ca: unusable certificate: {e}"))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The CA bundle (PEM) at `path`, checked to hold at least one certificate.
fn read_ca(path: &std::path::Path) -> Result<Vec<u8>, StoreError> {
    use rustls_pki_types::pem::PemObject;
    let fail =
        |why: String| StoreError::Unavailable(format!("store.tls_ca: {}: {why}", path.display()));
    let pem = std::fs::read(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(fail(
            "no certificate in file (expected a PEM \"BEGIN CERTIFICATE\" block)".to_owned(),
        ));
    }
    Ok(pem)
}

/// Makes `ring` the process's rustls provider unless one is installed
/// already: redis-rs builds its TLS configs with the process default, and
/// this crate compiles rustls with `ring` only.
pub(super) fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn refused(url: &str, options: &RedisOptions) -> String {
        match Plan::new(url, options) {
            Ok(_) => panic!("{url} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn ring_is_the_process_provider_for_tls() {
        install_crypto_provider();
        let installed = rustls::crypto::CryptoProvider::get_default().unwrap();
        let ring = rustls::crypto::ring::default_provider();
        let names = |p: &rustls::crypto::CryptoProvider| {
            p.cipher_suites
                .iter()
                .map(|s| format!("{:?}", s.suite()))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(installed), names(&ring));
        // Installing again is harmless, and a TLS client can be built.
        install_crypto_provider();
        assert!(Plan::new(
            "rediss://127.0.0.1:6380/0",
            &RedisOptions::new(Duration::from_secs(1))
        )
        .is_ok());
    }

    #[test]
    fn what_cannot_work_is_refused_before_dialling() {
        let opts = RedisOptions::new(Duration::from_secs(1));
        let with_env = |var: &str| RedisOptions {
            password_env: Some(var.to_owned()),
            ..opts.clone()
        };
        let var = "OSIR_UNIT_TEST_SURELY_UNSET_VARIABLE_5c1";
        let err = refused("redis://127.0.0.1/0", &with_env(var));
        assert!(err.contains(var) && err.contains("not set"), "{err}");
        let err = refused("rediss://127.0.0.1/0#insecure", &opts);
        assert!(err.contains("#insecure"), "{err}");
        let ca = |path: &str| RedisOptions {
            tls_ca: Some(path.into()),
            ..opts.clone()
        };
        let err = refused("redis://127.0.0.1/0", &ca("/nonexistent/ca.pem"));
        assert!(err.contains("does not use TLS"), "{err}");
        let err = refused("rediss://127.0.0.1/0", &ca("/nonexistent/ca.pem"));
        assert!(
            err.contains("store.tls_ca: /nonexistent/ca.pem: cannot read"),
            "{err}"
        );
        for url in [
            "rediss+sentinel://127.0.0.1/m",
            "rediss+cluster://127.0.0.1:7000",
            "rediss://127.0.0.1:6380/0",
            "redis+sentinel://127.0.0.1/m",
        ] {
            assert!(Plan::new(url, &opts).is_ok(), "{url}");
        }
        let plan = Plan::new("rediss://gw:s3cret@127.0.0.1:6380/2", &opts).unwrap();
        assert_eq!(plan.shown_url, "rediss://127.0.0.1:6380/2");
        assert_eq!(plan.username.as_deref(), Some("gw"));
        assert_eq!(plan.password.as_deref(), Some("s3cret"));
    }
}
