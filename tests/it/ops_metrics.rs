//! The operator's metrics (issue 14): store errors by op, process and build
//! info, the request histogram by status class with buckets that start
//! where what they measure starts, dropped access-log lines; every label
//! bounded.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use osir_gateway::keys::Env;
use osir_gateway::metrics::StoreOp;
use osir_gateway::pipeline::access_log::AccessLog;
use osir_gateway::store::Store;

use crate::support::client::{bearer, get, random_hex};
use crate::support::eventually;
use crate::support::gateway::{config, TestGateway};
use crate::support::keys::{create_key, memory_store, redis_store};
use crate::support::redis::RedisServer;
use crate::support::upstream::RecordingUpstream;

async fn scrape(gw: &TestGateway) -> String {
    let r = get(&gw.admin_url("/metrics"), &[]).await;
    assert_eq!(r.status, 200);
    r.text()
}

/// The value of the one sample line that starts with `series` (a name with
/// its labels written exactly as the exposition writes them).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}

/// Every label value of `label` in the samples of `family`.
fn label_values(text: &str, family: &str, label: &str) -> BTreeSet<String> {
    let needle = format!("{label}=\"");
    text.lines()
        .filter(|l| l.starts_with(family))
        .filter_map(|l| {
            let start = l.find(&needle)? + needle.len();
            let end = l[start..].find('"')?;
            Some(l[start..start + end].to_owned())
        })
        .collect()
}

fn set(values: &[&str]) -> BTreeSet<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

#[tokio::test]
async fn build_and_process_metrics_are_exported() {
    let up = RecordingUpstream::start("up").await;
    let gw = TestGateway::builder()
        .upstream(&up)
        .store(memory_store())
        .start()
        .await;
    let text = scrape(&gw).await;
    let build = format!(
        "osir_gateway_build_info{{commit=\"{}\",version=\"{}\"}}",
        osir_gateway::version::COMMIT,
        osir_gateway::version::VERSION
    );
    assert_eq!(sample(&text, &build), Some(1.0), "{text}");
    assert!(!osir_gateway::version::COMMIT.is_empty());
    if cfg!(target_os = "linux") {
        for family in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(family)),
                "{family} missing"
            );
        }
        assert!(sample(&text, "process_resident_memory_bytes").is_some_and(|v| v > 0.0));
    }
    // Zero-valued from the start, one series per op and no other.
    assert_eq!(
        label_values(&text, "osir_gateway_store_errors_total", "op"),
        set(&["admin", "feed", "lookup", "usage"])
    );
    assert_eq!(
        sample(&text, "osir_gateway_access_log_dropped_total"),
        Some(0.0)
    );
}

#[tokio::test]
async fn request_durations_are_split_by_status_class_with_fitted_buckets() {
    let up = RecordingUpstream::start("up").await;
    let store = memory_store();
    let gw = TestGateway::builder()
        .upstream(&up)
        .store(store.clone())
        .start()
        .await;
    let (key, _) = create_key(&store, Env::Live, &["domains:read"], &[]).await;
    let auth = bearer(&key);
    for _ in 0..3 {
        let r = get(&gw.url("/v1/domains/a"), &[("authorization", &auth)]).await;
        assert_eq!(r.status, 200);
    }
    for _ in 0..2 {
        let r = get(&gw.url("/v1/vps/a"), &[("authorization", &auth)]).await;
        assert_eq!(r.status, 403);
    }
    get(&gw.url("/v1/domains/a"), &[]).await;
    // Slower than the upstream timeout (1 s): 504.
    let r = get(
        &gw.url("/v1/domains/a"),
        &[("authorization", &auth), ("x-test-delay-ms", "1500")],
    )
    .await;
    assert_eq!(r.status, 504, "{}", r.text());
    let text = scrape(&gw).await;
    let count = |route: &str, class: &str| {
        sample(
            &text,
            &format!(
                "osir_gateway_request_duration_seconds_count{{class=\"{class}\",route=\"{route}\"}}"
            ),
        )
    };
    assert_eq!(count("/v1/domains", "2xx"), Some(3.0), "{text}");
    assert_eq!(count("/v1/domains", "4xx"), Some(1.0), "{text}");
    assert_eq!(count("/v1/domains", "5xx"), Some(1.0), "{text}");
    assert_eq!(count("/v1/vps", "4xx"), Some(2.0), "{text}");
    assert_eq!(count("/v1/vps", "2xx"), None, "{text}");

    let first_bucket = |family: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{family}_bucket")))
            .and_then(|l| l.split("le=\"").nth(1))
            .and_then(|r| r.split('"').next())
            .map(str::to_owned)
    };
    assert_eq!(
        first_bucket("osir_gateway_request_duration_seconds").as_deref(),
        Some("0.000025")
    );
    assert_eq!(
        first_bucket("osir_gateway_auth_duration_seconds").as_deref(),
        Some("0.000025")
    );
    assert_eq!(
        first_bucket("osir_gateway_revocation_delay_seconds").as_deref(),
        Some("0.001")
    );
}

#[tokio::test]
async fn status_classes_and_ops_stay_bounded_whatever_clients_send() {
    let up = RecordingUpstream::start("up").await;
    let store = memory_store();
    let gw = TestGateway::builder()
        .upstream(&up)
        .store(store.clone())
        .start()
        .await;
    let (key, rec) = create_key(&store, Env::Live, &["domains:read"], &[]).await;
    let mut tokens = Vec::new();
    for i in 0..120 {
        let t = random_hex(12);
        let (path, auth) = match i % 4 {
            0 => (format!("/v1/domains/{t}"), bearer(&key)),
            1 => (format!("/v1/vps/{t}"), bearer(&key)),
            2 => (format!("/{t}"), String::new()),
            _ => (format!("/v1/status/{t}?x-status={t}"), String::new()),
        };
        let h: Vec<(&str, &str)> = if auth.is_empty() {
            vec![]
        } else {
            vec![("authorization", auth.as_str())]
        };
        get(&gw.url(&path), &h).await;
        tokens.push(t);
    }
    let text = scrape(&gw).await;
    let classes = label_values(&text, "osir_gateway_request_duration_seconds", "class");
    assert!(
        classes.is_subset(&set(&["1xx", "2xx", "3xx", "4xx", "5xx", "other"])),
        "{classes:?}"
    );
    assert!(classes.contains("2xx") && classes.contains("4xx"));
    assert_eq!(
        label_values(&text, "osir_gateway_store_errors_total", "op"),
        set(&["admin", "feed", "lookup", "usage"])
    );
    for t in &tokens {
        assert!(!text.contains(t.as_str()), "{t} became a label");
    }
    assert!(!text.contains(&rec.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failed_store_call_is_counted_by_op() {
    let up = RecordingUpstream::start("up").await;
    let mut redis = RedisServer::start();
    let store = Store::new(
        osir_gateway::store::redis::connect(&redis.url(), Duration::from_millis(200))
            .await
            .unwrap(),
    );
    let var = format!("OSIR_TEST_ADMIN_{}", random_hex(8).to_uppercase());
    crate::support::set_test_env(&var, "ops-metrics-admin-token");
    let toml = config(&up.url(), None, "").replace(
        "listen = \"127.0.0.1:2\"",
        &format!("listen = \"127.0.0.1:2\"\ntoken_env = \"{var}\""),
    );
    let gw = TestGateway::builder()
        .toml(&toml)
        .store(store.clone())
        .start()
        .await;
    gw.wait_store_watched().await;
    let writer = redis_store(&redis).await;
    let (cached, _) = create_key(&writer, Env::Live, &["domains:read"], &[]).await;
    let (uncached, _) = create_key(&writer, Env::Live, &["domains:read"], &[]).await;
    let r = get(
        &gw.url("/v1/domains/a"),
        &[("authorization", &bearer(&cached))],
    )
    .await;
    assert_eq!(r.status, 200);
    let errors = &gw.gw.metrics.store_errors;
    assert_eq!(errors.get(), 0, "errors before the outage");

    redis.stop();
    // lookup: a key the cache does not hold.
    let r = get(
        &gw.url("/v1/domains/a"),
        &[("authorization", &bearer(&uncached))],
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(errors.get_op(StoreOp::Lookup) >= 1);
    // usage: the batch with the cached key's request fails to write.
    gw.gw.flush_usage().await;
    assert!(errors.get_op(StoreOp::Usage) >= 1);
    // admin: a key API call that needs the store.
    let r = get(
        &gw.admin_url("/keys"),
        &[("authorization", "Bearer ops-metrics-admin-token")],
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(errors.get_op(StoreOp::Admin), 1);
    // feed: the invalidation subscription loses the store.
    assert!(
        eventually(Duration::from_secs(10), || errors.get_op(StoreOp::Feed)
            >= 1)
        .await,
        "the feed's failure was not counted"
    );
    // The store's state comes from the liveness check, once a second.
    let m = gw.gw.metrics.clone();
    assert!(eventually(Duration::from_secs(3), || m.store_up.get() == 0).await);

    let text = scrape(&gw).await;
    for op in ["lookup", "usage", "feed", "admin"] {
        let v = sample(
            &text,
            &format!("osir_gateway_store_errors_total{{op=\"{op}\"}}"),
        );
        assert!(v.is_some_and(|v| v >= 1.0), "{op}: {v:?}\n{text}");
    }
}

/// A writer whose writes wait until the gate opens: the access log's queue
/// fills up behind it and further lines are dropped.
#[derive(Clone, Default)]
struct Gate(Arc<(parking_lot::Mutex<bool>, parking_lot::Condvar)>);

impl Gate {
    fn open(&self) {
        *self.0 .0.lock() = true;
        self.0 .1.notify_all();
    }
}

impl std::io::Write for Gate {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (lock, cvar) = &*self.0;
        let mut open = lock.lock();
        cvar.wait_while(&mut open, |open| !*open);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn dropped_access_log_lines_are_exported() {
    let up = RecordingUpstream::start("up").await;
    let gw = TestGateway::builder()
        .upstream(&up)
        .store(memory_store())
        .start()
        .await;
    let gate = Gate::default();
    let log = Arc::new(AccessLog::to_writer(gate.clone(), 4));
    gw.gw.access_log.store(Some(log.clone()));
    for _ in 0..20 {
        assert_eq!(get(&gw.url("/v1/status"), &[]).await.status, 200);
    }
    // The writer holds at most one line and the queue four: the rest were
    // dropped, and counted as they were.
    assert!(log.dropped() >= 15, "dropped {}", log.dropped());
    let text = scrape(&gw).await;
    let exported = sample(&text, "osir_gateway_access_log_dropped_total").unwrap();
    assert_eq!(exported, log.dropped() as f64);
    // Reported once: a second scrape adds nothing new.
    let again = sample(&scrape(&gw).await, "osir_gateway_access_log_dropped_total").unwrap();
    assert_eq!(again, exported);
    gate.open();
    gw.gw.access_log.store(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_subscription_counts_as_a_feed_error_while_the_store_answers() {
    let up = RecordingUpstream::start("up").await;
    let redis = RedisServer::start();
    let store = redis_store(&redis).await;
    let gw = TestGateway::builder()
        .upstream(&up)
        .store(store)
        .start()
        .await;
    gw.wait_store_watched().await;
    let errors = &gw.gw.metrics.store_errors;
    assert_eq!(
        errors.get_op(StoreOp::Feed),
        0,
        "the first subscription is no error"
    );
    assert!(eventually(Duration::from_secs(2), || redis.feed_readers() == 1).await);
    assert_eq!(redis.kill_feed_readers(), 1);
    assert!(
        eventually(Duration::from_secs(10), || errors.get_op(StoreOp::Feed)
            == 1)
        .await,
        "the dropped subscription was not counted"
    );
    // The store answered throughout: it never counted as down.
    assert_eq!(gw.gw.metrics.store_up.get(), 1);
    assert_eq!(errors.get_op(StoreOp::Lookup), 0);
}
