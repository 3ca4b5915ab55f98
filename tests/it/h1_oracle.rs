//! The gateway's own HTTP/1.1 request parser (`http1`), checked
//! against hyper's HTTP/1 server as the oracle: for any bytes from which
//! the new parser takes one complete request (head and body), hyper must
//! parse the same request from those bytes (method, target, header fields,
//! body). Where the two disagree, the new parser must be the one that
//! refuses. Inputs are near-valid requests built from the shapes that
//! smuggle (length and transfer-encoding spellings, duplicate fields, line
//! endings, folding, versions, targets), plus one-byte mutations.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use osir_gateway::http1::chunked::decode_all;
use osir_gateway::http1::head::{self, BodyFraming};
use parking_lot::Mutex;
use proptest::prelude::*;
use tokio::io::AsyncWriteExt;

/// One request as a parser saw it.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

/// What the new parser takes from `raw`: the request and the bytes it used,
/// or `None` if it refuses or needs more.
fn ours(raw: &[u8]) -> Option<(Seen, usize)> {
    let h = head::parse(raw).ok()??;
    let rest = &raw[h.len..];
    let (body, used) = match h.body {
        BodyFraming::Empty => (Vec::new(), 0),
        BodyFraming::Length(n) => {
            let n = usize::try_from(n).ok()?;
            (rest.get(..n)?.to_vec(), n)
        }
        BodyFraming::Chunked => decode_all(rest).ok()??,
    };
    let mut headers: Vec<(String, Vec<u8>)> = h
        .headers
        .iter()
        .map(|f| {
            (
                String::from_utf8_lossy(f.name.of(raw)).to_ascii_lowercase(),
                f.value.of(raw).to_vec(),
            )
        })
        .collect();
    headers.sort();
    let seen = Seen {
        method: String::from_utf8_lossy(h.method.of(raw)).into_owned(),
        target: String::from_utf8_lossy(h.target.of(raw)).into_owned(),
        headers,
        body,
    };
    Some((seen, h.len + used))
}

/// What hyper's HTTP/1 server parses from `raw` (the first request).
async fn hypers(raw: Vec<u8>) -> Option<Seen> {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let seen: Arc<Mutex<Option<Seen>>> = Arc::default();
    let record = seen.clone();
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let record = record.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes().to_vec());
            if let Ok(body) = body {
                let mut headers: Vec<(String, Vec<u8>)> = parts
                    .headers
                    .iter()
                    .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                    .collect();
                headers.sort();
                let mut slot = record.lock();
                if slot.is_none() {
                    *slot = Some(Seen {
                        method: parts.method.as_str().to_owned(),
                        target: parts.uri.to_string(),
                        headers,
                        body,
                    });
                }
            }
            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
        }
    });
    // half_close: the input ends with EOF, and the request it carried must
    // still be served, not dropped with the connection.
    let conn = hyper::server::conn::http1::Builder::new()
        .half_close(true)
        .serve_connection(TokioIo::new(server), service);
    let feed = async move {
        let _ = client.write_all(&raw).await;
        let _ = client.shutdown().await;
        // Drain answers so the server never blocks on a full pipe.
        let mut sink = tokio::io::sink();
        let _ = tokio::io::copy(&mut client, &mut sink).await;
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        tokio::join!(conn, feed)
    })
    .await;
    let out = seen.lock().take();
    out
}

fn request() -> impl Strategy<Value = Vec<u8>> {
    let method = prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]);
    let target = prop::sample::select(vec![
        "/",
        "/v1/domains",
        "/v1/domains?x=1&y=%20",
        "http://a/v1/x",
        "https://a/",
        "ftp://a/",
        "*",
        "/a%00b",
        "/a b",
    ]);
    let version = prop::sample::select(vec![
        "HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/1.0",
        "HTTP/1.2", "HTTP/2.0",
    ]);
    let field = prop::sample::select(vec![
        "Host: a",
        "Host: b",
        "Host:a",
        "Content-Length: 5",
        "Content-Length: 0",
        "Content-Length: 005",
        "Content-Length: +5",
        "Content-Length: 5, 5",
        "Content-Length:  5 ",
        "Transfer-Encoding: chunked",
        "Transfer-Encoding: Chunked",
        "Transfer-Encoding: gzip, chunked",
        "Transfer-Encoding: chunked, chunked",
        "Transfer-Encoding:\tchunked",
        "Transfer-Encoding: identity",
        "Connection: close",
        "Connection: keep-alive",
        "Expect: 100-continue",
        "X-A: 1",
        "X-A:  spaced  ",
        "X-B:",
        " X-Folded: 1",
        "X_Under: 1",
        "Bad Name: 1",
    ]);
    let body = prop::sample::select(vec![
        "",
        "hello",
        "5\r\nhello\r\n0\r\n\r\n",
        "5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
        "5;e=1\r\nhello\r\n0\r\n\r\n",
        "0\r\n\r\n",
        "hello world, more than five",
    ]);
    let eol = prop::sample::select(vec!["\r\n", "\r\n", "\r\n", "\r\n", "\r\n", "\n"]);
    (
        method,
        target,
        version,
        prop::collection::vec(field, 0..5),
        body,
        eol,
        prop::bool::weighted(0.85),
        prop::option::weighted(0.15, (any::<prop::sample::Index>(), any::<u8>())),
    )
        .prop_map(|(m, t, v, fields, body, eol, host, mutation)| {
            let mut raw = format!("{m} {t} {v}\r\n");
            if host {
                raw.push_str("Host: a\r\n");
            }
            for f in fields {
                raw.push_str(f);
                raw.push_str(eol);
            }
            raw.push_str("\r\n");
            raw.push_str(body);
            let mut raw = raw.into_bytes();
            if let Some((at, byte)) = mutation {
                let i = at.index(raw.len());
                raw[i] = byte;
            }
            raw
        })
}

/// 2,000 cases per run; `PROPTEST_CASES` sets another number for a long
/// run (an explicit `cases` would override the variable).
fn oracle_cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: oracle_cases(), ..ProptestConfig::default() })]

    #[test]
    fn what_the_new_parser_accepts_hyper_parses_the_same(raw in request()) {
        if let Some((mine, used)) = ours(&raw) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let theirs = rt.block_on(hypers(raw[..used].to_vec()));
            prop_assert_eq!(
                Some(&mine),
                theirs.as_ref(),
                "accepted {:?}",
                String::from_utf8_lossy(&raw[..used])
            );
        }
    }
}

#[test]
fn the_oracle_sees_requests() {
    // The check above is vacuous if hyper's side never records anything.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let raw =
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let (mine, used) = ours(raw).unwrap();
    assert_eq!(used, raw.len());
    assert_eq!(mine.body, b"hello");
    assert_eq!(rt.block_on(hypers(raw.to_vec())), Some(mine));
}

#[test]
fn the_generated_inputs_exercise_both_outcomes() {
    // Not a vacuous check: a good share of the inputs are accepted (and so
    // compared with hyper), and a good share refused.
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = request();
    let total = 2000;
    let accepted = (0..total)
        .filter(|_| ours(&strategy.new_tree(&mut runner).unwrap().current()).is_some())
        .count();
    assert!(
        accepted * 10 >= total,
        "only {accepted} of {total} accepted"
    );
    assert!(accepted * 10 <= total * 9, "{accepted} of {total} accepted");
}
