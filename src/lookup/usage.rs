//! Per-key usage ("Monitor usage"): requests per key per day, last use and
//! last client IP.
//!
//! Counted in memory on the request path (a sharded map, so no global lock
//! and no store round trip per request) and written to the store every
//! `usage.flush_interval`, a shard at a time in batches of at most
//! [`BATCH`] keys: one Redis script call per batch, so a flush of many keys
//! never holds Redis (single-threaded while a script runs) for long, and no
//! flush needs one large buffer. A batch that fails to write is merged back
//! and retried with the next flush, so a store outage loses nothing that
//! this process saw; shutdown flushes what is left.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::net::IpAddr;

use parking_lot::Mutex;

use super::Hasher;
use crate::keys::{Timestamp, UsageDelta};
use crate::store::Store;

const SHARDS: usize = 16;
/// Keys per store write. A Redis script of 500 keys runs in about a
/// millisecond; one of 20,000 held every other command for tens of them.
pub(crate) const BATCH: usize = 500;
const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Default, Clone)]
struct Pending {
    /// Day number (ms / DAY_MS) → requests.
    days: BTreeMap<i64, u64>,
    last_ms: i64,
    last_ip: Option<IpAddr>,
}

/// The shard picker and each shard have a hasher of their own seed, so
/// they hash independently.
type Shard = Mutex<HashMap<Box<str>, Pending, Hasher>>;

/// Counts usage for one gateway process.
pub struct UsageRecorder {
    shards: [Shard; SHARDS],
    hasher: Hasher,
}

impl Default for UsageRecorder {
    fn default() -> Self {
        UsageRecorder::new()
    }
}

impl UsageRecorder {
    /// An empty recorder.
    pub fn new() -> UsageRecorder {
        UsageRecorder {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::with_hasher(Hasher::default()))),
            hasher: Hasher::default(),
        }
    }

    fn shard(&self, id: &str) -> &Shard {
        &self.shards[(self.hasher.hash_one(id) as usize) % SHARDS]
    }

    /// Counts one request by key `id` from `ip` at `now`. Allocates only the
    /// first time a key is seen in a flush period.
    pub fn record(&self, id: &str, ip: IpAddr, now: Timestamp) {
        let mut map = self.shard(id).lock();
        let p = match map.get_mut(id) {
            Some(p) => p,
            None => map.entry(id.into()).or_default(),
        };
        *p.days.entry(now.0.div_euclid(DAY_MS)).or_default() += 1;
        if now.0 >= p.last_ms {
            p.last_ms = now.0;
            p.last_ip = Some(ip);
        }
    }

    /// Takes what one shard has counted so far. The map keeps its table,
    /// so the next period's keys go in without growing it again.
    fn drain_shard(&self, shard: usize) -> Vec<(Box<str>, Pending)> {
        self.shards[shard].lock().drain().collect()
    }

    fn merge_back(&self, items: Vec<(Box<str>, Pending)>) {
        for (id, p) in items {
            let mut map = self.shard(&id).lock();
            let cur = map.entry(id).or_default();
            for (d, n) in p.days {
                *cur.days.entry(d).or_default() += n;
            }
            if p.last_ms >= cur.last_ms {
                cur.last_ms = p.last_ms;
                cur.last_ip = p.last_ip;
            }
        }
    }

    /// Writes the pending counts to `store`, in batches of at most
    /// [`BATCH`] keys; on a failure keeps what was not written for the next
    /// attempt (shards not reached yet keep theirs in place). Returns how
    /// many keys were written.
    pub async fn flush(&self, store: &Store) -> Result<usize, crate::store::StoreError> {
        let mut written = 0;
        for shard in 0..SHARDS {
            let mut items = self.drain_shard(shard);
            while !items.is_empty() {
                let rest = items.split_off(items.len().min(BATCH));
                let batch: Vec<UsageDelta> = items.iter().filter_map(delta).collect();
                if let Err(e) = store.add_usage(&batch).await {
                    self.merge_back(items);
                    self.merge_back(rest);
                    return Err(e);
                }
                written += batch.len();
                items = rest;
            }
        }
        Ok(written)
    }
}

/// The store's form of one key's pending counts (none without a client IP,
/// which every recorded request has).
fn delta((id, p): &(Box<str>, Pending)) -> Option<UsageDelta> {
    Some(UsageDelta {
        id: id.to_string(),
        daily: p
            .days
            .iter()
            .map(|(d, n)| (Timestamp(d * DAY_MS).day(), *n))
            .collect(),
        last_used_at: Timestamp(p.last_ms),
        last_ip: p.last_ip?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    #[tokio::test]
    async fn counts_are_batched_per_key_and_day() {
        let store = Store::new(MemoryStore::new());
        let u = UsageRecorder::new();
        let ip1: IpAddr = "192.0.2.1".parse().unwrap();
        let ip2: IpAddr = "192.0.2.2".parse().unwrap();
        let day1 = Timestamp(1_795_000_000_000);
        for _ in 0..5 {
            u.record("key_a", ip1, day1);
        }
        u.record(
            "key_a",
            ip2,
            day1.plus(std::time::Duration::from_secs(86_400)),
        );
        u.record("key_b", ip1, day1);
        assert_eq!(u.flush(&store).await.unwrap(), 2);
        let a = store.usage("key_a").await.unwrap();
        assert_eq!(a.total, 6);
        assert_eq!(a.daily.len(), 2);
        assert_eq!(a.last_ip, Some(ip2));
        assert_eq!(u.flush(&store).await.unwrap(), 0);
        u.record(
            "key_a",
            ip1,
            day1.plus(std::time::Duration::from_secs(90_000)),
        );
        u.flush(&store).await.unwrap();
        assert_eq!(store.usage("key_a").await.unwrap().total, 7);
    }

    #[tokio::test]
    async fn a_flush_of_many_keys_writes_them_all_in_batches() {
        let store = Store::new(MemoryStore::new());
        let u = UsageRecorder::new();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let now = Timestamp(1_795_000_000_000);
        // About 750 keys a shard: every shard needs two batches.
        let n = SHARDS * BATCH * 3 / 2;
        for i in 0..n {
            u.record(&format!("key_{i}"), ip, now);
        }
        u.record("key_0", ip, now);
        assert_eq!(u.flush(&store).await.unwrap(), n);
        assert_eq!(store.usage("key_0").await.unwrap().total, 2);
        assert_eq!(
            store.usage(&format!("key_{}", n - 1)).await.unwrap().total,
            1
        );
        assert_eq!(u.flush(&store).await.unwrap(), 0);
    }
}
