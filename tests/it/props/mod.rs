//! Property tests for the parsers that face the network and the operator:
//! the canonical path check, credential extraction and stripping, client-IP
//! resolution, and config parsing. Each runs a few hundred generated cases
//! (failures are shrunk and saved under `tests/proptest-regressions/`).
//!
//! - The path check never panics; what it accepts it accepts again with the
//!   same result, the decoded form holds no dot segment, empty segment,
//!   backslash, `;`, `%` or control character, and an upstream that
//!   re-encodes it gets the same reading.
//! - Credential extraction never panics, never yields more than one
//!   credential, and agrees with a reference model of "exactly one or 400";
//!   stripping removes every parameter that decodes to `api_key` and keeps
//!   the rest in order, byte for byte.
//! - `client_ip` never panics and names the peer or an address written in
//!   X-Forwarded-For, and only the peer when the peer is not trusted.
//! - `Config::from_toml` never panics on arbitrary text, on TOML-shaped
//!   noise, or on mutations of the sample `gateway.toml`, and is
//!   deterministic.

mod client_ip;
mod config;
mod credentials;
mod paths;

const CASES: u32 = 512;
const CONFIG_CASES: u32 = 256;
