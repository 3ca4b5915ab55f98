//! `check` reports every problem in one run (issue 13, class 7): unknown
//! fields and mistyped values no longer hide the rest of the file, and sizes
//! and counts are bounded, each problem on its own stderr line naming the
//! field. The real binary, real files.

use crate::support::keys::run_binary;

const BASE: &str = r#"[server]
listen = "127.0.0.1:8080"
[admin]
listen = "127.0.0.1:9090"
[store]
backend = "file"
path = "keys.json"
[upstreams.a]
url = "http://127.0.0.1:7001"
[[routes]]
prefix = "/v1/a"
upstream = "a"
resource = "a"
"#;

fn check(text: &str) -> (i32, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    let out = run_binary(&path, &["check"]);
    (out.code, out.stderr.lines().map(str::to_owned).collect())
}

/// Asserts exit 1 and, for each `(field, words)`, one stderr line starting
/// with `field: ` that contains `words`; and no other line.
fn assert_problems(text: &str, want: &[(&str, &str)]) {
    let (code, lines) = check(text);
    assert_eq!(code, 1, "{lines:#?}\n{text}");
    for (field, words) in want {
        let prefix = format!("{field}: ");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&prefix) && l.contains(words)),
            "no line for {field} with {words:?} in {lines:#?}"
        );
    }
    assert_eq!(lines.len(), want.len(), "{lines:#?}");
}

#[test]
fn unknown_fields_do_not_hide_other_problems() {
    let text =
        BASE.replace(
            "[server]\n",
            "[server]\nbogus = 1\nmax_connections = 99999999999\n",
        )
        .replace("[store]\n", "[store]\nurll = \"x\"\n")
        .replace(
            "url = \"http://127.0.0.1:7001\"",
            "url = \"ftp://x\"\ntimout = \"1s\"",
        ) + "[auth]\ntrusted_proxies = [\"10.0.0.0/33\"]\n[wat]\nx = 1\n";
    assert_problems(
        &text,
        &[
            ("server.bogus", "unknown field `bogus`"),
            ("store.urll", "unknown field `urll`"),
            ("upstreams.a.timout", "unknown field `timout`"),
            ("wat", "unknown field `wat`"),
            ("server.max_connections", "at most 1000000"),
            ("upstreams.a.url", "unsupported scheme"),
            ("auth.trusted_proxies[0]", "invalid IP or CIDR"),
        ],
    );
}

#[test]
fn mistyped_values_are_each_reported_with_the_rest() {
    let text = BASE
        .replace("[server]\n", "[server]\nmax_connections = \"many\"\nidle_timeout = 5\n")
        .replace("resource = \"a\"", "resource = \"a\"\npublic = \"yes\"")
        + "[cache]\ncapacity = 0\n[[routes]]\nprefix = 7\nupstream = \"nowhere\"\nresource = \"b\"\n";
    assert_problems(
        &text,
        &[
            ("server.max_connections", "invalid type"),
            ("server.idle_timeout", "invalid type"),
            ("routes[0].public", "invalid type"),
            ("routes[1].prefix", "invalid type"),
            ("routes[1].upstream", "no upstream named \"nowhere\""),
            ("cache.capacity", "at least 1"),
        ],
    );
}

#[test]
fn sizes_and_counts_are_bounded() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "max_header_bytes = \"100GiB\"",
            "server.max_header_bytes",
            "at most 1MiB",
        ),
        (
            "max_header_bytes = \"2MiB\"",
            "server.max_header_bytes",
            "at most 1MiB",
        ),
        ("max_body = \"1000GiB\"", "server.max_body", "at most 64GiB"),
        (
            "max_connections = 99999999999",
            "server.max_connections",
            "at most 1000000",
        ),
        (
            "max_connections = 0",
            "server.max_connections",
            "at least 1",
        ),
        (
            "max_connections_per_ip = 0",
            "server.max_connections_per_ip",
            "at least 1",
        ),
        (
            "max_connections_per_ip = 2000000",
            "server.max_connections_per_ip",
            "at most 1000000",
        ),
        ("workers = 100000", "server.workers", "at most 1024"),
        (
            "idle_timeout = \"9999d\"",
            "server.idle_timeout",
            "at most 365d",
        ),
        (
            "header_read_timeout = \"400d\"",
            "server.header_read_timeout",
            "at most 365d",
        ),
    ];
    for (line, field, words) in cases {
        let text = BASE.replace("[server]\n", &format!("[server]\n{line}\n"));
        assert_problems(&text, &[(field, words)]);
    }
    let more: &[(&str, &str, &str)] = &[
        ("[server.http2]\nmax_concurrent_streams = 1000000", "server.http2.max_concurrent_streams", "at most 10000"),
        ("[server.http2]\nmax_header_list_size = \"4GiB\"", "server.http2.max_header_list_size", "at most 1MiB"),
        ("[server.http2]\nmax_pending_resets = 99999999", "server.http2.max_pending_resets", "at most 10000"),
        ("[cache]\ncapacity = 10000000000", "cache.capacity", "at most 100000000"),
        ("[cache]\nnegative_capacity = 10000000000", "cache.negative_capacity", "at most 100000000"),
        ("[auth]\nfailed_lookup_budget = 99999999999", "auth.failed_lookup_budget", "at most 1000000"),
        ("[upstreams.b]\nurl = \"http://127.0.0.1:1\"\npool_max_idle = 9999999", "upstreams.b.pool_max_idle", "at most 100000"),
        ("[[routes]]\nprefix = \"/v1/c\"\nupstream = \"a\"\nresource = \"c\"\nmax_body = \"65GiB\"", "routes[1].max_body", "at most 64GiB"),
    ];
    for (section, field, words) in more {
        let text = BASE.replace("[admin]\n", "[admin]\nfailed_token_budget = 0\n") + section + "\n";
        assert_problems(
            &text,
            &[(field, words), ("admin.failed_token_budget", "at least 1")],
        );
    }
    // The largest allowed values pass.
    let ok = BASE.replace(
        "[server]\n",
        "[server]\nmax_header_bytes = \"1MiB\"\nmax_connections = 1000000\nmax_connections_per_ip = 1000000\n",
    );
    let (code, lines) = check(&ok);
    assert_eq!(code, 0, "{lines:#?}");
}

#[test]
fn route_prefixes_follow_the_path_rules() {
    for prefix in ["/v1/a.", "/v1/a./b", "/v1/..."] {
        let text = BASE.replace("prefix = \"/v1/a\"", &format!("prefix = \"{prefix}\""));
        assert_problems(&text, &[("routes[0].prefix", "ending in \".\"")]);
    }
}

#[test]
fn wrong_types_in_arrays_and_whole_sections_keep_the_rest_named() {
    let text = BASE.replace("[admin]\nlisten = \"127.0.0.1:9090\"\n", "")
        + "admin = 5\n[auth]\ntrusted_proxies = [\"10.0.0.1\", 7, \"bad\", \"10.0.0.0/33\"]\n";
    // `admin = 5` must come before any table header to be top level.
    let text = format!("admin = 5\n{}", text.replace("admin = 5\n", ""));
    assert_problems(
        &text,
        &[
            ("admin", "invalid type"),
            ("auth.trusted_proxies[1]", "invalid type"),
            ("auth.trusted_proxies[2]", "invalid IP or CIDR \"bad\""),
            (
                "auth.trusted_proxies[3]",
                "invalid IP or CIDR \"10.0.0.0/33\"",
            ),
        ],
    );
}
