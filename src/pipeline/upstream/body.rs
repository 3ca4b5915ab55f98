//! The upstream's response body, streamed to the client as it arrives.
//!
//! The body owns its pooled connection. It reads only when polled, so a
//! client that stops reading stops the reads from the upstream too (the
//! memory it can pin is one read buffer). When the last byte has been read
//! and the exchange allows reuse, the connection goes back to the pool at
//! once, before the client has even received the data; a body dropped
//! early (the client went away) closes its connection, so no later request
//! can read the rest of this one.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http_body::{Frame, SizeHint};

use super::pool::Lease;
use crate::error::X_REQUEST_ID;
use crate::http1::chunked::{ChunkedDecoder, Step};
use crate::http1::field::{Field, Known};
use crate::http1::response::ResponseFraming;

/// Bytes asked of the socket per read.
const READ: usize = 16 * 1024;

/// Why an upstream body could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum ResponseBodyError {
    /// The upstream closed before the declared end.
    #[error("the upstream closed the connection before the body ended")]
    Truncated,
    /// The chunked coding was malformed.
    #[error("the upstream's chunked body is malformed: {0}")]
    Framing(crate::http1::Framing),
    /// The socket failed.
    #[error("reading the upstream body failed: {0}")]
    Io(#[from] io::Error),
}

enum State {
    Length(u64),
    Chunked(ChunkedDecoder),
    Close,
    Done,
}

/// The upstream's response fields as they were read (hop-by-hop ones and
/// those named in `Connection` already dropped): the HTTP/1.1 engine writes
/// them straight to the client, HTTP/2 moves them into a header map.
pub(crate) struct RawHead {
    bytes: Bytes,
    fields: Vec<Field>,
    /// The `Content-Length` the upstream gave, if any.
    length: Option<u64>,
    /// The gateway's `X-Request-Id`, kept here rather than in a header map
    /// made for it alone; it replaces any the upstream sent.
    request_id: Option<HeaderValue>,
}

impl RawHead {
    pub(super) fn new(bytes: Bytes, fields: Vec<Field>, length: Option<u64>) -> RawHead {
        RawHead {
            bytes,
            fields,
            length,
            request_id: None,
        }
    }

    /// The gateway's `X-Request-Id` for this answer, once set.
    pub(crate) fn request_id(&self) -> Option<&HeaderValue> {
        self.request_id.as_ref()
    }

    /// What each field's name is, and its name and value, in the
    /// upstream's order and spelling.
    pub(crate) fn fields(&self) -> impl Iterator<Item = (Known, &[u8], &[u8])> {
        self.fields
            .iter()
            .map(|f| (f.known, f.name.of(&self.bytes), f.value.of(&self.bytes)))
    }

    /// The `Content-Length` the upstream gave, if any (the parser refused
    /// a malformed one).
    pub(crate) fn content_length(&self) -> Option<u64> {
        self.length
    }

    /// The fields' vector, for the connection's next answer.
    pub(crate) fn into_fields(self) -> Vec<Field> {
        self.fields
    }

    /// Appends the fields to `map`, except those `map` already names (the
    /// gateway's own, such as `X-Request-Id`, win). Values share the head's
    /// bytes; a field `http` would not hold is dropped. Hands back the
    /// fields' vector.
    pub(crate) fn append_to(self, map: &mut HeaderMap) -> Vec<Field> {
        // The names the map holds before the upstream's are added (none,
        // usually: then nothing is collected).
        let own: Vec<HeaderName> = map.keys().cloned().collect();
        let own_id = self.request_id.is_some();
        if let Some(id) = self.request_id {
            map.insert(X_REQUEST_ID, id);
        }
        for f in &self.fields {
            let (n, v) = (f.name, f.value);
            let name = n.of(&self.bytes);
            if own_id && f.known == Known::XRequestId {
                continue;
            }
            let Ok(name) = HeaderName::from_bytes(name) else {
                continue;
            };
            if own.contains(&name) {
                continue;
            }
            if let Ok(value) = HeaderValue::from_maybe_shared(self.bytes.slice(v.start..v.end)) {
                map.append(name, value);
            }
        }
        self.fields
    }
}

/// A streamed upstream response body.
pub struct ResponseBody {
    state: State,
    lease: Option<Lease>,
    keep_alive: bool,
    head: Option<RawHead>,
}

impl ResponseBody {
    /// The upstream's fields, while they have not been moved to a map.
    pub(crate) fn raw_head(&self) -> Option<&RawHead> {
        self.head.as_ref()
    }

    /// Keeps the gateway's `X-Request-Id` with the upstream's fields; hands
    /// it back if they have been moved to a map already.
    pub(crate) fn own_request_id(&mut self, id: HeaderValue) -> Option<HeaderValue> {
        match &mut self.head {
            Some(head) => {
                head.request_id = Some(id);
                None
            }
            None => Some(id),
        }
    }

    /// Takes the upstream's fields (to write them, or move them into a
    /// header map).
    pub(crate) fn take_raw_head(&mut self) -> Option<RawHead> {
        self.head.take()
    }

    /// Gives a head's field vector back to the connection, for its next
    /// answer (dropped if the connection has gone back to the pool).
    pub(crate) fn recycle_fields(&mut self, mut fields: Vec<Field>) {
        if let Some(conn) = self.lease.as_mut().and_then(Lease::conn) {
            fields.clear();
            conn.fields = fields;
        }
    }

    pub(super) fn new(
        lease: Lease,
        framing: ResponseFraming,
        keep_alive: bool,
        head: RawHead,
    ) -> ResponseBody {
        let state = match framing {
            ResponseFraming::Empty => State::Done,
            ResponseFraming::Length(n) => State::Length(n),
            ResponseFraming::Chunked => State::Chunked(ChunkedDecoder::new()),
            ResponseFraming::Close => State::Close,
        };
        let mut body = ResponseBody {
            state,
            lease: Some(lease),
            keep_alive,
            head: Some(head),
        };
        if matches!(body.state, State::Done) {
            // Bytes after a bodiless answer belong to no request.
            let clean = body
                .lease
                .as_mut()
                .and_then(Lease::conn)
                .is_some_and(|c| c.buf.is_empty());
            body.keep_alive &= clean;
            body.finish();
        }
        body
    }

    /// The body has ended cleanly: reuse the connection if allowed.
    fn finish(&mut self) {
        self.state = State::Done;
        if let Some(lease) = self.lease.take() {
            if self.keep_alive {
                lease.check_in();
            }
        }
    }

    fn fail(
        &mut self,
        e: ResponseBodyError,
    ) -> Poll<Option<Result<Frame<Bytes>, ResponseBodyError>>> {
        self.state = State::Done;
        self.lease = None;
        Poll::Ready(Some(Err(e)))
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = ResponseBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ResponseBodyError>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.lease.as_mut().and_then(Lease::conn) else {
                return Poll::Ready(None);
            };
            if !conn.buf.is_empty() {
                match &mut this.state {
                    State::Done => return Poll::Ready(None),
                    State::Length(left) => {
                        let n = usize::try_from(*left)
                            .unwrap_or(usize::MAX)
                            .min(conn.buf.len());
                        *left -= n as u64;
                        let data = conn.buf.split_to(n).freeze();
                        if *left == 0 {
                            // Bytes after the body belong to no request.
                            this.keep_alive &= conn.buf.is_empty();
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    State::Close => {
                        let data = conn.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    State::Chunked(decoder) => match decoder.decode(&conn.buf) {
                        Err(f) => return this.fail(ResponseBodyError::Framing(f)),
                        Ok(Step::Data {
                            start,
                            end,
                            consumed,
                        }) => {
                            let mut taken = conn.buf.split_to(consumed);
                            taken.advance(start);
                            taken.truncate(end - start);
                            return Poll::Ready(Some(Ok(Frame::data(taken.freeze()))));
                        }
                        Ok(Step::Done { consumed }) => {
                            conn.buf.advance(consumed);
                            let leftover = !conn.buf.is_empty();
                            if leftover {
                                // Bytes after the body belong to no request.
                                this.keep_alive = false;
                            }
                            this.finish();
                            return Poll::Ready(None);
                        }
                        Ok(Step::NeedMore { consumed }) => {
                            conn.buf.advance(consumed);
                            if consumed > 0 && !conn.buf.is_empty() {
                                continue;
                            }
                        }
                    },
                }
            } else if let State::Length(0) | State::Done = this.state {
                this.finish();
                return Poll::Ready(None);
            }
            // More bytes are needed.
            if conn.buf.capacity() - conn.buf.len() < READ / 4 {
                conn.buf.reserve(READ);
            }
            let n = match ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut conn.io),
                cx,
                &mut conn.buf
            )) {
                Ok(n) => n,
                Err(e) => return this.fail(ResponseBodyError::Io(e)),
            };
            if n == 0 {
                if let State::Close = this.state {
                    this.state = State::Done;
                    this.lease = None;
                    return Poll::Ready(None);
                }
                return this.fail(ResponseBodyError::Truncated);
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done | State::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Done => SizeHint::with_exact(0),
            State::Length(n) => SizeHint::with_exact(n),
            State::Chunked(_) | State::Close => SizeHint::default(),
        }
    }
}
