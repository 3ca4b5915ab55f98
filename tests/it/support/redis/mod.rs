//! A real, throwaway redis-server per test: its own free port, no
//! persistence, its files in a temp dir, killed on drop. Also replicas and
//! sentinels, for failover tests.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::process::free_port;

mod cluster;
mod sentinels;
mod tls;

pub use cluster::RedisCluster;
pub use sentinels::Sentinels;
pub use tls::TlsFiles;

use std::sync::Arc;

const READY_DEADLINE: Duration = Duration::from_secs(10);
const START_ATTEMPTS: usize = 3;

/// A running redis-server owned by one test.
pub struct RedisServer {
    /// The port it listens on (127.0.0.1 only).
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Extra options, kept for [`RedisServer::restart`].
    extra: Vec<String>,
    /// Set when it serves TLS only (`rediss://`).
    tls: Option<Arc<TlsFiles>>,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers PING.
    /// Retries on a new port when another process took the chosen one.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Starts a replica of the server on `primary` (127.0.0.1) and waits
    /// until it answers PING (not until it is in sync: see
    /// [`RedisServer::wait_in_sync`]).
    pub fn start_replica_of(primary: u16) -> RedisServer {
        RedisServer::start_with(&["--replicaof", "127.0.0.1", &primary.to_string()])
    }

    /// Starts a server with more options (`--requirepass`, ACL users…).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        RedisServer::start_full(extra, None)
    }

    /// Starts a server that speaks TLS only (`--port 0 --tls-port …`),
    /// with `tls`'s certificate, and more options.
    pub fn start_tls(tls: &Arc<TlsFiles>, extra: &[&str]) -> RedisServer {
        RedisServer::start_full(extra, Some(tls.clone()))
    }

    /// A TLS-only replica of the TLS server on `primary`.
    pub fn start_tls_replica_of(tls: &Arc<TlsFiles>, primary: u16) -> RedisServer {
        RedisServer::start_tls(tls, &["--replicaof", "127.0.0.1", &primary.to_string()])
    }

    fn start_full(extra: &[&str], tls: Option<Arc<TlsFiles>>) -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir for redis-server");
        let (port, child) = start_on_a_free_port("redis-server", |port| {
            spawn_ready_with(port, dir.path(), extra, tls.as_deref())
        });
        RedisServer {
            port,
            child: Some(child),
            dir,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            tls,
        }
    }

    /// Starts a server that persists every write (AOF, fsync always), so a
    /// kill and [`RedisServer::restart`] bring the same data back.
    pub fn start_persistent() -> RedisServer {
        RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"])
    }

    /// Kills the connections blocked reading the change feed (`XREAD`),
    /// as a network blip would; returns how many.
    pub fn kill_feed_readers(&self) -> usize {
        let ids = self.client_ids(|l| l.contains("cmd=xread"));
        for id in &ids {
            self.cli(&["CLIENT", "KILL", "ID", id]);
        }
        ids.len()
    }

    /// The ids of the connections whose `CLIENT LIST` line `pick` takes.
    pub fn client_ids(&self, pick: impl Fn(&str) -> bool) -> Vec<String> {
        self.cli(&["CLIENT", "LIST"])
            .lines()
            .filter(|l| pick(l))
            .filter_map(|l| {
                l.split(' ')
                    .find_map(|f| f.strip_prefix("id="))
                    .map(str::to_owned)
            })
            .collect()
    }

    /// How many connections are reading the change feed (`XREAD`) now.
    pub fn feed_readers(&self) -> usize {
        self.cli(&["CLIENT", "LIST"])
            .lines()
            .filter(|l| l.contains("cmd=xread"))
            .count()
    }

    /// `redis://127.0.0.1:<port>/0`, or `rediss://…` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server (an abrupt outage) and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same port, empty (nothing is persisted).
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + READY_DEADLINE;
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        loop {
            match spawn_ready_with(self.port, self.dir.path(), &extra, self.tls.as_deref()) {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                // The old socket may linger for a moment.
                Err(why) if Instant::now() > deadline => {
                    panic!("redis-server did not restart on {}: {why}", self.port)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Freezes the server (SIGSTOP): sockets stay open, nothing answers,
    /// like a hung or partitioned Redis.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Undoes [`RedisServer::pause`].
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self
            .child
            .as_ref()
            .expect("redis-server is not running")
            .id();
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
        assert!(status.success(), "kill -{sig} {pid} failed");
    }

    /// Waits (up to 10 s) until this replica's link to its primary is up.
    pub fn wait_in_sync(&self) {
        let synced = ready_within(Duration::from_millis(20), || {
            self.cli(&["INFO", "replication"])
                .contains("master_link_status:up")
        });
        assert!(
            synced,
            "replica on {} never synced with its primary",
            self.port
        );
    }

    /// Runs `redis-cli -p <port> ARGS…` and returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-p")
            .arg(self.port.to_string())
            .args(cli_args(self.tls.as_deref(), &self.extra))
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli: {e}"));
        assert!(
            out.status.success(),
            "redis-cli {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// How many times the server ran `cmd` (from `INFO commandstats`), to
    /// prove how many round trips an operation costs.
    pub fn command_count(&self, cmd: &str) -> u64 {
        let prefix = format!("cmdstat_{}:calls=", cmd.to_ascii_lowercase());
        self.cli(&["INFO", "commandstats"])
            .lines()
            .find_map(|line| line.trim().strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Server processes killed and reaped when dropped.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `spawn` on a free port, and on another when it fails (another
/// process took the port meanwhile), up to [`START_ATTEMPTS`] times;
/// panics with `what` and the last failure.
fn start_on_a_free_port(
    what: &str,
    mut spawn: impl FnMut(u16) -> Result<Child, String>,
) -> (u16, Child) {
    let mut last = String::new();
    for _ in 0..START_ATTEMPTS {
        let port = free_port();
        match spawn(port) {
            Ok(child) => return (port, child),
            Err(why) => last = why,
        }
    }
    panic!("{what} did not start after {START_ATTEMPTS} attempts: {last}");
}

/// Checks `ready` every `period` until it holds or [`READY_DEADLINE`]
/// passes (blocking: these servers start outside the runtime); returns
/// whether it held.
fn ready_within(period: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(period);
    }
}

/// Starts redis-server with more command-line options (`--replicaof …`)
/// and waits for PONG; `Err` (with its log) when it exits first, as it
/// does when the port was taken meanwhile.
fn spawn_ready_with(
    port: u16,
    dir: &Path,
    extra: &[&str],
    tls: Option<&TlsFiles>,
) -> Result<Child, String> {
    let log = dir.join(format!("redis-{port}.log"));
    let mut cmd = Command::new("redis-server");
    match tls {
        Some(t) => cmd.args(t.server_args(port)),
        None => cmd.args(["--port", &port.to_string()]),
    };
    cmd.args(["--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(&log)
        .args(extra);
    wait_ready(cmd, port, &log, &cli_args(tls, extra))
}

/// The redis-cli options that reach a server started with `extra` (and
/// `tls`): TLS, and `--requirepass`'s password.
fn cli_args(tls: Option<&TlsFiles>, extra: &[impl AsRef<str>]) -> Vec<String> {
    let mut args: Vec<String> = tls.iter().flat_map(|t| t.cli_args()).collect();
    if let Some(i) = extra.iter().position(|a| a.as_ref() == "--requirepass") {
        if let Some(pw) = extra.get(i + 1) {
            args.extend([
                "--no-auth-warning".to_owned(),
                "-a".to_owned(),
                pw.as_ref().to_owned(),
            ]);
        }
    }
    args
}

/// Spawns `cmd` (a redis-server, or a sentinel, listening on `port` and
/// logging to `log`) and waits for PONG from that very process.
fn wait_ready(mut cmd: Command, port: u16, log: &Path, cli: &[String]) -> Result<Child, String> {
    let spawned = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            panic!("redis-server not found: install it (apt-get install redis-server) — .ci/run does this")
        }
        Err(e) => panic!("cannot start redis-server: {e}"),
    };
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("redis-server exited ({status}): {log}"));
        }
        if pong(port, cli) {
            // Someone else's server may hold the port while ours is failing
            // to bind it: make sure the answer came from our process.
            if serving_pid(port, cli) == Some(child.id()) {
                return Ok(child);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("port {port} is served by another process"));
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "redis-server on {port} did not answer PING within {READY_DEADLINE:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn serving_pid(port: u16, cli: &[String]) -> Option<u32> {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(cli)
        .args(["INFO", "server"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("process_id:")?.parse().ok())
}

fn pong(port: u16, cli: &[String]) -> bool {
    if !cli.is_empty() {
        return Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(cli)
            .arg("PING")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG");
    }
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}
