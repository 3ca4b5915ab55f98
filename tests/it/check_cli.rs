//! `osir-gateway check` as operators run it (CONTRACT §2, §10): the real
//! binary, real files. A valid file exits 0; each kind of mistake exits 1
//! with one stderr line per problem naming the field; several problems are
//! all reported in one run; usage errors exit 2; a failed key command exits
//! 1 with one line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_osir-gateway");

/// A valid file-backend config; mutations below break one thing each.
const BASE: &str = r#"[server]
listen = "127.0.0.1:8080"
[admin]
listen = "127.0.0.1:9090"
[store]
backend = "file"
path = "keys.json"
[upstreams.a]
url = "http://127.0.0.1:7001"
timeout = "30s"
[[routes]]
prefix = "/v1/a"
upstream = "a"
resource = "a"
[[routes]]
prefix = "/v1/b"
upstream = "a"
resource = "b"
"#;

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run osir-gateway")
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn check(path: &Path) -> Output {
    run(&["-c", path.to_str().unwrap(), "check"])
}

fn stderr_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Checks `text` and asserts exit 1 with exactly one stderr line that
/// contains every one of `want`.
fn assert_one_problem(text: &str, want: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let out = check(&write(dir.path(), text));
    let lines = stderr_lines(&out);
    assert_eq!(out.status.code(), Some(1), "{lines:?}\n{text}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    for w in want {
        assert!(lines[0].contains(w), "{w:?} not in {:?}", lines[0]);
    }
}

#[test]
fn the_repository_sample_and_the_base_config_are_valid() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml");
    let out = run(&["-c", sample, "check"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", stderr_lines(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
    let dir = tempfile::tempdir().unwrap();
    let out = check(&write(dir.path(), BASE));
    assert_eq!(out.status.code(), Some(0), "{:?}", stderr_lines(&out));
    assert!(out.stderr.is_empty());
}

#[test]
fn unknown_fields_are_named() {
    assert_one_problem(&format!("bogus = 1\n{BASE}"), &["bogus", "unknown field"]);
    assert_one_problem(
        &BASE.replace("[store]\n", "[store]\nurll = \"x\"\n"),
        &["store.urll", "unknown field `urll`"],
    );
    assert_one_problem(
        &BASE.replace("timeout = \"30s\"", "timeout = \"30s\"\ntimout = \"1s\""),
        &["upstreams.a.timout", "unknown field"],
    );
}

#[test]
fn bad_trusted_proxy_cidr_is_named() {
    assert_one_problem(
        &format!("{BASE}[auth]\ntrusted_proxies = [\"10.0.0.1\", \"10.0.0.0/33\"]\n"),
        &["auth.trusted_proxies[1]: invalid IP or CIDR \"10.0.0.0/33\""],
    );
}

#[test]
fn bad_upstream_urls_are_named() {
    let with = |url: &str| BASE.replace("http://127.0.0.1:7001", url);
    assert_one_problem(&with("not a url"), &["upstreams.a.url: invalid URL"]);
    assert_one_problem(
        &with("https://api.example"),
        &["upstreams.a.url: only http:// upstreams are supported"],
    );
}

#[test]
fn route_naming_a_missing_upstream_is_named() {
    let text = BASE.replacen(
        "upstream = \"a\"\nresource = \"b\"",
        "upstream = \"nowhere\"\nresource = \"b\"",
        1,
    );
    assert_one_problem(
        &text,
        &["routes[1].upstream: no upstream named \"nowhere\""],
    );
}

#[test]
fn duplicate_prefix_is_named() {
    assert_one_problem(
        &BASE.replace("\"/v1/b\"", "\"/v1/a\""),
        &["routes[1].prefix: duplicate prefix \"/v1/a\" (also routes[0])"],
    );
}

#[test]
fn bad_duration_is_named() {
    assert_one_problem(
        &BASE.replace("\"30s\"", "\"5 parsecs\""),
        &["upstreams.a.timeout: invalid duration \"5 parsecs\""],
    );
}

#[test]
fn toml_syntax_error_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &format!("{BASE}[server\n"));
    let out = check(&path);
    let lines = stderr_lines(&out);
    assert_eq!(out.status.code(), Some(1), "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with(path.to_str().unwrap()), "{lines:?}");
    let line = BASE.lines().count() + 1;
    let at = format!("invalid TOML at line {line}, column 8");
    assert!(lines[0].contains(&at), "{lines:?}");
}

#[test]
fn a_missing_file_is_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.toml");
    let out = check(&path);
    let lines = stderr_lines(&out);
    assert_eq!(out.status.code(), Some(1), "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("absent.toml"), "{lines:?}");
    assert!(lines[0].contains("cannot read the file"), "{lines:?}");
}

#[test]
fn every_problem_in_a_file_is_reported_in_one_run() {
    let text = format!(
        "{}[auth]\ntrusted_proxies = [\"300.0.0.1\"]\n",
        BASE.replace("http://127.0.0.1:7001", "https://api.example")
            .replace("\"30s\"", "\"soon\"")
            .replace("\"/v1/b\"", "\"/v1/a\"")
            .replacen(
                "upstream = \"a\"\nresource = \"b\"",
                "upstream = \"gone\"\nresource = \"b\"",
                1
            )
    );
    let dir = tempfile::tempdir().unwrap();
    let out = check(&write(dir.path(), &text));
    let lines = stderr_lines(&out);
    assert_eq!(out.status.code(), Some(1), "{lines:?}");
    for field in [
        "auth.trusted_proxies[0]:",
        "upstreams.a.url:",
        "upstreams.a.timeout:",
        "routes[1].prefix:",
        "routes[1].upstream:",
    ] {
        let n = lines.iter().filter(|l| l.starts_with(field)).count();
        assert_eq!(n, 1, "{field} in {lines:?}");
    }
    assert_eq!(lines.len(), 5, "{lines:?}");
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), BASE);
    let p = path.to_str().unwrap();
    for args in [
        &["-c", p, "frobnicate"][..],
        &["-c", p, "check", "--bogus"],
        &["--bogus", "check"],
        &["-c", p, "keys", "create", "--scope", "a:read"],
        &["-c", p, "keys", "show"],
    ] {
        let out = run(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {:?}",
            stderr_lines(&out)
        );
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
}

#[test]
fn showing_an_unknown_key_fails_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), BASE);
    let out = run(&["keys", "show", "nope", "-c", path.to_str().unwrap()]);
    let lines = stderr_lines(&out);
    assert_eq!(out.status.code(), Some(1), "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("nope"), "{lines:?}");
    assert!(out.stdout.is_empty());
}
