//! A fixed workload for a profiler (issue 5, part 5): `Webhook::review` of the captured v1
//! fixture with a valid key among 10 000, N times, with keygate's text log formatter writing
//! to a sink (as `keygate serve` formats every decision).
//!
//! `valgrind --tool=callgrind target/release/examples/profile_review 20000 [--no-log]`
//!
//! `profile_review --mem N`: resident memory of an `Index` holding N keys (VmRSS before and
//! after `Index::upsert` of N records, each built just before), to split bytes/key between the
//! index and the dir store.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use keygate::http::{MemoryBudget, Webhook};
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
    let log = args.next().as_deref() != Some("--no-log");
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
        authorizer: None,
    };
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
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
