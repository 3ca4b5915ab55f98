//! Validating `[upstreams.*]` and `[[routes]]`: upstream names and URLs,
//! then each route's prefix, upstream, resource and scope overrides,
//! checked against the upstreams and against each other (a duplicate prefix
//! is an error). Together they become the table the router compiles.

use std::collections::{BTreeMap, HashMap};

use http::Method;

use super::checks::{check_prefix, is_resource_name, parse_method, placeholder_url, METHODS};
use super::validate::{bounds, Validator};
use super::{raw, RouteConfig, UpstreamConfig};
use crate::keys::Scope;

impl Validator<'_> {
    pub(super) fn upstreams(
        &mut self,
        raw: BTreeMap<String, raw::RawUpstream>,
    ) -> Vec<UpstreamConfig> {
        let mut upstreams = Vec::with_capacity(raw.len());
        for (name, up) in raw {
            let at = |field: &str| format!("upstreams.{name}.{field}");
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                self.problem(
                    "upstreams",
                    format!("name {name:?} must match [A-Za-z0-9_-]+"),
                );
            }
            let main = match up.url.as_deref() {
                Some(text) => self.upstream_url(at("url"), text),
                None => {
                    self.problem(at("url"), "required");
                    None
                }
            };
            let test_url =
                (up.test_url.as_deref()).and_then(|t| self.upstream_url(at("test_url"), t));
            let in_bounds = |n: i64| (1..=bounds::POOL_IDLE).contains(&n);
            if up.pool_max_idle > up.pool_max
                && in_bounds(up.pool_max)
                && in_bounds(up.pool_max_idle)
            {
                self.problem(
                    at("pool_max_idle"),
                    format!(
                        "must not exceed pool_max ({}), got {}",
                        up.pool_max, up.pool_max_idle
                    ),
                );
            }
            upstreams.push(UpstreamConfig {
                url: main.unwrap_or_else(placeholder_url),
                test_url,
                connect_timeout: self.duration(&at("connect_timeout"), &up.connect_timeout, false),
                timeout: self.duration(&at("timeout"), &up.timeout, false),
                pool_max: self.count(&at("pool_max"), up.pool_max, 1, bounds::POOL_IDLE),
                pool_wait: self.duration(&at("pool_wait"), &up.pool_wait, true),
                pool_max_idle: self.count(
                    &at("pool_max_idle"),
                    up.pool_max_idle,
                    0,
                    bounds::POOL_IDLE,
                ),
                pool_idle_timeout: self.duration(
                    &at("pool_idle_timeout"),
                    &up.pool_idle_timeout,
                    false,
                ),
                name,
            });
        }
        upstreams
    }

    pub(super) fn routes(
        &mut self,
        raw: Vec<raw::RawRoute>,
        upstreams: &[UpstreamConfig],
    ) -> Vec<RouteConfig> {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut routes = Vec::with_capacity(raw.len());
        for (i, route) in raw.into_iter().enumerate() {
            let at = |field: &str| format!("routes[{i}].{field}");
            let prefix = match route.prefix {
                Some(prefix) => {
                    if let Err(why) = check_prefix(&prefix) {
                        self.problem(at("prefix"), format!("{prefix:?} {why}"));
                    } else if let Some(first) = seen.get(&prefix) {
                        self.problem(
                            at("prefix"),
                            format!("duplicate prefix {prefix:?} (also routes[{first}])"),
                        );
                    } else {
                        seen.insert(prefix.clone(), i);
                    }
                    prefix
                }
                None => {
                    self.problem(at("prefix"), "required");
                    String::new()
                }
            };
            let upstream = match route.upstream.as_deref() {
                Some(name) => upstreams
                    .iter()
                    .position(|u| u.name == name)
                    .unwrap_or_else(|| {
                        self.problem(at("upstream"), format!("no upstream named {name:?}"));
                        0
                    }),
                None => {
                    self.problem(at("upstream"), "required");
                    0
                }
            };
            match &route.resource {
                Some(r) if !is_resource_name(r) => {
                    self.problem(at("resource"), format!("{r:?} must match [a-z0-9_-]+"));
                }
                None if !route.public => {
                    self.problem(at("resource"), "required unless public = true")
                }
                _ => {}
            }
            if route.public && !route.scopes.is_empty() {
                self.problem(
                    at("scopes"),
                    "has no effect on a public route; remove it or drop public = true",
                );
            }
            let mut scopes: Vec<(Method, Scope)> = Vec::with_capacity(route.scopes.len());
            for (key, value) in &route.scopes {
                let path = at(&format!("scopes.{key}"));
                let method = match parse_method(key) {
                    Some(m) if scopes.iter().any(|(seen, _)| *seen == m) => {
                        self.problem(&path, format!("{m} is given more than once"));
                        continue;
                    }
                    Some(m) => m,
                    None => {
                        self.problem(&path, format!("unknown method {key:?}; use GET, HEAD, OPTIONS, POST, PUT, PATCH or DELETE"));
                        continue;
                    }
                };
                // Compiled once here: routing only compares.
                match Scope::parse(value) {
                    Ok(scope) => scopes.push((method, scope)),
                    Err(message) => self.problem(&path, message),
                }
            }
            scopes.sort_by_key(|(method, _)| METHODS.iter().position(|m| m == method));
            let max_body = route
                .max_body
                .as_deref()
                .map(|text| self.size(&at("max_body"), text, 0, bounds::BODY));
            routes.push(RouteConfig {
                prefix,
                upstream,
                resource: route.resource,
                scopes,
                public: route.public,
                max_body,
            });
        }
        routes
    }
}
