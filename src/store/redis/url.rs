//! Redis URLs: parsing the multi-host forms this store adds to redis-rs
//! (`redis+sentinel://` and `redis+cluster://`, and their TLS forms
//! `rediss+sentinel://` and `rediss+cluster://`; plain `redis://`,
//! `rediss://` and `redis+unix://` are the driver's), and keeping
//! credentials out of every message. They live apart from the connection
//! code because both config validation and `connect` parse them, and
//! because the redaction rules are easiest to check, and to test, in one
//! place.
//!
//! Over 400 lines: a third of it is the parsers' tests.

use ::redis::{
    ConnectionAddr, ConnectionInfo, IntoConnectionInfo, ProtocolVersion, RedisConnectionInfo,
};

/// The port a sentinel listens on when a `redis+sentinel://` host names none.
pub const SENTINEL_DEFAULT_PORT: u16 = 26379;
pub(super) const SENTINEL_SCHEME: &str = "redis+sentinel://";
/// [`SENTINEL_SCHEME`] over TLS: sentinels and master alike.
pub(super) const SENTINEL_TLS_SCHEME: &str = "rediss+sentinel://";
/// The port a `redis+cluster://` node listens on when the URL names none.
pub const CLUSTER_DEFAULT_PORT: u16 = 6379;
pub(super) const CLUSTER_SCHEME: &str = "redis+cluster://";
/// [`CLUSTER_SCHEME`] over TLS: every node.
pub(super) const CLUSTER_TLS_SCHEME: &str = "rediss+cluster://";

/// Whether `url` is a Sentinel URL (`redis+sentinel://` or `rediss+sentinel://`).
pub(super) fn is_sentinel(url: &str) -> bool {
    url.starts_with(SENTINEL_SCHEME) || url.starts_with(SENTINEL_TLS_SCHEME)
}

/// Whether `url` is a Cluster URL (`redis+cluster://` or `rediss+cluster://`).
pub(super) fn is_cluster(url: &str) -> bool {
    url.starts_with(CLUSTER_SCHEME) || url.starts_with(CLUSTER_TLS_SCHEME)
}

/// A TCP address, over TLS (certificate and host name checked) or not.
fn tcp_addr(host: String, port: u16, tls: bool) -> ConnectionAddr {
    if tls {
        ConnectionAddr::TcpTls {
            host,
            port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(host, port)
    }
}

/// RESP2, `db`, and the user and password if any.
pub(super) fn redis_settings(
    db: i64,
    username: Option<&str>,
    password: Option<&str>,
) -> RedisConnectionInfo {
    let mut info = RedisConnectionInfo::default()
        .set_protocol(ProtocolVersion::RESP2)
        .set_db(db);
    if let Some(user) = username {
        info = info.set_username(user);
    }
    if let Some(pass) = password {
        info = info.set_password(pass);
    }
    info
}

/// A parsed `redis+sentinel://[user:password@]host[:port][,host[:port]…]/<master>[/<db>]`
/// URL: where to ask for the master, and how to talk to it.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelUrl {
    /// The sentinels, asked in this order (port 26379 when none is given).
    pub sentinels: Vec<(String, u16)>,
    /// The name of the master set (`sentinel monitor <name> …`).
    pub master: String,
    /// The database on the master (0 when none is given).
    pub db: i64,
    /// The master's ACL user, if any.
    pub username: Option<String>,
    /// The master's password, if any; never printed.
    pub password: Option<String>,
    /// `rediss+sentinel://`: sentinels and master are spoken to over TLS.
    pub tls: bool,
}

impl std::fmt::Debug for SentinelUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelUrl")
            .field("sentinels", &self.sentinels)
            .field("master", &self.master)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls", &self.tls)
            .finish()
    }
}

impl SentinelUrl {
    /// Where the sentinel at `host:port` listens (over TLS for
    /// `rediss+sentinel://`).
    pub(super) fn sentinel_addr(&self, host: String, port: u16) -> ConnectionAddr {
        tcp_addr(host, port, self.tls)
    }
}

/// The parts of a `scheme://[user:password@]host[:port][,host[:port]…]/path`
/// URL: user, password, hosts (with `default_port` where none is given) and
/// the path after the first `/`. Errors never quote the userinfo.
struct MultiHostUrl<'a> {
    username: Option<String>,
    password: Option<String>,
    hosts: Vec<(String, u16)>,
    path: &'a str,
}

fn parse_multi_host<'a>(
    rest: &'a str,
    form: &str,
    what: &str,
    default_port: u16,
) -> Result<MultiHostUrl<'a>, String> {
    if rest.contains(['?', '#']) {
        return Err(format!(
            "query parameters are not supported; expected {form}"
        ));
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| "the user or password is not valid UTF-8 once decoded".to_owned())
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(info) => {
            let (user, pass) = match info.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (info, None),
            };
            let user = Some(decode(user)?).filter(|u| !u.is_empty());
            let pass = pass.map(decode).transpose()?.filter(|p| !p.is_empty());
            (user, pass)
        }
    };
    let mut parsed = Vec::new();
    for host in hosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
        parsed.push(parse_host_port(host, what, default_port)?);
    }
    if parsed.is_empty() {
        return Err(format!("names no {what} host; expected {form}"));
    }
    Ok(MultiHostUrl {
        username,
        password,
        hosts: parsed,
        path,
    })
}

/// Parses a `redis+sentinel://` URL. Errors never quote the userinfo.
pub fn parse_sentinel_url(url: &str) -> Result<SentinelUrl, String> {
    const FORM: &str =
        "redis+sentinel://[user:password@]host:26379[,host:26379…]/<master-name>[/<db>]";
    let (rest, tls) = match url.strip_prefix(SENTINEL_SCHEME) {
        Some(rest) => (rest, false),
        None => (
            url.strip_prefix(SENTINEL_TLS_SCHEME)
                .ok_or_else(|| format!("not a Sentinel URL; expected {FORM}"))?,
            true,
        ),
    };
    let MultiHostUrl {
        username,
        password,
        hosts: sentinels,
        path,
    } = parse_multi_host(rest, FORM, "sentinel", SENTINEL_DEFAULT_PORT)?;
    let mut segments = path.split('/');
    let master = segments.next().unwrap_or("");
    if master.is_empty() {
        return Err(format!("names no master set; expected {FORM}"));
    }
    if master.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the master set name holds whitespace".to_owned());
    }
    let db = match segments.next() {
        None | Some("") => 0,
        Some(db) => db
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| format!("database {db:?} is not a non-negative number"))?,
    };
    if segments.any(|s| !s.is_empty()) {
        return Err(format!("too many path segments; expected {FORM}"));
    }
    Ok(SentinelUrl {
        sentinels,
        master: master.to_owned(),
        db,
        username,
        password,
        tls,
    })
}

/// A parsed `redis+cluster://[user:password@]host[:port][,host[:port]…]/`
/// URL: the seed nodes the cluster client learns the topology from.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterUrl {
    /// The seed nodes, in this order (port 6379 when none is given).
    pub nodes: Vec<(String, u16)>,
    /// The ACL user, if any (the same on every node).
    pub username: Option<String>,
    /// The password, if any; never printed.
    pub password: Option<String>,
    /// `rediss+cluster://`: every node is spoken to over TLS.
    pub tls: bool,
}

impl std::fmt::Debug for ClusterUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterUrl")
            .field("nodes", &self.nodes)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls", &self.tls)
            .finish()
    }
}

impl ClusterUrl {
    /// How to reach the node at `host:port` with this URL's credentials.
    pub(super) fn node_info(&self, host: String, port: u16) -> Result<ConnectionInfo, String> {
        let settings = redis_settings(0, self.username.as_deref(), self.password.as_deref());
        tcp_addr(host, port, self.tls)
            .into_connection_info()
            .map(|info| info.set_redis_settings(settings))
            .map_err(|e| scrub(&e.to_string(), self.password.as_deref()))
    }
}

/// Parses a `redis+cluster://` URL. A cluster has only database 0, so the
/// path is empty or `0`. Errors never quote the userinfo.
pub fn parse_cluster_url(url: &str) -> Result<ClusterUrl, String> {
    const FORM: &str = "redis+cluster://[user:password@]host:6379[,host:6379…]/";
    let (rest, tls) = match url.strip_prefix(CLUSTER_SCHEME) {
        Some(rest) => (rest, false),
        None => (
            url.strip_prefix(CLUSTER_TLS_SCHEME)
                .ok_or_else(|| format!("not a Cluster URL; expected {FORM}"))?,
            true,
        ),
    };
    let parsed = parse_multi_host(rest, FORM, "cluster node", CLUSTER_DEFAULT_PORT)?;
    if !matches!(parsed.path, "" | "0" | "0/") {
        return Err(format!(
            "a cluster has only database 0 and the URL takes no path; expected {FORM}"
        ));
    }
    Ok(ClusterUrl {
        nodes: parsed.hosts,
        username: parsed.username,
        password: parsed.password,
        tls,
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; `what` names it in errors.
fn parse_host_port(text: &str, what: &str, default_port: u16) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = text.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{what} {text:?}: unclosed '['"))?;
        match after {
            "" => (host, None),
            p => (
                host,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("{what} {text:?}: expected ':' after ']'"))?,
                ),
            ),
        }
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{what} {text:?}: no host"));
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{what} {text:?}: the port is not a number 1-65535"))?,
    };
    Ok((host.to_owned(), port))
}

/// `redis://user:pass@host/0` → `redis://host/0`: messages name the server,
/// never its credentials.
pub(super) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        // Not a URL we can take apart; say nothing that might be a secret.
        return "<redis URL>".to_owned();
    };
    match userinfo(url) {
        Some(info) => {
            let rest = scheme_end + 3 + info.len() + 1;
            format!("{}{}", &url[..scheme_end + 3], &url[rest..])
        }
        None => url.to_owned(),
    }
}

/// The `user:password` part of a URL's authority, if any.
pub(super) fn userinfo(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    authority.rfind('@').map(|at| &authority[..at])
}

/// Removes the password from a driver message, in case it ever echoes it.
pub(super) fn scrub(msg: &str, password: Option<&str>) -> String {
    match password {
        Some(p) if !p.is_empty() => msg.replace(p, "***"),
        _ => msg.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_userinfo() {
        assert_eq!(redact_url("redis://u:secret@h:6379/0"), "redis://h:6379/0");
        assert_eq!(redact_url("redis://:secret@h"), "redis://h");
        assert_eq!(redact_url("rediss://h:1/2?x=@y"), "rediss://h:1/2?x=@y");
        assert_eq!(redact_url("redis://a@b@h/0"), "redis://h/0");
        assert_eq!(redact_url("garbage:secret"), "<redis URL>");
        assert_eq!(userinfo("redis://u:p@h/0"), Some("u:p"));
        assert_eq!(userinfo("redis://h/0?a=b@c"), None);
        assert_eq!(
            scrub("auth failed for hunter2", Some("hunter2")),
            "auth failed for ***"
        );
    }

    #[test]
    fn sentinel_urls_are_parsed() {
        let s = parse_sentinel_url("redis+sentinel://u:p%40ss@a:1,b,[::1]:3/mymaster/4").unwrap();
        assert_eq!(
            s.sentinels,
            vec![
                ("a".to_owned(), 1),
                ("b".to_owned(), SENTINEL_DEFAULT_PORT),
                ("::1".to_owned(), 3)
            ]
        );
        assert_eq!(s.master, "mymaster");
        assert_eq!(s.db, 4);
        assert_eq!(s.username.as_deref(), Some("u"));
        assert_eq!(s.password.as_deref(), Some("p@ss"));
        assert!(!format!("{s:?}").contains("p@ss"));
        let one = parse_sentinel_url("redis+sentinel://h:26379/m").unwrap();
        assert!(!one.tls);
        assert_eq!((one.sentinels.len(), one.db, one.password), (1, 0, None));
        let tls = parse_sentinel_url("rediss+sentinel://h:26379/m/1").unwrap();
        assert!(tls.tls && is_sentinel("rediss+sentinel://h/m"));
        assert_eq!((tls.master.as_str(), tls.db), ("m", 1));
        for (bad, why) in [
            ("redis+sentinel:///m", "no sentinel"),
            ("redis+sentinel://h", "no master"),
            ("redis+sentinel://h:x/m", "port"),
            ("redis+sentinel://h:0/m", "port"),
            ("redis+sentinel://[::1/m", "unclosed"),
            ("redis+sentinel://h/m/-1", "database"),
            ("redis+sentinel://h/m/1/2", "too many"),
            ("redis://h/m", "not a Sentinel URL"),
        ] {
            let err = parse_sentinel_url(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert_eq!(
            redact_url("redis+sentinel://u:pw@a:1,b:2/m/0"),
            "redis+sentinel://a:1,b:2/m/0"
        );
    }

    #[test]
    fn cluster_urls_are_parsed() {
        let c = parse_cluster_url("redis+cluster://u:p%40ss@a:7000,b,[::1]:7002/").unwrap();
        assert_eq!(
            c.nodes,
            vec![
                ("a".to_owned(), 7000),
                ("b".to_owned(), CLUSTER_DEFAULT_PORT),
                ("::1".to_owned(), 7002)
            ]
        );
        assert_eq!(c.username.as_deref(), Some("u"));
        assert_eq!(c.password.as_deref(), Some("p@ss"));
        assert!(!format!("{c:?}").contains("p@ss"));
        let one = parse_cluster_url("redis+cluster://h:7000").unwrap();
        assert_eq!((one.nodes.len(), one.password), (1, None));
        assert!(!one.tls);
        let tls = parse_cluster_url("rediss+cluster://h:7000,g").unwrap();
        assert!(tls.tls && is_cluster("rediss+cluster://h"));
        assert!(matches!(
            tls.node_info("h".into(), 7000).unwrap().addr(),
            ConnectionAddr::TcpTls {
                insecure: false,
                ..
            }
        ));
        assert!(parse_cluster_url("redis+cluster://h:7000/0").is_ok());
        for (bad, why) in [
            ("redis+cluster://", "no cluster node"),
            ("redis+cluster://u:p@/", "no cluster node"),
            ("redis+cluster://h:x", "port"),
            ("redis+cluster://[::1", "unclosed"),
            ("redis+cluster://h:1/2", "only database 0"),
            ("redis+cluster://h:1/?a=b", "query"),
            ("redis://h:1", "not a Cluster URL"),
        ] {
            let err = parse_cluster_url(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert_eq!(
            redact_url("redis+cluster://u:pw@a:1,b:2/"),
            "redis+cluster://a:1,b:2/"
        );
    }
}
