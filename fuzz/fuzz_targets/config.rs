//! Config parsing (as `config_parsing_*` in tests/it/props.rs):
//! `Config::from_toml` never panics on arbitrary UTF-8 text and is
//! deterministic (the same text gives the same config or the same errors).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use osir_gateway::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let a = Config::from_toml(text, Path::new("."));
    let b = Config::from_toml(text, Path::new("."));
    assert_eq!(a, b, "not deterministic");
});
