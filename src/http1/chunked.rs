//! `Transfer-Encoding: chunked` bodies, decoded incrementally and strictly.
//!
//! The decoder is fed whatever bytes have arrived and says how many it used
//! and which of them are body data, so a body streams through without being
//! buffered. It refuses what parsers disagree on: a size that is not 1–16
//! hex digits (no sign, no `0x`, no leading space), a bare LF or a missing
//! CRLF after a size line or after chunk data, a size line or a trailer
//! section over its bound. Chunk extensions are read past; trailers are
//! checked (each line a token name, `:`, a visible-ASCII value) and dropped, since the gateway
//! forwards the body re-framed, never the client's spelling of it.

use super::Framing;

/// The longest size line read, extensions included.
pub const MAX_SIZE_LINE: usize = 4096;
/// The largest trailer section read.
pub const MAX_TRAILERS: usize = 8192;

/// What one call to [`ChunkedDecoder::decode`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// `buf[start..end]` is body data; `consumed` bytes of `buf` are used.
    Data {
        /// First data byte.
        start: usize,
        /// One past the last data byte.
        end: usize,
        /// Bytes of `buf` used (data included).
        consumed: usize,
    },
    /// No data yet; `consumed` bytes were framing. Call again with more.
    NeedMore {
        /// Bytes of `buf` used.
        consumed: usize,
    },
    /// The body (and its trailers) ended after `consumed` bytes; what
    /// follows belongs to the next request.
    Done {
        /// Bytes of `buf` used.
        consumed: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading a size line: `digits` hex digits so far making `size`;
    /// `ext` once past `;`; `len` bytes of the line so far.
    Size {
        size: u64,
        digits: u8,
        ext: bool,
        len: usize,
    },
    /// Saw the CR ending a size line.
    SizeLf {
        size: u64,
    },
    /// `left` bytes of chunk data to go.
    Data {
        left: u64,
    },
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// In the trailer section: `line` bytes into the current line, `colon`
    /// once it has a `:`, `cr` after its CR; `total` bytes so far.
    Trailer {
        line: usize,
        colon: bool,
        cr: bool,
        total: usize,
    },
    Done,
}

/// Decodes one chunked body.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder::new()
    }
}

const SIZE_START: State = State::Size {
    size: 0,
    digits: 0,
    ext: false,
    len: 0,
};

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> ChunkedDecoder {
        ChunkedDecoder { state: SIZE_START }
    }

    /// Whether the whole body has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Reads framing from the start of `buf` up to the next data, or to the
    /// end of the body. Never returns data and framing of a later chunk in
    /// one step, so callers forward data as soon as it is found.
    pub fn decode(&mut self, buf: &[u8]) -> Result<Step, Framing> {
        let mut i = 0;
        while i < buf.len() {
            let b = buf[i];
            match self.state {
                State::Size {
                    size,
                    digits,
                    ext,
                    len,
                } => {
                    if len >= MAX_SIZE_LINE {
                        return Err(Framing::ChunkSize);
                    }
                    let len = len + 1;
                    self.state = match b {
                        b'\r' if digits > 0 => State::SizeLf { size },
                        _ if ext => {
                            if b == b'\n' || (b < 0x20 && b != b'\t') || b == 0x7f {
                                return Err(Framing::ChunkSize);
                            }
                            State::Size {
                                size,
                                digits,
                                ext,
                                len,
                            }
                        }
                        b';' if digits > 0 => State::Size {
                            size,
                            digits,
                            ext: true,
                            len,
                        },
                        _ => {
                            let d = match b {
                                b'0'..=b'9' => b - b'0',
                                b'a'..=b'f' => b - b'a' + 10,
                                b'A'..=b'F' => b - b'A' + 10,
                                _ => return Err(Framing::ChunkSize),
                            };
                            if digits >= 16 {
                                return Err(Framing::ChunkSize);
                            }
                            State::Size {
                                size: size << 4 | u64::from(d),
                                digits: digits + 1,
                                ext,
                                len,
                            }
                        }
                    };
                    i += 1;
                }
                State::SizeLf { size } => {
                    if b != b'\n' {
                        return Err(Framing::ChunkSize);
                    }
                    i += 1;
                    self.state = if size == 0 {
                        State::Trailer {
                            line: 0,
                            colon: false,
                            cr: false,
                            total: 0,
                        }
                    } else {
                        State::Data { left: size }
                    };
                }
                State::Data { left } => {
                    let avail = (buf.len() - i) as u64;
                    let take = left.min(avail);
                    let end = i + usize::try_from(take).unwrap_or(usize::MAX);
                    self.state = if take == left {
                        State::DataCr
                    } else {
                        State::Data { left: left - take }
                    };
                    return Ok(Step::Data {
                        start: i,
                        end,
                        consumed: end,
                    });
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(Framing::ChunkEnd);
                    }
                    i += 1;
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(Framing::ChunkEnd);
                    }
                    i += 1;
                    self.state = SIZE_START;
                }
                State::Trailer {
                    line,
                    colon,
                    cr,
                    total,
                } => {
                    let total = total + 1;
                    if total > MAX_TRAILERS {
                        return Err(Framing::Trailers);
                    }
                    i += 1;
                    self.state = match (b, cr) {
                        (b'\n', true) if line == 0 => {
                            self.state = State::Done;
                            return Ok(Step::Done { consumed: i });
                        }
                        (b'\n', true) if colon => State::Trailer {
                            line: 0,
                            colon: false,
                            cr: false,
                            total,
                        },
                        (b'\r', false) => State::Trailer {
                            line,
                            colon,
                            cr: true,
                            total,
                        },
                        (b'\n' | b'\r', _) | (_, true) => return Err(Framing::Trailers),
                        (b':', false) if line > 0 && !colon => State::Trailer {
                            line: line + 1,
                            colon: true,
                            cr: false,
                            total,
                        },
                        // The name is a token; the value visible ASCII,
                        // space or tab. Anything else is refused, not read
                        // past (and a name never starts with whitespace).
                        (_, false) if (!colon && is_tchar(b)) || (colon && is_value_byte(b)) => {
                            State::Trailer {
                                line: line + 1,
                                colon,
                                cr: false,
                                total,
                            }
                        }
                        (_, false) => return Err(Framing::Trailers),
                    };
                }
                State::Done => return Ok(Step::Done { consumed: i }),
            }
        }
        if self.state == State::Done {
            return Ok(Step::Done { consumed: i });
        }
        Ok(Step::NeedMore { consumed: i })
    }
}

/// A token character (RFC 9110): what a field name is made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Visible ASCII, space or tab: what a trailer value may hold.
fn is_value_byte(b: u8) -> bool {
    b == b'\t' || (0x20..0x7f).contains(&b)
}

/// Decodes a whole chunked body held in `buf` (tests, the oracle check):
/// the body and the bytes used, or `None` if `buf` ends first.
pub fn decode_all(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, Framing> {
    let mut d = ChunkedDecoder::new();
    let mut at = 0;
    let mut body = Vec::new();
    loop {
        match d.decode(&buf[at..])? {
            Step::Data {
                start,
                end,
                consumed,
            } => {
                body.extend_from_slice(&buf[at + start..at + end]);
                at += consumed;
            }
            Step::NeedMore { .. } => return Ok(None),
            Step::Done { consumed } => return Ok(Some((body, at + consumed))),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn body(raw: &str) -> Result<Option<(Vec<u8>, usize)>, Framing> {
        decode_all(raw.as_bytes())
    }

    #[test]
    fn bodies_decode_with_extensions_and_trailers() {
        let (b, n) = body("5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\nNEXT")
            .unwrap()
            .unwrap();
        assert_eq!(b, b"hello world");
        assert_eq!(n, "5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n".len());
        let (b, _) = body("A\r\n0123456789\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(b, b"0123456789");
    }

    #[test]
    fn byte_at_a_time_gives_the_same_body() {
        let raw = b"3\r\nabc\r\n1\r\nd\r\n0\r\nT: v\r\n\r\n";
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        for (i, b) in raw.iter().enumerate() {
            let one = [*b];
            match d.decode(&one).unwrap() {
                Step::Data { start, end, .. } => out.extend_from_slice(&one[start..end]),
                Step::NeedMore { consumed } => assert_eq!(consumed, 1),
                Step::Done { .. } => assert_eq!(i, raw.len() - 1),
            }
        }
        assert!(d.is_done());
        assert_eq!(out, b"abcd");
    }

    #[test]
    fn truncated_bodies_ask_for_more() {
        assert_eq!(body("5\r\nhel").unwrap(), None);
        assert_eq!(body("5\r\nhello\r\n0\r\n").unwrap(), None);
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        let cases: &[(&str, Framing)] = &[
            ("+5\r\nhello\r\n0\r\n\r\n", Framing::ChunkSize),
            ("0x5\r\nhello\r\n0\r\n\r\n", Framing::ChunkSize),
            (" 5\r\nhello\r\n0\r\n\r\n", Framing::ChunkSize),
            ("5 \r\nhello\r\n0\r\n\r\n", Framing::ChunkSize),
            ("5\nhello\r\n0\r\n\r\n", Framing::ChunkSize),
            ("\r\n", Framing::ChunkSize),
            ("11111111111111111\r\n", Framing::ChunkSize),
            ("5\r\nhelloXX0\r\n\r\n", Framing::ChunkEnd),
            ("5\r\nhello\n0\r\n\r\n", Framing::ChunkEnd),
            ("0\r\nno colon\r\n\r\n", Framing::Trailers),
            ("0\r\nX: 1\n\r\n", Framing::Trailers),
            ("0\r\n\x7f-T: 1\r\n\r\n", Framing::Trailers),
            ("0\r\n T: 1\r\n\r\n", Framing::Trailers),
            ("0\r\nT: \x01\r\n\r\n", Framing::Trailers),
            ("5;a\nb\r\nhello\r\n0\r\n\r\n", Framing::ChunkSize),
        ];
        for (raw, want) in cases {
            assert_eq!(body(raw), Err(*want), "{raw:?}");
        }
        let long_ext = format!("1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(MAX_SIZE_LINE));
        assert_eq!(body(&long_ext), Err(Framing::ChunkSize));
        let long_trailer = format!("0\r\nX: {}\r\n\r\n", "v".repeat(MAX_TRAILERS));
        assert_eq!(body(&long_trailer), Err(Framing::Trailers));
    }
}
