//! Property tests for config parsing (see the list in `props`).

use std::path::Path;

use osir_gateway::config::Config;
use proptest::prelude::*;
use proptest::sample::select;

use super::CONFIG_CASES;

const SAMPLE: &str = include_str!("../../../gateway.toml");

const TOML_TOKENS: &[&str] = &[
    "[server]\n",
    "[server.http2]\n",
    "[server.tls]\n",
    "[admin]\n",
    "[store]\n",
    "[cache]\n",
    "[auth]\n",
    "[log]\n",
    "[usage]\n",
    "[upstreams.a]\n",
    "[upstreams.\"b c\"]\n",
    "[[routes]]\n",
    "listen = ",
    "url = ",
    "prefix = ",
    "upstream = ",
    "resource = ",
    "public = ",
    "max_body = ",
    "ttl = ",
    "capacity = ",
    "trusted_proxies = ",
    "scopes = ",
    "backend = ",
    "path = ",
    "max_header_bytes = ",
    "workers = ",
    "max_connections = ",
    "\"127.0.0.1:0\"",
    "\"[::1]:99999\"",
    "\"http://127.0.0.1:1\"",
    "\"redis://x\"",
    "\"file\"",
    "\"/v1/a\"",
    "\"/\"",
    "\"a\"",
    "\"\"",
    "\"1s\"",
    "\"0s\"",
    "\"1.5s\"",
    "\"99999999999999d\"",
    "\"10MiB\"",
    "\"8EiB\"",
    "\"-1\"",
    "0",
    "-1",
    "9223372036854775807",
    "1e308",
    "true",
    "[\"10.0.0.0/33\"]",
    "[]",
    "{ GET = \"*\" }",
    "{ DELETE = \"a:b:c\" }",
    "\n",
    "\n",
    "=",
    "\"",
    "[",
    "]",
    "{",
    "}",
    "#",
    "é",
    "\u{0}",
];

/// One edit of a text: delete a range, insert junk, or duplicate a line.
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, String),
    DuplicateLine(usize),
    SwapLines(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 0usize..40).prop_map(|(at, n)| Edit::Delete(at, n)),
        (
            any::<usize>(),
            prop_oneof![select(TOML_TOKENS).prop_map(str::to_owned), any::<String>()]
        )
            .prop_map(|(at, s)| Edit::Insert(at, s)),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
    ]
}

fn apply(text: &str, edit: &Edit) -> String {
    let char_at = |at: usize| {
        let n = text.chars().count().max(1);
        text.char_indices()
            .nth(at % n)
            .map_or(text.len(), |(i, _)| i)
    };
    match edit {
        Edit::Delete(at, n) => {
            let start = char_at(*at);
            let end = text[start..]
                .char_indices()
                .nth(*n)
                .map_or(text.len(), |(i, _)| start + i);
            format!("{}{}", &text[..start], &text[end..])
        }
        Edit::Insert(at, s) => {
            let i = char_at(*at);
            format!("{}{s}{}", &text[..i], &text[i..])
        }
        Edit::DuplicateLine(at) => {
            let mut lines: Vec<&str> = text.lines().collect();
            if !lines.is_empty() {
                let i = at % lines.len();
                lines.insert(i, lines[i]);
            }
            lines.join("\n")
        }
        Edit::SwapLines(a, b) => {
            let mut lines: Vec<&str> = text.lines().collect();
            if !lines.is_empty() {
                let n = lines.len();
                lines.swap(a % n, b % n);
            }
            lines.join("\n")
        }
    }
}

fn parses_deterministically(text: &str) -> Result<(), TestCaseError> {
    let a = Config::from_toml(text, Path::new("/etc/osir"));
    let b = Config::from_toml(text, Path::new("/etc/osir"));
    prop_assert_eq!(a, b);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CONFIG_CASES))]

    #[test]
    fn config_parsing_survives_arbitrary_text(text in any::<String>()) {
        parses_deterministically(&text)?;
    }

    #[test]
    fn config_parsing_survives_toml_shaped_noise(tokens in prop::collection::vec(select(TOML_TOKENS), 0..40)) {
        parses_deterministically(&tokens.concat())?;
    }

    #[test]
    fn config_parsing_survives_mutations_of_the_sample(edits in prop::collection::vec(edit(), 1..6)) {
        let text = edits.iter().fold(SAMPLE.to_owned(), |t, e| apply(&t, e));
        parses_deterministically(&text)?;
    }
}

#[test]
fn sample_mutations_reach_both_outcomes() {
    // The mutation test starts from a valid file, and its edits leave some
    // files valid and make others invalid (not only syntax errors).
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    assert!(Config::from_toml(SAMPLE, Path::new("/etc/osir")).is_ok());
    let mut runner = TestRunner::deterministic();
    let (mut ok, mut semantic, mut syntax) = (0, 0, 0);
    for _ in 0..500 {
        let e = edit().new_tree(&mut runner).unwrap().current();
        match Config::from_toml(&apply(SAMPLE, &e), Path::new("/etc/osir")) {
            Ok(_) => ok += 1,
            Err(errs) if errs.0.iter().all(|p| p.path != "config") => semantic += 1,
            Err(_) => syntax += 1,
        }
    }
    assert!(
        ok > 20 && semantic > 20 && syntax > 20,
        "ok {ok}, semantic {semantic}, syntax {syntax}"
    );
}
