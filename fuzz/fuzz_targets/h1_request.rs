//! The HTTP/1.1 request parser and chunked decoder (`http1`): never
//! panic on any bytes; an accepted head lies within the input, reads the
//! same when parsed again from its own bytes, and has spans inside it; the
//! chunked decoder fed the rest one byte at a time finds the same body as
//! when fed it whole. (Agreement with hyper is `tests/it/h1_oracle.rs`.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use osir_gateway::http1::chunked::{decode_all, ChunkedDecoder, Step};
use osir_gateway::http1::head::{self, BodyFraming};

fuzz_target!(|data: &[u8]| {
    let Ok(Some(h)) = head::parse(data) else {
        let _ = decode_all(data);
        return;
    };
    assert!(h.len <= data.len());
    for f in &h.headers {
        let (n, v) = (f.name, f.value);
        assert!(n.end <= h.len && v.end <= h.len && n.start <= n.end && v.start <= v.end);
    }
    assert_eq!(head::parse(&data[..h.len]), Ok(Some(h.clone())));
    if h.body == BodyFraming::Chunked {
        let rest = &data[h.len..];
        let whole = decode_all(rest);
        let mut d = ChunkedDecoder::new();
        let mut body = Vec::new();
        let mut outcome = None;
        for (i, b) in rest.iter().enumerate() {
            let one = [*b];
            match d.decode(&one) {
                Err(e) => {
                    outcome = Some(Err(e));
                    break;
                }
                Ok(Step::Data { start, end, .. }) => body.extend_from_slice(&one[start..end]),
                Ok(Step::NeedMore { .. }) => {}
                Ok(Step::Done { .. }) => {
                    outcome = Some(Ok(Some((body.clone(), i + 1))));
                    break;
                }
            }
        }
        match (whole, outcome) {
            (Ok(Some(w)), Some(Ok(Some(o)))) => assert_eq!(w, o),
            (Err(a), Some(Err(b))) => assert_eq!(a, b),
            (Ok(None), None) => {}
            (w, o) => panic!("whole {w:?} but byte by byte {o:?}"),
        }
    }
});
