//! The key model, with no I/O: API keys (format, checksum, hashing,
//! redaction, recognising a key sent in the wrong place), scopes, allowed-IP
//! entries, timestamps, key records and the audit trail's entries.
//! Everything above builds on these types; nothing here imports the rest of
//! the crate.

pub mod api_key;
pub mod audit;
pub mod ip;
pub mod misplaced;
pub mod record;
pub mod scope;
pub mod time;

pub use api_key::{looks_like_key, ApiKey, Env, KeyFormatError, KeyHash, KEY_LEN};
pub use audit::{Actor, AuditAction, AuditEntry, AuditId, AuditPage, AuditQuery};
pub use ip::{canonical_ip, parse_ip_or_cidr};
pub use misplaced::{is_key_param, redact, Place};
pub use record::{new_key_id, valid_key_id, KeyRecord, KeyUsage, UsageDelta};
pub use scope::{Action, Scope};
pub use time::Timestamp;
