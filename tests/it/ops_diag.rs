//! Diagnostics of the real binary (issue 14): `[log] format = "json"` gives
//! one JSON object per line; in either format every event is one line (a
//! reload refused for several problems included); a down upstream is named
//! with its address and OS error, once a second with a count of the
//! failures held back.

use std::time::{Duration, Instant};

use crate::support::client::get;
use crate::support::eventually_async;
use crate::support::keys::CliConfig;
use crate::support::process::{free_port, GatewayProcess};
use crate::support::upstream::ClosedPort;

/// One `osir-gateway run` with a file store; killed and reaped when dropped.
struct Gateway {
    process: GatewayProcess,
    /// Its directory outlives the process (fields drop in order).
    cfg: CliConfig,
    api: u16,
    admin: u16,
}

fn config_text(api: u16, admin: u16, upstream: &str, log: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:{api}"
[admin]
listen = "127.0.0.1:{admin}"
[store]
backend = "file"
path = "keys.json"
[log]
access = "off"
{log}
[upstreams.down]
url = "{upstream}"
connect_timeout = "500ms"
[[routes]]
prefix = "/v1/status"
upstream = "down"
public = true
"#
    )
}

impl Gateway {
    async fn start(upstream: &str, log: &str) -> Gateway {
        let (api, admin) = (free_port(), free_port());
        let cfg = CliConfig::new(&config_text(api, admin, upstream, log));
        std::fs::write(cfg.keys_file(), "").unwrap();
        let gw = Gateway {
            process: GatewayProcess::start(&cfg),
            cfg,
            api,
            admin,
        };
        let url = format!("http://127.0.0.1:{}/readyz", gw.admin);
        let ready = eventually_async(Duration::from_secs(10), || {
            let url = url.clone();
            async move {
                let c = crate::support::client::client();
                let req = http::Request::get(url)
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap();
                matches!(
                    tokio::time::timeout(Duration::from_secs(1), c.request(req)).await,
                    Ok(Ok(r)) if r.status() == 200
                )
            }
        })
        .await;
        assert!(ready, "the gateway never became ready:\n{}", gw.stderr());
        gw
    }

    fn stderr(&self) -> String {
        self.process.stderr()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.api)
    }
}

/// The stderr lines that are upstream-failure events.
fn upstream_lines(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {l:?}"))
        })
        .filter(|v| v["message"] == "upstream connect failed")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_diagnostics_name_a_down_upstream_once_a_second() {
    let closed = ClosedPort::new();
    let gw = Gateway::start(&closed.url(), "format = \"json\"").await;
    let started = Instant::now();
    let mut sent = 0u64;
    // Fail requests until the second line arrives (a second after the
    // first), counting them.
    let deadline = Instant::now() + Duration::from_secs(10);
    while upstream_lines(&gw.stderr()).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no second line:\n{}",
            gw.stderr()
        );
        let r = get(&gw.url("/v1/status/x"), &[]).await;
        assert_eq!(r.status, 502, "{}", r.text());
        sent += 1;
    }
    let elapsed = started.elapsed();
    let stderr = gw.stderr();
    let lines = upstream_lines(&stderr);
    assert!(
        lines.len() as u64 <= 1 + elapsed.as_secs() + 1,
        "more than one line a second: {} in {elapsed:?}",
        lines.len()
    );
    let first = &lines[0];
    assert_eq!(first["level"], "WARN", "{first}");
    assert!(first["timestamp"].as_str().is_some(), "{first}");
    assert_eq!(first["upstream"], "down", "{first}");
    let port = closed.url().rsplit(':').next().unwrap().to_owned();
    assert_eq!(first["address"], format!("127.0.0.1:{port}"), "{first}");
    assert_eq!(first["kind"], "connect", "{first}");
    let os_error = first["os_error"].as_str().unwrap_or("");
    assert!(
        os_error.contains("os error 111") || os_error.contains("refused"),
        "{first}"
    );
    assert!(
        first["error"]
            .as_str()
            .is_some_and(|e| e.contains(os_error)),
        "the error chain holds the OS error: {first}"
    );
    assert_eq!(first["suppressed"], 0, "{first}");
    // The second line stands for the failures held back since the first.
    let held = lines[1]["suppressed"].as_u64().unwrap();
    assert!(held >= 1, "{}", lines[1]);
    let reported: u64 = lines
        .iter()
        .map(|l| 1 + l["suppressed"].as_u64().unwrap())
        .sum();
    assert!(reported <= sent, "{reported} reported for {sent} failures");
    assert_eq!(
        reported, sent,
        "each failure is a line or counted in the next one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_refused_for_several_problems_is_one_line() {
    let closed = ClosedPort::new();
    for (format, is_event) in [
        (
            "text",
            (|l: &str| l.contains("config reload refused")) as fn(&str) -> bool,
        ),
        ("json", |l: &str| l.contains("config reload refused")),
    ] {
        let gw = Gateway::start(&closed.url(), &format!("format = \"{format}\"")).await;
        // Two problems: each is a line of the validation report.
        let bad = config_text(gw.api, gw.admin, "ftp://nowhere", "level = \"loud\"");
        // Written whole and renamed over the file: a plain write can be
        // seen half-done, and its first refusal would then be about the
        // truncated text rather than these two problems.
        let tmp = gw.cfg.path.with_extension("toml.swp");
        std::fs::write(&tmp, bad).unwrap();
        std::fs::rename(&tmp, &gw.cfg.path).unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        while !gw.stderr().lines().any(is_event) {
            assert!(Instant::now() < end, "no reload refusal:\n{}", gw.stderr());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let stderr = gw.stderr();
        for line in stderr.lines() {
            match format {
                "json" => {
                    let v: serde_json::Value = serde_json::from_str(line)
                        .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
                    assert!(v["timestamp"].is_string() && v["level"].is_string(), "{v}");
                }
                _ => {
                    // Every line starts with its timestamp: no continuation lines.
                    let starts_with_date = line.len() > 10
                        && line.as_bytes()[4] == b'-'
                        && line[..4].bytes().all(|c| c.is_ascii_digit());
                    assert!(starts_with_date, "continuation line {line:?} in:\n{stderr}");
                }
            }
        }
        let refusal = stderr.lines().find(|l| is_event(l)).unwrap();
        assert!(
            refusal.contains("log.level") && refusal.contains("upstreams.down.url"),
            "both problems on the one line: {refusal}"
        );
    }
}
