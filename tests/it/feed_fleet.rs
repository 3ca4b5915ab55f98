//! Three real gateway processes under load while Redis is paused (SIGSTOP)
//! and resumed (SIGCONT): all three say they are not ready while the feed
//! is silent, keep serving the cached key, and after the resume refuse a
//! key revoked by `keys revoke` within 1 s, never serve it again, and flush
//! nothing (read from each one's `/metrics`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::fleet::Process;
use crate::support::client::{bearer, get};
use crate::support::eventually_async;
use crate::support::keys::{cli_create, CliConfig};
use crate::support::redis::RedisServer;
use crate::support::upstream::RecordingUpstream;

const WITHIN: Duration = Duration::from_secs(1);

async fn all(gws: &[Process], want_ready: bool, within: Duration) -> bool {
    eventually_async(within, || async {
        for g in gws {
            let ready = g.ready().await;
            if ready != want_ready {
                return false;
            }
        }
        true
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_processes_lose_no_revoke_across_a_redis_pause() {
    let redis = RedisServer::start();
    let up = RecordingUpstream::start("up").await;
    let gws: Vec<Process> = (0..3).map(|_| Process::start(&redis, &up)).collect();
    assert!(
        all(&gws, true, Duration::from_secs(10)).await,
        "not all gateways became ready: {}",
        gws.iter()
            .map(Process::stderr)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let cli = CliConfig::redis_store(&redis.url());
    let (key, id) = tokio::task::block_in_place(|| cli_create(&cli, "live", &["domains:read"]));
    let auth = bearer(&key);
    for g in &gws {
        let ok = eventually_async(Duration::from_secs(5), || async {
            get(&g.url("/v1/domains"), &[("authorization", &auth)])
                .await
                .status
                == 200
        })
        .await;
        assert!(ok, "the key never worked on a gateway");
    }

    // Load: each gateway asked for the key in a loop; (gateway, sent, status).
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<(usize, Instant, u16)>>> = Arc::default();
    let mut load = Vec::new();
    for (i, g) in gws.iter().enumerate() {
        let (url, auth, stop, seen) = (
            g.url("/v1/domains"),
            auth.clone(),
            stop.clone(),
            seen.clone(),
        );
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let r = get(&url, &[("authorization", &auth)]).await;
                seen.lock().push((i, sent, r.status.as_u16()));
            }
        }));
    }

    redis.pause();
    assert!(
        all(&gws, false, Duration::from_secs(3)).await,
        "a gateway stayed ready with a silent feed"
    );
    redis.resume();
    assert!(all(&gws, true, Duration::from_secs(3)).await);
    let revoked_at = Instant::now();
    tokio::task::block_in_place(|| cli.run(&["keys", "revoke", &id]).ok());
    // Every gateway refuses it within 1 s of the command starting…
    let deadline = revoked_at + WITHIN;
    let refused = eventually_async(WITHIN + Duration::from_millis(200), || async {
        let s = seen.lock();
        (0..gws.len()).all(|g| {
            s.iter()
                .any(|(i, t, st)| *i == g && *t >= revoked_at && *st == 401)
        })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        let _ = t.await;
    }
    assert!(refused, "not every gateway refused the revoked key");
    let s = seen.lock().clone();
    for g in 0..gws.len() {
        let first = s
            .iter()
            .filter(|(i, t, st)| *i == g && *t >= revoked_at && *st == 401)
            .map(|(_, t, _)| *t)
            .min()
            .unwrap();
        println!(
            "fleet, after a Redis pause: gateway {g} refused the revoked key {:?} after `keys revoke` started",
            first - revoked_at
        );
        assert!(
            first <= deadline,
            "gateway {g} took {:?}",
            first - revoked_at
        );
        // …and never serves it again.
        let late = s
            .iter()
            .filter(|(i, t, st)| *i == g && *t > first && *st == 200)
            .count();
        assert_eq!(late, 0, "gateway {g} served the key after refusing it");
        // During the pause the cached key kept working: no 5xx, no 429.
        let bad = s
            .iter()
            .filter(|(i, t, st)| *i == g && *t < revoked_at && *st != 200)
            .count();
        assert_eq!(
            bad, 0,
            "gateway {g} refused the valid cached key during the pause"
        );
    }
    for g in &gws {
        let (_, text) = g.admin_get("/metrics").await.unwrap();
        let flushes: f64 = text
            .lines()
            .filter(|l| l.starts_with("osir_gateway_key_cache_flushes_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert_eq!(flushes, 0.0, "{text}");
        assert!(text.contains("osir_gateway_change_feed_up 1"));
    }
}
