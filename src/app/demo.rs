//! `osir-gateway demo`: the whole gateway with nothing to install.
//!
//! An in-memory key store, three sample upstreams (domains, vps, billing)
//! served in-process that echo what reached them as JSON, a live key with
//! `domains:read`, a test key, and curl lines to paste: an allowed call, a
//! scope denial, a missing key.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::keys::Env;
use crate::manage::{parse_scopes, KeyService, NewKey};
use crate::metrics::Metrics;
use crate::server::{self, Listeners};
use crate::state::Gateway;
use crate::store::{memory::MemoryStore, Store};

/// Serves an echo upstream on `listener` until the task is dropped: each
/// response is a JSON description of the request it received.
pub async fn echo_upstream(name: &'static str, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| async move {
                let headers: serde_json::Map<String, serde_json::Value> = req
                    .headers()
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned().into(),
                        )
                    })
                    .collect();
                let body = serde_json::json!({
                    "service": name,
                    "method": req.method().as_str(),
                    "path": req.uri().path(),
                    "query": req.uri().query(),
                    "headers": headers,
                });
                let mut resp = Response::new(Full::new(Bytes::from(format!("{body:#}\n"))));
                resp.headers_mut().insert(
                    "content-type",
                    http::HeaderValue::from_static("application/json"),
                );
                Ok::<_, Infallible>(resp)
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn demo_config(listen: SocketAddr, admin: SocketAddr, ports: &[u16; 3]) -> String {
    format!(
        r#"
[server]
listen = "{listen}"
[admin]
listen = "{admin}"
[store]
backend = "file"
path = "unused-demo-keys.json"
[upstreams.domains]
url = "http://127.0.0.1:{}"
[upstreams.vps]
url = "http://127.0.0.1:{}"
[upstreams.billing]
url = "http://127.0.0.1:{}"
[[routes]]
prefix = "/v1/domains"
upstream = "domains"
resource = "domains"
[[routes]]
prefix = "/v1/vps"
upstream = "vps"
resource = "vps"
[[routes]]
prefix = "/v1/billing"
upstream = "billing"
resource = "billing"
[[routes]]
prefix = "/v1/status"
upstream = "domains"
public = true
"#,
        ports[0], ports[1], ports[2]
    )
}

/// Runs the demo until Ctrl-C.
pub fn run(listen: SocketAddr, admin: SocketAddr) -> ExitCode {
    crate::diag::init("info", crate::config::LogFormat::Text);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        match serve(listen, admin).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn serve(listen: SocketAddr, admin: SocketAddr) -> Result<(), String> {
    let mut ports = [0u16; 3];
    for (i, name) in ["domains", "vps", "billing"].into_iter().enumerate() {
        let l = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot bind a demo upstream: {e}"))?;
        ports[i] = l.local_addr().map_err(|e| e.to_string())?.port();
        tokio::spawn(echo_upstream(name, l));
    }
    let cfg = Config::from_toml(&demo_config(listen, admin, &ports), Path::new("."))
        .map_err(|e| format!("demo config: {e}"))?;
    let store = Store::new(MemoryStore::new());
    let svc = KeyService::new(&store);
    let scopes = |s: &[&str]| parse_scopes(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>());
    let live = svc
        .create(NewKey {
            name: "demo live key".into(),
            env: Env::Live,
            scopes: scopes(&["domains:read"]).map_err(|e| e.to_string())?,
            allowed_ips: vec![],
            account: Some("acct_demo".into()),
            expires_in: None,
        })
        .await
        .map_err(|e| e.to_string())?;
    let test = svc
        .create(NewKey {
            name: "demo test key".into(),
            env: Env::Test,
            scopes: scopes(&["domains:*", "vps:read"]).map_err(|e| e.to_string())?,
            allowed_ips: vec![],
            account: Some("acct_demo".into()),
            expires_in: None,
        })
        .await
        .map_err(|e| e.to_string())?;
    let http = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e} (use --listen)"))?;
    let adm = TcpListener::bind(admin)
        .await
        .map_err(|e| format!("cannot listen on {admin}: {e} (use --admin)"))?;
    let gw = Gateway::new(cfg, store, Arc::new(Metrics::new()));
    // Access lines on stdout show what each curl did.
    let log = crate::pipeline::access_log::AccessLog::open(&crate::config::AccessLog::Stdout)?;
    gw.access_log.store(log.map(Arc::new));
    let base = format!("http://{listen}");
    let lk = live.key.expose_secret();
    let tk = test.key.expose_secret();
    println!(
        r#"
osir-gateway demo: API on {base}, admin on http://{admin}
In-memory keys (shown once, demo only):
  live key  {lk}   scopes: domains:read
  test key  {tk}   scopes: domains:* vps:read

Try:
  # allowed: the upstream echoes what reached it (no key, X-Osir-* identity headers)
  curl -i -H 'Authorization: Bearer {lk}' {base}/v1/domains/example.com
  # 403 insufficient_scope: the live key has no vps:read
  curl -i -H 'Authorization: Bearer {lk}' {base}/v1/vps/servers
  # 401 missing_api_key
  curl -i {base}/v1/domains/example.com
  # test key, query-string credential (discouraged, but supported)
  curl -i '{base}/v1/vps/servers?api_key={tk}&page=2'
  # metrics
  curl -s http://{admin}/metrics | grep osir_gateway_requests_total

Ctrl-C to stop.
"#
    );
    server::serve(
        gw,
        Listeners {
            http: Some(http),
            admin: Some(adm),
            tls: None,
        },
        crate::app::signals::shutdown_signal(),
    )
    .await;
    Ok(())
}
