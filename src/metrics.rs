//! Prometheus metrics, owned by an object that is passed around (never a
//! global), so every gateway in a test process has its own registry.
//!
//! Label values are bounded whatever clients send: routes are labelled by
//! their configured prefix (or `none`), methods are folded to a fixed set,
//! statuses to their class (`2xx`, `4xx`, …), reasons are contract codes,
//! upstreams are configured names, store errors are one of four ops. No
//! key, key id, IP or raw path ever becomes a label.
//!
//! Besides the gateway's own families the registry holds the process
//! collector's `process_*` (Linux) and `osir_gateway_build_info`.
//!
//! Over 400 lines: one registry object with every family, its help text and
//! its bounded labels in one list, so the label bounds are reviewed in one
//! place.

use std::sync::OnceLock;

use http::Method;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// Buckets for the whole request (head to head): from 25 µs, where a cache
/// hit refused or answered by the gateway itself lands, to a minute, past
/// the default upstream timeout of 30 s.
pub const REQUEST_BUCKETS: &[f64] = &[
    0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Buckets for the key decision: from 25 µs (a cache hit) to the store's
/// timeout range (a miss that waits for the store, 1 s by default).
pub const KEY_DECISION_BUCKETS: &[f64] = &[
    0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    0.5, 1.0, 2.5,
];

/// Buckets for one store lookup: a local Redis answers in tens of µs, a
/// remote one in a millisecond or so, a failing one at its timeout.
pub const STORE_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5,
];

/// Buckets for upstream time to response head: from 100 µs (a local
/// upstream) to a minute.
pub const UPSTREAM_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Buckets for revocation delay: measured in whole milliseconds, so from
/// 1 ms; the contract's bound is 1 s, its target 100 ms.
pub const REVOCATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Which kind of store call failed: the `op` label of
/// `osir_gateway_store_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOp {
    /// A key lookup on the request path (or an unreadable record).
    Lookup,
    /// A batch of usage counts.
    Usage,
    /// The change feed was being followed and was lost (its connection
    /// failed or went silent, or a permission was refused).
    Feed,
    /// A key operation of the admin API.
    Admin,
}

impl StoreOp {
    /// Every op, in label order.
    pub const ALL: [StoreOp; 4] = [
        StoreOp::Lookup,
        StoreOp::Usage,
        StoreOp::Feed,
        StoreOp::Admin,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            StoreOp::Lookup => "lookup",
            StoreOp::Usage => "usage",
            StoreOp::Feed => "feed",
            StoreOp::Admin => "admin",
        }
    }

    fn slot(self) -> usize {
        match self {
            StoreOp::Lookup => 0,
            StoreOp::Usage => 1,
            StoreOp::Feed => 2,
            StoreOp::Admin => 3,
        }
    }
}

/// `osir_gateway_store_errors_total{op}`, with each op's counter resolved
/// once so counting an error hashes no label.
pub struct StoreErrors {
    by_op: [IntCounter; 4],
}

impl StoreErrors {
    fn new(family: &IntCounterVec) -> StoreErrors {
        StoreErrors {
            by_op: StoreOp::ALL.map(|op| family.with_label_values(&[op.label()])),
        }
    }

    /// Counts one failed store call.
    pub fn inc(&self, op: StoreOp) {
        self.by_op[op.slot()].inc();
    }

    /// Failed calls of one kind.
    pub fn get_op(&self, op: StoreOp) -> u64 {
        self.by_op[op.slot()].get()
    }

    /// Failed calls of every kind.
    pub fn get(&self) -> u64 {
        self.by_op.iter().map(IntCounter::get).sum()
    }
}

/// Every metric family the gateway exports.
pub struct Metrics {
    registry: Registry,
    /// `osir_gateway_requests_total{route,method,status,reason}`.
    pub requests: IntCounterVec,
    /// `osir_gateway_request_duration_seconds{route,class}`; `class` is the
    /// status class (`2xx`, `4xx`, …) so fast refusals do not dilute the
    /// quantiles of forwarded traffic.
    pub request_duration: HistogramVec,
    /// `osir_gateway_upstream_duration_seconds{upstream}`: time to response head.
    pub upstream_duration: HistogramVec,
    /// `osir_gateway_upstream_connections_total{upstream}`: TCP connections
    /// opened; against the request count it gives the pool's reuse ratio.
    pub upstream_connects: IntCounterVec,
    /// `osir_gateway_upstream_errors_total{upstream,kind}` (`connect`, `timeout`, `broken`).
    pub upstream_errors: IntCounterVec,
    /// `osir_gateway_key_cache_lookups_total{result}`.
    pub cache_lookups: IntCounterVec,
    /// `osir_gateway_key_cache_entries{cache}`: positive and negative entries.
    pub cache_entries: prometheus::IntGaugeVec,
    /// `osir_gateway_store_up`.
    pub store_up: IntGauge,
    /// `osir_gateway_store_errors_total{op}`.
    pub store_errors: StoreErrors,
    /// `osir_gateway_change_feed_up`: 1 while changes reach this gateway
    /// (the feed is followed), else 0 (and `/readyz` says why).
    pub change_feed_up: IntGauge,
    /// `osir_gateway_key_cache_flushes_total{reason}`: whole-cache flushes
    /// the feed had to make (`trimmed`, `reset`, `requested`,
    /// `unreadable`); a reconnect makes none.
    pub cache_flushes: IntCounterVec,
    /// `osir_gateway_store_lookups_total`: reads that reached the store.
    pub store_lookups: IntCounter,
    /// `osir_gateway_store_duration_seconds`: latency of key lookups in the store.
    pub store_duration: Histogram,
    /// `osir_gateway_invalidations_total`: revocation/update messages received.
    pub invalidations: IntCounter,
    /// `osir_gateway_revocation_delay_seconds`: from a revoke or update being
    /// written to the store to this gateway's cache dropping the record (only
    /// changes whose announcement carries the write time).
    pub revocation_delay: Histogram,
    /// `osir_gateway_config_reloads_total{result}`.
    pub config_reloads: IntCounterVec,
    /// `osir_gateway_config_generation`: which config is serving.
    pub config_generation: IntGauge,
    /// `osir_gateway_open_connections{listener}`.
    pub open_connections: prometheus::IntGaugeVec,
    /// `osir_gateway_auth_duration_seconds`: the key decision alone.
    pub auth_duration: Histogram,
    /// `osir_gateway_access_log_dropped_total`: lines the access-log writer
    /// dropped because it fell behind (brought up to date at each scrape).
    pub access_log_dropped: IntCounter,
    /// `osir_gateway_build_info{version,commit}`: always 1.
    pub build_info: prometheus::IntGaugeVec,
    /// `osir_gateway_misplaced_keys_total{place}` (`path`, `authority`,
    /// `query`, `header`): requests refused for a key sent in the wrong place.
    pub misplaced_keys: IntCounterVec,
    /// `osir_gateway_admin_auth_failures_total`: admin API calls with a
    /// missing or wrong token.
    pub admin_auth_failures: IntCounter,
    /// `osir_gateway_admin_rate_limited_total`: admin API calls refused 429
    /// because their client IP failed too often.
    pub admin_rate_limited: IntCounter,
    /// `osir_gateway_connections_refused_total{reason}` (`per_ip`): client
    /// connections closed at accept.
    pub connections_refused: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(c.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    c
}

fn histogram_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(h.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    h
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(h.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    h
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(c.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::IntGaugeVec {
    let g = prometheus::IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(g.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    g
}

impl Metrics {
    /// Registers every family in a fresh registry, with the fixed label
    /// values at zero so dashboards see them before the first event. Names
    /// are constants, so registration cannot fail at run time; a panic here
    /// is a build bug.
    pub fn new() -> Metrics {
        let m = Metrics::register();
        for result in ["hit", "miss", "negative_hit", "stale"] {
            m.cache_lookups.with_label_values(&[result]);
        }
        for result in ["success", "failure"] {
            m.config_reloads.with_label_values(&[result]);
        }
        for cache in ["positive", "negative"] {
            m.cache_entries.with_label_values(&[cache]);
        }
        for place in ["path", "authority", "query", "header"] {
            m.misplaced_keys.with_label_values(&[place]);
        }
        m.connections_refused.with_label_values(&["per_ip"]);
        for reason in ["trimmed", "reset", "requested", "unreadable"] {
            m.cache_flushes.with_label_values(&[reason]);
        }
        m
    }

    fn register() -> Metrics {
        let r = Registry::new();
        let store_up = IntGauge::new(
            "osir_gateway_store_up",
            "1 while the key store answers, else 0",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        r.register(Box::new(store_up.clone()))
            .unwrap_or_else(|e| panic!("{e}"));
        let change_feed_up = IntGauge::new(
            "osir_gateway_change_feed_up",
            "1 while key changes reach this gateway through the store's change feed, else 0",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        r.register(Box::new(change_feed_up.clone()))
            .unwrap_or_else(|e| panic!("{e}"));
        let cache_flushes = counter_vec(
            &r,
            "osir_gateway_key_cache_flushes_total",
            "Whole key-cache flushes, by reason (trimmed, reset, requested, unreadable)",
            &["reason"],
        );
        let store_errors = StoreErrors::new(&counter_vec(
            &r,
            "osir_gateway_store_errors_total",
            "Key store calls that failed, by op (lookup, usage, feed, admin)",
            &["op"],
        ));
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .unwrap_or_else(|e| panic!("process metrics: {e}"));
        let build_info = gauge_vec(
            &r,
            "osir_gateway_build_info",
            "Always 1; the labels say which build is running",
            &["version", "commit"],
        );
        build_info
            .with_label_values(&[crate::version::VERSION, crate::version::COMMIT])
            .set(1);
        let store_lookups = IntCounter::new(
            "osir_gateway_store_lookups_total",
            "Key lookups that reached the store",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        r.register(Box::new(store_lookups.clone()))
            .unwrap_or_else(|e| panic!("{e}"));
        let invalidations = IntCounter::new(
            "osir_gateway_invalidations_total",
            "Revocation and update messages received from the store",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        r.register(Box::new(invalidations.clone()))
            .unwrap_or_else(|e| panic!("{e}"));
        let config_generation = IntGauge::new(
            "osir_gateway_config_generation",
            "Generation of the config now serving (1 = first load)",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        r.register(Box::new(config_generation.clone()))
            .unwrap_or_else(|e| panic!("{e}"));
        Metrics {
            requests: counter_vec(
                &r,
                "osir_gateway_requests_total",
                "Requests answered, by route prefix, method, status and reason (ok or the error code)",
                &["route", "method", "status", "reason"],
            ),
            request_duration: histogram_vec(
                &r,
                "osir_gateway_request_duration_seconds",
                "Time from request head to response head, by route prefix and status class",
                &["route", "class"],
                REQUEST_BUCKETS,
            ),
            upstream_duration: histogram_vec(
                &r,
                "osir_gateway_upstream_duration_seconds",
                "Time the upstream took to send its response head",
                &["upstream"],
                UPSTREAM_BUCKETS,
            ),
            upstream_connects: counter_vec(
                &r,
                "osir_gateway_upstream_connections_total",
                "Connections opened to the upstream (the rest of its requests reused pooled ones)",
                &["upstream"],
            ),
            upstream_errors: counter_vec(
                &r,
                "osir_gateway_upstream_errors_total",
                "Failed upstream exchanges by kind (connect, timeout, broken)",
                &["upstream", "kind"],
            ),
            cache_lookups: counter_vec(
                &r,
                "osir_gateway_key_cache_lookups_total",
                "Key cache lookups by result (hit, miss, negative_hit, stale)",
                &["result"],
            ),
            cache_entries: gauge_vec(
                &r,
                "osir_gateway_key_cache_entries",
                "Entries in the key caches (positive, negative)",
                &["cache"],
            ),
            store_up,
            change_feed_up,
            cache_flushes,
            store_errors,
            store_lookups,
            store_duration: histogram(
                &r,
                "osir_gateway_store_duration_seconds",
                "Latency of key lookups in the store",
                STORE_BUCKETS,
            ),
            invalidations,
            revocation_delay: histogram(
                &r,
                "osir_gateway_revocation_delay_seconds",
                "Time from a key revoke or update being written to the store to this gateway dropping the cached record (writer and gateway clocks must agree)",
                REVOCATION_BUCKETS,
            ),
            config_reloads: counter_vec(
                &r,
                "osir_gateway_config_reloads_total",
                "Config reloads by result (success, failure)",
                &["result"],
            ),
            config_generation,
            open_connections: gauge_vec(
                &r,
                "osir_gateway_open_connections",
                "Client connections open now, by listener (http, tls, admin)",
                &["listener"],
            ),
            auth_duration: histogram(
                &r,
                "osir_gateway_auth_duration_seconds",
                "Time spent deciding on a key (cache or store), excluding upstream time",
                KEY_DECISION_BUCKETS,
            ),
            access_log_dropped: counter(
                &r,
                "osir_gateway_access_log_dropped_total",
                "Access-log lines dropped because the log writer fell behind",
            ),
            build_info,
            misplaced_keys: counter_vec(
                &r,
                "osir_gateway_misplaced_keys_total",
                "Requests refused because a key was sent outside Authorization and api_key, by place (path, authority, query, header)",
                &["place"],
            ),
            admin_auth_failures: counter(
                &r,
                "osir_gateway_admin_auth_failures_total",
                "Admin API calls with a missing, repeated or wrong admin token",
            ),
            admin_rate_limited: counter(
                &r,
                "osir_gateway_admin_rate_limited_total",
                "Admin API calls refused (429) because their client IP failed the token check too often",
            ),
            connections_refused: counter_vec(
                &r,
                "osir_gateway_connections_refused_total",
                "Client connections closed at accept, by reason (per_ip: over server.max_connections_per_ip)",
                &["reason"],
            ),
            registry: r,
        }
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// The method label: the seven methods with scopes, else `OTHER`.
pub fn method_label(m: &Method) -> &'static str {
    METHOD_LABELS[method_slot(m)]
}

/// The series of one route that nearly every request touches, resolved on
/// first use so the request path skips the label lookup (hashing label
/// values under a read lock): its duration histogram per status class and,
/// per method, the `status="200",reason="ok"` counter, and per method and
/// refusal reason the counter of the status it was first answered with (a
/// full-rate 401 or 403 flood would otherwise hash four labels per
/// request). Any other answer takes the general path.
#[derive(Default)]
pub struct RouteSeries {
    duration: [OnceLock<Histogram>; CLASS_LABELS.len()],
    ok: [OnceLock<IntCounter>; METHOD_LABELS.len()],
    refused: [[OnceLock<(http::StatusCode, IntCounter)>; REFUSALS.len()]; METHOD_LABELS.len()],
}

/// The gateway's refusal reasons whose counters a route keeps resolved.
const REFUSALS: [&str; 14] = [
    "missing_api_key",
    "invalid_api_key",
    "expired_api_key",
    "revoked_api_key",
    "ip_not_allowed",
    "insufficient_scope",
    "rate_limited",
    "method_not_allowed",
    "invalid_request",
    "invalid_path",
    "misplaced_api_key",
    "ambiguous_credentials",
    "payload_too_large",
    "upstream_unavailable",
];

impl std::fmt::Debug for RouteSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteSeries").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Counts one answered request and observes its duration. `series` is
    /// the route's cache (`None` when no route matched).
    pub fn record_request(
        &self,
        route: Option<(&str, &RouteSeries)>,
        method: &Method,
        status: http::StatusCode,
        reason: &str,
        seconds: f64,
    ) {
        let label = route.map_or("none", |(label, _)| label);
        let slot = method_slot(method);
        let class = class_slot(status);
        match route {
            Some((_, series)) => series.duration[class]
                .get_or_init(|| {
                    self.request_duration
                        .with_label_values(&[label, CLASS_LABELS[class]])
                })
                .observe(seconds),
            None => self
                .request_duration
                .with_label_values(&[label, CLASS_LABELS[class]])
                .observe(seconds),
        }
        let answered_ok = status == http::StatusCode::OK && reason == "ok";
        match route {
            Some((_, series)) if answered_ok => {
                let counter = series.ok[slot].get_or_init(|| {
                    self.requests
                        .with_label_values(&[label, METHOD_LABELS[slot], "200", "ok"])
                });
                counter.inc();
            }
            Some((_, series)) => {
                let cached = REFUSALS.iter().position(|r| *r == reason).map(|i| {
                    series.refused[slot][i].get_or_init(|| {
                        let labels = [label, METHOD_LABELS[slot], status_label(status), reason];
                        (status, self.requests.with_label_values(&labels))
                    })
                });
                match cached {
                    Some((s, counter)) if *s == status => counter.inc(),
                    _ => self.count_request(label, slot, status, reason),
                }
            }
            None => self.count_request(label, slot, status, reason),
        }
    }
}

/// Status-class labels, indexed by [`class_slot`].
impl Metrics {
    fn count_request(&self, route: &str, slot: usize, status: http::StatusCode, reason: &str) {
        let labels = [route, METHOD_LABELS[slot], status_label(status), reason];
        self.requests.with_label_values(&labels).inc();
    }
}

const CLASS_LABELS: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// The status class label of a status: `2xx`, `4xx`, … (`other` past 599).
pub fn class_label(s: http::StatusCode) -> &'static str {
    CLASS_LABELS[class_slot(s)]
}

fn class_slot(s: http::StatusCode) -> usize {
    match s.as_u16() / 100 {
        1 => 0,
        2 => 1,
        3 => 2,
        4 => 3,
        5 => 4,
        _ => 5,
    }
}

/// Method labels, indexed by [`method_slot`].
const METHOD_LABELS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER",
];

fn method_slot(m: &Method) -> usize {
    match *m {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::PATCH => 4,
        Method::DELETE => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

/// The status label without allocating: statuses are 100–999.
pub fn status_label(s: http::StatusCode) -> &'static str {
    s.canonical_reason()
        .map_or("other", |_| status_str(s.as_u16()))
}

fn status_str(code: u16) -> &'static str {
    // A table of every standard code's digits.
    macro_rules! table {
        ($($n:literal),*) => { match code { $($n => stringify!($n),)* _ => "other" } };
    }
    table!(
        100, 101, 102, 103, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303,
        304, 305, 307, 308, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413,
        414, 415, 416, 417, 418, 421, 422, 423, 424, 426, 428, 429, 431, 451, 500, 501, 502, 503,
        504, 505, 506, 507, 508, 510, 511
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        assert_eq!(
            method_label(&Method::from_bytes(b"PROPFIND").unwrap_or(Method::GET)),
            "OTHER"
        );
        assert_eq!(status_label(http::StatusCode::OK), "200");
        assert_eq!(
            status_label(http::StatusCode::from_u16(599).unwrap_or(http::StatusCode::OK)),
            "other"
        );
        let code = |n| http::StatusCode::from_u16(n).unwrap_or(http::StatusCode::OK);
        assert_eq!(class_label(code(200)), "2xx");
        assert_eq!(class_label(code(204)), "2xx");
        assert_eq!(class_label(code(304)), "3xx");
        assert_eq!(class_label(code(403)), "4xx");
        assert_eq!(class_label(code(599)), "5xx");
        assert_eq!(class_label(code(999)), "other");
        // Every status maps into the fixed label set.
        for n in 100..=999 {
            assert!(CLASS_LABELS.contains(&class_label(code(n))));
        }
    }

    #[test]
    fn histograms_start_where_what_they_measure_starts() {
        assert_eq!(REQUEST_BUCKETS[0], 0.000025);
        assert_eq!(KEY_DECISION_BUCKETS[0], 0.000025);
        assert_eq!(REVOCATION_BUCKETS[0], 0.001);
        for b in [
            REQUEST_BUCKETS,
            KEY_DECISION_BUCKETS,
            STORE_BUCKETS,
            UPSTREAM_BUCKETS,
            REVOCATION_BUCKETS,
        ] {
            assert!(b.windows(2).all(|w| w[0] < w[1]), "{b:?}");
        }
    }

    #[test]
    fn contract_families_are_exported() {
        let m = Metrics::new();
        m.requests
            .with_label_values(&["none", "GET", "404", "route_not_found"])
            .inc();
        m.request_duration
            .with_label_values(&["none", "4xx"])
            .observe(0.001);
        m.upstream_duration
            .with_label_values(&["domains"])
            .observe(0.001);
        m.cache_lookups.with_label_values(&["hit"]).inc();
        m.config_reloads.with_label_values(&["success"]).inc();
        let text = String::from_utf8(m.render()).unwrap_or_default();
        for family in [
            "osir_gateway_requests_total",
            "osir_gateway_request_duration_seconds",
            "osir_gateway_upstream_duration_seconds",
            "osir_gateway_key_cache_lookups_total",
            "osir_gateway_store_up",
            "osir_gateway_store_errors_total",
            "osir_gateway_change_feed_up",
            "osir_gateway_key_cache_flushes_total",
            "osir_gateway_config_reloads_total",
            "osir_gateway_access_log_dropped_total",
            "osir_gateway_build_info",
        ] {
            assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
        }
        for op in StoreOp::ALL {
            assert!(text.contains(&format!(
                "osir_gateway_store_errors_total{{op=\"{}\"}} 0",
                op.label()
            )));
        }
        if cfg!(target_os = "linux") {
            assert!(text.contains("# TYPE process_cpu_seconds_total counter"));
        }
    }

    #[test]
    fn store_errors_count_by_op_and_in_total() {
        let m = Metrics::new();
        m.store_errors.inc(StoreOp::Lookup);
        m.store_errors.inc(StoreOp::Lookup);
        m.store_errors.inc(StoreOp::Admin);
        assert_eq!(m.store_errors.get_op(StoreOp::Lookup), 2);
        assert_eq!(m.store_errors.get_op(StoreOp::Feed), 0);
        assert_eq!(m.store_errors.get(), 3);
    }

    #[test]
    fn route_series_are_resolved_per_class() {
        let m = Metrics::new();
        let series = RouteSeries::default();
        for status in [200, 200, 403, 502] {
            let s = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
            let reason = if status == 200 { "ok" } else { "x" };
            m.record_request(Some(("/r", &series)), &Method::GET, s, reason, 0.001);
        }
        let count = |class| {
            m.request_duration
                .with_label_values(&["/r", class])
                .get_sample_count()
        };
        assert_eq!((count("2xx"), count("4xx"), count("5xx")), (2, 1, 1));
    }

    #[test]
    fn refusals_are_counted_by_their_own_status() {
        let m = Metrics::new();
        let series = RouteSeries::default();
        let record = |status: u16, reason: &str, method: &Method| {
            let s = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
            m.record_request(Some(("/r", &series)), method, s, reason, 0.001);
        };
        record(403, "insufficient_scope", &Method::GET);
        record(403, "insufficient_scope", &Method::GET);
        record(403, "insufficient_scope", &Method::POST);
        // The same reason with another status is its own series.
        record(400, "insufficient_scope", &Method::GET);
        record(401, "missing_api_key", &Method::GET);
        record(418, "not_a_refusal_we_keep", &Method::GET);
        let count = |method, status, reason| {
            m.requests
                .with_label_values(&["/r", method, status, reason])
                .get()
        };
        assert_eq!(count("GET", "403", "insufficient_scope"), 2);
        assert_eq!(count("POST", "403", "insufficient_scope"), 1);
        assert_eq!(count("GET", "400", "insufficient_scope"), 1);
        assert_eq!(count("GET", "401", "missing_api_key"), 1);
        assert_eq!(count("GET", "418", "not_a_refusal_we_keep"), 1);
    }
}
