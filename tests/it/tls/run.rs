//! `run` refusing a missing or unusable certificate.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::TestCa;

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Runs `osir-gateway -c config run`, expecting it to exit on its own; a
/// gateway that starts serving instead is killed after a deadline.
fn run_binary(config: &Path) -> (Option<i32>, String) {
    let log = config.with_extension("stderr");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_osir-gateway"))
        .arg("-c")
        .arg(config)
        .arg("run")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let end = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the gateway did not exit: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code(), std::fs::read_to_string(&log).unwrap())
}

#[test]
fn run_refuses_to_start_without_a_usable_certificate() {
    let ca = TestCa::new();
    let (leaf, other) = (ca.leaf(), ca.leaf());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateway.pem"), &leaf.cert_pem).unwrap();
    std::fs::write(dir.path().join("gateway.key"), &leaf.key_pem).unwrap();
    std::fs::write(dir.path().join("other.key"), &other.key_pem).unwrap();
    let write = |cert: &str, key: &str| {
        let text = format!(
            r#"[server]
listen = "{}"
[server.tls]
listen = "{}"
cert = "{cert}"
key = "{key}"
[admin]
listen = "{}"
[store]
backend = "file"
path = "keys.json"
[upstreams.a]
url = "http://127.0.0.1:7001"
[[routes]]
prefix = "/v1/a"
upstream = "a"
resource = "a"
"#,
            free_addr(),
            free_addr(),
            free_addr(),
        );
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, text).unwrap();
        path
    };

    // `check` does not open certificate files; `run` must refuse to start.
    let (code, stderr) = run_binary(&write("missing.pem", "gateway.key"));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("server.tls.cert"), "{stderr}");
    assert!(
        stderr.contains(&dir.path().join("missing.pem").display().to_string()),
        "{stderr}"
    );

    let (code, stderr) = run_binary(&write("gateway.pem", "other.key"));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("does not match"), "{stderr}");
    assert!(
        stderr.contains(&dir.path().join("other.key").display().to_string()),
        "{stderr}"
    );
}
