//! The parts of the gateway's own HTTP/1.1 engine (built on `httparse`):
//! strict request-head parsing and chunked-body decoding, with no I/O, so
//! each is fuzzed and checked against hyper's parser on its own
//! (`tests/it/h1_oracle.rs`). The listeners do not use them yet: HTTP/1.1
//! is still served by hyper.

pub mod chunked;
pub mod head;
