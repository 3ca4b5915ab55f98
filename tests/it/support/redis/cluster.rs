//! A three-master Redis Cluster on loopback.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use super::{ready_within, start_on_a_free_port, wait_ready, Children, TlsFiles, READY_DEADLINE};

/// A three-master Redis Cluster on loopback (no replicas), each node on its
/// own free port with its files in one temp dir, killed on drop.
pub struct RedisCluster {
    /// The nodes' ports (127.0.0.1 only).
    pub ports: Vec<u16>,
    children: Children,
    dir: tempfile::TempDir,
    /// Set when the nodes speak TLS only (clients and the cluster bus).
    tls: Option<Arc<TlsFiles>>,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers, joins them with
    /// `redis-cli --cluster create`, and waits (up to 10 s) until every node
    /// reports `cluster_state:ok`.
    pub fn start() -> RedisCluster {
        RedisCluster::start_full(None)
    }

    /// Like [`RedisCluster::start`], with every node speaking TLS only
    /// (`--tls-cluster yes`: the cluster bus too).
    pub fn start_tls(tls: &Arc<TlsFiles>) -> RedisCluster {
        RedisCluster::start_full(Some(tls.clone()))
    }

    fn start_full(tls: Option<Arc<TlsFiles>>) -> RedisCluster {
        let dir = tempfile::tempdir().expect("temp dir for the cluster");
        let mut cluster = RedisCluster {
            ports: Vec::new(),
            children: Children(Vec::new()),
            dir,
            tls,
        };
        for _ in 0..3 {
            let (port, child) = start_on_a_free_port("cluster node", |port| cluster.spawn(port));
            cluster.ports.push(port);
            cluster.children.0.push(child);
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = Command::new("redis-cli")
            .args(cluster.cli_args())
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
        let ok = ready_within(Duration::from_millis(50), || {
            cluster
                .ports
                .iter()
                .all(|p| cluster_ok(*p, &cluster.cli_args()))
        });
        assert!(
            ok,
            "the cluster did not reach cluster_state:ok within {READY_DEADLINE:?}"
        );
        cluster
    }

    fn spawn(&self, port: u16) -> Result<Child, String> {
        let dir = self.dir.path();
        let log = dir.join(format!("redis-{port}.log"));
        let mut cmd = Command::new("redis-server");
        match &self.tls {
            Some(t) => cmd.args(t.server_args(port)).args(["--tls-cluster", "yes"]),
            None => cmd.args(["--port", &port.to_string()]),
        };
        cmd.args(["--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .arg("--cluster-config-file")
            .arg(dir.join(format!("nodes-{port}.conf")))
            .args(["--cluster-node-timeout", "1000"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(&log);
        wait_ready(cmd, port, &log, &self.cli_args())
    }

    /// The redis-cli options that reach a node.
    fn cli_args(&self) -> Vec<String> {
        self.tls.iter().flat_map(|t| t.cli_args()).collect()
    }

    /// `redis+cluster://127.0.0.1:a,127.0.0.1:b,127.0.0.1:c/`
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let scheme = if self.tls.is_some() {
            "rediss+cluster"
        } else {
            "redis+cluster"
        };
        format!("{scheme}://{}/", hosts.join(","))
    }

    /// Runs `redis-cli -c -p <first node> ARGS…` (following redirects) and
    /// returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-c", "-p", &self.ports[0].to_string()])
            .args(self.cli_args())
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

/// Whether the node on `port` says `cluster_state:ok`.
fn cluster_ok(port: u16, cli: &[String]) -> bool {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(cli)
        .args(["CLUSTER", "INFO"])
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok"))
}
