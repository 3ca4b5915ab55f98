//! `GET /openapi.json`: the OpenAPI 3.1 description of the admin API.
//!
//! The document lives in the repository (`docs/openapi.json`) and is built
//! into the binary. It is served without the admin token (it holds nothing
//! secret, and clients and schema-based testers fetch it before they have
//! one), but only while the key API is on. What is served is the
//! repository's document with the scope pattern narrowed to the resources
//! the running config's routes name, so a schema-based client generates
//! only scopes this gateway accepts.

use std::collections::BTreeSet;

/// The repository's document, as built.
pub(crate) const DOCUMENT: &str = include_str!("../../docs/openapi.json");

/// The resource part of the generic scope pattern, replaced when served.
const ANY_RESOURCE: &str = "[a-z0-9_-]{1,32}";

/// The document for a gateway whose routes name `resources`.
pub(crate) fn document(resources: &BTreeSet<String>) -> serde_json::Value {
    let mut doc: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap_or_default();
    if resources.is_empty() {
        // No route names a resource: scopes are not checked.
        return doc;
    }
    // Resources match [a-z0-9_-]+: nothing in them needs regex escaping.
    let names: Vec<&str> = resources.iter().map(String::as_str).collect();
    if let Some(p) = doc.pointer_mut("/components/schemas/Scope/pattern") {
        if let Some(text) = p.as_str() {
            *p = serde_json::Value::String(
                text.replace(ANY_RESOURCE, &format!("({})", names.join("|"))),
            );
        }
    }
    doc
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_and_narrows_scopes() {
        let generic = document(&BTreeSet::new());
        assert_eq!(generic["openapi"], "3.1.0");
        let pattern = |d: &serde_json::Value| {
            d.pointer("/components/schemas/Scope/pattern")
                .and_then(|p| p.as_str())
                .unwrap()
                .to_owned()
        };
        assert!(pattern(&generic).contains(ANY_RESOURCE));
        let narrowed = document(&["domains".to_owned(), "vps".to_owned()].into());
        assert!(
            pattern(&narrowed).contains("(\\*|(domains|vps)):"),
            "{}",
            pattern(&narrowed)
        );
        for path in [
            "/keys",
            "/keys/{id}",
            "/keys/{id}/rotate",
            "/audit",
            "/openapi.json",
        ] {
            assert!(generic["paths"].get(path).is_some(), "{path}");
        }
    }
}
