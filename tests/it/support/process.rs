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

/// One `osir-gateway -c CONFIG run` process, without `RUST_LOG`, its
/// stdout and stderr in files `stdout` and `stderr` beside the config;
/// killed and reaped when dropped.
pub struct GatewayProcess {
    pub child: Child,
    dir: PathBuf,
}

impl GatewayProcess {
    pub fn start(cfg: &CliConfig) -> GatewayProcess {
        let dir = cfg.dir.path().to_path_buf();
        let child = Command::new(env!("CARGO_BIN_EXE_osir-gateway"))
            .arg("-c")
            .arg(&cfg.path)
            .arg("run")
            .env_remove("RUST_LOG")
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
