use std::sync::Arc;

use super::*;
use crate::fixtures::{NAMESPACE, fake_kube, record, sealed, sealer, status};
use crate::identity::IdentityPolicy;
use crate::review::{Reason, decide};
use crate::token::{KeyId, Token};

/// An API server holding `secrets` (by name), counting GETs.
fn server(secrets: Vec<Secret>) -> (kube::Client, crate::fixtures::SeenLog) {
    fake_kube(move |seen| {
        let name = seen.path.rsplit('/').next().unwrap_or_default();
        match secrets
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(name))
        {
            Some(s) => (200, serde_json::to_value(s).unwrap()),
            None => status(404, "NotFound"),
        }
    })
}

fn reads(log: &crate::fixtures::SeenLog) -> usize {
    log.lock()
        .unwrap()
        .iter()
        .filter(|s| s.method == "GET")
        .count()
}

fn ready_index() -> Index {
    let index = Index::new(IdentityPolicy::default());
    index.replace_all([]);
    index
}

#[tokio::test]
async fn a_record_created_after_the_load_works_on_first_use() {
    let token = Token::generate(KeyId::generate());
    let mut rec = record(&token.id);
    rec.secret_hash = token.secret_hash();
    let sealer = sealer();
    let (client, log) = server(vec![sealed(&sealer, &rec, "uid-1", None)]);
    let index = ready_index();
    index.set_verifier(sealer.verifier());
    let rt = ReadThrough::new(Api::namespaced(client, NAMESPACE), index.clone(), 20);
    let t = token.expose();
    assert_eq!(
        decide(&index, &t, jiff::Timestamp::now()).reason,
        Reason::UnknownKey
    );
    assert!(rt.read(token.id.key(), &token.secret_hash()).await);
    assert_eq!(
        decide(&index, &t, jiff::Timestamp::now()).reason,
        Reason::Ok
    );
    assert_eq!(reads(&log), 1);
    assert_eq!(
        log.lock().unwrap()[0].path,
        format!(
            "/api/v1/namespaces/{NAMESPACE}/secrets/{}",
            token.id.record_name()
        )
    );
    assert_eq!(rt.stats.hits.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_regenerated_secret_is_read_and_an_unsealed_record_is_not_applied() {
    let token = Token::generate(KeyId::generate());
    let mut old = record(&token.id);
    old.secret_hash = SecretHash::of(b"before");
    let mut new = old.clone();
    new.secret_hash = token.secret_hash();
    let sealer = sealer();
    let index = ready_index();
    index.set_verifier(sealer.verifier());
    let c = index.check(&sealed(&sealer, &old, "u", Some(u64::MAX / 2)));
    index.upsert_watched(token.id.key(), c);
    let (client, _) = server(vec![sealed(&sealer, &new, "u", Some(u64::MAX / 2 + 1))]);
    let rt = ReadThrough::new(Api::namespaced(client, NAMESPACE), index.clone(), 20);
    let t = token.expose();
    assert_eq!(
        decide(&index, &t, jiff::Timestamp::now()).reason,
        Reason::WrongSecret
    );
    assert!(rt.read(token.id.key(), &token.secret_hash()).await);
    assert_eq!(
        decide(&index, &t, jiff::Timestamp::now()).reason,
        Reason::Ok
    );

    // A hand-written (unsealed) record is never applied by a read either.
    let other = Token::generate(KeyId::generate());
    let mut forged = record(&other.id);
    forged.secret_hash = other.secret_hash();
    let mut s = forged.to_secret(NAMESPACE);
    s.metadata.uid = Some("u2".into());
    let (client, log) = server(vec![s]);
    let rt = ReadThrough::new(Api::namespaced(client, NAMESPACE), index.clone(), 20);
    assert!(!rt.read(other.id.key(), &other.secret_hash()).await);
    assert_eq!(
        decide(&index, &other.expose(), jiff::Timestamp::now()).reason,
        Reason::UnknownKey
    );
    // ... and it is remembered: the next try reads nothing.
    assert!(!rt.read(other.id.key(), &other.secret_hash()).await);
    assert_eq!(reads(&log), 1);
    assert_eq!(rt.stats.cached.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_flood_of_unknown_ids_reads_at_most_the_bucket() {
    let (client, log) = server(vec![]);
    let index = ready_index();
    let rt = Arc::new(ReadThrough::new(
        Api::namespaced(client, NAMESPACE),
        index,
        5,
    ));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let rt = rt.clone();
        tasks.push(tokio::spawn(async move {
            let t = Token::generate(KeyId::generate());
            rt.read(t.id.key(), &t.secret_hash()).await
        }));
    }
    for t in tasks {
        assert!(!t.await.unwrap());
    }
    let n = reads(&log);
    // A burst of 5, plus what the bucket refilled (5 per second) while the flood ran.
    let refilled = (start.elapsed().as_secs_f64() * 5.0).floor() as usize;
    assert!(
        (1..=5 + refilled).contains(&n),
        "{n} reads for 200 unknown IDs"
    );
    let s = &rt.stats;
    assert_eq!(s.misses.load(Ordering::Relaxed) as usize, n);
    assert_eq!(s.limited.load(Ordering::Relaxed) as usize, 200 - n);
}

#[tokio::test]
async fn the_negative_cache_absorbs_repeats_of_one_id_and_of_one_wrong_secret() {
    let token = Token::generate(KeyId::generate());
    let (client, log) = server(vec![]);
    let rt = ReadThrough::new(Api::namespaced(client, NAMESPACE), ready_index(), 1000);
    for _ in 0..50 {
        assert!(!rt.read(token.id.key(), &token.secret_hash()).await);
    }
    // Any secret for an ID without a record is absorbed.
    assert!(!rt.read(token.id.key(), &SecretHash::of(b"other")).await);
    assert_eq!(reads(&log), 1);
    assert_eq!(rt.stats.cached.load(Ordering::Relaxed), 50);

    // An existing key guessed with wrong secrets: each distinct guess reads once.
    let known = Token::generate(KeyId::generate());
    let mut rec = record(&known.id);
    rec.secret_hash = known.secret_hash();
    let (client, log) = server(vec![rec.to_secret(NAMESPACE)]);
    let rt = ReadThrough::new(Api::namespaced(client, NAMESPACE), ready_index(), 1000);
    let wrong = SecretHash::of(b"guess");
    for _ in 0..10 {
        rt.read(known.id.key(), &wrong).await;
    }
    assert_eq!(reads(&log), 1);
    // The right secret is not blocked by the wrong one's entry.
    assert!(rt.read(known.id.key(), &known.secret_hash()).await);
}

#[tokio::test]
async fn a_failing_api_server_is_a_denial_as_before() {
    let (client, _) = fake_kube(|_| status(500, "InternalError"));
    let rt = ReadThrough::new(Api::namespaced(client, NAMESPACE), ready_index(), 20);
    let t = Token::generate(KeyId::generate());
    assert!(!rt.read(t.id.key(), &t.secret_hash()).await);
    assert_eq!(rt.stats.failed.load(Ordering::Relaxed), 1);
}
