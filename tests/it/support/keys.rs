//! Keys for tests: made through the real [`KeyService`] (or the real
//! binary), stores to put them in, and the text tricks tests need.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use osir_gateway::keys::Env;
use osir_gateway::keys::KeyRecord;
use osir_gateway::manage::{parse_ips, parse_scopes, KeyService, NewKey};
use osir_gateway::store::{memory::MemoryStore, Store};

use super::redis::RedisServer;

/// What a test key grants: `scopes` and `ips` as the CLI would take them.
pub fn new_key(env: Env, scopes: &[&str], ips: &[&str]) -> NewKey {
    let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    NewKey {
        name: "test key".into(),
        env,
        scopes: parse_scopes(&owned(scopes)).unwrap(),
        allowed_ips: parse_ips(&owned(ips)).unwrap(),
        account: None,
        expires_in: None,
    }
}

/// Creates a key; returns the secret and the stored record.
pub async fn create_key(
    store: &Store,
    env: Env,
    scopes: &[&str],
    ips: &[&str],
) -> (String, KeyRecord) {
    create(store, new_key(env, scopes, ips)).await
}

/// Creates a key from a full [`NewKey`] (account, expiry).
pub async fn create(store: &Store, new: NewKey) -> (String, KeyRecord) {
    let issued = KeyService::new(store).create(new).await.unwrap();
    (issued.key.expose_secret().to_owned(), issued.record)
}

/// The same key with its last character changed: well-formed, wrong checksum.
pub fn bad_checksum(key: &str) -> String {
    let (head, last) = key.split_at(key.len() - 1);
    format!("{head}{}", if last == "0" { '1' } else { '0' })
}

/// The 32-character body of a key (everything after `osir_<env>_`).
pub fn body(key: &str) -> &str {
    &key[10..]
}

pub fn memory_store() -> Store {
    Store::new(MemoryStore::new())
}

/// A new connection to `redis` (each gateway or writer gets its own).
pub async fn redis_store(redis: &RedisServer) -> Store {
    let s = osir_gateway::store::redis::connect(&redis.url(), Duration::from_secs(1)).await;
    Store::new(s.unwrap_or_else(|e| panic!("cannot connect to the test redis: {e}")))
}

/// A config the `keys` commands (and `run`) accept, with `store` as the
/// whole `[store]` table body and `rest` appended.
pub fn cli_config(store: &str, rest: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:1\"\n[admin]\nlisten = \"127.0.0.1:2\"\n[store]\n{store}\n{rest}\n"
    )
}

/// A config file in its own temp dir, for runs of the real binary.
pub struct CliConfig {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl CliConfig {
    pub fn new(toml: &str) -> CliConfig {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, toml).unwrap();
        CliConfig { dir, path }
    }

    /// A file-store config (`keys.json` beside it).
    pub fn file_store() -> CliConfig {
        CliConfig::new(&cli_config("backend = \"file\"\npath = \"keys.json\"", ""))
    }

    pub fn redis_store(url: &str) -> CliConfig {
        CliConfig::new(&cli_config(
            &format!("backend = \"redis\"\nurl = \"{url}\""),
            "",
        ))
    }

    /// Where a file-store config keeps its keys.
    pub fn keys_file(&self) -> PathBuf {
        self.dir.path().join("keys.json")
    }

    pub fn run(&self, args: &[&str]) -> CliRun {
        run_binary(&self.path, args)
    }

    /// Like [`CliConfig::run`], with `env` added to the child's environment.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> CliRun {
        run_binary_env(&self.path, args, env)
    }
}

/// One finished run of the binary.
#[derive(Debug)]
pub struct CliRun {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliRun {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// Asserts exit 0 and returns self, for chaining.
    pub fn ok(self) -> CliRun {
        assert_eq!(self.code, 0, "command failed: {self:?}");
        self
    }
}

/// `osir-gateway -c CONFIG ARGS…`, waited for.
pub fn run_binary(config: &Path, args: &[&str]) -> CliRun {
    run_binary_env(config, args, &[])
}

/// [`run_binary`] with `env` added to the child's environment.
pub fn run_binary_env(config: &Path, args: &[&str], env: &[(&str, &str)]) -> CliRun {
    let out = Command::new(env!("CARGO_BIN_EXE_osir-gateway"))
        .arg("-c")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run osir-gateway: {e}"));
    CliRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `keys create --name NAME --env ENV --scope S… --json` through the binary:
/// returns the secret and the id.
pub fn cli_create(cfg: &CliConfig, env: &str, scopes: &[&str]) -> (String, String) {
    let mut args = vec![
        "keys", "create", "--name", "cli key", "--env", env, "--scope",
    ];
    args.extend_from_slice(scopes);
    args.push("--json");
    let v = cfg.run(&args).ok().json();
    let key = v["key"]
        .as_str()
        .expect("no key in create --json")
        .to_owned();
    let id = v["id"].as_str().expect("no id in create --json").to_owned();
    (key, id)
}
