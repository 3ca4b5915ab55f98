//! The key model, with no I/O: API keys (format, checksum, hashing,
//! redaction) and key records (scopes, timestamps, usage).

pub mod api_key;
pub mod record;
