//! Which build is running: the crate version and the commit it was built
//! from (`build.rs` records it; `unknown` outside a git checkout). Shown by
//! `--version` and exported as `osir_gateway_build_info{version,commit}`.

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The short commit hash the binary was built from, or `unknown`.
pub const COMMIT: &str = env!("OSIR_GATEWAY_COMMIT");

/// What `osir-gateway --version` prints after the name.
pub const LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("OSIR_GATEWAY_COMMIT"),
    ")"
);
