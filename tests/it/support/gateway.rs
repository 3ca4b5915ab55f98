//! An in-process gateway on 127.0.0.1:0 with its own metrics and store, and
//! the config most tests share. The one way to start one:
//!
//! ```ignore
//! let up = RecordingUpstream::start("up").await;
//! let gw = TestGateway::builder()
//!     .upstream(&up)
//!     .extra("[cache]\nttl = \"100ms\"\n")
//!     .edit(|cfg| cfg.server.max_connections = 2)
//!     .store(store.clone())
//!     .start()
//!     .await;
//! ```
//!
//! or `TestGateway::builder().start_with_upstream().await` for a recording
//! upstream and the gateway in front of it, and [`super::expect::Bench`]
//! for both with the store and short ways to ask them things.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use osir_gateway::app::reload::Reloader;
use osir_gateway::config::Config;
use osir_gateway::metrics::Metrics;
use osir_gateway::server::tls::TlsAcceptor;
use osir_gateway::server::{self, Listeners};
use osir_gateway::state::Gateway;
use osir_gateway::store::Store;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::upstream::RecordingUpstream;

/// An in-process gateway; start one with [`TestGateway::builder`].
pub struct TestGateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The TLS listener, for gateways built with [`Builder::tls`].
    pub tls: Option<SocketAddr>,
    pub gw: Arc<Gateway>,
    /// The TLS listener's acceptor, whose certificate a reload renews.
    pub tls_acceptor: Option<Arc<TlsAcceptor>>,
    /// The store the gateway was started over (a clone: the same keys).
    pub store: Store,
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

/// Anything a test gateway can forward to: its base URL.
pub trait UpstreamUrl {
    fn upstream_url(&self) -> String;
}

impl UpstreamUrl for super::upstream::RecordingUpstream {
    fn upstream_url(&self) -> String {
        self.url()
    }
}

impl UpstreamUrl for super::upstream::WireUpstream {
    fn upstream_url(&self) -> String {
        self.url()
    }
}

impl UpstreamUrl for super::upstream::ClosedPort {
    fn upstream_url(&self) -> String {
        self.url()
    }
}

impl UpstreamUrl for str {
    fn upstream_url(&self) -> String {
        self.to_owned()
    }
}

impl UpstreamUrl for String {
    fn upstream_url(&self) -> String {
        self.clone()
    }
}

/// A change to the validated config, made before the gateway starts.
type Edit<'a> = Box<dyn FnOnce(&mut Config) + 'a>;

/// What a test gateway is built from: the shared [`config`] (or a whole
/// config of its own), edits on the validated config, a store (a fresh
/// memory store unless given), the API listener's address, TLS.
/// The one way tests start a gateway: `TestGateway::builder()`.
#[must_use]
pub struct Builder<'a> {
    up: Option<String>,
    test_up: Option<String>,
    extra: String,
    toml: Option<String>,
    cfg: Option<Config>,
    edits: Vec<Edit<'a>>,
    store: Option<Store>,
    bind: String,
    tls: bool,
    watched: bool,
}

impl<'a> Builder<'a> {
    /// The upstream `up` of the shared [`config`] (its live URL).
    pub fn upstream(mut self, up: &(impl UpstreamUrl + ?Sized)) -> Builder<'a> {
        self.up = Some(up.upstream_url());
        self
    }

    /// The `test_url` of upstream `up`, for test-environment keys.
    pub fn test_upstream(mut self, up: &(impl UpstreamUrl + ?Sized)) -> Builder<'a> {
        self.test_up = Some(up.upstream_url());
        self
    }

    /// Appended verbatim to the shared [`config`] (more sections, or
    /// `[auth]`/`[cache]` tables).
    pub fn extra(mut self, toml: &str) -> Builder<'a> {
        self.extra.push_str(toml);
        self
    }

    /// A whole config text instead of the shared [`config`]; `upstream`,
    /// `test_upstream` and `extra` no longer apply.
    pub fn toml(mut self, toml: &str) -> Builder<'a> {
        self.toml = Some(toml.to_owned());
        self
    }

    /// A whole validated config instead of the shared [`config`].
    pub fn config(mut self, cfg: Config) -> Builder<'a> {
        self.cfg = Some(cfg);
        self
    }

    /// Changes the validated config before the gateway starts; edits apply
    /// in the order given.
    pub fn edit(mut self, edit: impl FnOnce(&mut Config) + 'a) -> Builder<'a> {
        self.edits.push(Box::new(edit));
        self
    }

    /// The store (default: a fresh memory store).
    pub fn store(mut self, store: Store) -> Builder<'a> {
        self.store = Some(store);
        self
    }

    /// The API listener's address (default `127.0.0.1:0`; `[::1]:0` for an
    /// IPv6 peer, `[::ffff:127.0.0.1]:0` for IPv4-mapped peers); the admin
    /// listener stays on 127.0.0.1.
    pub fn bind(mut self, addr: &str) -> Builder<'a> {
        self.bind = addr.to_owned();
        self
    }

    /// Also a TLS listener on 127.0.0.1:0 serving the certificate and key
    /// named by the config's `[server.tls]` (which must be set; its
    /// `listen` is ignored). `start` then returns once `serve` is running,
    /// so the gateway already holds the acceptor and a `run::reload`
    /// reaches the certificate.
    pub fn tls(mut self) -> Builder<'a> {
        self.tls = true;
        self
    }

    /// `start` returns only once the store's watcher reports the store up
    /// (see [`TestGateway::wait_store_watched`]).
    pub fn watched(mut self) -> Builder<'a> {
        self.watched = true;
        self
    }

    /// Starts the gateway.
    pub async fn start(self) -> TestGateway {
        let mut cfg = match (self.cfg, self.toml) {
            (Some(cfg), _) => cfg,
            (None, Some(toml)) => parse(&toml),
            (None, None) => {
                let up = self
                    .up
                    .expect("TestGateway::builder() needs .upstream(..), .toml(..) or .config(..)");
                parse(&config(&up, self.test_up.as_deref(), &self.extra))
            }
        };
        for edit in self.edits {
            edit(&mut cfg);
        }
        let store = self.store.unwrap_or_else(super::keys::memory_store);
        let gw = TestGateway::launch(cfg, store, &self.bind, self.tls).await;
        if self.tls {
            let g = gw.gw.clone();
            let up = super::eventually(std::time::Duration::from_secs(5), move || {
                g.ready.load(std::sync::atomic::Ordering::SeqCst)
            })
            .await;
            assert!(up, "the gateway never reported ready");
        }
        if self.watched {
            gw.wait_store_watched().await;
        }
        gw
    }

    /// Starts a [`RecordingUpstream`] named `up`, and the gateway in front
    /// of it; returns both.
    pub async fn start_with_upstream(self) -> (RecordingUpstream, TestGateway) {
        let up = RecordingUpstream::start("up").await;
        let gw = self.upstream(&up).start().await;
        (up, gw)
    }
}

impl TestGateway {
    /// See [`Builder`].
    pub fn builder<'a>() -> Builder<'a> {
        Builder {
            up: None,
            test_up: None,
            extra: String::new(),
            toml: None,
            cfg: None,
            edits: Vec::new(),
            store: None,
            bind: "127.0.0.1:0".to_owned(),
            tls: false,
            watched: false,
        }
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
                .expect("Builder::tls needs [server.tls] in the config");
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
        let tls_acceptor = tls.as_ref().map(|(_, a)| a.clone());
        let gw = Gateway::new(cfg, store.clone(), Arc::new(Metrics::new()));
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
            tls_acceptor,
            store,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// The reloader `run` would use for this gateway, reading `path`.
    pub fn reloader(&self, path: &std::path::Path) -> Reloader {
        Reloader::new(self.gw.clone(), path, self.tls_acceptor.clone())
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

    /// The bytes of one raw HTTP/1.x request to this gateway: the request
    /// line, `Host`, `headers` (whole lines, each ending in CRLF), a blank
    /// line, then `body`.
    pub fn raw_request(&self, request_line: &str, headers: &str, body: &str) -> Vec<u8> {
        format!(
            "{request_line}\r\nHost: {}\r\n{headers}\r\n{body}",
            self.addr
        )
        .into_bytes()
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
