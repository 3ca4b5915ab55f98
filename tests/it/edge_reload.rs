//! Reloads that apply (issue 13, classes 4 and 8): `[server]` settings that
//! can apply live do so on reload — header_read_timeout, max_connections,
//! max_connections_per_ip, max_header_bytes, HTTP/2 limits, shutdown_grace —
//! for connections accepted after it; SIGHUP and file events go through one
//! reloader, so generations only go up; settings that need a restart are
//! logged by name, compared with what runs; and a trace-level log written
//! beside the config does not feed itself through the directory watcher.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::support::client::{get, raw, raw_status};
use crate::support::eventually;
use crate::support::gateway::{config, parse, TestGateway};
use crate::support::h2wire::{H2Conn, MAX_CONCURRENT_STREAMS, SETTINGS};
use crate::support::keys::memory_store;
use crate::support::upstream::RecordingUpstream;

/// A gateway started from `server` (lines for `[server]`), with its config
/// in a file so it can be rewritten and reloaded.
struct Reloadable {
    up: RecordingUpstream,
    gw: TestGateway,
    base: String,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Reloadable {
    async fn start(server: &str) -> Reloadable {
        let up = RecordingUpstream::start("up").await;
        let base = config(&up.url(), None, "");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        let text = with_server(&base, server);
        std::fs::write(&path, &text).unwrap();
        let gw = TestGateway::builder()
            .config(parse(&text))
            .store(memory_store())
            .start()
            .await;
        Reloadable {
            up,
            gw,
            base,
            path,
            _dir: dir,
        }
    }

    /// Rewrites the file with `server` and reloads it.
    fn reload(&self, server: &str) -> u64 {
        std::fs::write(&self.path, with_server(&self.base, server)).unwrap();
        self.gw.reloader(&self.path).reload().unwrap()
    }
}

fn with_server(base: &str, server: &str) -> String {
    base.replace(
        "max_body = \"4MiB\"",
        &format!("max_body = \"4MiB\"\n{server}"),
    )
}

/// Whether the server closes a silent connection within `within`.
async fn closes_silent(addr: std::net::SocketAddr, within: Duration) -> bool {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(within, s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn header_read_timeout_applies_on_reload() {
    let r = Reloadable::start("header_read_timeout = \"30s\"").await;
    assert!(!closes_silent(r.gw.addr, Duration::from_millis(800)).await);
    r.reload("header_read_timeout = \"200ms\"");
    assert!(
        closes_silent(r.gw.addr, Duration::from_secs(3)).await,
        "a silent connection outlived the reloaded header_read_timeout"
    );
}

/// Waits until the gateway counts `n` open plain-HTTP connections.
async fn open_is(r: &Reloadable, n: i64) -> bool {
    let gw = r.gw.gw.clone();
    eventually(Duration::from_secs(5), move || {
        gw.metrics
            .open_connections
            .with_label_values(&["http"])
            .get()
            == n
    })
    .await
}

#[tokio::test]
async fn max_connections_applies_on_reload() {
    let r = Reloadable::start("max_connections = 1").await;
    // One silent connection takes the only slot.
    let held = TcpStream::connect(r.gw.addr).await.unwrap();
    assert!(open_is(&r, 1).await);
    r.reload("max_connections = 3");
    let url = r.gw.url("/v1/status");
    let served = tokio::time::timeout(Duration::from_secs(5), get(&url, &[])).await;
    assert_eq!(
        served
            .expect("still locked out after raising max_connections")
            .status,
        200
    );
    // Lowered again: once the connections above it are gone, the lower
    // limit holds. (A lower limit is taken back as connections close.)
    drop(held);
    assert!(open_is(&r, 0).await);
    r.reload("max_connections = 1");
    let held = TcpStream::connect(r.gw.addr).await.unwrap();
    assert!(open_is(&r, 1).await);
    let waiting = tokio::time::timeout(Duration::from_millis(700), get(&url, &[])).await;
    assert!(waiting.is_err(), "served over the lowered max_connections");
    drop(held);
    let served = tokio::time::timeout(Duration::from_secs(5), get(&url, &[])).await;
    assert_eq!(
        served.expect("never served once the slot was free").status,
        200
    );
}

#[tokio::test]
async fn max_connections_per_ip_applies_on_reload() {
    let r = Reloadable::start("max_connections_per_ip = 100").await;
    let _one = TcpStream::connect(r.gw.addr).await.unwrap();
    let gw = r.gw.gw.clone();
    assert!(
        eventually(Duration::from_secs(5), move || gw
            .per_ip
            .open("127.0.0.1".parse().unwrap())
            == 1)
        .await
    );
    r.reload("max_connections_per_ip = 1");
    let reply = raw(r.gw.addr, b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(reply, "", "a second connection from the IP was served");
}

#[tokio::test]
async fn max_header_bytes_reaches_the_http_layer_on_reload() {
    let r = Reloadable::start("").await;
    let big = format!(
        "GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    assert_eq!(raw_status(&raw(r.gw.addr, big.as_bytes()).await), "200");
    r.reload("max_header_bytes = \"2KiB\"");
    // Past a quarter over the new limit the engine refuses the head
    // before it is complete: 431 with the JSON body all the same.
    let reply = raw(r.gw.addr, big.as_bytes()).await;
    assert_eq!(raw_status(&reply), "431", "{reply}");
    assert!(reply.contains("headers_too_large"), "{reply}");
    let small = format!(
        "GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(3 * 1024)
    );
    let reply = raw(r.gw.addr, small.as_bytes()).await;
    assert_eq!(raw_status(&reply), "431");
    assert!(reply.contains("headers_too_large"), "{reply}");
}

#[tokio::test]
async fn http2_limits_apply_on_reload() {
    let r = Reloadable::start("").await;
    let advertised = |c: &H2Conn| {
        c.server_settings
            .as_ref()
            .and_then(|f| {
                f.settings()
                    .into_iter()
                    .find(|(id, _)| *id == MAX_CONCURRENT_STREAMS)
            })
            .map(|(_, v)| v)
    };
    let mut c = H2Conn::connect(r.gw.addr).await;
    c.until(Duration::from_secs(5), |f| f.kind == SETTINGS)
        .await;
    assert_eq!(advertised(&c), Some(100));
    r.reload("[server.http2]\nmax_concurrent_streams = 7");
    let mut c = H2Conn::connect(r.gw.addr).await;
    c.until(Duration::from_secs(5), |f| f.kind == SETTINGS)
        .await;
    assert_eq!(advertised(&c), Some(7));
}

#[tokio::test]
async fn shutdown_grace_applies_on_reload() {
    let r = Reloadable::start("shutdown_grace = \"60s\"").await;
    r.reload("shutdown_grace = \"200ms\"");
    let url = r.gw.url("/v1/status/slow");
    let slow = tokio::spawn(async move {
        let _ = tokio::time::timeout(
            Duration::from_secs(20),
            get(&url, &[("x-test-delay-ms", "10000")]),
        )
        .await;
    });
    let up_seen = eventually(Duration::from_secs(5), || r.up.count() == 1).await;
    assert!(up_seen);
    let began = tokio::time::Instant::now();
    let Reloadable { gw, .. } = r;
    gw.shutdown().await;
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "shutdown waited {:?}",
        began.elapsed()
    );
    slow.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_and_file_events_share_one_reloader_and_generations_only_go_up() {
    use osir_gateway::app::reload::Cause;
    let r = Reloadable::start("").await;
    let mut generations = r.gw.gw.generations();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let task = tokio::spawn(
        r.gw.reloader(&r.path)
            .run(std::fs::read(&r.path).unwrap(), rx),
    );
    let watch = tokio::spawn(osir_gateway::app::watch::watch_events(
        r.path.clone(),
        tx.clone(),
    ));
    // Signals from two tasks at once, while the file keeps changing.
    let mut senders = Vec::new();
    for _ in 0..2 {
        let tx = tx.clone();
        senders.push(tokio::spawn(async move {
            for _ in 0..10 {
                tx.send(Cause::Signal).await.unwrap();
            }
        }));
    }
    for i in 0..5 {
        std::fs::write(
            &r.path,
            with_server(&r.base, &format!("idle_timeout = \"{}s\"", 60 + i)),
        )
        .unwrap();
        tokio::task::yield_now().await;
    }
    for s in senders {
        s.await.unwrap();
    }
    // Observe every generation announced: never lower than the one before.
    let mut seen = vec![*generations.borrow_and_update()];
    let reloads = |r: &Reloadable| {
        let m = &r.gw.gw.metrics.config_reloads;
        m.with_label_values(&["success"]).get() + m.with_label_values(&["failure"]).get()
    };
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if generations.has_changed().unwrap_or(false) {
            let g = *generations.borrow_and_update();
            let last = *seen.last().unwrap();
            assert!(g > last, "generation went from {last} to {g}");
            seen.push(g);
        }
        // Every signal was handled (a reload may have caught the file half
        // written and been refused), and the file's last content is in.
        let snap = r.gw.gw.snapshot.load();
        if reloads(&r) >= 20 && snap.config.server.idle_timeout == Duration::from_secs(64) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "reloads never completed: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let snap = r.gw.gw.snapshot.load();
    assert_eq!(
        snap.generation as i64,
        r.gw.gw.metrics.config_generation.get()
    );
    assert_eq!(
        r.gw.gw
            .metrics
            .config_reloads
            .with_label_values(&["success"])
            .get()
            + 1,
        snap.generation
    );
    watch.abort();
    task.abort();
}

// ---- the real binary: restart warnings and the log loop -------------------

/// `osir-gateway -c CONFIG run` with stderr into `log`, killed on drop.
struct Running {
    child: Child,
}

impl Running {
    fn start(config: &Path, log: &Path, rust_log: Option<&str>) -> Running {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_osir-gateway"));
        cmd.arg("-c")
            .arg(config)
            .arg("run")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .env_remove("RUST_LOG");
        if let Some(l) = rust_log {
            cmd.env("RUST_LOG", l);
        }
        Running {
            child: cmd.spawn().unwrap(),
        }
    }

    fn hup(&self) {
        let ok = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary_config(dir: &Path, server: &str) -> String {
    let keys = dir.join("keys.json");
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n{server}\n[admin]\nlisten = \"127.0.0.1:0\"\n[store]\nbackend = \"file\"\npath = \"{}\"\n[log]\naccess = \"off\"\n[upstreams.up]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\nprefix = \"/v1/status\"\nupstream = \"up\"\npublic = true\n",
        keys.display()
    )
}

async fn log_has(log: &Path, needle: &str, times: usize) -> bool {
    eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(log).is_ok_and(|t| t.matches(needle).count() >= times)
    })
    .await
}

#[tokio::test]
async fn restart_settings_are_logged_by_name_against_what_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, binary_config(dir.path(), "")).unwrap();
    let log = dir.path().join("out").join("stderr.log");
    std::fs::create_dir(log.parent().unwrap()).unwrap();
    let gw = Running::start(&path, &log, None);
    assert!(
        log_has(&log, "osir-gateway serving", 1).await,
        "never started"
    );
    // A file change needing a restart: warned by name, applied otherwise.
    let moved = binary_config(dir.path(), "")
        .replace("workers = 1", "workers = 1\nmax_body = \"1MiB\"")
        .replace(
            "listen = \"127.0.0.1:0\"\nworkers",
            "listen = \"127.0.0.1:1\"\nworkers",
        );
    std::fs::write(&path, &moved).unwrap();
    assert!(
        log_has(&log, "config reloaded", 1).await,
        "the change was never reloaded"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("setting=\"server.listen\""), "{text}");
    assert!(!text.contains("setting=\"server.workers\""), "{text}");
    // A second reload of the same file: the listen address still differs
    // from the running one, so it is named again.
    gw.hup();
    assert!(
        log_has(&log, "config reloaded", 2).await,
        "SIGHUP never reloaded"
    );
    assert!(log_has(&log, "setting=\"server.listen\"", 2).await);
    // Back to what runs: no warning.
    std::fs::write(&path, binary_config(dir.path(), "")).unwrap();
    assert!(log_has(&log, "config reloaded", 3).await);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("setting=\"server.listen\"").count(),
        2,
        "{text}"
    );
}

#[tokio::test]
async fn a_trace_log_beside_the_config_does_not_feed_itself() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, binary_config(dir.path(), "")).unwrap();
    // The log file in the config's own directory, at trace level.
    let log = dir.path().join("gateway.log");
    let _gw = Running::start(&path, &log, Some("trace"));
    assert!(
        log_has(&log, "osir-gateway serving", 1).await,
        "never started"
    );
    // Start the would-be loop: an event in the directory.
    std::fs::write(dir.path().join("other.txt"), "x").unwrap();
    // Prove the watcher is live (a real change is seen and reloaded)...
    std::fs::write(&path, binary_config(dir.path(), "max_body = \"1MiB\"")).unwrap();
    assert!(
        log_has(&log, "config reloaded", 1).await,
        "the watcher never reloaded"
    );
    // ...then measure the log's growth over a second of quiet.
    let before = std::fs::metadata(&log).unwrap().len();
    let quiet = tokio::time::Instant::now() + Duration::from_secs(1);
    tokio::time::sleep_until(quiet).await;
    let grown = std::fs::metadata(&log).unwrap().len() - before;
    assert!(
        grown < 64 * 1024,
        "the log grew {grown} bytes in a quiet second"
    );
}
