//! API-key parsing: `ApiKey::parse` never panics, with or without the
//! checksum; a key that passes the checksum also passes without it; a
//! parsed key is the text it was parsed from, and its `Debug` and
//! `Display` never contain its body (the 32 characters after
//! `osir_<env>_`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use osir_gateway::keys::{ApiKey, KEY_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let checked = ApiKey::parse(s, true);
    let unchecked = ApiKey::parse(s, false);
    if let Ok(k) = &checked {
        assert_eq!(
            unchecked.as_ref().ok(),
            Some(k),
            "checksum ok but shape refused"
        );
    }
    if let Ok(k) = &unchecked {
        assert_eq!(s.len(), KEY_LEN);
        assert_eq!(k.expose_secret(), s);
        let body = &s[10..];
        let debug = format!("{k:?}");
        let display = k.to_string();
        assert!(!debug.contains(body), "Debug shows the body: {debug}");
        assert!(!display.contains(body), "Display shows the body: {display}");
    }
});
