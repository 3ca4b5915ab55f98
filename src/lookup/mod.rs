//! The hot-path key lookup: the cache in front of the store (single flight,
//! per-shard epochs, stale-if-error) and per-key usage counting.

pub mod cache;
pub(crate) mod usage;
