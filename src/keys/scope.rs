//! Scopes: `resource:action` grants and the requirement a route computes
//! per method. Parsed once (config, store record, CLI input), compared on
//! the request path.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a request does to a resource; decides the scope it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// GET, HEAD, OPTIONS.
    Read,
    /// POST, PUT, PATCH.
    Write,
    /// DELETE.
    Delete,
}

impl Action {
    /// The word used in scopes.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
            Action::Delete => "delete",
        }
    }
}

/// A grant (`domains:read`, `vps:*`, `*`) or a requirement (`domains:read`).
///
/// `None` in a part means `*`. Actions are independent: `write` does not
/// imply `read`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scope {
    resource: Option<Box<str>>,
    action: Option<Action>,
}

impl Scope {
    /// A concrete requirement, as routes compute them.
    pub fn new(resource: &str, action: Action) -> Scope {
        Scope {
            resource: Some(resource.into()),
            action: Some(action),
        }
    }

    /// Parses `*`, `resource:action`, `resource:*` or `*:action`. The error
    /// quotes the bad value so CLI and API messages can name it.
    pub fn parse(text: &str) -> Result<Scope, String> {
        if text == "*" {
            return Ok(Scope {
                resource: None,
                action: None,
            });
        }
        let Some((res, act)) = text.split_once(':') else {
            return Err(format!(
                "invalid scope {text:?}: expected resource:action (action read, write, delete or *) or *"
            ));
        };
        let resource = match res {
            "*" => None,
            r if !r.is_empty()
                && r.bytes().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-'
                }) =>
            {
                Some(r.into())
            }
            _ => {
                return Err(format!(
                    "invalid scope {text:?}: resource must match [a-z0-9_-]+ or be *"
                ))
            }
        };
        let action = match act {
            "*" => None,
            "read" => Some(Action::Read),
            "write" => Some(Action::Write),
            "delete" => Some(Action::Delete),
            _ => {
                return Err(format!(
                    "invalid scope {text:?}: action must be read, write, delete or *"
                ))
            }
        };
        Ok(Scope { resource, action })
    }

    /// Does this grant cover `required`? A wildcard requirement is covered
    /// only by a wildcard grant.
    /// The resource it names; `None` for `*` and `*:action`.
    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }

    /// Does this grant satisfy `required`?
    pub fn grants(&self, required: &Scope) -> bool {
        (self.resource.is_none() || self.resource == required.resource)
            && (self.action.is_none() || self.action == required.action)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Written in pieces, not through `write!`: a scope is part of every
        // 403's message.
        match (&self.resource, self.action) {
            (None, None) => f.write_str("*"),
            (r, a) => {
                f.write_str(r.as_deref().unwrap_or("*"))?;
                f.write_str(":")?;
                f.write_str(a.map_or("*", Action::as_str))
            }
        }
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Scope, D::Error> {
        let s = String::deserialize(d)?;
        Scope::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    #[test]
    fn scopes_parse_display_and_grant() {
        for s in ["*", "domains:read", "vps:*", "*:read", "billing:delete"] {
            assert_eq!(Scope::parse(s).unwrap().to_string(), s);
        }
        for bad in [
            "",
            "domains",
            "domains:",
            ":read",
            "Domains:read",
            "domains:list",
            "a:b:c",
            "dom ains:read",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad:?}");
        }
        let need = Scope::new("domains", Action::Read);
        assert!(Scope::parse("domains:read").unwrap().grants(&need));
        assert!(Scope::parse("domains:*").unwrap().grants(&need));
        assert!(Scope::parse("*").unwrap().grants(&need));
        assert!(!Scope::parse("domains:write").unwrap().grants(&need));
        assert!(!Scope::parse("vps:read").unwrap().grants(&need));
        assert!(!Scope::parse("domain:read").unwrap().grants(&need));
    }
}
