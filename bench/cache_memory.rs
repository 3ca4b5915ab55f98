//! Memory per cached key: fills the key cache with N records (realistic:
//! two scopes, one CIDR, an account) and reports RSS growth per entry.
//! Run: `cargo bench --bench cache_memory` (N = 1,000,000; `CACHE_KEYS=N` to change).
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::path::Path;
use std::sync::Arc;

use osir_gateway::config::Config;
use osir_gateway::keys::{parse_ip_or_cidr, KeyRecord, Scope, Timestamp};
use osir_gateway::keys::{ApiKey, Env};
use osir_gateway::lookup::cache::{KeyCache, Lookup};
use osir_gateway::metrics::Metrics;
use osir_gateway::store::{memory::MemoryStore, Store};

/// The gateway binary's allocator, so the figure is the gateway's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let n: u64 = std::env::var("CACHE_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:1\"\n[store]\nbackend = \"file\"\npath = \"x.json\"\n[cache]\ncapacity = {n}\n[upstreams.up]\nurl = \"http://127.0.0.1:1\"\n"
    );
    let cfg = Config::from_toml(&toml, Path::new(".")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mem = MemoryStore::new();
    let store = Store::new(mem.clone());
    let scopes = vec![
        Scope::parse("domains:read").unwrap(),
        Scope::parse("vps:*").unwrap(),
    ];
    let ips = vec![parse_ip_or_cidr("203.0.113.0/24").unwrap()];
    let mut hashes = Vec::with_capacity(n as usize);
    rt.block_on(async {
        for i in 0..n {
            let key = ApiKey::generate(Env::Live).unwrap();
            let rec = KeyRecord {
                id: format!("key_{i:020}"),
                name: "production deploys".into(),
                account: Some(format!("acct_{:08}", i % 100_000)),
                env: Env::Live,
                scopes: scopes.clone(),
                allowed_ips: ips.clone(),
                created_at: Timestamp::now(),
                expires_at: None,
                revoked_at: None,
                hint: key.hint(),
                replaces: None,
                replaced_by: None,
            };
            store.insert(&key.hash(), &rec).await.unwrap();
            hashes.push(key.hash());
        }
    });
    let cache = KeyCache::new(&cfg.cache, store, Arc::new(Metrics::new()));
    let before = rss_kib();
    rt.block_on(async {
        for h in &hashes {
            assert!(matches!(cache.get(h).await.unwrap(), Lookup::Found(_)));
        }
    });
    cache.publish_sizes();
    let after = rss_kib();
    let per_key = (after.saturating_sub(before) * 1024) as f64 / n as f64;
    println!("cached keys: {n}");
    println!(
        "RSS before filling the cache: {:.1} MiB",
        before as f64 / 1024.0
    );
    println!(
        "RSS after:                    {:.1} MiB",
        after as f64 / 1024.0
    );
    println!("bytes per cached key:         {per_key:.0}");
}
