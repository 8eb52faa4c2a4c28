//! The TokenReview hot path in process (issue 5, part 1).
//!
//! `cargo bench --bench review` measures, against an index of 10 000 keys:
//! - `review/valid/*`: decode the captured v1 fixture, decide, encode (`review::decode` +
//!   `review::decide` + `review::encode`), and the full `Webhook::review` (metrics, log event,
//!   HTTP response), with no log subscriber, with keygate's own log subscriber (text and JSON)
//!   and with tracing-subscriber's stock formatters (`*_stock`), writing to a sink;
//! - `review/deny/*`: each denial path (unknown ID, wrong secret, foreign token, malformed);
//! - `component/*`: the baselines the issue names (SHA-256 of 32 bytes, serde_json decode of
//!   the fixture, an index hit (the issue names a moka hit; the index is a sharded map now), encode).
//!
//! Target: at most 2 µs per valid review.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use jiff::Timestamp;
use keygate::http::{MemoryBudget, Webhook};
use keygate::identity::IdentityPolicy;
use keygate::index::Index;
use keygate::metrics::Metrics;
use keygate::record::KeyRecord;
use keygate::review;
use keygate::telemetry::{LogFilter, LogFormat};
use keygate::token::{IdKey, KeyId, SecretHash, Token};
use sha2::{Digest, Sha256};

const FIXTURE_V1: &str = include_str!("../tests/fixtures/tokenreview/request-v1.json");
const KEYS: usize = 10_000;

/// The captured fixture with its token replaced (as tests/common does).
fn body(token: &str) -> Vec<u8> {
    let token = serde_json::to_string(token).unwrap();
    FIXTURE_V1.replace("\"good.token\"", &token).into_bytes()
}

struct Setup {
    index: Index,
    webhook: Webhook,
    valid: Vec<u8>,
    unknown: Vec<u8>,
    wrong_secret: Vec<u8>,
    foreign: Vec<u8>,
    malformed: Vec<u8>,
    valid_token: String,
    valid_id_lower: String,
}

fn setup() -> Setup {
    let index = Index::new(IdentityPolicy::default());
    let mut tokens = Vec::with_capacity(KEYS);
    for i in 0..KEYS {
        let token = Token::generate(KeyId::generate());
        let mut rec = KeyRecord::new(token.id.clone(), token.secret_hash(), format!("key {i}"));
        rec.role = Some(keygate::record::Role::View);
        index.upsert(token.id.key(), Ok(rec));
        tokens.push(token);
    }
    index.set_ready();
    assert_eq!(index.len(), KEYS as u64);
    // A key in the middle of the index.
    let valid = &tokens[KEYS / 2];
    let valid_token = valid.expose();
    let other = tokens[KEYS / 3].expose();
    // The valid key's ID with another key's secret.
    let wrong_secret = format!("{}{}", &valid_token[..26], &other[26..]);
    // A well-formed token whose ID is in no record.
    let unknown = Token::generate(KeyId::generate()).expose();
    let foreign = "eyJhbGciOiJSUzI1NiIsImtpZCI6IiJ9.eyJpc3MiOiJrdWJlcm5ldGVzIn0.c2lnbmF0dXJl";
    let malformed = format!("kg_{}", &valid_token[3..40]);
    let webhook = Webhook {
        index: index.clone(),
        metrics: Metrics::new(),
        body_timeout: Duration::from_secs(5),
        usage: None,
        memory: MemoryBudget::new(32 << 20),
        admission: None,
        read_through: None,
        authorizer: None,
    };
    Setup {
        valid_id_lower: valid.id.key().to_string(),
        index,
        webhook,
        valid: body(&valid_token),
        unknown: body(&unknown),
        wrong_secret: body(&wrong_secret),
        foreign: body(foreign),
        malformed: body(&malformed),
        valid_token,
    }
}

/// decode + decide + encode: what the 2 µs target is about.
fn pipeline(index: &Index, body: &[u8]) -> Vec<u8> {
    let req = review::decode(body).expect("a TokenReview");
    let decision = review::decide(index, req.token(), Timestamp::now());
    review::encode(req.api_version, &decision)
}

fn check(s: &Setup) {
    // Each body must take the path its benchmark is named after.
    let reason = |b: &[u8]| {
        let req = review::decode(b).unwrap();
        review::decide(&s.index, req.token(), Timestamp::now()).reason
    };
    assert_eq!(reason(&s.valid), review::Reason::Ok);
    assert_eq!(reason(&s.unknown), review::Reason::UnknownKey);
    assert_eq!(reason(&s.wrong_secret), review::Reason::WrongSecret);
    assert_eq!(reason(&s.foreign), review::Reason::ForeignToken);
    assert_eq!(reason(&s.malformed), review::Reason::MalformedToken);
    let out = pipeline(&s.index, &s.valid);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["status"]["authenticated"], true);
}

fn benches(c: &mut Criterion) {
    let s = setup();
    check(&s);
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();

    let mut g = c.benchmark_group("review");
    g.bench_function("valid/decode_decide_encode", |b| {
        b.iter(|| pipeline(&s.index, black_box(&s.valid)))
    });
    g.bench_function("valid/webhook_review", |b| {
        b.iter(|| s.webhook.review(black_box(&s.valid), peer))
    });
    // keygate's own log subscriber (telemetry::init minus the batching writer thread), and
    // tracing-subscriber's stock formatters it replaced for the decision line, writing to a
    // sink: the cost of the one log event per decision.
    for format in [LogFormat::Text, LogFormat::Json] {
        let name = format!("{format:?}").to_lowercase();
        g.bench_function(format!("valid/webhook_review_{name}_log"), |b| {
            let sub = keygate::telemetry::subscriber(
                format,
                LogFilter::parse("info").unwrap(),
                std::io::sink,
            );
            let _guard = tracing::dispatcher::set_default(&sub);
            b.iter(|| s.webhook.review(black_box(&s.valid), peer))
        });
    }
    g.bench_function("valid/webhook_review_text_log_stock", |b| {
        let sub = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(std::io::sink)
            .finish();
        let _guard = tracing::subscriber::set_default(sub);
        b.iter(|| s.webhook.review(black_box(&s.valid), peer))
    });
    g.bench_function("valid/webhook_review_json_log_stock", |b| {
        let sub = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_writer(std::io::sink)
            .finish();
        let _guard = tracing::subscriber::set_default(sub);
        b.iter(|| s.webhook.review(black_box(&s.valid), peer))
    });
    for (name, body) in [
        ("deny/unknown_id", &s.unknown),
        ("deny/wrong_secret", &s.wrong_secret),
        ("deny/foreign_token", &s.foreign),
        ("deny/malformed_token", &s.malformed),
    ] {
        g.bench_function(name, |b| b.iter(|| pipeline(&s.index, black_box(body))));
    }
    g.bench_function("deny/unknown_id_webhook_review", |b| {
        b.iter(|| s.webhook.review(black_box(&s.unknown), peer))
    });
    g.bench_function("bad_request/not_json_webhook_review", |b| {
        b.iter(|| s.webhook.review(black_box(b"{not json"), peer))
    });
    g.finish();

    let mut g = c.benchmark_group("component");
    let secret = [0x5au8; 32];
    g.bench_function("sha256_32_bytes", |b| {
        b.iter(|| Sha256::digest(black_box(&secret)))
    });
    g.bench_function("secret_hash_of_token_secret", |b| {
        let sec = &s.valid_token[26..];
        b.iter(|| SecretHash::of(black_box(sec.as_bytes())))
    });
    g.bench_function("serde_json_decode_fixture", |b| {
        b.iter(|| review::decode(black_box(&s.valid)).unwrap())
    });
    g.bench_function("index_hit_10k", |b| {
        b.iter(|| {
            s.index
                .get(&IdKey::new(black_box(&s.valid_id_lower)).unwrap())
                .unwrap()
        })
    });
    g.bench_function("index_miss_10k", |b| {
        b.iter(|| IdKey::new(black_box("0123456789abcdefghijkl")).and_then(|k| s.index.get(&k)))
    });
    let req = review::decode(&s.valid).unwrap();
    let decision = review::decide(&s.index, req.token(), Timestamp::now());
    g.bench_function("encode_valid", |b| {
        b.iter(|| review::encode(req.api_version, black_box(&decision)))
    });
    g.bench_function("decide_valid", |b| {
        b.iter(|| review::decide(&s.index, black_box(&s.valid_token), Timestamp::now()).reason)
    });
    g.bench_function("timestamp_now", |b| b.iter(Timestamp::now));
    g.finish();
}

fn config() -> Criterion {
    // Short windows: the whole run stays well under a minute on 2 shared cores.
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = group;
    config = config();
    targets = benches
}
criterion_main!(group);
