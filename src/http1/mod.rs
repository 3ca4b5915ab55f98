//! HTTP/1.1 on the wire, with no I/O: strict request heads ([`head`]),
//! chunked bodies ([`chunked`]), upstream response heads ([`response`]),
//! and the refusals they make ([`Framing`]).
//!
//! Both engines' neighbours use these: the gateway's HTTP/1.1 engine
//! (`crate::server::h1`) reads client requests with [`head`] and
//! [`chunked`]; the upstream client (`crate::pipeline::upstream`) reads
//! response heads with [`response`] and chunked response bodies with
//! [`chunked`]. Each part is fuzzed and checked against hyper's parser
//! (`tests/it/h1_oracle.rs`, `fuzz/`).

pub mod chunked;
pub mod date;
pub mod field;
pub mod head;
pub mod response;

/// What was wrong with a request's HTTP/1.1 framing. Each is refused rather
/// than guessed at, since a gateway and its upstream reading one byte
/// stream two ways is how requests are smuggled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Framing {
    /// The request line is not `METHOD target HTTP/1.x`.
    #[error("malformed request line")]
    RequestLine,
    /// Not HTTP/1.0 or HTTP/1.1.
    #[error("unsupported HTTP version")]
    Version,
    /// A header line is malformed (bad name, bad value, obs-fold).
    #[error("malformed header line")]
    Header,
    /// A line ends in LF without CR.
    #[error("a line ends without CRLF")]
    BareLf,
    /// More header fields than the gateway reads.
    #[error("too many header fields")]
    TooManyHeaders,
    /// `Content-Length` is not plain digits, has a leading zero or overflows.
    #[error("Content-Length must be plain decimal digits")]
    ContentLength,
    /// `Content-Length` given twice.
    #[error("more than one Content-Length")]
    DuplicateLength,
    /// `Transfer-Encoding` other than one `chunked`.
    #[error("Transfer-Encoding must be exactly chunked")]
    TransferEncoding,
    /// Both `Transfer-Encoding` and `Content-Length`.
    #[error("Content-Length together with Transfer-Encoding")]
    LengthWithChunked,
    /// HTTP/1.1 without `Host`.
    #[error("HTTP/1.1 requires a Host header")]
    MissingHost,
    /// Two `Host` headers.
    #[error("more than one Host header")]
    DuplicateHost,
    /// The request target is not origin-form, absolute-form (http or
    /// https), `*`, or (for CONNECT) authority-form; or it has a fragment.
    #[error("malformed request target")]
    Target,
    /// An absolute-form target with a scheme other than http or https.
    #[error("the request target's scheme is not http")]
    Scheme,
    /// `Expect` with anything but `100-continue`.
    #[error("unsupported Expect")]
    Expect,
    /// A chunk size line is malformed or too large.
    #[error("malformed chunk size")]
    ChunkSize,
    /// Chunk data is not followed by CRLF.
    #[error("chunk data not followed by CRLF")]
    ChunkEnd,
    /// The trailer section is malformed or too large.
    #[error("malformed trailers")]
    Trailers,
    /// The body ended before its declared length or last chunk.
    #[error("the request body ended early")]
    Truncated,
}
