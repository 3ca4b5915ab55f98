//! A real, throwaway redis-server per test: its own free port, no
//! persistence, its files in a temp dir, killed on drop. Also replicas and
//! sentinels, for failover tests.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

    fn start_with(extra: &[&str]) -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir for redis-server");
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            match spawn_ready_with(port, dir.path(), extra) {
                Ok(child) => {
                    return RedisServer {
                        port,
                        child: Some(child),
                        dir,
                        extra: extra.iter().map(|s| (*s).to_owned()).collect(),
                    }
                }
                Err(why) => last = why,
            }
        }
        panic!("redis-server did not start after {START_ATTEMPTS} attempts: {last}");
    }

    /// Starts a server that persists every write (AOF, fsync always), so a
    /// kill and [`RedisServer::restart`] bring the same data back.
    pub fn start_persistent() -> RedisServer {
        RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"])
    }

    /// Kills the connections blocked reading the change feed (`XREAD`),
    /// as a network blip would; returns how many.
    pub fn kill_feed_readers(&self) -> usize {
        let ids: Vec<String> = self
            .cli(&["CLIENT", "LIST"])
            .lines()
            .filter(|l| l.contains("cmd=xread"))
            .filter_map(|l| {
                l.split(' ')
                    .find_map(|f| f.strip_prefix("id="))
                    .map(str::to_owned)
            })
            .collect();
        for id in &ids {
            self.cli(&["CLIENT", "KILL", "ID", id]);
        }
        ids.len()
    }

    /// How many connections are reading the change feed (`XREAD`) now.
    pub fn feed_readers(&self) -> usize {
        self.cli(&["CLIENT", "LIST"])
            .lines()
            .filter(|l| l.contains("cmd=xread"))
            .count()
    }

    /// `redis://127.0.0.1:<port>/0`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
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
            match spawn_ready_with(self.port, self.dir.path(), &extra) {
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
        let deadline = Instant::now() + READY_DEADLINE;
        while !self
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")
        {
            assert!(
                Instant::now() < deadline,
                "replica on {} never synced with its primary",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `redis-cli -p <port> ARGS…` and returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-p")
            .arg(self.port.to_string())
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

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// Starts redis-server with more command-line options (`--replicaof …`)
/// and waits for PONG; `Err` (with its log) when it exits first, as it
/// does when the port was taken meanwhile.
fn spawn_ready_with(port: u16, dir: &Path, extra: &[&str]) -> Result<Child, String> {
    let log = dir.join(format!("redis-{port}.log"));
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(&log)
        .args(extra);
    wait_ready(cmd, port, &log)
}

/// Spawns `cmd` (a redis-server, or a sentinel, listening on `port` and
/// logging to `log`) and waits for PONG from that very process.
fn wait_ready(mut cmd: Command, port: u16, log: &Path) -> Result<Child, String> {
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
        if pong(port) {
            // Someone else's server may hold the port while ours is failing
            // to bind it: make sure the answer came from our process.
            if serving_pid(port) == Some(child.id()) {
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

fn serving_pid(port: u16) -> Option<u32> {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "INFO", "server"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("process_id:")?.parse().ok())
}

fn pong(port: u16) -> bool {
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

/// Three sentinels (`redis-server <conf> --sentinel`) watching one primary
/// as master set [`Sentinels::MASTER`] (quorum 2, down after 500 ms), each
/// with its own config file (sentinels rewrite theirs), killed on drop.
pub struct Sentinels {
    /// The ports they listen on (127.0.0.1 only).
    pub ports: Vec<u16>,
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Sentinels {
    /// The master set's name.
    pub const MASTER: &'static str = "m";

    /// Starts three sentinels monitoring `127.0.0.1:<primary>` and waits
    /// (up to 10 s) until each knows the other two and at least one replica,
    /// so a failover can be agreed on.
    pub fn start(primary: u16) -> Sentinels {
        let dir = tempfile::tempdir().expect("temp dir for sentinels");
        let mut sentinels = Sentinels {
            ports: Vec::new(),
            children: Vec::new(),
            dir,
        };
        for _ in 0..3 {
            let mut last = String::new();
            let started = (0..START_ATTEMPTS).find_map(|_| {
                let port = free_port();
                match sentinels.spawn(port, primary) {
                    Ok(child) => Some((port, child)),
                    Err(why) => {
                        last = why;
                        None
                    }
                }
            });
            let (port, child) = started.unwrap_or_else(|| {
                panic!("sentinel did not start after {START_ATTEMPTS} attempts: {last}")
            });
            sentinels.ports.push(port);
            sentinels.children.push(child);
        }
        let deadline = Instant::now() + READY_DEADLINE;
        while !sentinels.ports.iter().all(|p| sentinel_ready(*p)) {
            assert!(
                Instant::now() < deadline,
                "sentinels did not discover each other and the replica within {READY_DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        sentinels
    }

    fn spawn(&self, port: u16, primary: u16) -> Result<Child, String> {
        let conf = self.dir.path().join(format!("sentinel-{port}.conf"));
        let log = self.dir.path().join(format!("sentinel-{port}.log"));
        let m = Sentinels::MASTER;
        let body = format!(
            "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile {log}\n\
             sentinel monitor {m} 127.0.0.1 {primary} 2\n\
             sentinel down-after-milliseconds {m} 500\n\
             sentinel failover-timeout {m} 3000\n\
             sentinel parallel-syncs {m} 1\n",
            dir = self.dir.path().display(),
            log = log.display(),
        );
        std::fs::write(&conf, body).map_err(|e| format!("cannot write {conf:?}: {e}"))?;
        let mut cmd = Command::new("redis-server");
        cmd.arg(&conf).arg("--sentinel");
        wait_ready(cmd, port, &log)
    }

    /// `redis+sentinel://127.0.0.1:a,127.0.0.1:b,127.0.0.1:c/m/0`
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!(
            "redis+sentinel://{}/{}/0",
            hosts.join(","),
            Sentinels::MASTER
        )
    }

    /// The master's port as the first sentinel that answers reports it.
    pub fn master_port(&self) -> Option<u16> {
        self.ports.iter().find_map(|p| {
            let out = Command::new("redis-cli")
                .args(["-p", &p.to_string()])
                .args(["SENTINEL", "get-master-addr-by-name", Sentinels::MASTER])
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .nth(1)?
                .trim()
                .parse()
                .ok()
        })
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether the sentinel on `port` knows two other sentinels and a replica.
fn sentinel_ready(port: u16) -> bool {
    let Ok(out) = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(["SENTINEL", "master", Sentinels::MASTER])
        .output()
    else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let field = |name: &str| -> u32 {
        lines
            .iter()
            .position(|l| *l == name)
            .and_then(|i| lines.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    field("num-other-sentinels") >= 2 && field("num-slaves") >= 1
}

/// A three-master Redis Cluster on loopback (no replicas), each node on its
/// own free port with its files in one temp dir, killed on drop.
pub struct RedisCluster {
    /// The nodes' ports (127.0.0.1 only).
    pub ports: Vec<u16>,
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers, joins them with
    /// `redis-cli --cluster create`, and waits (up to 10 s) until every node
    /// reports `cluster_state:ok`.
    pub fn start() -> RedisCluster {
        let dir = tempfile::tempdir().expect("temp dir for the cluster");
        let mut cluster = RedisCluster {
            ports: Vec::new(),
            children: Vec::new(),
            dir,
        };
        for _ in 0..3 {
            let mut last = String::new();
            let started = (0..START_ATTEMPTS).find_map(|_| {
                let port = free_port();
                match cluster.spawn(port) {
                    Ok(child) => Some((port, child)),
                    Err(why) => {
                        last = why;
                        None
                    }
                }
            });
            let (port, child) = started.unwrap_or_else(|| {
                panic!("cluster node did not start after {START_ATTEMPTS} attempts: {last}")
            });
            cluster.ports.push(port);
            cluster.children.push(child);
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli --cluster create: {e}"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + READY_DEADLINE;
        while !cluster.ports.iter().all(|p| cluster_ok(*p)) {
            assert!(
                Instant::now() < deadline,
                "the cluster did not reach cluster_state:ok within {READY_DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    fn spawn(&self, port: u16) -> Result<Child, String> {
        let dir = self.dir.path();
        let log = dir.join(format!("redis-{port}.log"));
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .arg("--cluster-config-file")
            .arg(dir.join(format!("nodes-{port}.conf")))
            .args(["--cluster-node-timeout", "1000"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(&log);
        wait_ready(cmd, port, &log)
    }

    /// `redis+cluster://127.0.0.1:a,127.0.0.1:b,127.0.0.1:c/`
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}/", hosts.join(","))
    }

    /// Runs `redis-cli -c -p <first node> ARGS…` (following redirects) and
    /// returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-c", "-p", &self.ports[0].to_string()])
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
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether the node on `port` says `cluster_state:ok`.
fn cluster_ok(port: u16) -> bool {
    Command::new("redis-cli")
        .args(["-p", &port.to_string(), "CLUSTER", "INFO"])
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok"))
}
