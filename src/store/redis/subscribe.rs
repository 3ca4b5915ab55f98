//! Subscribing to the invalidation channel: on the one server, or on any
//! node of a cluster, and proving the subscription works with a probe
//! published on the channel (redis-rs reports a refused SUBSCRIBE as
//! success). The watcher in `watch.rs` calls these on every
//! (re)connection and liveness tick.

use ::redis::aio::{PubSubSink, PubSubStream};
use ::redis::{Client, ConnectionAddr, RedisError, Value};
use futures_util::StreamExt;

use super::schema::bytes_of;
use super::url::scrub;
use super::{RedisStore, INVALIDATE_CHANNEL};

/// How a subscription probe starts: 64 zero bits, which no SHA-256 of a key
/// will ever start with, followed by random hex (see `RedisStore::confirm`).
pub(super) const PROBE_PREFIX: &str = "0000000000000000";

impl RedisStore {
    /// SUBSCRIBE to a channel already subscribed is a no-op the server
    /// answers: a ping on the pub/sub socket itself, which redis-rs 0.27
    /// does not offer otherwise.
    pub(super) async fn check_subscription(
        &self,
        pubsub_sink: &mut PubSubSink,
    ) -> Result<(), String> {
        match tokio::time::timeout(
            self.inner.timeout,
            pubsub_sink.subscribe(INVALIDATE_CHANNEL),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(scrub(&e.to_string(), self.inner.password.as_deref())),
            Err(_) => Err("the subscription did not answer".into()),
        }
    }

    /// Subscribes on a dedicated connection, the first step of every
    /// (re)connection of the watcher, and proves the subscription works.
    /// With Cluster any node will do (PUBLISH reaches every node): the one
    /// last used, then the seed nodes, then the nodes the cluster names.
    pub(super) async fn subscribe(&self) -> Result<(PubSubSink, PubSubStream), String> {
        let client = self.inner.client.read().clone();
        let Some(cluster) = &self.inner.cluster else {
            return self.subscribe_on(&client).await;
        };
        let mut tried = Vec::new();
        let mut why = Vec::new();
        let mut candidates = vec![node_of(&client)];
        candidates.extend(cluster.url.nodes.iter().cloned());
        for learned in [false, true] {
            if learned {
                candidates = self.cluster_nodes().await;
            }
            for (host, port) in candidates.drain(..) {
                if tried.contains(&(host.clone(), port)) {
                    continue;
                }
                tried.push((host.clone(), port));
                let shown = format!("{host}:{port}");
                let node = cluster.url.node_client(host, port)?;
                match self.subscribe_on(&node).await {
                    Ok(pair) => {
                        *self.inner.client.write() = node;
                        return Ok(pair);
                    }
                    Err(e) => why.push(format!("node {shown}: {e}")),
                }
            }
        }
        Err(why.join("; "))
    }

    /// The masters and replicas `CLUSTER SLOTS` names (none if it fails).
    async fn cluster_nodes(&self) -> Vec<(String, u16)> {
        let mut conn = self.conn();
        let slots = tokio::time::timeout(
            self.inner.timeout,
            ::redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async::<Value>(&mut conn),
        )
        .await;
        let Ok(Ok(Value::Array(ranges))) = slots else {
            return Vec::new();
        };
        let mut nodes = Vec::new();
        for range in ranges {
            let Value::Array(parts) = range else { continue };
            // start, end, then one [host, port, id, …] per node.
            for node in parts.into_iter().skip(2) {
                let Value::Array(fields) = node else { continue };
                let mut fields = fields.into_iter();
                let host = fields.next().and_then(bytes_of);
                let port = fields.next().and_then(|v| match v {
                    Value::Int(p) => u16::try_from(p).ok(),
                    _ => None,
                });
                if let (Some(host), Some(port)) = (host, port) {
                    if let Ok(host) = String::from_utf8(host) {
                        if !host.is_empty() && !nodes.contains(&(host.clone(), port)) {
                            nodes.push((host, port));
                        }
                    }
                }
            }
        }
        nodes
    }

    /// Subscribes through `client` and proves the subscription works.
    async fn subscribe_on(&self, client: &Client) -> Result<(PubSubSink, PubSubStream), String> {
        let attempt = async {
            let pubsub = client.get_async_pubsub().await?;
            let (mut sink, stream) = pubsub.split();
            sink.subscribe(INVALIDATE_CHANNEL).await?;
            Ok::<_, RedisError>((sink, stream))
        };
        let (sink, mut stream) = match tokio::time::timeout(self.inner.timeout, attempt).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(scrub(&e.to_string(), self.inner.password.as_deref())),
            Err(_) => return Err(format!("timed out after {:?}", self.inner.timeout)),
        };
        self.confirm(&mut stream).await?;
        Ok((sink, stream))
    }

    /// redis-rs 0.27 reports a refused SUBSCRIBE (an error reply such as
    /// NOPERM) as success, which would leave the watcher believing it
    /// listens and skip the flush when it really subscribes later. So a
    /// probe is published on the channel and must come back. Probes are
    /// hashes no key can have ([`PROBE_PREFIX`]): other gateways ignore them,
    /// and older ones drop a record nobody holds. Whatever else arrives
    /// meanwhile is dropped: the caller flushes everything next.
    async fn confirm(&self, stream: &mut PubSubStream) -> Result<(), String> {
        let probe = probe_message();
        let mut conn = self.conn();
        self.run(
            "PUBLISH",
            INVALIDATE_CHANNEL,
            ::redis::cmd("PUBLISH")
                .arg(INVALIDATE_CHANNEL)
                .arg(&probe)
                .query_async::<Value>(&mut conn),
        )
        .await
        .map_err(|e| format!("cannot publish a probe: {e}"))?;
        let echoed = async {
            while let Some(msg) = stream.next().await {
                if msg.get_payload_bytes() == probe.as_bytes() {
                    return true;
                }
            }
            false
        };
        match tokio::time::timeout(self.inner.timeout, echoed).await {
            Ok(true) => Ok(()),
            Ok(false) => Err("the subscription closed before it was confirmed".into()),
            Err(_) => Err(format!(
                "subscribed, but a probe published on {INVALIDATE_CHANNEL} did not arrive \
                 within {:?} (does this Redis user have the right to SUBSCRIBE to it?)",
                self.inner.timeout
            )),
        }
    }
}

/// A fresh probe: [`PROBE_PREFIX`] and 48 random hex digits.
pub(super) fn probe_message() -> String {
    let mut b = [0u8; 24];
    // A failed random source still makes a valid (if guessable) probe.
    let _ = getrandom::getrandom(&mut b);
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{PROBE_PREFIX}{hex}")
}

/// The host and port a TCP client connects to (none for a Unix socket).
fn node_of(client: &Client) -> (String, u16) {
    match &client.get_connection_info().addr {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            (host.clone(), *port)
        }
        _ => (String::new(), 0),
    }
}
