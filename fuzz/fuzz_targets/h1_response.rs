//! The upstream response-head parser (`http1::response`): never panic on
//! any bytes, whether the request was HEAD or not; an accepted head lies
//! within the input with its spans inside it, parses the same from its own
//! bytes, and a bodiless status never claims a body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use osir_gateway::http1::response::{parse, ResponseFraming};

fuzz_target!(|data: &[u8]| {
    for head_request in [false, true] {
        let Ok(Some(h)) = parse(data, head_request) else {
            continue;
        };
        assert!(h.len <= data.len());
        for f in &h.headers {
        let (n, v) = (f.name, f.value);
            assert!(n.end <= h.len && v.end <= h.len && n.start <= n.end && v.start <= v.end);
        }
        assert_eq!(parse(&data[..h.len], head_request), Ok(Some(h.clone())));
        if head_request || h.status == 204 || h.status == 304 || (100..200).contains(&h.status) {
            assert_eq!(h.framing, ResponseFraming::Empty);
        }
        if h.framing == ResponseFraming::Close {
            assert!(!h.keep_alive);
        }
    }
});
