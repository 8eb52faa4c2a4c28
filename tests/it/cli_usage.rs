//! Last-use recording: batched per key, off the request path, written on shutdown, and
//! failures counted without affecting callers.

use std::sync::atomic::Ordering;
use std::time::Duration;

use jiff::Timestamp;
use keygate::keystore::{DirKeys, KeyStore};
use keygate::record::KeyRecord;
use keygate::token::IdKey;
use keygate::token::{KeyId, SecretHash};
use keygate::usage::UsageSink;
use keygate::usage::{self, UsageWriter};
use tokio_util::sync::CancellationToken;

fn key(id: &KeyId) -> IdKey {
    IdKey::new(id.as_str()).unwrap()
}

async fn store_with_key() -> (tempfile::TempDir, DirKeys, KeyId) {
    let tmp = tempfile::tempdir().unwrap();
    let keys = DirKeys::new(tmp.path().join("keys"), "keygate-system");
    let id = KeyId::generate();
    let rec = KeyRecord::new(id.clone(), SecretHash::of(b"s"), "k");
    KeyStore::Dir(keys.clone()).create(&rec).await.unwrap();
    (tmp, keys, id)
}

async fn last_used(keys: &DirKeys, id: &KeyId) -> Option<Timestamp> {
    KeyStore::Dir(keys.clone())
        .get(&id.key())
        .await
        .unwrap()
        .record
        .last_used
}

async fn eventually(mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn many_uses_make_one_write_per_interval_with_the_latest_time() {
    let (_tmp, keys, id) = store_with_key().await;
    let stop = CancellationToken::new();
    let (sink, task) = usage::spawn(
        UsageWriter::Dir(keys.clone()),
        Duration::from_millis(500),
        stop.clone(),
    );
    let t0: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
    for i in 0..100 {
        sink.used(key(&id), t0 + jiff::SignedDuration::from_secs(i));
    }
    assert!(eventually(async || sink.stats.written.load(Ordering::Relaxed) == 1).await);
    let latest = t0 + jiff::SignedDuration::from_secs(99);
    assert_eq!(last_used(&keys, &id).await, Some(latest));

    // Used again at once: held back until the interval has passed, then written.
    let later = latest + jiff::SignedDuration::from_secs(60);
    sink.used(key(&id), later);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        sink.stats.written.load(Ordering::Relaxed),
        1,
        "not before the interval"
    );
    assert!(eventually(async || sink.stats.written.load(Ordering::Relaxed) == 2).await);
    assert_eq!(last_used(&keys, &id).await, Some(later));
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn pending_uses_are_written_on_shutdown() {
    let (_tmp, keys, id) = store_with_key().await;
    let stop = CancellationToken::new();
    let (sink, task) = usage::spawn(
        UsageWriter::Dir(keys.clone()),
        Duration::from_secs(3600),
        stop.clone(),
    );
    let at: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
    sink.used(key(&id), at);
    stop.cancel();
    task.await.unwrap();
    assert_eq!(last_used(&keys, &id).await, Some(at));
}

#[tokio::test]
async fn failures_are_counted_and_a_full_queue_drops_instead_of_blocking() {
    let (_tmp, keys, _) = store_with_key().await;
    let stop = CancellationToken::new();
    let (sink, task) = usage::spawn(
        UsageWriter::Dir(keys),
        Duration::from_millis(50),
        stop.clone(),
    );
    // A key without a record: the write fails, is counted, and nobody waits for it.
    sink.used(key(&KeyId::generate()), Timestamp::now());
    assert!(eventually(async || sink.stats.failed.load(Ordering::Relaxed) == 1).await);

    // On this single-threaded runtime the writer cannot run while we loop: uses of one key are
    // kept as one entry, and once 64 Ki distinct keys wait, further ones are dropped at once.
    for _ in 0..20_000 {
        sink.used(
            IdKey::new("aaaaaaaaaaaaaaaaaaaaaa").unwrap(),
            Timestamp::now(),
        );
    }
    assert_eq!(sink.stats.dropped.load(Ordering::Relaxed), 0);
    for _ in 0..70_000 {
        sink.used(KeyId::generate().key(), Timestamp::now());
    }
    assert!(sink.stats.dropped.load(Ordering::Relaxed) > 0);
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn dir_store_refuses_duplicates_and_stale_updates() {
    let (_tmp, keys, id) = store_with_key().await;
    let store = KeyStore::Dir(keys);
    // Same ID in another case: the lowercase name is taken.
    let upper: KeyId = id.as_str().to_uppercase().parse().unwrap();
    let dup = KeyRecord::new(upper, SecretHash::of(b"t"), "dup");
    let err = store.create(&dup).await.unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");

    // An update based on a stale read is refused; modify re-reads and succeeds.
    let r = id.key();
    let old = store.get(&r).await.unwrap();
    let mut changed = old.record.clone();
    changed.name = "first".into();
    store.update(&old, &changed).await.unwrap();
    let mut stale = old.record.clone();
    stale.name = "second".into();
    let err = store.update(&old, &stale).await.unwrap_err().to_string();
    assert!(err.contains("run the command again"), "{err}");
    store
        .modify(&r, |rec| rec.description = "d".into())
        .await
        .unwrap();
    let now = store.get(&r).await.unwrap().record;
    assert_eq!(
        (now.name.as_str(), now.description.as_str()),
        ("first", "d")
    );
}
