//! Tests of the whole file: parsing, defaults, and that every mistake is
//! reported, once, naming its field.
//!
//! Long on purpose: table-driven cases for every validation message.

use super::*;
use crate::keys::Action;

const SAMPLE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml"));

/// Valid apart from what each test appends or swaps in.
const BASE: &str = r#"
[server]
listen = "127.0.0.1:8080"
[store]
url = "redis://127.0.0.1:6379/0"
[upstreams.domains]
url = "http://127.0.0.1:7001"
[[routes]]
prefix = "/v1/domains"
upstream = "domains"
resource = "domains"
"#;

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_toml(text, Path::new("/etc/osir"))
}

/// The problems as displayed, so assertions read like `check` output.
fn problems(text: &str) -> Vec<String> {
    parse(text)
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Exactly one problem, at `path`, whose message contains `needle`.
fn one(text: &str, path: &str, needle: &str) {
    let errs = parse(text).unwrap_err().0;
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].path, path, "{errs:#?}");
    assert!(errs[0].message.contains(needle), "{errs:#?}");
}

#[test]
fn sample_file_is_valid() {
    let c = parse(SAMPLE).unwrap();
    assert_eq!(c.server.listen, Some("127.0.0.1:8080".parse().unwrap()));
    assert_eq!(c.server.max_body, 10 * 1024 * 1024);
    assert_eq!(c.server.http2.max_header_list_size, 65_536);
    assert!(c.server.tls.is_none());
    assert_eq!(c.admin.listen, "127.0.0.1:9090".parse().unwrap());
    assert!(
        matches!(&c.store, StoreConfig::Redis { url, .. } if url == "redis://127.0.0.1:6379/0")
    );
    assert_eq!(c.cache.stale_if_error, Duration::from_secs(600));
    let names: Vec<_> = c.upstreams.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["billing", "domains", "vps"]);
    let domains = c.upstream("domains").unwrap();
    assert_eq!(domains.url.to_string(), "http://127.0.0.1:7001");
    assert_eq!(
        domains.test_url.as_ref().unwrap().authority.port_u16(),
        Some(7101)
    );
    assert_eq!(c.routes.len(), 4);
    assert_eq!(c.upstreams[c.routes[1].upstream].name, "vps");
    let billing = &c.routes[2];
    assert_eq!(
        billing.scopes,
        [(Method::DELETE, Scope::new("billing", Action::Write))]
    );
    assert!(c.routes[3].public && c.routes[3].resource.is_none());
    assert!(c.upstream("nowhere").is_none());
}

#[test]
fn defaults_apply_to_a_minimal_file() {
    let c = parse(BASE).unwrap();
    assert_eq!(c.server.header_read_timeout, Duration::from_secs(10));
    assert_eq!(c.server.max_connections, 10_000);
    assert_eq!(c.server.http2.max_pending_resets, 20);
    assert_eq!(c.server.workers, None);
    assert_eq!(c.admin.token_env, None);
    assert_eq!(c.cache.capacity, 100_000);
    assert_eq!(c.auth.failed_lookup_budget, 30);
    assert_eq!(c.log.access, AccessLog::Stdout);
    assert_eq!(c.usage.flush_interval, Duration::from_secs(10));
    assert_eq!(c.server.send_timeout, Duration::from_secs(30));
    let up = &c.upstreams[0];
    assert_eq!(
        (up.pool_max_idle, up.timeout),
        (256, Duration::from_secs(30))
    );
    assert_eq!((up.pool_max, up.pool_wait), (1024, Duration::from_secs(1)));
    assert_eq!(up.url.base_path, "");
}

#[test]
fn unknown_fields_are_named() {
    let errs = parse(&format!("bogus = 1\n{BASE}")).unwrap_err().0;
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].path, "bogus");
    assert!(
        errs[0].message.contains("unknown field `bogus`"),
        "{}",
        errs[0]
    );
    assert!(
        errs[0].message.contains("(line 1, column 1)"),
        "{}",
        errs[0]
    );
    let nested = BASE.replace("[store]", "[store]\nurll = \"x\"");
    one(&nested, "store.urll", "unknown field `urll`");
    one(
        &format!("{BASE}[server.http2]\nmax_streams = 5\n"),
        "server.http2.max_streams",
        "unknown field",
    );
    one(
        &format!("{BASE}[[routes]]\nprefix = \"/a\"\nupstrem = \"x\"\n"),
        "routes[1].upstrem",
        "unknown field",
    );
    one(
        &format!("{BASE}[bogus]\n"),
        "bogus",
        "unknown field `bogus`",
    );
}

#[test]
fn syntax_and_type_errors_are_one_problem() {
    one(
        &format!("{BASE}[server\n"),
        "config",
        "invalid TOML at line 12, column 8: invalid table header; expected",
    );
    one(
        &BASE.replace("[server]", "[server]\nmax_connections = \"many\""),
        "server.max_connections",
        "invalid type",
    );
}

#[test]
fn bad_trusted_proxy_is_named_by_index() {
    let text = format!(
        "{BASE}[auth]\ntrusted_proxies = [\"10.0.0.1\", \"10.0.0.0/33\", \"::1\", \"fd00::/8\"]\n"
    );
    one(
        &text,
        "auth.trusted_proxies[1]",
        "invalid IP or CIDR \"10.0.0.0/33\"",
    );
    let ok = format!("{BASE}[auth]\ntrusted_proxies = [\"10.0.0.1\", \"::1\", \"fd00::/8\"]\n");
    let nets = parse(&ok).unwrap().auth.trusted_proxies;
    assert_eq!(nets[0], "10.0.0.1/32".parse::<IpNet>().unwrap());
    assert_eq!(nets[1], "::1/128".parse::<IpNet>().unwrap());
}

#[test]
fn upstream_urls_are_checked() {
    let with = |url: &str| BASE.replace("http://127.0.0.1:7001", url);
    one(&with("not a url"), "upstreams.domains.url", "invalid URL");
    one(
        &with("https://api.example"),
        "upstreams.domains.url",
        "only http:// upstreams are supported",
    );
    one(
        &with("ftp://api.example"),
        "upstreams.domains.url",
        "only http://",
    );
    one(
        &with("/relative"),
        "upstreams.domains.url",
        "not an absolute URL",
    );
    one(
        &with("http://a.example/?x=1"),
        "upstreams.domains.url",
        "query",
    );
    one(
        &with("http://a.example/#top"),
        "upstreams.domains.url",
        "fragment",
    );
    one(
        &with("http://a.example/x/../y"),
        "upstreams.domains.url",
        "segments",
    );
    let errs = problems(&with("http://user:hunter2@a.example"));
    assert!(
        errs[0].contains("userinfo") && !errs[0].contains("hunter2"),
        "{errs:?}"
    );
    let c = parse(&with("http://a.example:81/api/v2/")).unwrap();
    assert_eq!(c.upstreams[0].url.base_path, "/api/v2");
    assert_eq!(c.upstreams[0].url.authority.as_str(), "a.example:81");
    let test = BASE.replace("7001\"", "7001\"\ntest_url = \"https://t.example\"");
    one(&test, "upstreams.domains.test_url", "only http://");
    one(
        &BASE.replace("url = \"http://127.0.0.1:7001\"", ""),
        "upstreams.domains.url",
        "required",
    );
    one(
        &format!("{BASE}[upstreams.\"a b\"]\nurl = \"http://x\"\n"),
        "upstreams",
        "[A-Za-z0-9_-]+",
    );
    one(
        &BASE.replace("7001\"", "7001\"\ntimeout = \"0s\""),
        "upstreams.domains.timeout",
        "greater than zero",
    );
}

#[test]
fn routes_are_checked() {
    one(
        &BASE.replace("upstream = \"domains\"", "upstream = \"nowhere\""),
        "routes[0].upstream",
        "no upstream named \"nowhere\"",
    );
    let dup = format!("{BASE}[[routes]]\nprefix = \"/v1/x\"\nupstream = \"domains\"\nresource = \"x\"\n[[routes]]\nprefix = \"/v1/domains\"\nupstream = \"domains\"\nresource = \"d\"\n");
    let errs = problems(&dup);
    assert_eq!(
        errs,
        ["routes[2].prefix: duplicate prefix \"/v1/domains\" (also routes[0])"]
    );
    one(
        &BASE.replace("resource = \"domains\"", ""),
        "routes[0].resource",
        "required unless public = true",
    );
    one(
        &BASE.replace("resource = \"domains\"", "resource = \"Domains\""),
        "routes[0].resource",
        "[a-z0-9_-]+",
    );
    for bad in [
        "v1",
        "/v1/",
        "/v1//x",
        "/v1/./x",
        "/v1/..",
        "/v1/%41",
        "/v1;x",
        "/v1\\\\x",
        "/v1?x",
        "/v1#x",
        "/v 1",
        "/v1/\\u0007",
        "/caf\u{e9}",
    ] {
        let errs = problems(&BASE.replace("\"/v1/domains\"", &format!("\"{bad}\"")));
        assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
        assert!(errs[0].starts_with("routes[0].prefix: "), "{bad}: {errs:?}");
    }
    let root = parse(&BASE.replace("\"/v1/domains\"", "\"/\"")).unwrap();
    assert_eq!(root.routes[0].prefix, "/");
    one(
        &format!("{BASE}max_body = \"1 MiB\"\n"),
        "routes[0].max_body",
        "invalid size",
    );
    let public = format!("{BASE}[[routes]]\nprefix = \"/s\"\nupstream = \"domains\"\npublic = true\nscopes = {{ GET = \"*\" }}\n");
    one(&public, "routes[1].scopes", "public route");
}

#[test]
fn scope_overrides_are_checked() {
    let with = |scopes: &str| format!("{BASE}scopes = {{ {scopes} }}\n");
    one(
        &with("DELETE = \"domains:destroy\""),
        "routes[0].scopes.DELETE",
        "action must be",
    );
    one(
        &with("GET = \"Domains:read\""),
        "routes[0].scopes.GET",
        "resource must match",
    );
    one(
        &with("GET = \"domains\""),
        "routes[0].scopes.GET",
        "invalid scope \"domains\"",
    );
    one(
        &with("FETCH = \"domains:read\""),
        "routes[0].scopes.FETCH",
        "unknown method \"FETCH\"",
    );
    one(
        &with("get = \"*\", GET = \"*\""),
        "routes[0].scopes.get",
        "more than once",
    );
    let c = parse(&with("delete = \"*:delete\", Post = \"*\"")).unwrap();
    let scopes: Vec<_> = c.routes[0]
        .scopes
        .iter()
        .map(|(m, s)| format!("{m} {s}"))
        .collect();
    assert_eq!(scopes, ["POST *", "DELETE *:delete"]);
}

#[test]
fn durations_and_sizes_are_checked() {
    let with = |line: &str| BASE.replace("[server]", &format!("[server]\n{line}"));
    one(
        &with("idle_timeout = \"5 minutes\""),
        "server.idle_timeout",
        "invalid duration \"5 minutes\"",
    );
    one(
        &with("header_read_timeout = \"0s\""),
        "server.header_read_timeout",
        "greater than zero",
    );
    one(
        &with("max_body = \"10XB\""),
        "server.max_body",
        "invalid size \"10XB\"",
    );
    one(
        &format!("{BASE}[server.http2]\nmax_header_list_size = \"8GiB\"\n"),
        "server.http2.max_header_list_size",
        "too large",
    );
    one(&with("workers = 0"), "server.workers", "at least 1");
    one(
        &with("max_connections = -1"),
        "server.max_connections",
        "at least 1",
    );
    one(
        &format!("{BASE}[cache]\ncapacity = 0\n"),
        "cache.capacity",
        "at least 1",
    );
    one(
        &format!("{BASE}[cache]\nttl = \"1.5s\"\n"),
        "cache.ttl",
        "fractions",
    );
}

#[test]
fn listeners_are_checked() {
    one(
        &BASE.replace("listen = \"127.0.0.1:8080\"", ""),
        "server.listen",
        "required unless [server.tls] is set",
    );
    one(
        &BASE.replace("127.0.0.1:8080", "localhost:8080"),
        "server.listen",
        "invalid address \"localhost:8080\"",
    );
    one(
        &format!("{BASE}[admin]\nlisten = \"0.0.0.0:8080\"\n"),
        "admin.listen",
        "also server.listen",
    );
    one(
        &format!("{BASE}[admin]\ntoken_env = \"1TOKEN\"\n"),
        "admin.token_env",
        "environment variable",
    );
    let zero = BASE.replace("127.0.0.1:8080", "127.0.0.1:0");
    assert!(parse(&format!("{zero}[admin]\nlisten = \"127.0.0.1:0\"\n")).is_ok());
    let tls_only = BASE.replace(
        "listen = \"127.0.0.1:8080\"",
        "[server.tls]\nlisten = \"[::]:8443\"\ncert = \"certs/a.pem\"\nkey = \"/abs/a.key\"",
    );
    let tls = parse(&tls_only).unwrap().server.tls.unwrap();
    assert_eq!(tls.cert, Path::new("/etc/osir/certs/a.pem"));
    assert_eq!(tls.key, Path::new("/abs/a.key"));
    let no_key = BASE.replace(
        "listen = \"127.0.0.1:8080\"",
        "[server.tls]\nlisten = \"[::]:8443\"\ncert = \"a.pem\"",
    );
    one(&no_key, "server.tls.key", "required");
}

#[test]
fn store_backends_are_checked() {
    let file = |body: &str| BASE.replace("url = \"redis://127.0.0.1:6379/0\"", body);
    one(
        &file("backend = \"file\""),
        "store.path",
        "required when backend = \"file\"",
    );
    one(
        &file("backend = \"file\"\npath = \"k.json\"\nurl = \"redis://x\""),
        "store.url",
        "only used with backend = \"redis\"",
    );
    one(&file(""), "store.url", "required when backend = \"redis\"");
    one(
        &BASE.replace("[store]", "[store]\npath = \"k.json\""),
        "store.path",
        "only used with backend = \"file\"",
    );
    one(
        &file("backend = \"mysql\""),
        "store.backend",
        "unknown backend",
    );
    one(
        &file("url = \"http://:secret@x\""),
        "store.url",
        "unsupported scheme \"http\"",
    );
    assert!(!problems(&file("url = \"http://:secret@x\""))[0].contains("secret"));
    let c = parse(&file("backend = \"file\"\npath = \"k.json\"")).unwrap();
    assert_eq!(
        c.store,
        StoreConfig::File {
            path: "/etc/osir/k.json".into(),
            timeout: Duration::from_secs(1)
        }
    );
    for url in [
        "redis+unix:///run/redis.sock",
        "unix:///run/redis.sock",
        "redis+sentinel://h/m",
        "redis+sentinel://u:pw@h1:26379,h2:26380,[::1]:26381/mymaster/2",
        "redis+cluster://h:7000",
        "redis+cluster://u:pw@h1:7000,h2:7001,[::1]:7002/",
        "rediss://h:6380",
        "rediss+sentinel://h/m",
        "rediss+cluster://h:7000",
    ] {
        assert!(parse(&file(&format!("url = \"{url}\""))).is_ok(), "{url}");
    }
    for url in [
        "redis+clustr://h:7000",
        "rediss://h:6380/#insecure",
        "redis+sentinels://h/m",
    ] {
        assert!(parse(&file(&format!("url = \"{url}\""))).is_err(), "{url}");
    }
    for (url, needle) in [
        ("redis+sentinel://:s3cret@/m", "names no sentinel host"),
        ("redis+sentinel://:s3cret@h:26379", "names no master set"),
        ("redis+sentinel://:s3cret@h:26379/", "names no master set"),
        ("redis+sentinel://:s3cret@h:99999/m", "not a number 1-65535"),
        ("redis+sentinel://:s3cret@h/m/x", "database \"x\""),
        (
            "redis+sentinel://:s3cret@h/m/0/extra",
            "too many path segments",
        ),
        ("redis+sentinel://:s3cret@h/m?x=1", "query parameters"),
        ("redis+cluster://:s3cret@/", "names no cluster node host"),
        ("redis+cluster://:s3cret@h:0", "not a number 1-65535"),
        ("redis+cluster://:s3cret@h:7000/3", "only database 0"),
        ("redis+cluster://:s3cret@h:7000?x=1", "query parameters"),
    ] {
        one(&file(&format!("url = \"{url}\"")), "store.url", needle);
        let errs = parse(&file(&format!("url = \"{url}\""))).unwrap_err();
        assert!(!errs.to_string().contains("s3cret"), "{url}: {errs}");
    }
}

#[test]
fn store_tls_ca_and_password_env_are_checked() {
    let file = |body: &str| BASE.replace("url = \"redis://127.0.0.1:6379/0\"", body);
    let c = parse(&file(
        "url = \"rediss://gw@h:6380/0\"\ntls_ca = \"ca.pem\"\npassword_env = \"OSIR_REDIS_PASSWORD\"",
    ))
    .unwrap();
    match &c.store {
        StoreConfig::Redis {
            tls_ca,
            password_env,
            ..
        } => {
            assert_eq!(tls_ca.as_deref(), Some(Path::new("/etc/osir/ca.pem")));
            assert_eq!(password_env.as_deref(), Some("OSIR_REDIS_PASSWORD"));
        }
        other => panic!("{other:?}"),
    }
    let options = c.store.redis_options().unwrap();
    assert_eq!(options.password_env.as_deref(), Some("OSIR_REDIS_PASSWORD"));
    one(
        &file("url = \"redis://h/0\"\npassword_env = \"1BAD\""),
        "store.password_env",
        "environment variable name",
    );
    one(
        &file("url = \"redis://h/0\"\npassword_env = \"A B\""),
        "store.password_env",
        "environment variable name",
    );
    one(
        &file("url = \"redis://u:s3cret@h/0\"\npassword_env = \"PW\""),
        "store.password_env",
        "already holds a password",
    );
    let errs = parse(&file(
        "url = \"redis://u:s3cret@h/0\"\npassword_env = \"PW\"",
    ))
    .unwrap_err();
    assert!(!errs.to_string().contains("s3cret"), "{errs}");
    // A user without a password in the URL is fine with password_env.
    assert!(parse(&file("url = \"redis://gw@h/0\"\npassword_env = \"PW\"")).is_ok());
    one(
        &file("url = \"redis://h/0\"\ntls_ca = \"ca.pem\""),
        "store.tls_ca",
        "only used with a TLS URL",
    );
    one(
        &file("backend = \"file\"\npath = \"k.json\"\npassword_env = \"PW\""),
        "store.password_env",
        "only used with backend = \"redis\"",
    );
}

#[test]
fn log_settings_are_checked() {
    one(
        &format!("{BASE}[log]\nlevel = \"loud\"\n"),
        "log.level",
        "unknown level \"loud\"",
    );
    let c = parse(&format!(
        "{BASE}[log]\naccess = \"access.log\"\nlevel = \"DEBUG\"\n"
    ))
    .unwrap();
    assert_eq!(c.log.access, AccessLog::File("/etc/osir/access.log".into()));
    assert_eq!(c.log.level, "debug");
    assert_eq!(
        parse(&format!("{BASE}[log]\naccess = \"off\"\n"))
            .unwrap()
            .log
            .access,
        AccessLog::Off
    );
}

#[test]
fn log_format_is_text_or_json() {
    assert_eq!(parse(BASE).unwrap().log.format, super::LogFormat::Text);
    let c = parse(&format!("{BASE}[log]\nformat = \"json\"\n")).unwrap();
    assert_eq!(c.log.format, super::LogFormat::Json);
    one(
        &format!("{BASE}[log]\nformat = \"yaml\"\n"),
        "log.format",
        "unknown format \"yaml\"; use text or json",
    );
    // Case matters, like every other enumerated value in the file.
    one(
        &format!("{BASE}[log]\nformat = \"JSON\"\n"),
        "log.format",
        "unknown format",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"
[server]
max_body = "lots"
[admin]
listen = "nope"
[store]
backend = "file"
[auth]
trusted_proxies = ["bad"]
[upstreams.a]
url = "https://a.example"
[[routes]]
prefix = "/x/"
upstream = "b"
"#;
    let errs = parse(text).unwrap_err();
    let paths: Vec<_> = errs.0.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "server.listen",
            "server.max_body",
            "admin.listen",
            "store.path",
            "auth.trusted_proxies[0]",
            "upstreams.a.url",
            "routes[0].prefix",
            "routes[0].upstream",
            "routes[0].resource"
        ]
    );
    let shown = errs.to_string();
    assert_eq!(shown.lines().count(), paths.len());
    assert!(shown.starts_with("server.listen: required unless [server.tls] is set\n"));
}

#[test]
fn load_resolves_paths_against_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    let text = BASE.replace(
        "url = \"redis://127.0.0.1:6379/0\"",
        "backend = \"file\"\npath = \"keys.json\"",
    );
    std::fs::write(&path, text).unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(
        c.store,
        StoreConfig::File {
            path: dir.path().join("keys.json"),
            timeout: Duration::from_secs(1)
        }
    );

    std::fs::write(&path, "[server\n").unwrap();
    let errs = Config::load(&path).unwrap_err().0;
    assert_eq!(errs[0].path, path.display().to_string());

    let missing = dir.path().join("missing.toml");
    let errs = Config::load(&missing).unwrap_err().0;
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].path, missing.display().to_string());
    assert!(errs[0].message.starts_with("cannot read the file"));
}

#[test]
fn the_pool_bound_holds_its_idle_connections() {
    let with = |extra: &str| {
        BASE.replace(
            "url = \"http://127.0.0.1:7001\"\n",
            &format!("url = \"http://127.0.0.1:7001\"\n{extra}\n"),
        )
    };
    one(
        &with("pool_max = 8\npool_max_idle = 9"),
        "upstreams.domains.pool_max_idle",
        "must not exceed pool_max (8), got 9",
    );
    one(
        &with("pool_max = 0"),
        "upstreams.domains.pool_max",
        "at least 1",
    );
    one(
        &with("pool_wait = \"soon\""),
        "upstreams.domains.pool_wait",
        "",
    );
    let c = parse(&with("pool_max = 8\npool_max_idle = 8\npool_wait = \"0s\"")).unwrap();
    assert_eq!(c.upstreams[0].pool_wait, Duration::ZERO);
    one(
        &BASE.replace("[server]\n", "[server]\nsend_timeout = \"0s\"\n"),
        "server.send_timeout",
        "greater than zero",
    );
}
