//! Sentinel, through redis-rs: the sentinels are asked for the master
//! (`SENTINEL MASTERS`, several at once), and the master they name must
//! answer `ROLE` as a master before a client for it is handed out. This
//! file only builds that client and bounds each look-up by the timeout;
//! following the master when it moves is the connection's job
//! (`conn.rs`). Nothing here runs for a plain or cluster URL.

use std::time::Duration;

use ::redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use ::redis::{Client, TlsCertificates, TlsMode, Value};

use super::url::{scrub, SentinelUrl};

/// The sentinels of one master set, and how to reach the master they name.
pub(super) struct Sentinel {
    /// redis-rs keeps a connection to each sentinel; one look-up at a time.
    client: tokio::sync::Mutex<SentinelClient>,
    /// Scrubbed from every message.
    password: Option<String>,
}

impl Sentinel {
    /// Builds the sentinel client for `spec` (nothing is dialled yet). With
    /// `rediss+sentinel://`, sentinels and master are reached over TLS and
    /// checked against `ca` (the built-in public roots when `None`).
    pub(super) fn new(spec: &SentinelUrl, ca: Option<&[u8]>) -> Result<Sentinel, String> {
        let addrs = spec
            .sentinels
            .iter()
            .map(|(h, p)| spec.sentinel_addr(h.clone(), *p));
        let mut builder =
            SentinelClientBuilder::new(addrs, spec.master.clone(), SentinelServerType::Master)
                .map_err(|e| e.to_string())?
                .set_client_to_redis_db(spec.db)
                .set_client_to_redis_protocol(::redis::ProtocolVersion::RESP2);
        if let Some(user) = &spec.username {
            builder = builder.set_client_to_redis_username(user);
        }
        if let Some(pass) = &spec.password {
            builder = builder.set_client_to_redis_password(pass);
        }
        if spec.tls {
            builder = builder.set_client_to_redis_tls_mode(TlsMode::Secure);
            if let Some(ca) = ca {
                let certs = || TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.to_vec()),
                };
                builder = builder
                    .set_client_to_redis_certificates(certs())
                    .set_client_to_sentinel_certificates(certs());
            }
        }
        let client = builder
            .build()
            .map_err(|e| scrub(&e.to_string(), spec.password.as_deref()))?;
        Ok(Sentinel {
            client: tokio::sync::Mutex::new(client),
            password: spec.password.clone(),
        })
    }

    /// A client for the current master, checked with `ROLE`; the whole
    /// look-up within `timeout`.
    pub(super) async fn master(&self, timeout: Duration) -> Result<Client, String> {
        let ask = async { self.client.lock().await.async_get_client().await };
        match tokio::time::timeout(timeout, ask).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(scrub(&e.to_string(), self.password.as_deref())),
            Err(_) => Err(format!(
                "the sentinels named no reachable master within {timeout:?}"
            )),
        }
    }
}

/// Whether a `ROLE` reply says "master".
pub(super) fn is_master_role(v: &Value) -> bool {
    let first = match v {
        Value::Array(items) => items.first(),
        _ => None,
    };
    matches!(first, Some(Value::BulkString(b)) if b == b"master")
        || matches!(first, Some(Value::SimpleString(s)) if s == "master")
}
