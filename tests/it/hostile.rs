//! Hostile input to the running webhook. Every case gets a clear status or a closed connection,
//! and every case is followed by a check that the server still authenticates a valid key over a
//! fresh HTTP/1.1 and HTTP/2 connection. Nothing here sleeps for a fixed time: reads have
//! deadlines and state is polled.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use crate::common::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use keygate::http::Limits;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SOON: Duration = Duration::from_secs(5);
const V1: &str = "authentication.k8s.io/v1";

/// Small timeouts so the timeout cases finish quickly.
fn short_limits() -> Limits {
    Limits {
        handshake_timeout: Duration::from_millis(700),
        idle_timeout: Duration::from_millis(700),
        max_connections: 64,
        max_concurrent_streams: 100,
        shutdown_grace: Duration::from_secs(5),
        ..Limits::default()
    }
}

async fn setup_with(opts: ServerOptions) -> (TestServer, String) {
    let srv = TestServer::start(opts).await;
    let (_, token) = srv.add_key(|_| {});
    assert!(eventually(SOON, || async { srv.index.len() == 1 }).await);
    (srv, token)
}

async fn setup() -> (TestServer, String) {
    setup_with(ServerOptions::default()).await
}

/// The server still answers a valid key (true) and a wrong secret (false) on new connections.
async fn still_serves(srv: &TestServer, token: &str) {
    for proto in [Proto::Http1, Proto::Http2] {
        let client = srv.client();
        let ok = eventually(SOON, || {
            let client = client.clone();
            async move {
                let Ok(mut c) = client.connect(srv.addr, proto).await else {
                    return false;
                };
                let r = c.review(token).await;
                r.status == 200 && r.json()["status"]["authenticated"] == true
            }
        })
        .await;
        assert!(ok, "valid key no longer authenticated over {proto:?}");
        let mut c = client.connect(srv.addr, proto).await.unwrap();
        let wrong = format!("{}{}", &token[..26], "Q".repeat(43));
        let r = c.review(&wrong).await;
        assert_eq!(r.json()["status"]["authenticated"], false);
    }
}

fn review_json(api_version: &str, kind: &str, spec: serde_json::Value) -> String {
    serde_json::json!({"apiVersion": api_version, "kind": kind, "spec": spec}).to_string()
}

/// 200 with `authenticated: false` and no `status.error`.
fn assert_denied(r: &Reply, what: &str) {
    assert_eq!(r.status, 200, "{what}: {:?}", r.body);
    let v = r.json();
    assert_eq!(v["status"]["authenticated"], false, "{what}: {v}");
    assert!(v["status"].get("error").is_none(), "{what}: {v}");
    assert!(v["status"].get("user").is_none(), "{what}: {v}");
}

/// Reads until the peer closes (EOF or error) or `limit` passes. Returns what was read and
/// whether the connection was closed within the limit.
async fn read_until_closed<R: AsyncRead + Unpin>(r: &mut R, limit: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, r.read(&mut buf)).await {
            Err(_) => return (out, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

fn status_of(raw: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(raw);
    let line = text.lines().next()?;
    line.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Sends raw bytes over TLS (ALPN http/1.1) and returns the status line's code, if any.
async fn raw_tls(srv: &TestServer, bytes: &[u8]) -> (Option<u16>, String) {
    let mut tls = srv
        .client()
        .connect_tls(srv.addr, crate::common::Proto::Http1)
        .await
        .unwrap();
    let _ = tls.write_all(bytes).await;
    let _ = tls.flush().await;
    let (out, closed) = read_until_closed(&mut tls, Duration::from_secs(10)).await;
    assert!(
        closed,
        "connection left open after a `connection: close` request"
    );
    (status_of(&out), String::from_utf8_lossy(&out).into_owned())
}

// ---------------------------------------------------------------------------------------------
// Bodies that are not a TokenReview we can answer: 400 with a plain reason.

#[tokio::test]
async fn malformed_bodies_get_400_with_a_plain_reason() {
    let (srv, token) = setup().await;
    // Each just under the 64 KiB body limit (100k `[` is over it: see the 413 test).
    let deep_array = "[".repeat(60_000);
    let deep_object = "{\"a\":".repeat(12_000);
    let deep_spec = format!(
        "{{\"apiVersion\":\"{V1}\",\"kind\":\"TokenReview\",\"spec\":{{\"token\":\"x\",\"audiences\":{}}}}}",
        "[".repeat(60_000)
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty body", b"".to_vec()),
        ("not JSON", b"hello, world".to_vec()),
        ("truncated JSON", b"{\"kind\":\"TokenReview\"".to_vec()),
        ("JSON array", b"[1,2,3]".to_vec()),
        ("JSON string", b"\"TokenReview\"".to_vec()),
        ("JSON null", b"null".to_vec()),
        ("JSON number", b"12345678901234567890".to_vec()),
        ("deep array nesting (60k)", deep_array.into_bytes()),
        ("deep object nesting (12k)", deep_object.into_bytes()),
        ("deep nesting inside spec", deep_spec.into_bytes()),
        (
            "wrong kind",
            review_json(V1, "SubjectAccessReview", serde_json::json!({"token": token})).into(),
        ),
        (
            "missing kind",
            serde_json::json!({"apiVersion": V1, "spec": {"token": token}})
                .to_string()
                .into(),
        ),
        (
            "wrong apiVersion",
            review_json(
                "authentication.k8s.io/v2",
                "TokenReview",
                serde_json::json!({"token": token}),
            )
            .into(),
        ),
        (
            "apiVersion of another group",
            review_json("v1", "TokenReview", serde_json::json!({"token": token})).into(),
        ),
        (
            "missing apiVersion",
            serde_json::json!({"kind": "TokenReview", "spec": {"token": token}})
                .to_string()
                .into(),
        ),
        (
            "kind of the wrong type",
            serde_json::json!({"apiVersion": V1, "kind": 7, "spec": {"token": token}})
                .to_string()
                .into(),
        ),
        (
            "missing spec",
            serde_json::json!({"apiVersion": V1, "kind": "TokenReview"})
                .to_string()
                .into(),
        ),
        (
            "spec null",
            review_json(V1, "TokenReview", serde_json::Value::Null).into(),
        ),
        (
            "spec an array",
            review_json(V1, "TokenReview", serde_json::json!([token])).into(),
        ),
        (
            "missing token",
            review_json(V1, "TokenReview", serde_json::json!({"audiences": ["a"]})).into(),
        ),
        (
            "token null",
            review_json(V1, "TokenReview", serde_json::json!({"token": null})).into(),
        ),
        (
            "empty token",
            review_json(V1, "TokenReview", serde_json::json!({"token": ""})).into(),
        ),
        (
            "token a number",
            review_json(V1, "TokenReview", serde_json::json!({"token": 42})).into(),
        ),
        (
            "token an object",
            review_json(V1, "TokenReview", serde_json::json!({"token": {"t": token}})).into(),
        ),
        (
            "token an array",
            review_json(V1, "TokenReview", serde_json::json!({"token": [token]})).into(),
        ),
        (
            "token a bool",
            review_json(V1, "TokenReview", serde_json::json!({"token": true})).into(),
        ),
        (
            "audiences of the wrong type",
            review_json(
                V1,
                "TokenReview",
                serde_json::json!({"token": token, "audiences": "one"}),
            )
            .into(),
        ),
        ("invalid UTF-8 in the token", {
            let mut b = review_body(FIXTURE_V1, "kg_PLACEHOLDER").into_bytes();
            let at = b.windows(3).position(|w| w == b"kg_").unwrap();
            b[at + 3] = 0xff;
            b[at + 4] = 0xfe;
            b
        }),
        ("invalid UTF-8 outside strings", {
            let mut b = review_body(FIXTURE_V1, &token).into_bytes();
            b.insert(1, 0xc3);
            b
        }),
        (
            "lone surrogate escape in the token",
            format!(
                "{{\"apiVersion\":\"{V1}\",\"kind\":\"TokenReview\",\"spec\":{{\"token\":\"kg_\\ud800\"}}}}"
            )
            .into(),
        ),
        ("NUL bytes", vec![0u8; 1024]),
        (
            "trailing garbage",
            format!("{}garbage", review_body(FIXTURE_V1, &token)).into(),
        ),
        (
            "two documents",
            format!(
                "{}{}",
                review_body(FIXTURE_V1, &token),
                review_body(FIXTURE_V1, &token)
            )
            .into(),
        ),
    ];
    let n = cases.len();
    for proto in [Proto::Http1, Proto::Http2] {
        let mut c = srv.client().connect(srv.addr, proto).await.unwrap();
        for (what, body) in &cases {
            let r = c.post("/authenticate", body.clone()).await;
            assert_eq!(r.status, 400, "{what} over {proto:?}: {:?}", r.body);
            assert!(
                r.headers["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/plain"),
                "{what}"
            );
            let text = String::from_utf8_lossy(&r.body);
            assert!(!text.is_empty() && text.len() < 1024, "{what}: {text}");
            assert!(
                !text.contains(&token[26..]),
                "{what}: reason echoes the secret"
            );
        }
    }
    eprintln!("{n} malformed bodies × 2 protocols answered 400");
    // A duplicated spec.token: the last one counts, as in Go's encoding/json, which is what
    // kube-apiserver uses to write the request. Never an error that would be cached wrongly.
    let mut c = srv.client().connect(srv.addr, Proto::Http1).await.unwrap();
    for (first, last, want) in [("a", token.as_str(), true), (token.as_str(), "a", false)] {
        let body = format!(
            "{{\"apiVersion\":\"{V1}\",\"kind\":\"TokenReview\",\"spec\":{{\"token\":\"{first}\",\"token\":\"{last}\"}}}}"
        );
        let r = c.post("/authenticate", body).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["status"]["authenticated"], want);
    }
    still_serves(&srv, &token).await;
    srv.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Well-formed reviews of tokens that are not valid keygate tokens: a cacheable false.

#[tokio::test]
async fn malformed_and_foreign_tokens_are_denied_without_error() {
    let (srv, token) = setup().await;
    let (id, secret) = (&token[3..25], &token[26..]);
    let long = |n: usize| format!("kg_{}", "A".repeat(n));
    let mut tokens: Vec<(String, String)> = vec![
        ("kg_ only".into(), "kg_".into()),
        ("one char too short".into(), token[..token.len() - 1].into()),
        ("one char too long".into(), format!("{token}A")),
        ("much too long".into(), long(10_000)),
        ("short ID".into(), format!("kg_{}_{secret}A", &id[1..])),
        ("long ID".into(), format!("kg_{id}A_{}", &secret[1..])),
        ("no separator".into(), format!("kg_{id}{secret}A")),
        ("wrong separator".into(), format!("kg_{id}-{secret}")),
        (
            "dash in secret".into(),
            format!("kg_{id}_{}-", &secret[1..]),
        ),
        (
            "space in secret".into(),
            format!("kg_{id}_{} ", &secret[1..]),
        ),
        (
            "NUL in secret".into(),
            format!("kg_{id}_{}\0", &secret[1..]),
        ),
        (
            "newline in ID".into(),
            format!("kg_{}\n_{secret}", &id[1..]),
        ),
        (
            "underscore in ID".into(),
            format!("kg_{}__{secret}", &id[1..]),
        ),
        (
            "base64 padding".into(),
            format!("kg_{id}_{}=", &secret[1..]),
        ),
        ("uppercase prefix".into(), format!("KG_{id}_{secret}")),
        (
            "2-byte char, same byte length".into(),
            format!("kg_{}é_{secret}", &id[2..]),
        ),
        (
            "3-byte char, same byte length".into(),
            format!("kg_{id}_{}€", &secret[3..]),
        ),
        (
            "4-byte char across the separator".into(),
            format!("kg_{}🦀{}", &id[..20], &secret[1..]),
        ),
        (
            "fullwidth digits".into(),
            format!("kg_{id}_{}１", &secret[3..]),
        ),
        (
            "right-to-left override".into(),
            format!("kg_{id}_{}\u{202e}", &secret[3..]),
        ),
        (
            "ID case changed".into(),
            format!("kg_{}_{secret}", id.to_lowercase()),
        ),
        (
            "valid shape, unknown ID".into(),
            format!("kg_{}_{secret}", "Z".repeat(22)),
        ),
        ("secret of another key".into(), {
            let (_, other) = srv.add_key(|_| {});
            format!("kg_{id}_{}", &other[26..])
        }),
        (
            "ServiceAccount JWT".into(),
            "eyJhbGciOiJSUzI1NiJ9.e30.c2ln".into(),
        ),
        ("bootstrap token".into(), "abcdef.0123456789abcdef".into()),
        ("whitespace".into(), "   ".into()),
        ("token with the prefix inside".into(), format!("x{token}")),
        ("token padded with spaces".into(), format!(" {token} ")),
        ("token with a newline".into(), format!("{token}\n")),
        ("bearer prefix".into(), format!("Bearer {token}")),
    ];
    // Every single-character replacement class at three positions.
    for (pos, name) in [(3usize, "ID start"), (25, "separator"), (68, "secret end")] {
        for ch in ['/', '+', '.', '~', 'ß', '\u{0}', '\u{ffff}'] {
            let mut t: Vec<char> = token.chars().collect();
            t[pos] = ch;
            tokens.push((format!("{ch:?} at {name}"), t.into_iter().collect()));
        }
    }
    let n = tokens.len();
    for proto in [Proto::Http1, Proto::Http2] {
        let mut c = srv.client().connect(srv.addr, proto).await.unwrap();
        for (what, t) in &tokens {
            let r = c.review(t).await;
            assert_denied(&r, what);
            assert_eq!(r.json()["apiVersion"], V1);
        }
    }
    eprintln!("{n} bad tokens × 2 protocols denied");
    // None of them was treated as anything but a denial.
    let (_, m) = admin_get(srv.admin, "/metrics").await;
    assert!(
        m.contains("keygate_decisions_total{result=\"authenticated\",reason=\"ok\"} 0"),
        "{m}"
    );
    still_serves(&srv, &token).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn a_one_mebibyte_token_is_refused_by_size() {
    let (srv, token) = setup().await;
    let huge = format!("kg_{}", "A".repeat(1024 * 1024));
    for proto in [Proto::Http1, Proto::Http2] {
        let mut c = srv.client().connect(srv.addr, proto).await.unwrap();
        let r = c
            .post("/authenticate", review_body(FIXTURE_V1, &huge))
            .await;
        assert_eq!(r.status, 413, "{proto:?}");
    }
    // 100k levels of nesting are over the body limit too.
    let mut c = srv.client().connect(srv.addr, Proto::Http1).await.unwrap();
    let r = c.post("/authenticate", "[".repeat(100_000)).await;
    assert_eq!(r.status, 413);
    // Just under the body limit it is a well-formed review of a malformed token.
    let big = format!("kg_{}", "A".repeat(60 * 1024));
    let mut c = srv.client().connect(srv.addr, Proto::Http2).await.unwrap();
    assert_denied(&c.review(&big).await, "60 KiB token");
    still_serves(&srv, &token).await;
    srv.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Bodies over the limit.

#[tokio::test]
async fn oversized_body_with_content_length_is_413() {
    let (srv, token) = setup().await;
    for proto in [Proto::Http1, Proto::Http2] {
        let mut c = srv.client().connect(srv.addr, proto).await.unwrap();
        let r = c.post("/authenticate", vec![b' '; 64 * 1024 + 1]).await;
        assert_eq!(r.status, 413, "{proto:?}");
        assert!(String::from_utf8_lossy(&r.body).contains("over 65536 bytes"));
    }
    // A declared length far beyond the limit is refused before any of the body is read.
    let (status, text) = raw_tls(
        &srv,
        b"POST /authenticate HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: 1099511627776\r\n\r\n{",
    )
    .await;
    assert_eq!(status, Some(413), "{text}");
    // An exactly-at-the-limit body is read (and is not a TokenReview).
    let mut c = srv.client().connect(srv.addr, Proto::Http1).await.unwrap();
    let r = c.post("/authenticate", vec![b' '; 64 * 1024]).await;
    assert_eq!(r.status, 400);
    still_serves(&srv, &token).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn oversized_chunked_http1_body_is_413_without_reading_it_all() {
    let (srv, token) = setup().await;
    let tls = srv
        .client()
        .connect_tls(srv.addr, crate::common::Proto::Http1)
        .await
        .unwrap();
    let (mut rd, mut wr) = tokio::io::split(tls);
    // 64 MiB offered in 16 KiB chunks; the server must answer long before it is all sent.
    let total_chunks = 4096usize;
    let writer = tokio::spawn(async move {
        let head = "POST /authenticate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
        if wr.write_all(head.as_bytes()).await.is_err() {
            return 0;
        }
        let chunk = format!("4000\r\n{}\r\n", " ".repeat(0x4000));
        let mut sent = 0;
        for _ in 0..total_chunks {
            if wr.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
            sent += 1;
        }
        let _ = wr.write_all(b"0\r\n\r\n").await;
        sent
    });
    let (out, _) = read_until_closed(&mut rd, Duration::from_secs(10)).await;
    assert_eq!(
        status_of(&out),
        Some(413),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let sent = tokio::time::timeout(SOON, writer).await.unwrap().unwrap();
    assert!(
        sent < total_chunks,
        "the server read the whole 64 MiB body instead of stopping at the limit"
    );
    still_serves(&srv, &token).await;
    srv.shutdown().await;
}

/// An HTTP/2 request body as a stream of frames, without a content-length.
fn streamed_body(chunks: usize, size: usize) -> Boxed {
    let chunk = Bytes::from(vec![b' '; size]);
    StreamBody::new(futures::stream::iter(
        (0..chunks).map(move |_| Ok(Frame::data(chunk.clone()))),
    ))
    .boxed()
}

type Boxed = http_body_util::combinators::BoxBody<Bytes, Infallible>;

#[tokio::test]
async fn oversized_http2_body_without_content_length_is_413() {
    let (srv, token) = setup().await;
    let (mut sender, _conn) = srv.client().h2_sender(srv.addr).await;
    // 1 GiB offered in 16 KiB frames.
    let req = http::Request::post("https://localhost/authenticate")
        .body(streamed_body(65_536, 16 * 1024))
        .unwrap();
    assert!(req.headers().get("content-length").is_none());
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("no answer to an endless HTTP/2 body")
        .unwrap();
    assert_eq!(resp.status(), 413);
    // A small streamed body (no content-length) is still read and decided.
    sender.ready().await.unwrap();
    let body = review_body(FIXTURE_V1, &token);
    let req = http::Request::post("https://localhost/authenticate")
        .body(
            StreamBody::new(futures::stream::iter(
                body.as_bytes()
                    .chunks(7)
                    .map(|c| Ok::<_, Infallible>(Frame::data(Bytes::copy_from_slice(c))))
                    .collect::<Vec<_>>(),
            ))
            .boxed(),
        )
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(v["status"]["authenticated"], true);
    still_serves(&srv, &token).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn lying_content_length_is_not_trusted() {
    let (srv, token) = setup().await;
    let body = review_body(FIXTURE_V1, &token);
    // Declares fewer bytes than it sends: only the declared bytes are the body (400: truncated),
    // the rest is garbage on the connection, which is then closed.
    let req = format!(
        "POST /authenticate HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: 10\r\n\r\n{body}"
    );
    let (status, text) = raw_tls(&srv, req.as_bytes()).await;
    assert_eq!(status, Some(400), "{text}");
    // Both content-length and chunked (the request smuggling shape): hyper follows RFC 9112,
    // chunked wins and the connection is closed after the answer, so nothing can be smuggled
    // after it. Either a refusal or that.
    let req = format!(
        "POST /authenticate HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let (status, text) = raw_tls(&srv, req.as_bytes()).await;
    assert!(
        status.is_none()
            || status == Some(400)
            || (status == Some(200) && text.contains("connection: close")),
        "ambiguous framing kept the connection open: {text}"
    );
    // Two content-length headers that disagree.
    let req = format!(
        "POST /authenticate HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\ncontent-length: 3\r\n\r\n{body}",
        body.len()
    );
    let (status, text) = raw_tls(&srv, req.as_bytes()).await;
    assert!(status.is_none() || status == Some(400), "{text}");
    still_serves(&srv, &token).await;
    srv.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Methods, paths and the HTTP layer.

#[tokio::test]
async fn wrong_methods_get_405_and_wrong_paths_404() {
    let (srv, token) = setup().await;
    let body = review_body(FIXTURE_V1, &token);
    let mut cases = 0;
    for proto in [Proto::Http1, Proto::Http2] {
        let mut c = srv.client().connect(srv.addr, proto).await.unwrap();
        for method in ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "BREW"] {
            let req = http::Request::builder()
                .method(method)
                .uri("https://localhost/authenticate?timeout=30s")
                .body(Full::new(Bytes::from(body.clone())))
                .unwrap();
            let r = c.send(req).await.unwrap();
            assert_eq!(r.status, 405, "{method} over {proto:?}");
            assert_eq!(r.headers["allow"], "POST");
            assert!(!String::from_utf8_lossy(&r.body).contains("authenticated"));
            cases += 1;
        }
        for path in [
            "/",
            "/authenticate/",
            "/Authenticate",
            "/authenticate/../metrics",
            "/authenticate%00",
            "/metrics",
            "/healthz",
            "//authenticate",
            &format!("/{}", "a".repeat(8000)),
        ] {
            let r = c.post(path, body.clone()).await;
            assert_eq!(r.status, 404, "{path} over {proto:?}");
            cases += 1;
        }
    }
    // The absolute form is legal HTTP/1.1; the authority is ignored, the path routed.
    let req = format!(
        "POST https://evil.example/authenticate HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, _) = raw_tls(&srv, req.as_bytes()).await;
    assert_eq!(status, Some(200));
    // Raw request lines hyper must refuse or route to 404/405, never to a review.
    for line in [
        "POST * HTTP/1.1",
        "POST https://evil.example/elsewhere HTTP/1.1",
        "CONNECT localhost:443 HTTP/1.1",
        "POST /authenticate HTTP/9.9",
        "POST /authenticate",
        "POST  /authenticate  HTTP/1.1",
    ] {
        let req = format!(
            "{line}\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let (status, text) = raw_tls(&srv, req.as_bytes()).await;
        assert!(
            !text.contains("\"authenticated\":true"),
            "{line}: answered a review: {text}"
        );
        assert!(
            status.is_none() || status.unwrap() >= 400 || status == Some(200),
            "{line}"
        );
        cases += 1;
    }
    eprintln!("{cases} method/path cases");
    still_serves(&srv, &token).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn huge_headers_are_refused_on_both_protocols() {
    let (srv, token) = setup().await;
    let body = review_body(FIXTURE_V1, &token);
    // HTTP/2: one 1 MiB header value, and 20 000 small headers.
    for (what, headers) in [
        (
            "one 1 MiB header",
            vec![("x-big".to_owned(), "a".repeat(1 << 20))],
        ),
        (
            "20 000 headers",
            (0..20_000)
                .map(|i| (format!("x-h{i}"), "v".repeat(40)))
                .collect(),
        ),
    ] {
        let mut c = srv.client().connect(srv.addr, Proto::Http2).await.unwrap();
        let mut req = http::Request::post("https://localhost/authenticate")
            .body(Full::new(Bytes::from(body.clone())))
            .unwrap();
        for (k, v) in &headers {
            req.headers_mut().append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        match tokio::time::timeout(Duration::from_secs(10), c.send(req))
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer"))
        {
            Ok(r) => assert_eq!(r.status, 431, "{what}: {:?}", r.body),
            Err(e) => eprintln!("{what}: refused with {e}"),
        }
    }
    // HTTP/1.1: headers past the 64 KiB read buffer.
    let req = format!(
        "POST /authenticate HTTP/1.1\r\nhost: localhost\r\nx-big: {}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        "a".repeat(200 * 1024),
        body.len()
    );
    let (status, text) = raw_tls(&srv, req.as_bytes()).await;
    assert!(
        status.is_none() || status == Some(431),
        "{}",
        &text[..text.len().min(200)]
    );
    still_serves(&srv, &token).await;
    srv.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Below HTTP: plain text and garbage on the TLS port.

async fn tcp_exchange(srv: &TestServer, bytes: &[u8]) -> (Vec<u8>, bool) {
    let mut tcp = TcpStream::connect(srv.addr).await.unwrap();
    let _ = tcp.write_all(bytes).await;
    read_until_closed(&mut tcp, Duration::from_secs(10)).await
}

#[tokio::test]
async fn plain_http_and_tls_garbage_are_closed() {
    let (srv, token) = setup().await;
    let body = review_body(FIXTURE_V1, &token);
    let plain = format!(
        "POST /authenticate HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut garbage: Vec<(&str, Vec<u8>)> = vec![
        ("plain HTTP", plain.into_bytes()),
        ("plain HTTP GET", b"GET /healthz HTTP/1.0\r\n\r\n".to_vec()),
        (
            "HTTP/2 preface without TLS",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        ),
        ("zeros", vec![0u8; 4096]),
        ("0xff", vec![0xffu8; 4096]),
        // A handshake record header announcing 16 MiB, then nothing.
        (
            "record header with a huge length",
            vec![0x16, 0x03, 0x01, 0xff, 0xff],
        ),
        // A ClientHello record whose body is garbage.
        ("ClientHello of garbage", {
            let mut v = vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc];
            v.extend(std::iter::repeat_n(0xab, 0x200 - 4));
            v
        }),
        // An alert, then application data before any handshake.
        (
            "alert then data",
            vec![
                0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28, 0x17, 0x03, 0x03, 0x00, 0x01, 0x00,
            ],
        ),
    ];
    // Deterministic pseudo-random bytes.
    let mut x: u32 = 0x1234_5678;
    let random: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    garbage.push(("64 KiB of random bytes", random.clone()));
    let mut with_header = vec![0x16, 0x03, 0x03, 0x40, 0x00];
    with_header.extend_from_slice(&random[..0x4000]);
    garbage.push(("handshake record of random bytes", with_header));
    for (what, bytes) in &garbage {
        let (out, closed) = tcp_exchange(&srv, bytes).await;
        assert!(closed, "{what}: connection left open");
        let text = String::from_utf8_lossy(&out);
        assert!(!text.contains("HTTP/1.1 200"), "{what}: {text}");
        // At most a TLS alert comes back.
        assert!(out.len() < 64, "{what}: {} bytes came back", out.len());
    }
    eprintln!("{} garbage streams closed", garbage.len());
    still_serves(&srv, &token).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_the_handshake_is_cut_off() {
    let (srv, token) = setup_with(ServerOptions {
        limits: short_limits(),
        ..ServerOptions::default()
    })
    .await;
    // Nothing at all, then a partial ClientHello.
    for bytes in [&b""[..], &[0x16, 0x03, 0x01, 0x00, 0x80, 0x01][..]] {
        let mut tcp = TcpStream::connect(srv.addr).await.unwrap();
        tcp.write_all(bytes).await.unwrap();
        let start = Instant::now();
        let (_, closed) = read_until_closed(&mut tcp, Duration::from_secs(10)).await;
        let took = start.elapsed();
        assert!(closed, "silent client never cut off");
        assert!(
            took >= Duration::from_millis(500) && took < Duration::from_secs(5),
            "cut off after {took:?}, handshake timeout is 700 ms"
        );
    }
    still_serves(&srv, &token).await;
    srv.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Slow and idle clients.

#[tokio::test]
async fn a_slowloris_client_is_cut_off_after_the_header_timeout() {
    let (srv, token) = setup_with(ServerOptions {
        limits: short_limits(),
        ..ServerOptions::default()
    })
    .await;
    let tls = srv
        .client()
        .connect_tls(srv.addr, crate::common::Proto::Http1)
        .await
        .unwrap();
    let (mut rd, mut wr) = tokio::io::split(tls);
    let start = Instant::now();
    let reader = tokio::spawn(async move {
        let (out, closed) = read_until_closed(&mut rd, Duration::from_secs(15)).await;
        (out, closed, start.elapsed())
    });
    // One header byte every 50 ms, for at most 10 s.
    wr.write_all(b"POST /authenticate HTTP/1.1\r\nhost: localhost\r\n")
        .await
        .unwrap();
    let mut interval = tokio::time::interval(Duration::from_millis(50));
    for i in 0..200 {
        interval.tick().await;
        if reader.is_finished() {
            break;
        }
        let byte = [b'a' + (i % 26) as u8];
        if wr.write_all(&byte).await.is_err() || wr.flush().await.is_err() {
            break;
        }
    }
    let (out, closed, took) = reader.await.unwrap();
    assert!(closed, "slowloris connection still open after 15 s");
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_secs(5),
        "cut off after {took:?}; header timeout is 700 ms"
    );
    let text = String::from_utf8_lossy(&out);
    assert!(
        out.is_empty() || status_of(&out) == Some(408),
        "unexpected answer: {text}"
    );
    still_serves(&srv, &token).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn a_slow_body_gets_408() {
    let (srv, token) = setup_with(ServerOptions {
        limits: short_limits(),
        body_timeout: Some(Duration::from_millis(700)),
        ..ServerOptions::default()
    })
    .await;
    let body = review_body(FIXTURE_V1, &token);
    let mut tls = srv
        .client()
        .connect_tls(srv.addr, crate::common::Proto::Http1)
        .await
        .unwrap();
    let head = format!(
        "POST /authenticate HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&body.as_bytes()[..10]).await.unwrap();
    tls.flush().await.unwrap();
    let start = Instant::now();
    let (out, closed) = read_until_closed(&mut tls, Duration::from_secs(10)).await;
    assert!(closed);
    assert_eq!(
        status_of(&out),
        Some(408),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    still_serves(&srv, &token).await;
    srv.shutdown().await;
}

/// Reads one HTTP/1.1 response with a content-length from `r`; returns its status.
async fn read_one_response<R: AsyncRead + Unpin>(r: &mut R) -> u16 {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        r.read_exact(&mut byte).await.unwrap();
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.unwrap();
    status_of(&buf).unwrap()
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let (srv, token) = setup_with(ServerOptions {
        limits: short_limits(),
        ..ServerOptions::default()
    })
    .await;
    let body = review_body(FIXTURE_V1, &token);
    let mut tls = srv
        .client()
        .connect_tls(srv.addr, crate::common::Proto::Http1)
        .await
        .unwrap();
    let req = format!(
        "POST /authenticate HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    // Two requests on one keep-alive connection, then silence.
    for _ in 0..2 {
        tls.write_all(req.as_bytes()).await.unwrap();
        tls.flush().await.unwrap();
        assert_eq!(read_one_response(&mut tls).await, 200);
    }
    let start = Instant::now();
    let (out, closed) = read_until_closed(&mut tls, Duration::from_secs(10)).await;
    let took = start.elapsed();
    assert!(closed, "idle keep-alive connection still open after 10 s");
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(5),
        "closed after {took:?}; idle timeout is 700 ms"
    );
    assert!(
        out.is_empty() || status_of(&out) == Some(408),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let (_, m) = admin_get(srv.admin, "/metrics").await;
    assert!(
        !m.contains("keygate_http_responses_total{code=\"500\"}"),
        "{m}"
    );
    still_serves(&srv, &token).await;
    srv.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Connection limit.

#[tokio::test]
async fn connections_over_the_maximum_are_refused_and_served_again_after() {
    let max = 4;
    let (srv, token) = setup_with(ServerOptions {
        limits: Limits {
            max_connections: max,
            ..Limits::default()
        },
        ..ServerOptions::default()
    })
    .await;
    // Fill every slot with a working connection.
    let mut held = Vec::new();
    for i in 0..max {
        let proto = if i % 2 == 0 {
            Proto::Http1
        } else {
            Proto::Http2
        };
        let mut c = srv.client().connect(srv.addr, proto).await.unwrap();
        assert_eq!(
            c.review(&token).await.json()["status"]["authenticated"],
            true
        );
        held.push(c);
    }
    // More: closed at once, before TLS (the handshake fails), never left hanging.
    for _ in 0..8 {
        let started = Instant::now();
        let r = tokio::time::timeout(SOON, srv.client().connect(srv.addr, Proto::Http1))
            .await
            .expect("refused connection left hanging");
        assert!(r.is_err(), "connection over the maximum was served");
        assert!(started.elapsed() < SOON);
    }
    let (_, m) = admin_get(srv.admin, "/metrics").await;
    assert!(m.contains("keygate_connections_refused_total 8"), "{m}");
    assert!(
        m.contains(&format!("keygate_open_connections {max}")),
        "{m}"
    );
    // The held connections keep working.
    for c in &mut held {
        assert_eq!(
            c.review(&token).await.json()["status"]["authenticated"],
            true
        );
    }
    // Free two slots: new connections are served again.
    held.truncate(max - 2);
    still_serves(&srv, &token).await;
    for c in &mut held {
        assert_eq!(
            c.review(&token).await.json()["status"]["authenticated"],
            true
        );
    }
    // Everything released: all slots usable again.
    drop(held);
    let mut again = Vec::new();
    for _ in 0..max {
        let deadline = Instant::now() + SOON;
        let got = loop {
            if let Ok(c) = srv.client().connect(srv.addr, Proto::Http2).await {
                break Some(c);
            }
            if Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(got.is_some(), "slot not released");
        let mut c = got.unwrap();
        assert_eq!(
            c.review(&token).await.json()["status"]["authenticated"],
            true
        );
        again.push(c);
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn many_half_open_connections_do_not_block_the_server_for_long() {
    let max = 16;
    let mut limits = short_limits();
    limits.max_connections = max;
    let (srv, token) = setup_with(ServerOptions {
        limits,
        ..ServerOptions::default()
    })
    .await;
    // Fill every slot with TCP connections that never speak TLS; the handshake timeout frees
    // them, so the server serves again without any of them closing.
    let mut silent = Vec::new();
    for _ in 0..max * 2 {
        silent.push(TcpStream::connect(srv.addr).await.unwrap());
    }
    still_serves(&srv, &token).await;
    drop(silent);
    srv.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// HTTP/2 specific abuse.

#[tokio::test]
async fn http2_stream_floods_are_bounded() {
    let (srv, token) = setup_with(ServerOptions {
        limits: short_limits(),
        ..ServerOptions::default()
    })
    .await;
    // 1000 concurrent requests on one connection limited to 100 streams: all are answered
    // (the client queues), none fails.
    let mut c = srv.client().connect(srv.addr, Proto::Http2).await.unwrap();
    let body = Bytes::from(review_body(FIXTURE_V1, &token));
    let (sender, _conn) = srv.client().h2_sender(srv.addr).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let mut s = sender.clone();
        let body = body.clone();
        tasks.spawn(async move {
            s.ready().await?;
            let req = http::Request::post("https://localhost/authenticate")
                .body(Full::new(body).map_err(|e| match e {}).boxed())
                .unwrap();
            let resp = s.send_request(req).await?;
            let status = resp.status();
            resp.into_body().collect().await?;
            Ok::<_, hyper::Error>(status)
        });
    }
    let mut ok = 0;
    while let Some(r) = tokio::time::timeout(Duration::from_secs(30), tasks.join_next())
        .await
        .expect("stream flood stalled")
    {
        if r.unwrap().map(|s| s == 200).unwrap_or(false) {
            ok += 1;
        }
    }
    assert_eq!(ok, 1000);
    // Requests cancelled right after they are sent (rapid reset): the server survives.
    for _ in 0..500 {
        let mut s = sender.clone();
        let req = http::Request::post("https://localhost/authenticate")
            .body(streamed_body(1_000_000, 1024))
            .unwrap();
        if s.ready().await.is_err() {
            break;
        }
        let fut = s.send_request(req);
        drop(fut);
    }
    assert_eq!(
        c.review(&token).await.json()["status"]["authenticated"],
        true
    );
    still_serves(&srv, &token).await;
    srv.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// A write half that never reads: the server's answers back up, the rest is unaffected.

#[tokio::test]
async fn a_client_that_never_reads_does_not_affect_others() {
    let (srv, token) = setup_with(ServerOptions {
        limits: short_limits(),
        ..ServerOptions::default()
    })
    .await;
    let body = review_body(FIXTURE_V1, &token);
    let req = format!(
        "POST /authenticate HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut tls = srv
        .client()
        .connect_tls(srv.addr, crate::common::Proto::Http1)
        .await
        .unwrap();
    // Pipeline requests without reading any answer, bounded in count and time.
    let deadline = Instant::now() + Duration::from_secs(3);
    for _ in 0..2000 {
        if Instant::now() > deadline {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(200), tls.write_all(req.as_bytes())).await
        {
            Ok(Ok(())) => {}
            _ => break,
        }
    }
    still_serves(&srv, &token).await;
    drop(tls);
    srv.shutdown().await;
}

/// The admin listener holds at most `ADMIN_MAX_CONNECTIONS` connections: one more is closed at
/// once, and once some close, probes are answered again.
#[tokio::test]
async fn the_admin_listener_caps_its_connections() {
    use keygate::http::listener::ADMIN_MAX_CONNECTIONS;
    let (srv, token) = setup().await;
    let mut idle = Vec::new();
    for _ in 0..ADMIN_MAX_CONNECTIONS {
        idle.push(TcpStream::connect(srv.admin).await.unwrap());
    }
    // Served in order: once the first request on the last idle connection is answered, every
    // idle connection holds a slot.
    let last = idle.last_mut().unwrap();
    last.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 12];
    last.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    let mut extra = TcpStream::connect(srv.admin).await.unwrap();
    let (_, closed) = read_until_closed(&mut extra, Duration::from_secs(5)).await;
    assert!(closed, "a connection over the cap was kept open");
    // Closing some frees their slots (the server notices the close on its own time).
    idle.truncate(ADMIN_MAX_CONNECTIONS / 2);
    let probe = || async {
        let Ok(mut c) = TcpStream::connect(srv.admin).await else {
            return false;
        };
        let _ = c
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await;
        let (out, _) = read_until_closed(&mut c, Duration::from_secs(2)).await;
        status_of(&out) == Some(200)
    };
    assert!(
        eventually(Duration::from_secs(5), probe).await,
        "admin port not answering again"
    );
    still_serves(&srv, &token).await;
}
