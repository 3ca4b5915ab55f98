//! The client's request body, read straight from the connection as the
//! upstream exchange asks for it.
//!
//! [`RequestBody`] borrows the connection for as long as the pipeline runs;
//! where the body stands (bytes left, chunked decoder) is kept in the
//! connection, so once the answer is written the engine knows whether the
//! body was read to its end (the connection can carry another request) or
//! not (it is closed after the answer, so the body is never read as a
//! request). `Expect: 100-continue` is answered when the body is first
//! asked for, so a request refused before forwarding never invites its body.
//! A body read waits at most `server.idle_timeout` for each read.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite};

use super::Conn;
use crate::http1::chunked::{ChunkedDecoder, Step};
use crate::http1::Framing;

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Bytes asked of the socket per body read.
const READ: usize = 16 * 1024;

/// Where the current request's body stands.
#[derive(Debug)]
pub(super) enum BodyState {
    /// Read to its end (or there was none).
    Done,
    /// This many bytes still to come.
    Length(u64),
    /// Chunked, decoding.
    Chunked(ChunkedDecoder),
}

/// Why the request body could not be read; the client's error.
#[derive(Debug, thiserror::Error)]
pub enum RequestBodyError {
    /// Malformed chunked coding.
    #[error("malformed request body: {0}")]
    Framing(Framing),
    /// The client closed before the body's declared end.
    #[error("the request body ended early")]
    Truncated,
    /// No byte of the body arrived for `server.idle_timeout`.
    #[error("the request body stalled")]
    Stalled,
    /// The socket failed.
    #[error("reading the request body failed: {0}")]
    Io(#[from] io::Error),
}

/// The body of the request being served, borrowed from its connection.
pub struct RequestBody<'c, S> {
    pub(super) conn: &'c mut Conn<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> RequestBody<'_, S> {
    /// Sends `100 Continue` if the client is waiting for it.
    fn poll_continue(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let c = &mut *self.conn;
        while let Some(done) = c.continue_sent {
            if done == CONTINUE.len() {
                ready!(Pin::new(&mut c.io).poll_flush(cx))?;
                c.continue_sent = None;
                break;
            }
            let n = ready!(Pin::new(&mut c.io).poll_write(cx, &CONTINUE[done..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            c.continue_sent = Some(done + n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> http_body::Body for RequestBody<'_, S> {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        if let Err(e) = ready!(self.poll_continue(cx)) {
            return Poll::Ready(Some(Err(e.into())));
        }
        let c = &mut *self.conn;
        loop {
            if !c.rbuf.is_empty() {
                match &mut c.body {
                    BodyState::Done => return Poll::Ready(None),
                    BodyState::Length(left) => {
                        let n = usize::try_from(*left)
                            .unwrap_or(usize::MAX)
                            .min(c.rbuf.len());
                        *left -= n as u64;
                        if *left == 0 {
                            c.body = BodyState::Done;
                        }
                        let data = c.rbuf.split_to(n).freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    BodyState::Chunked(decoder) => match decoder.decode(&c.rbuf) {
                        Err(f) => {
                            c.failed = true;
                            return Poll::Ready(Some(Err(RequestBodyError::Framing(f))));
                        }
                        Ok(Step::Data {
                            start,
                            end,
                            consumed,
                        }) => {
                            let mut taken = c.rbuf.split_to(consumed);
                            taken.advance(start);
                            taken.truncate(end - start);
                            return Poll::Ready(Some(Ok(Frame::data(taken.freeze()))));
                        }
                        Ok(Step::Done { consumed }) => {
                            c.rbuf.advance(consumed);
                            c.body = BodyState::Done;
                            return Poll::Ready(None);
                        }
                        Ok(Step::NeedMore { consumed }) => {
                            c.rbuf.advance(consumed);
                            if consumed > 0 && !c.rbuf.is_empty() {
                                continue;
                            }
                        }
                    },
                }
            } else if let BodyState::Done | BodyState::Length(0) = c.body {
                c.body = BodyState::Done;
                return Poll::Ready(None);
            }
            if c.rbuf.capacity() - c.rbuf.len() < READ / 4 {
                c.rbuf.reserve(READ);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut c.io), cx, &mut c.rbuf) {
                Poll::Ready(Ok(0)) => {
                    c.failed = true;
                    return Poll::Ready(Some(Err(RequestBodyError::Truncated)));
                }
                Poll::Ready(Ok(_)) => c.body_timer_armed = false,
                Poll::Ready(Err(e)) => {
                    c.failed = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Pending => {
                    if !c.body_timer_armed {
                        let at = tokio::time::Instant::now() + c.idle_timeout;
                        c.timer.as_mut().reset(at);
                        c.body_timer_armed = true;
                    }
                    ready!(c.timer.as_mut().poll(cx));
                    c.failed = true;
                    return Poll::Ready(Some(Err(RequestBodyError::Stalled)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.conn.body, BodyState::Done | BodyState::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.conn.body {
            BodyState::Done => SizeHint::with_exact(0),
            BodyState::Length(n) => SizeHint::with_exact(n),
            BodyState::Chunked(_) => SizeHint::default(),
        }
    }
}
