//! An in-process gateway on 127.0.0.1:0 with its own metrics and store, and
//! the config snippets most tests share.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use osir_gateway::config::Config;
use osir_gateway::metrics::Metrics;
use osir_gateway::server::tls::TlsAcceptor;
use osir_gateway::server::{self, Listeners};
use osir_gateway::state::Gateway;
use osir_gateway::store::Store;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub struct TestGateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The TLS listener, for gateways started with [`TestGateway::start_tls`].
    pub tls: Option<SocketAddr>,
    pub gw: Arc<Gateway>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Routes every test uses: domains, vps, billing (DELETE needs billing:write),
/// a public status route, and a public route with a 1 KiB body limit.
/// `{up}` and `{test_up}` are upstream URLs; `extra` is appended verbatim
/// (more sections, or fields for `[auth]`/`[cache]` given as whole tables).
pub fn config(up: &str, test_up: Option<&str>, extra: &str) -> String {
    let test_url = test_up
        .map(|t| format!("test_url = \"{t}\""))
        .unwrap_or_default();
    format!(
        r#"
[server]
listen = "127.0.0.1:1"
max_body = "4MiB"
[admin]
listen = "127.0.0.1:2"
[store]
backend = "file"
path = "unused.json"
[upstreams.up]
url = "{up}"
{test_url}
connect_timeout = "500ms"
timeout = "1s"
[[routes]]
prefix = "/v1/domains"
upstream = "up"
resource = "domains"
[[routes]]
prefix = "/v1/vps"
upstream = "up"
resource = "vps"
[[routes]]
prefix = "/v1/billing"
upstream = "up"
resource = "billing"
scopes = {{ DELETE = "billing:write" }}
[[routes]]
prefix = "/v1/status"
upstream = "up"
public = true
[[routes]]
prefix = "/v1/small"
upstream = "up"
public = true
max_body = "1KiB"
{extra}
"#
    )
}

pub fn parse(toml: &str) -> Config {
    Config::from_toml(toml, Path::new(".")).unwrap_or_else(|e| panic!("test config invalid:\n{e}"))
}

impl TestGateway {
    pub async fn start(toml: &str, store: Store) -> TestGateway {
        TestGateway::start_with(parse(toml), store).await
    }

    pub async fn start_with(cfg: Config, store: Store) -> TestGateway {
        TestGateway::start_at(cfg, store, "127.0.0.1:0").await
    }

    /// Like [`TestGateway::start_with`], with the API listener on `bind`
    /// (`[::1]:0` for an IPv6 peer, `[::ffff:127.0.0.1]:0` for IPv4-mapped
    /// peers); the admin listener stays on 127.0.0.1.
    pub async fn start_at(cfg: Config, store: Store, bind: &str) -> TestGateway {
        TestGateway::launch(cfg, store, bind, false).await
    }

    /// Like [`TestGateway::start_with`], plus a TLS listener on 127.0.0.1:0
    /// serving the certificate and key named by `cfg`'s `[server.tls]`
    /// (which must be set; its `listen` is ignored).
    /// Returns once `serve` is running, so the gateway already holds the
    /// acceptor and a `app::reload::reload` reaches the certificate.
    pub async fn start_tls(cfg: Config, store: Store) -> TestGateway {
        let gw = TestGateway::launch(cfg, store, "127.0.0.1:0", true).await;
        let g = gw.gw.clone();
        let up = super::eventually(std::time::Duration::from_secs(5), move || {
            g.ready.load(std::sync::atomic::Ordering::SeqCst)
        })
        .await;
        assert!(up, "the gateway never reported ready");
        gw
    }

    async fn launch(cfg: Config, store: Store, bind: &str, with_tls: bool) -> TestGateway {
        let http = TcpListener::bind(bind).await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = http.local_addr().unwrap();
        let admin_addr = admin.local_addr().unwrap();
        let tls = if with_tls {
            let tls_cfg = cfg
                .server
                .tls
                .as_ref()
                .expect("start_tls needs [server.tls] in the config");
            let acceptor =
                TlsAcceptor::new(tls_cfg).unwrap_or_else(|e| panic!("test certificate: {e}"));
            Some((
                TcpListener::bind("127.0.0.1:0").await.unwrap(),
                Arc::new(acceptor),
            ))
        } else {
            None
        };
        let tls_addr = tls.as_ref().map(|(l, _)| l.local_addr().unwrap());
        let gw = Gateway::new(cfg, store, Arc::new(Metrics::new()));
        let (tx, rx) = oneshot::channel::<()>();
        let gw2 = gw.clone();
        let task = tokio::spawn(async move {
            server::serve(
                gw2,
                Listeners {
                    http: Some(http),
                    admin: Some(admin),
                    tls,
                },
                async {
                    let _ = rx.await;
                },
            )
            .await;
        });
        TestGateway {
            addr,
            admin: admin_addr,
            tls: tls_addr,
            gw,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Waits until the store's invalidation watcher reports the store up
    /// (for Redis: subscribed, its initial flush done), so a test's cache
    /// and single-flight counts are not disturbed by that flush.
    pub async fn wait_store_watched(&self) {
        let gw = self.gw.clone();
        let up = super::eventually(std::time::Duration::from_secs(5), move || {
            gw.metrics.store_up.get() == 1 && gw.metrics.change_feed_up.get() == 1
        })
        .await;
        assert!(
            up,
            "the store watcher never reported the store up and its feed followed"
        );
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// Graceful stop; waits for the server to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.gw.stop();
    }
}
