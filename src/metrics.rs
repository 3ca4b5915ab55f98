//! Prometheus metrics, owned by an object that is passed around (never a
//! global), so every gateway in a test process has its own registry.
//!
//! Label values are bounded whatever clients send: routes are labelled by
//! their configured prefix (or `none`), methods are folded to a fixed set,
//! reasons are contract codes, upstreams are configured names. No key, key
//! id, IP or raw path ever becomes a label.

use std::sync::OnceLock;

use http::Method;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// Latency buckets from 100 µs to 30 s: the gateway's own work sits in the
/// first buckets, upstream time in the later ones.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Every metric family the gateway exports.
pub struct Metrics {
    registry: Registry,
    /// `osir_gateway_requests_total{route,method,status,reason}`.
    pub requests: IntCounterVec,
    /// `osir_gateway_request_duration_seconds{route}`.
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
    /// `osir_gateway_store_errors_total`.
    pub store_errors: IntCounter,
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

fn histogram_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()),
        labels,
    )
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

fn histogram(r: &Registry, name: &str, help: &str) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(h.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    h
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
        let store_errors = IntCounter::new(
            "osir_gateway_store_errors_total",
            "Key store operations that failed",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        r.register(Box::new(store_errors.clone()))
            .unwrap_or_else(|e| panic!("{e}"));
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
                "Time from request head to response head, by route prefix",
                &["route"],
            ),
            upstream_duration: histogram_vec(
                &r,
                "osir_gateway_upstream_duration_seconds",
                "Time the upstream took to send its response head",
                &["upstream"],
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
            store_errors,
            store_lookups,
            store_duration: histogram(
                &r,
                "osir_gateway_store_duration_seconds",
                "Latency of key lookups in the store",
            ),
            invalidations,
            revocation_delay: histogram(
                &r,
                "osir_gateway_revocation_delay_seconds",
                "Time from a key revoke or update being written to the store to this gateway dropping the cached record (writer and gateway clocks must agree)",
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
            ),
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
/// first use so the request path skips the label lookup (hashing four label
/// values under a read lock): its duration histogram and, per method, the
/// `status="200",reason="ok"` counter. Any other answer takes the general path.
#[derive(Default)]
pub struct RouteSeries {
    duration: OnceLock<Histogram>,
    ok: [OnceLock<IntCounter>; METHOD_LABELS.len()],
}

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
        match route {
            Some((_, series)) => series
                .duration
                .get_or_init(|| self.request_duration.with_label_values(&[label]))
                .observe(seconds),
            None => self
                .request_duration
                .with_label_values(&[label])
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
            _ => {
                let labels = [label, METHOD_LABELS[slot], status_label(status), reason];
                self.requests.with_label_values(&labels).inc();
            }
        }
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
    }

    #[test]
    fn contract_families_are_exported() {
        let m = Metrics::new();
        m.requests
            .with_label_values(&["none", "GET", "404", "route_not_found"])
            .inc();
        m.request_duration
            .with_label_values(&["none"])
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
            "osir_gateway_config_reloads_total",
        ] {
            assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
        }
    }
}
