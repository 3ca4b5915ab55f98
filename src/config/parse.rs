//! Reading `gateway.toml` into the raw mirror ([`super::raw`]) so that one
//! run reports every problem: a syntax error stops the parse (nothing after
//! it can be read reliably), but each schema problem (an unknown field, a
//! wrong type) is recorded with its path, the entry set aside, and the rest
//! read again; the caller then validates everything that was read. Also:
//! turning a byte offset into the dotted path of the key written there, for
//! messages that name the field.

use std::collections::HashMap;

use super::raw::RawConfig;
use super::ConfigProblem;

/// Most schema problems one file reports before the rest is given up on
/// (each one costs a re-deserialisation of the table).
const MAX_SCHEMA_PROBLEMS: usize = 100;

/// Parses the text into the raw mirror. A syntax error is the only problem
/// reported (nothing after it can be read reliably). Schema problems (an
/// unknown field, a value of the wrong type) do not stop the parse: each is
/// recorded with its path, the offending entry is set aside, and the rest
/// is deserialised again, so one run reports them all and the caller can
/// still validate every other field. `source` names the file when no
/// better path is known.
pub(super) fn parse(
    text: &str,
    source: &str,
) -> Result<(RawConfig, Vec<ConfigProblem>), ConfigProblem> {
    // Parsing to a plain table first tells syntax errors (the file is not TOML)
    // apart from shape errors (TOML, but not our schema): they read differently.
    let mut table = match toml::from_str::<toml::Table>(text) {
        Ok(t) => t,
        Err(err) => {
            return Err(ConfigProblem {
                path: source.to_owned(),
                message: match location(text, err.span()) {
                    Some(at) => format!("invalid TOML at {at}: {}", one_line(err.message())),
                    None => format!("invalid TOML: {}", one_line(err.message())),
                },
            })
        }
    };
    let mut problems = Vec::new();
    loop {
        let value = toml::Value::Table(table.clone());
        let err = match serde_path_to_error::deserialize::<_, RawConfig>(value) {
            Ok(raw) => return Ok((raw, problems)),
            Err(err) => err,
        };
        let segments: Vec<Segment> = err
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Map { key } => Some(Segment::Key(key.clone())),
                serde_path_to_error::Segment::Seq { index } => Some(Segment::Index(*index)),
                _ => None,
            })
            .collect();
        let path = dotted(&segments);
        let message = one_line(err.inner().message());
        let message = match offset_of(text, &path).and_then(|at| location(text, Some(at..at))) {
            Some(at) => format!("{message} ({at})"),
            None => message,
        };
        // An array element is first replaced by a placeholder, so the
        // elements after it keep their indices (and their own problems
        // their names); only if the placeholder does not fit either is the
        // element removed. A field is removed.
        let again = problems.iter().any(|p: &ConfigProblem| p.path == path);
        let removed = if again {
            remove(&mut table, &segments, false)
        } else {
            remove(&mut table, &segments, true)
        };
        if !again {
            problems.push(ConfigProblem {
                path: if path.is_empty() {
                    source.to_owned()
                } else {
                    path
                },
                message,
            });
        }
        if !removed || problems.len() >= MAX_SCHEMA_PROBLEMS {
            // Nothing left to set aside: report what was found, and give
            // the validator only defaults (the file is refused anyway).
            return Ok((RawConfig::default(), problems));
        }
    }
}

/// One step of a field path.
enum Segment {
    Key(String),
    Index(usize),
}

/// `routes[1].prefix`, as problems name fields.
fn dotted(segments: &[Segment]) -> String {
    let mut out = String::new();
    for s in segments {
        match s {
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Removes the entry at `segments` from the table (an array element: puts
/// a placeholder in its place when `placeholder`, an empty table if the
/// array holds tables, else an empty string); false if there is none.
fn remove(table: &mut toml::Table, segments: &[Segment], placeholder: bool) -> bool {
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut here = Here::Table(table);
    for s in parents {
        let next = match (here, s) {
            (Here::Table(t), Segment::Key(k)) => t.get_mut(k),
            (Here::Array(a), Segment::Index(i)) => a.get_mut(*i),
            _ => None,
        };
        here = match next {
            Some(toml::Value::Table(t)) => Here::Table(t),
            Some(toml::Value::Array(a)) => Here::Array(a),
            _ => return false,
        };
    }
    match (here, last) {
        (Here::Table(t), Segment::Key(k)) => t.remove(k).is_some(),
        (Here::Array(a), Segment::Index(i)) if *i < a.len() => {
            if placeholder {
                let tables = a.iter().any(toml::Value::is_table);
                a[*i] = if tables {
                    toml::Value::Table(toml::Table::new())
                } else {
                    toml::Value::String(String::new())
                };
            } else {
                a.remove(*i);
            }
            true
        }
        _ => false,
    }
}

enum Here<'a> {
    Table(&'a mut toml::Table),
    Array(&'a mut Vec<toml::Value>),
}

/// Byte offset of the first line that [`path_at`] reads as defining
/// `path` (its `key =` line or its table header).
fn offset_of(text: &str, path: &str) -> Option<usize> {
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        let defines = !trimmed.is_empty()
            && !trimmed.starts_with('#')
            && (trimmed.starts_with('[') || key_of(line).is_some());
        if defines && path_at(text, at + indent).as_deref() == Some(path) {
            return Some(at + indent);
        }
        at += line.len();
    }
    None
}

/// Keeps each problem on one line, as `ConfigErrors` promises.
fn one_line(message: &str) -> String {
    let lines = message
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "));
    lines
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// `"line L, column C"` for the start of a byte span, when toml gave one.
fn location(text: &str, span: Option<std::ops::Range<usize>>) -> Option<String> {
    let before = text.get(..span?.start)?;
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Some(format!("line {line}, column {column}"))
}

/// Best-effort dotted path (`routes[2].bogus`, `server.http2`) of the key at a byte
/// offset, reconstructed from table headers and the nearest `key =` at or above it.
///
/// toml's errors carry a span but not the key path, and operators want the field
/// name. This is a line-oriented heuristic: it understands headers, arrays of
/// tables and `key = value` lines (a value spanning lines belongs to the last key
/// above it), which is all our schema uses; when it cannot tell, it returns `None`
/// and the caller falls back to the file name.
fn path_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let mut arrays: HashMap<String, usize> = HashMap::new();
    let mut table: Option<String> = None;
    let mut last_key: Option<&str> = None;
    for line in text.get(..line_start)?.lines() {
        if let Some(path) = header(line.trim(), &mut arrays) {
            table = Some(path);
            last_key = None;
        } else if let Some(key) = key_of(line) {
            last_key = Some(key);
        }
    }
    let line = text.get(line_start..)?.lines().next().unwrap_or("").trim();
    if let Some(path) = header(line, &mut arrays) {
        return Some(path);
    }
    match (table, key_of(line).or(last_key)) {
        (Some(table), Some(key)) => Some(format!("{table}.{key}")),
        (None, Some(key)) => Some(key.to_owned()),
        (table, None) => table,
    }
}

/// The bare or dotted key of a `key = value` line.
fn key_of(line: &str) -> Option<&str> {
    let key = line.split_once('=')?.0.trim();
    let bare = |c: char| c.is_ascii_alphanumeric() || "_-.".contains(c);
    (!key.is_empty() && key.chars().all(bare)).then_some(key)
}

/// If `line` is a table header, its resolved path; arrays of tables are counted in
/// `arrays` so `[[routes]]` becomes `routes[N]` and `[routes.x]` under it `routes[N].x`.
fn header(line: &str, arrays: &mut HashMap<String, usize>) -> Option<String> {
    let (name, is_array) = if let Some(rest) = line.strip_prefix("[[") {
        (rest.split_once("]]")?.0, true)
    } else if let Some(rest) = line.strip_prefix('[') {
        (rest.split_once(']')?.0, false)
    } else {
        return None;
    };
    let name = name.split('.').map(str::trim).collect::<Vec<_>>().join(".");
    if is_array {
        *arrays.entry(name.clone()).or_insert(0) += 1;
    }
    let mut plain = String::new();
    let mut resolved = String::new();
    for (i, part) in name.split('.').enumerate() {
        if i > 0 {
            plain.push('.');
            resolved.push('.');
        }
        plain.push_str(part);
        resolved.push_str(part);
        if let Some(count) = arrays.get(&plain) {
            resolved.push_str(&format!("[{}]", count - 1));
        }
    }
    Some(resolved)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_documented_defaults() {
        let (raw, problems) = parse("", "x.toml").unwrap();
        assert!(problems.is_empty());
        assert_eq!(raw.server.max_body, "10MiB");
        assert_eq!(raw.admin.listen, "127.0.0.1:9090");
        assert_eq!(raw.store.backend, "redis");
        assert_eq!(raw.cache.capacity, 100_000);
        assert!(raw.auth.query_key && raw.auth.verify_checksum);
        assert!(raw.upstreams.is_empty() && raw.routes.is_empty());
    }

    #[test]
    fn syntax_error_names_the_file_and_position() {
        let err = parse("[server]\nlisten = \n", "gw.toml").unwrap_err();
        assert_eq!(err.path, "gw.toml");
        assert!(err.message.starts_with("invalid TOML at line 2"), "{err}");
        assert!(!err.message.contains('\n'));
    }

    #[test]
    fn paths_follow_headers_and_arrays_of_tables() {
        let text = concat!(
            "a = 1\n[server]\nx = 1\n[[routes]]\ny = 2\n[[routes]]\n[routes.scopes]\nz = 3\n",
            "[auth]\nt = [\n  \"a\",\n  5,\n]\n",
        );
        let at = |needle: &str| path_at(text, text.find(needle).unwrap());
        assert_eq!(at("a =").as_deref(), Some("a"));
        assert_eq!(at("x =").as_deref(), Some("server.x"));
        assert_eq!(at("y =").as_deref(), Some("routes[0].y"));
        assert_eq!(at("z =").as_deref(), Some("routes[1].scopes.z"));
        assert_eq!(at("[routes.scopes]").as_deref(), Some("routes[1].scopes"));
        assert_eq!(at("5,").as_deref(), Some("auth.t"));
    }
}
