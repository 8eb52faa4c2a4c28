//! A fixed workload for a profiler (issue 5, part 5): `Webhook::review` of the captured v1
//! fixture with a valid key among 10 000, N times, with keygate's text log formatter writing
//! to a sink (as `keygate serve` formats every decision).
//!
//! `valgrind --tool=callgrind target/release/examples/profile_review 20000 [--no-log]`
//!
//! `profile_review 20000 [--no-log] --http1|--http2`: the whole request instead (issue 16):
//! keygate's HTTP serving of one connection (`listener::serve_connection`, the hyper settings
//! `keygate serve` uses) over an in-memory pipe, without TLS, with a hyper client on the other
//! end (one request at a time over HTTP/1.1; 64 streams at a time over HTTP/2), all on one
//! thread. In callgrind, `serve_connection`'s inclusive cost is the server's share. The log
//! is keygate's own subscriber (`telemetry::subscriber`, text) writing to a sink, the
//! decision event inside a `conn` span as in `keygate serve`.
//!
//! `profile_review --mem N`: resident memory of an `Index` holding N keys (VmRSS before and
//! after `Index::upsert` of N records, each built just before), to split bytes/key between the
//! index and the dir store.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use keygate::http::listener::serve_connection;
use keygate::http::router::{Connection, Router};
use keygate::http::{Limits, MemoryBudget, Webhook};
use keygate::telemetry::LogFormat;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use keygate::identity::IdentityPolicy;
use keygate::index::Index;
use keygate::metrics::Metrics;
use keygate::record::{KeyRecord, Role};
use keygate::token::{KeyId, Token};

const FIXTURE_V1: &str = include_str!("../tests/fixtures/tokenreview/request-v1.json");

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// RSS per key of the index alone: each record is built and inserted at once (so what is
/// measured is what the index keeps, not the garbage of building records).
fn mem(n: usize) {
    let r0 = rss_kb();
    let index = Index::new(IdentityPolicy::default());
    for i in 0..n {
        let token = Token::generate(KeyId::generate());
        let mut rec = KeyRecord::new(token.id.clone(), token.secret_hash(), format!("bench {i}"));
        rec.role = Some(Role::View);
        index.upsert(token.id.key(), Ok(rec));
    }
    index.set_ready();
    let r1 = rss_kb();
    println!(
        "index with {n} keys: VmRSS {r0} kB -> {r1} kB; {:.0} bytes/key",
        (r1.saturating_sub(r0)) as f64 * 1024.0 / n as f64
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    if let Some("--mem") = std::env::args().nth(1).as_deref() {
        mem(std::env::args()
            .nth(2)
            .and_then(|a| a.parse().ok())
            .unwrap_or(100_000));
        return;
    }
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let rest: Vec<String> = args.collect();
    let log = !rest.iter().any(|a| a == "--no-log");
    let whole = rest.iter().find_map(|a| match a.as_str() {
        "--http1" => Some(false),
        "--http2" => Some(true),
        _ => None,
    });
    let index = Index::new(IdentityPolicy::default());
    let mut valid = String::new();
    for i in 0..10_000 {
        let token = Token::generate(KeyId::generate());
        let mut rec = KeyRecord::new(token.id.clone(), token.secret_hash(), format!("key {i}"));
        rec.role = Some(Role::View);
        index.upsert(token.id.key(), Ok(rec));
        if i == 5_000 {
            valid = token.expose();
        }
    }
    index.set_ready();
    let body = FIXTURE_V1.replace("\"good.token\"", &serde_json::to_string(&valid).unwrap());
    let webhook = Webhook {
        index,
        metrics: Metrics::new(),
        body_timeout: Duration::from_secs(5),
        usage: None,
        memory: MemoryBudget::new(32 << 20),
        admission: None,
        read_through: None,
        authorizer: None,
    };
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    if let Some(h2) = whole {
        let sub = keygate::telemetry::subscriber(
            LogFormat::Text,
            keygate::telemetry::LogFilter::parse(if log { "info" } else { "warn" }).unwrap(),
            std::io::sink,
        );
        let _guard = tracing::dispatcher::set_default(&sub);
        whole_requests(Arc::new(webhook), body, n, h2, peer);
        return;
    }
    let _guard = log.then(|| {
        tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_ansi(false)
                .with_writer(std::io::sink)
                .finish(),
        )
    });
    let start = Instant::now();
    let mut ok = 0usize;
    for _ in 0..n {
        let r = webhook.review(body.as_bytes(), peer);
        ok += usize::from(r.status() == 200);
    }
    let el = start.elapsed();
    assert_eq!(ok, n);
    println!(
        "{n} reviews in {:.3} s: {:.0} ns/review (log: {log})",
        el.as_secs_f64(),
        el.as_nanos() as f64 / n as f64
    );
}

/// `n` requests through keygate's HTTP serving over an in-memory pipe (see the module doc).
fn whole_requests(webhook: Arc<Webhook>, body: String, n: usize, h2: bool, peer: SocketAddr) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let closing = CancellationToken::new();
        let serve = {
            let closing = closing.clone();
            // As the listener sees kube-apiserver: a client allowed on the webhook paths.
            let conn = Arc::new(Connection {
                router: Arc::new(Router::new(webhook.clone())),
                peer,
                client: keygate::tls::Client {
                    webhook: true,
                    front_proxy: None,
                },
            });
            async move { serve_connection(server, h2, conn, &Limits::default(), &closing).await }
                .instrument(tracing::info_span!("conn", peer = %peer))
        };
        let server = tokio::spawn(serve);
        let body = Bytes::from(body);
        let request = move || {
            http::Request::post("/authenticate?timeout=30s")
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(body.clone()))
                .unwrap()
        };
        let start = Instant::now();
        let ok = if h2 {
            let (sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(client))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let mut ok = 0;
            let mut set = tokio::task::JoinSet::new();
            for i in 0..n {
                let mut s = sender.clone();
                let req = request();
                set.spawn(async move { answered(s.send_request(req).await).await });
                if set.len() >= 64 || i + 1 == n {
                    while let Some(r) = set.join_next().await {
                        ok += usize::from(r.unwrap());
                    }
                }
            }
            ok
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(client))
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut ok = 0;
            for _ in 0..n {
                sender.ready().await.unwrap();
                ok += usize::from(answered(sender.send_request(request()).await).await);
            }
            ok
        };
        let el = start.elapsed();
        assert_eq!(ok, n, "not every request was answered authenticated");
        closing.cancel();
        let _ = server.await;
        println!(
            "{n} whole requests over {} in {:.3} s: {:.0} ns/request (client included)",
            if h2 { "HTTP/2" } else { "HTTP/1.1" },
            el.as_secs_f64(),
            el.as_nanos() as f64 / n as f64
        );
    });
}

/// Whether a response is a 200 that authenticated the key.
async fn answered(r: Result<http::Response<hyper::body::Incoming>, hyper::Error>) -> bool {
    let Ok(r) = r else { return false };
    let ok = r.status() == 200;
    let body = r.into_body().collect().await.unwrap().to_bytes();
    ok && body.windows(20).any(|w| w == b"\"authenticated\":true")
}
