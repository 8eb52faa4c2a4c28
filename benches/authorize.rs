//! The authorization webhook's decisions in process (issue 13, performance).
//!
//! `cargo bench --bench authorize` measures, against an index of 10 000 keys, decode + decide
//! + encode of a SubjectAccessReview (the captured-shape v1 fixture):
//! - `authorize/no_opinion/not_a_key`: a user who is no key (the answer for everyone else);
//! - `authorize/allow/inherited_cached`: an `inheritCreator` key inside its scope, its
//!   creator's answer in the cache (the steady state of a key in use);
//! - `authorize/*_webhook`: the same through `Webhook::authorize` (metrics, log event, HTTP
//!   response), with no log subscriber.
//!
//! Target: at most 2 µs each.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use futures::executor::block_on;
use http::{Request, Response};
use keygate::authorizer::wire::{self, Verdict};
use keygate::authorizer::{Authorizer, AuthorizerSettings, Reason};
use keygate::http::{MemoryBudget, Webhook};
use keygate::identity::IdentityPolicy;
use keygate::index::Index;
use keygate::metrics::Metrics;
use keygate::record::{Creator, KeyRecord, Role};
use keygate::token::{KeyId, SecretHash};
use serde_json::{Value, json};

const SAR_V1: &str = include_str!("../tests/fixtures/subjectaccessreview/request-v1.json");
const KEYS: usize = 10_000;

/// A kube client whose API server allows every SubjectAccessReview (tower-test).
fn allowing_kube(rt: &tokio::runtime::Runtime) -> kube::Client {
    // The client spawns its request buffer's worker on the runtime.
    let _in_runtime = rt.enter();
    let (svc, mut handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, Response<kube::client::Body>>();
    rt.spawn(async move {
        while let Some((_, send)) = handle.next_request().await {
            let body = json!({"apiVersion": "authorization.k8s.io/v1",
                              "kind": "SubjectAccessReview", "status": {"allowed": true}});
            let resp = Response::builder()
                .status(201)
                .header("content-type", "application/json")
                .body(kube::client::Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap();
            send.send_response(resp);
        }
    });
    kube::Client::new(svc, "default")
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let index = Index::new(IdentityPolicy::default());
    for i in 0..KEYS {
        let mut rec = KeyRecord::new(KeyId::generate(), SecretHash::of(b"s"), format!("k{i}"));
        rec.role = Some(Role::View);
        index.upsert(rec.id.key(), Ok(rec));
    }
    let id = KeyId::generate();
    let mut rec = KeyRecord::new(id.clone(), SecretHash::of(b"s"), "ci");
    rec.inherit_creator = true;
    rec.namespaces = vec!["apps".into()];
    rec.creator = Some(Creator {
        username: "alice".into(),
        groups: vec!["dev".into(), "system:authenticated".into()],
        ..Creator::default()
    });
    index.upsert(id.key(), Ok(rec));
    index.set_ready();

    let metrics = Metrics::new();
    let authz = Arc::new(Authorizer::new(
        index.clone(),
        Some(allowing_kube(&rt)),
        &AuthorizerSettings {
            cache_ttl: Duration::from_secs(3600),
            ..AuthorizerSettings::default()
        },
        metrics.authz.clone(),
    ));
    let plain = SAR_V1.as_bytes().to_vec();
    let mut key: Value = serde_json::from_str(SAR_V1).unwrap();
    key["spec"]["user"] = json!(IdentityPolicy::default().username(&id.key()));
    key["spec"]["extra"] =
        json!({"keygate.dev/key-id": [id.as_str()], "keygate.dev/key-name": ["ci"]});
    key["spec"]["groups"] = json!(["keygate:keys", "system:authenticated"]);
    let key = serde_json::to_vec(&key).unwrap();

    let decide = |body: &[u8]| {
        let review = authz.read(body).unwrap();
        let d = block_on(authz.decide(&review));
        (
            wire::encode(review.api_version, d.verdict, &d.message),
            d.verdict,
            d.reason,
        )
    };
    // Fill the cache (one SubjectAccessReview), then check each body takes its path.
    let first = rt.block_on(async {
        let review = authz.read(&key).unwrap();
        authz.decide(&review).await
    });
    assert_eq!(first.verdict, Verdict::Allow, "{first:?}");
    assert_eq!(decide(&plain).2, Reason::NotAKey);
    assert_eq!(decide(&key).1, Verdict::Allow);
    assert_eq!(
        authz.metrics().sars_sent(),
        1,
        "the benchmark runs from the cache"
    );

    let webhook = Webhook {
        index,
        metrics: metrics.clone(),
        body_timeout: Duration::from_secs(5),
        usage: None,
        memory: MemoryBudget::new(32 << 20),
        admission: None,
        read_through: None,
        authorizer: Some(authz.clone()),
    };
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();

    let mut g = c.benchmark_group("authorize");
    g.bench_function("no_opinion/not_a_key", |b| {
        b.iter(|| decide(black_box(&plain)))
    });
    g.bench_function("allow/inherited_cached", |b| {
        b.iter(|| decide(black_box(&key)))
    });
    g.bench_function("no_opinion/not_a_key_webhook", |b| {
        b.iter(|| block_on(webhook.authorize(black_box(&plain), peer)))
    });
    g.bench_function("allow/inherited_cached_webhook", |b| {
        b.iter(|| block_on(webhook.authorize(black_box(&key), peer)))
    });
    g.finish();
    assert_eq!(authz.metrics().sars_sent(), 1);
}

fn config() -> Criterion {
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
