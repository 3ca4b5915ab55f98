//! Routing: which upstream a checked path goes to, and which scope it needs.
//!
//! Routes match by prefix on segment boundaries (`/v1/domains` matches
//! `/v1/domains` and `/v1/domains/x`, never `/v1/domainsx`), longest prefix
//! first, case-sensitive, against the decoded path (so `/v1/%64omains` goes
//! where the upstream will act on it). The required scope per method is
//! computed once when the config is compiled.

use http::Method;

use crate::config::{Config, RouteConfig};
use crate::error::GatewayError;
use crate::keys::{Action, Scope};

/// The methods that have a scope, in table order.
const METHODS: [(Method, Action); 7] = [
    (Method::GET, Action::Read),
    (Method::HEAD, Action::Read),
    (Method::OPTIONS, Action::Read),
    (Method::POST, Action::Write),
    (Method::PUT, Action::Write),
    (Method::PATCH, Action::Write),
    (Method::DELETE, Action::Delete),
];

fn method_index(m: &Method) -> Option<usize> {
    METHODS.iter().position(|(x, _)| x == m)
}

/// One compiled route.
#[derive(Debug)]
pub struct Route {
    /// The configured prefix; also the metrics `route` label.
    pub prefix: Box<str>,
    /// Index into the snapshot's upstreams.
    pub upstream: usize,
    /// No key required.
    pub public: bool,
    /// Body limit for this route (its own or `server.max_body`).
    pub max_body: u64,
    /// Required scope per method of [`METHODS`]; empty for public routes.
    required: Vec<Scope>,
    /// This route's metric series, resolved on first use.
    pub series: crate::metrics::RouteSeries,
}

impl Route {
    /// The scope a method needs here: `Ok(None)` on public routes,
    /// `MethodNotAllowed` for methods without a scope (TRACE, PROPFIND, …).
    pub fn required_scope(&self, method: &Method) -> Result<Option<&Scope>, GatewayError> {
        if self.public {
            return Ok(None);
        }
        method_index(method)
            .and_then(|i| self.required.get(i))
            .map(Some)
            .ok_or(GatewayError::MethodNotAllowed)
    }

    fn matches(&self, path: &str) -> bool {
        let p = self.prefix.as_bytes();
        if &*self.prefix == "/" {
            return true;
        }
        path.as_bytes().starts_with(p) && matches!(path.as_bytes().get(p.len()), None | Some(b'/'))
    }
}

/// All routes, longest prefix first.
#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<Route>,
}

fn compile(r: &RouteConfig, default_body: u64) -> Route {
    let required = match (&r.resource, r.public) {
        (Some(res), false) => METHODS
            .iter()
            .map(|(m, action)| {
                r.scopes
                    .iter()
                    .find(|(om, _)| om == m)
                    .map_or_else(|| Scope::new(res, *action), |(_, scope)| scope.clone())
            })
            .collect(),
        _ => Vec::new(),
    };
    Route {
        prefix: r.prefix.as_str().into(),
        upstream: r.upstream,
        public: r.public,
        max_body: r.max_body.unwrap_or(default_body),
        required,
        series: crate::metrics::RouteSeries::default(),
    }
}

impl RouteTable {
    /// Compiles the validated routes of `cfg`.
    pub fn new(cfg: &Config) -> RouteTable {
        let mut routes: Vec<Route> = cfg
            .routes
            .iter()
            .map(|r| compile(r, cfg.server.max_body))
            .collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        RouteTable { routes }
    }

    /// The route for a decoded, checked path.
    pub fn find(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.matches(path))
    }

    /// Every route, longest prefix first.
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::Path;

    const CFG: &str = r#"
[server]
listen = "127.0.0.1:8080"
[store]
backend = "file"
path = "keys.json"
[upstreams.a]
url = "http://127.0.0.1:7001"
[[routes]]
prefix = "/v1/domains"
upstream = "a"
resource = "domains"
[[routes]]
prefix = "/v1/domains/transfers"
upstream = "a"
resource = "transfers"
scopes = { DELETE = "transfers:write" }
[[routes]]
prefix = "/v1/status"
upstream = "a"
public = true
"#;

    fn table() -> RouteTable {
        RouteTable::new(&Config::from_toml(CFG, Path::new(".")).unwrap())
    }

    #[test]
    fn prefixes_match_on_segment_boundaries_longest_first() {
        let t = table();
        assert_eq!(&*t.find("/v1/domains").unwrap().prefix, "/v1/domains");
        assert_eq!(&*t.find("/v1/domains/").unwrap().prefix, "/v1/domains");
        assert_eq!(&*t.find("/v1/domains/x").unwrap().prefix, "/v1/domains");
        assert_eq!(
            &*t.find("/v1/domains/transfers/1").unwrap().prefix,
            "/v1/domains/transfers"
        );
        assert!(t.find("/v1/domainsx").is_none());
        assert!(t.find("/v1/Domains").is_none());
        assert!(t.find("/v1").is_none());
    }

    #[test]
    fn methods_map_to_scopes_with_overrides() {
        let t = table();
        let d = t.find("/v1/domains").unwrap();
        let want = |m: Method| d.required_scope(&m).unwrap().unwrap().to_string();
        assert_eq!(want(Method::GET), "domains:read");
        assert_eq!(want(Method::HEAD), "domains:read");
        assert_eq!(want(Method::OPTIONS), "domains:read");
        assert_eq!(want(Method::POST), "domains:write");
        assert_eq!(want(Method::PUT), "domains:write");
        assert_eq!(want(Method::PATCH), "domains:write");
        assert_eq!(want(Method::DELETE), "domains:delete");
        assert_eq!(
            d.required_scope(&Method::TRACE),
            Err(GatewayError::MethodNotAllowed)
        );
        let tr = t.find("/v1/domains/transfers").unwrap();
        assert_eq!(
            tr.required_scope(&Method::DELETE)
                .unwrap()
                .unwrap()
                .to_string(),
            "transfers:write"
        );
        assert_eq!(
            tr.required_scope(&Method::GET)
                .unwrap()
                .unwrap()
                .to_string(),
            "transfers:read"
        );
        assert_eq!(
            t.find("/v1/status").unwrap().required_scope(&Method::GET),
            Ok(None)
        );
    }
}
