//! Three sentinels watching one primary, for failover tests.

use std::process::{Child, Command};
use std::time::Duration;

use super::{ready_within, start_on_a_free_port, wait_ready, Children, READY_DEADLINE};

/// Three sentinels (`redis-server <conf> --sentinel`) watching one primary
/// as master set [`Sentinels::MASTER`] (quorum 2, down after 500 ms), each
/// with its own config file (sentinels rewrite theirs), killed on drop.
pub struct Sentinels {
    /// The ports they listen on (127.0.0.1 only).
    pub ports: Vec<u16>,
    children: Children,
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
            children: Children(Vec::new()),
            dir,
        };
        for _ in 0..3 {
            let (port, child) =
                start_on_a_free_port("sentinel", |port| sentinels.spawn(port, primary));
            sentinels.ports.push(port);
            sentinels.children.0.push(child);
        }
        let ready = ready_within(Duration::from_millis(50), || {
            sentinels.ports.iter().all(|p| sentinel_ready(*p))
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
