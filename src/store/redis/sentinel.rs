//! Sentinel: asking the sentinels for the master, checking it really is
//! one, and moving every connection when it changes. A failing command
//! kicks a look-up (at most every [`KICK_EVERY`]); the watcher also looks
//! every second. Nothing here runs for a plain or cluster URL.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ::redis::{Client, ConnectionAddr, ConnectionInfo, RedisConnectionInfo, Value};

use super::conn::open_conn;
use super::url::{scrub, SentinelUrl};
use super::RedisStore;

/// The least time between two master look-ups a failing command starts, so
/// a burst of failing lookups asks the sentinels once, not once each.
const KICK_EVERY: Duration = Duration::from_millis(200);

impl RedisStore {
    /// With Sentinel, a command that could not reach the master (or reached
    /// a demoted one) starts a look-up of the master in the background, at
    /// most once per [`KICK_EVERY`]; the watcher also looks every second.
    pub(super) fn kick_refresh(&self) {
        if self.inner.sentinel.is_none() {
            return;
        }
        {
            let mut last = self.inner.last_kick.lock();
            if last.is_some_and(|t| t.elapsed() < KICK_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let store = self.clone();
        tokio::spawn(async move { store.refresh(false).await });
    }

    /// Looks the master up again through the sentinels and, if it moved (or
    /// `rebuild` asks for a fresh connection anyway), points every new
    /// command at it. Without Sentinel, `rebuild` just replaces the
    /// connection. Failures are logged; the next failure tries again.
    pub(super) async fn refresh(&self, rebuild: bool) {
        let Some(spec) = &self.inner.sentinel else {
            if rebuild {
                self.rebuild_connection().await;
            }
            return;
        };
        let _one = self.inner.refreshing.lock().await;
        let client = match resolve_master(spec, self.inner.timeout).await {
            Ok(client) => client,
            Err(e) => {
                tracing::debug!(
                    url = %self.inner.shown_url,
                    "cannot find the redis master through the sentinels: {}",
                    scrub(&e, self.inner.password.as_deref())
                );
                return;
            }
        };
        let addr = client.get_connection_info().addr.to_string();
        let moved = addr
            != self
                .inner
                .client
                .read()
                .get_connection_info()
                .addr
                .to_string();
        if !moved && !rebuild {
            return;
        }
        let fresh = tokio::time::timeout(
            self.inner.timeout,
            open_conn(&client, None, &self.inner.config),
        )
        .await;
        if let Ok(Ok(conn)) = fresh {
            *self.inner.client.write() = client;
            *self.inner.conn.write() = conn;
            if moved {
                self.inner.generation.fetch_add(1, Ordering::SeqCst);
                tracing::warn!(url = %self.inner.shown_url, master = %addr, "the redis master moved; following it");
            } else {
                tracing::warn!(url = %self.inner.shown_url, "replaced an unresponsive redis connection");
            }
        }
    }

    pub(super) fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::SeqCst)
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

/// Asks each sentinel in turn for the master of `spec.master` and returns a
/// client for the first answer that really is a master (a sentinel may
/// still name the old one for a moment after a failover).
pub(super) async fn resolve_master(
    spec: &SentinelUrl,
    timeout: Duration,
) -> Result<Client, String> {
    let mut why = Vec::new();
    for (host, port) in &spec.sentinels {
        match ask_sentinel(host, *port, &spec.master, timeout).await {
            Ok((mhost, mport)) => {
                let shown = format!("{mhost}:{mport}");
                let client = spec.master_client(mhost, mport)?;
                match check_master(&client, timeout).await {
                    Ok(()) => return Ok(client),
                    Err(e) => why.push(format!(
                        "sentinel {host}:{port} names master {shown}, which {e}"
                    )),
                }
            }
            Err(e) => why.push(format!("sentinel {host}:{port}: {e}")),
        }
    }
    Err(why.join("; "))
}

/// `SENTINEL get-master-addr-by-name`, on a plain connection without
/// credentials.
async fn ask_sentinel(
    host: &str,
    port: u16,
    master: &str,
    timeout: Duration,
) -> Result<(String, u16), String> {
    let client = Client::open(ConnectionInfo {
        addr: ConnectionAddr::Tcp(host.to_owned(), port),
        redis: RedisConnectionInfo::default(),
    })
    .map_err(|e| e.to_string())?;
    let ask = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        ::redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(master)
            .query_async::<Option<(String, u16)>>(&mut conn)
            .await
    };
    match tokio::time::timeout(timeout, ask).await {
        Ok(Ok(Some(addr))) => Ok(addr),
        Ok(Ok(None)) => Err(format!("does not know a master set named {master:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("timed out after {timeout:?}")),
    }
}

/// Connects to a would-be master and checks that `ROLE` says so.
async fn check_master(client: &Client, timeout: Duration) -> Result<(), String> {
    let password = client.get_connection_info().redis.password.clone();
    let ask = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        ::redis::cmd("ROLE").query_async::<Value>(&mut conn).await
    };
    match tokio::time::timeout(timeout, ask).await {
        Ok(Ok(v)) if is_master_role(&v) => Ok(()),
        Ok(Ok(_)) => Err("is not a master (yet)".to_owned()),
        Ok(Err(e)) => Err(format!(
            "cannot be reached: {}",
            scrub(&e.to_string(), password.as_deref())
        )),
        Err(_) => Err(format!("did not answer within {timeout:?}")),
    }
}
