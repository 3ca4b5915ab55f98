//! The binary's own view of itself (issue 14): `--version` names the
//! commit, and `completions` prints a script for bash, zsh and fish that
//! knows every command.

use std::process::Command;

fn binary(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_osir-gateway"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `git rev-parse --short HEAD` of this checkout, when it is one.
fn checkout_commit() -> Option<String> {
    let dir = env!("CARGO_MANIFEST_DIR");
    let top = Command::new("git")
        .args(["-C", dir, "rev-parse", "--show-toplevel"])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let top = String::from_utf8(top.stdout).ok()?;
    let same = std::fs::canonicalize(top.trim()).ok()? == std::fs::canonicalize(dir).ok()?;
    if !same {
        return None;
    }
    let out = Command::new("git")
        .args(["-C", dir, "rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    Some(String::from_utf8(out.stdout).ok()?.trim().to_owned())
}

#[test]
fn version_names_the_version_and_the_commit() {
    for flag in ["--version", "-V"] {
        let (code, stdout, _) = binary(&[flag]);
        assert_eq!(code, 0);
        let want = format!(
            "osir-gateway {} (commit {})\n",
            env!("CARGO_PKG_VERSION"),
            osir_gateway::version::COMMIT
        );
        assert_eq!(stdout, want);
    }
    let commit = osir_gateway::version::COMMIT;
    assert!(
        commit == "unknown" || commit.bytes().all(|c| c.is_ascii_alphanumeric()),
        "{commit:?}"
    );
    if let Some(head) = checkout_commit() {
        assert_eq!(commit, head, "built from a checkout: the commit is HEAD's");
    }
}

#[test]
fn completions_for_each_shell_name_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, script, stderr) = binary(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {stderr}");
        assert!(!script.trim().is_empty(), "{shell}: empty script");
        for word in [
            "osir-gateway",
            "run",
            "check",
            "demo",
            "keys",
            "completions",
            "create",
            "revoke",
            "rotate",
            "config",
        ] {
            assert!(script.contains(word), "{shell}: {word} missing");
        }
    }
    let (code, stdout, stderr) = binary(&["completions", "powershell"]);
    assert_eq!(code, 2, "an unsupported shell is a usage error");
    assert!(stdout.is_empty());
    assert!(stderr.contains("bash") && stderr.contains("zsh") && stderr.contains("fish"));
}

/// The repository's documents, relative to its root.
const DOCS: [&str; 4] = [
    "README.md",
    "bench/README.md",
    "docs/reference.md",
    "docs/store.md",
];

fn read_doc(path: &str) -> String {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_docs_stand_alone() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for doc in DOCS {
        let text = read_doc(doc);
        assert!(
            !text.contains("shared/") && !text.contains("CONTRACT.md"),
            "{doc} points outside the repository"
        );
        // Every relative Markdown link names a file in the repository.
        let dir = root.join(doc).parent().unwrap().to_owned();
        for link in text.split("](").skip(1) {
            let target = link.split(')').next().unwrap_or("");
            let file = target.split('#').next().unwrap_or("");
            if file.is_empty() || file.contains("://") {
                continue;
            }
            assert!(
                dir.join(file).exists(),
                "{doc} links {target}, which is not in the repository"
            );
        }
    }
    let readme = read_doc("README.md");
    assert!(readme.contains("docs/reference.md"));
}

#[test]
fn the_reference_names_every_error_code_and_metric_family() {
    use osir_gateway::error::GatewayError as E;
    use osir_gateway::keys::{Action, Scope};
    let reference = read_doc("docs/reference.md");
    use osir_gateway::error::{BadRequest, PathError, UpstreamFailure};
    let d = std::time::Duration::from_secs(1);
    // Every variant: a new one fails to compile here until it is added.
    let all = [
        E::InvalidPath(PathError::DotSegment),
        E::AmbiguousCredentials,
        E::MisplacedApiKey(osir_gateway::keys::Place::Path),
        E::InvalidRequest(BadRequest::Upgrade),
        E::MethodNotAllowed(""),
        E::PayloadTooLarge,
        E::HeadersTooLarge,
        E::MissingApiKey,
        E::InvalidApiKey,
        E::ExpiredApiKey,
        E::RevokedApiKey,
        E::IpNotAllowed,
        E::InsufficientScope(Scope::new("x", Action::Read)),
        E::RouteNotFound,
        E::RateLimited(d),
        E::UpstreamUnavailable(UpstreamFailure::Missing),
        E::KeyStoreUnavailable {
            retry_after: d,
            source: std::sync::Arc::new(std::io::Error::other("down")),
        },
        E::UpstreamTimeout,
    ];
    for e in &all {
        match e {
            E::InvalidPath(_)
            | E::AmbiguousCredentials
            | E::MisplacedApiKey(_)
            | E::InvalidRequest(_)
            | E::MethodNotAllowed(_)
            | E::PayloadTooLarge
            | E::HeadersTooLarge
            | E::MissingApiKey
            | E::InvalidApiKey
            | E::ExpiredApiKey
            | E::RevokedApiKey
            | E::IpNotAllowed
            | E::InsufficientScope(_)
            | E::RouteNotFound
            | E::RateLimited(_)
            | E::UpstreamUnavailable(_)
            | E::KeyStoreUnavailable { .. }
            | E::UpstreamTimeout => {}
        }
        let row = format!("| {} | `{}` |", e.status().as_u16(), e.code());
        assert!(reference.contains(&row), "docs/reference.md lacks {row}");
    }
    // The admin API's own codes (its error type is internal to the crate).
    for row in [
        "| 404 | `key_not_found` |",
        "| 401 | `unauthorized` |",
        "| 500 | `internal_error` |",
    ] {
        assert!(reference.contains(row), "docs/reference.md lacks {row}");
    }
    let metrics = osir_gateway::metrics::Metrics::new();
    // One sample in every labelled family, so each is rendered.
    metrics.record_request(None, &http::Method::GET, http::StatusCode::OK, "ok", 0.1);
    metrics
        .upstream_duration
        .with_label_values(&["u"])
        .observe(0.1);
    metrics.upstream_connects.with_label_values(&["u"]).inc();
    metrics
        .upstream_errors
        .with_label_values(&["u", "connect"])
        .inc();
    metrics.open_connections.with_label_values(&["http"]).set(1);
    let text = String::from_utf8(metrics.render()).unwrap();
    for line in text
        .lines()
        .filter(|l| l.starts_with("# TYPE osir_gateway_"))
    {
        let family = line.split(' ').nth(2).unwrap();
        assert!(
            reference.contains(&format!("`{family}")),
            "docs/reference.md lacks {family}"
        );
    }
    for command in ["run", "check", "demo", "keys create", "completions"] {
        assert!(reference.contains(&format!("`{command}")), "{command}");
    }
}
