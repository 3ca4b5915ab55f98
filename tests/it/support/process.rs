//! The real binary as a long-running gateway: `osir-gateway -c CONFIG run`.

use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::keys::CliConfig;

/// A port nothing listens on right now, for a config the binary will bind.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// A `run` config over a redis store: the API on 127.0.0.1:`api`, the admin
/// listener on 127.0.0.1:`admin`, the store at `redis`, `log` as the body
/// of `[log]`, one upstream `up` at `up` and the `/v1/domains` route to it;
/// `extra` is appended (more routes).
pub fn run_config(api: u16, admin: u16, redis: &str, up: &str, log: &str, extra: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:{api}"
[admin]
listen = "127.0.0.1:{admin}"
[store]
backend = "redis"
url = "{redis}"
[log]
{log}
[upstreams.up]
url = "{up}"
[[routes]]
prefix = "/v1/domains"
upstream = "up"
resource = "domains"
{extra}"#
    )
}

/// One `osir-gateway -c CONFIG run` process, without `RUST_LOG`, its
/// stdout and stderr in files `stdout` and `stderr` beside the config;
/// killed and reaped when dropped.
pub struct GatewayProcess {
    pub child: Child,
    dir: PathBuf,
}

impl GatewayProcess {
    pub fn start(cfg: &CliConfig) -> GatewayProcess {
        GatewayProcess::start_env(cfg, &[])
    }

    /// Like [`GatewayProcess::start`], with `env` added to the child's
    /// environment (a password variable, say).
    pub fn start_env(cfg: &CliConfig, env: &[(&str, &str)]) -> GatewayProcess {
        let dir = cfg.dir.path().to_path_buf();
        let child = Command::new(env!("CARGO_BIN_EXE_osir-gateway"))
            .arg("-c")
            .arg(&cfg.path)
            .arg("run")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(File::create(dir.join("stdout")).unwrap())
            .stderr(File::create(dir.join("stderr")).unwrap())
            .spawn()
            .unwrap();
        GatewayProcess { child, dir }
    }

    /// What it has written to stderr so far ("" if unreadable).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
