//! Records the commit the binary is built from, for `--version` and
//! `osir_gateway_build_info`: `git rev-parse --short HEAD` when the source
//! is a git checkout and git is installed, else `OSIR_GATEWAY_COMMIT` from
//! the environment (for packagers building from a tarball), else `unknown`.
//! A missing git is never an error: a tarball must build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// Only `[0-9a-f]` (git) or a short, plain token (the environment), so the
/// value is always a safe metric label and version string.
fn sanitized(commit: &str) -> Option<String> {
    let ok = !commit.is_empty()
        && commit.len() <= 40
        && commit
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-' || c == b'_');
    ok.then(|| commit.to_owned())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=OSIR_GATEWAY_COMMIT");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    // Inside a checkout, rebuild when HEAD moves: watch HEAD itself and the
    // ref it names (loose or packed). Only existing files are named, since
    // cargo reruns a build script on every build for a missing one.
    // Only a checkout of this repository counts: a tarball unpacked inside
    // some other git work tree must not report that tree's commit.
    let in_checkout = git(&[
        "-C",
        &manifest.to_string_lossy(),
        "rev-parse",
        "--show-toplevel",
    ])
    .is_some_and(|top| {
        let real = |p: &Path| std::fs::canonicalize(p).ok();
        real(Path::new(&top)).is_some() && real(Path::new(&top)) == real(&manifest)
    });
    let mut commit = None;
    if in_checkout {
        let dir = manifest.to_string_lossy().into_owned();
        let abs = |p: String| {
            let p = PathBuf::from(p);
            if p.is_absolute() {
                p
            } else {
                manifest.join(p)
            }
        };
        if let Some(git_dir) = git(&["-C", &dir, "rev-parse", "--git-dir"]).map(abs) {
            watch(&git_dir.join("HEAD"));
            if let Some(common) = git(&["-C", &dir, "rev-parse", "--git-common-dir"]).map(abs) {
                if let Some(head_ref) = git(&["-C", &dir, "symbolic-ref", "-q", "HEAD"]) {
                    watch(&common.join(head_ref));
                }
                watch(&common.join("packed-refs"));
            }
        }
        commit = git(&["-C", &dir, "rev-parse", "--short", "HEAD"]).and_then(|c| sanitized(&c));
    }
    let commit = commit
        .or_else(|| {
            std::env::var("OSIR_GATEWAY_COMMIT")
                .ok()
                .and_then(|c| sanitized(c.trim()))
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=OSIR_GATEWAY_COMMIT={commit}");
}

fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
