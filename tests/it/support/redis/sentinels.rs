//! Three sentinels watching one primary, for failover tests.

use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use super::{ready_within, start_on_a_free_port, wait_ready, Children, TlsFiles, READY_DEADLINE};

/// Three sentinels (`redis-server <conf> --sentinel`) watching one primary
/// as master set [`Sentinels::MASTER`] (quorum 2, down after 500 ms), each
/// with its own config file (sentinels rewrite theirs), killed on drop.
pub struct Sentinels {
    /// The ports they listen on (127.0.0.1 only).
    pub ports: Vec<u16>,
    children: Children,
    dir: tempfile::TempDir,
    /// Set when they speak TLS only (and reach the servers over TLS).
    tls: Option<Arc<TlsFiles>>,
}

impl Sentinels {
    /// The master set's name.
    pub const MASTER: &'static str = "m";

    /// Starts three sentinels monitoring `127.0.0.1:<primary>` and waits
    /// (up to 10 s) until each knows the other two and at least one replica,
    /// so a failover can be agreed on.
    pub fn start(primary: u16) -> Sentinels {
        Sentinels::start_full(primary, None)
    }

    /// Like [`Sentinels::start`], over TLS only: the sentinels listen with
    /// `tls`'s certificate and reach the (TLS) servers over TLS.
    pub fn start_tls(primary: u16, tls: &Arc<TlsFiles>) -> Sentinels {
        Sentinels::start_full(primary, Some(tls.clone()))
    }

    fn start_full(primary: u16, tls: Option<Arc<TlsFiles>>) -> Sentinels {
        let dir = tempfile::tempdir().expect("temp dir for sentinels");
        let mut sentinels = Sentinels {
            ports: Vec::new(),
            children: Children(Vec::new()),
            dir,
            tls,
        };
        for _ in 0..3 {
            let (port, child) =
                start_on_a_free_port("sentinel", |port| sentinels.spawn(port, primary));
            sentinels.ports.push(port);
            sentinels.children.0.push(child);
        }
        let ready = ready_within(Duration::from_millis(50), || {
            sentinels.ports.iter().all(|p| sentinels.ready(*p))
        });
        assert!(
            ready,
            "sentinels did not discover each other and the replica within {READY_DEADLINE:?}"
        );
        sentinels
    }

    fn spawn(&self, port: u16, primary: u16) -> Result<Child, String> {
        let conf = self.dir.path().join(format!("sentinel-{port}.conf"));
        let log = self.dir.path().join(format!("sentinel-{port}.log"));
        let m = Sentinels::MASTER;
        let listen = match &self.tls {
            Some(t) => t.conf_lines(port),
            None => format!("port {port}\n"),
        };
        let body = format!(
            "{listen}bind 127.0.0.1\ndir {dir}\nlogfile {log}\n\
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
        let cli: Vec<String> = self.tls.iter().flat_map(|t| t.cli_args()).collect();
        wait_ready(cmd, port, &log, &cli)
    }

    /// `redis-cli -p <port> [--tls …]`.
    fn cli(&self, port: u16) -> Command {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-p", &port.to_string()])
            .args(self.tls.iter().flat_map(|t| t.cli_args()));
        cmd
    }

    /// `redis+sentinel://127.0.0.1:a,127.0.0.1:b,127.0.0.1:c/m/0`
    /// (`rediss+sentinel://…` over TLS).
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let scheme = if self.tls.is_some() {
            "rediss+sentinel"
        } else {
            "redis+sentinel"
        };
        format!("{scheme}://{}/{}/0", hosts.join(","), Sentinels::MASTER)
    }

    /// The master's port as the first sentinel that answers reports it.
    pub fn master_port(&self) -> Option<u16> {
        self.ports.iter().find_map(|p| {
            let out = self
                .cli(*p)
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

    /// Whether the sentinel on `port` knows two other sentinels and a replica.
    fn ready(&self, port: u16) -> bool {
        sentinel_ready(self.cli(port))
    }
}

fn sentinel_ready(mut cli: Command) -> bool {
    let Ok(out) = cli.args(["SENTINEL", "master", Sentinels::MASTER]).output() else {
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
