//! Where key records live and the in-memory index the webhook reads them from.
//!
//! Two sources feed one [`Index`]: the kube store (a watcher on Secrets in the key namespace)
//! and the dir store (YAML/JSON files). Each source is a single task that applies
//! [`Index::upsert`], [`Index::remove`] and [`Index::replace_all`]; the webhook only reads.
//!
//! The index mirrors the whole store: it never evicts (an evicted key would be a valid key
//! refused) and never loads on a miss (a flood of unknown IDs costs one lookup each, no store
//! call, no memory). So it is a plain map split into shards behind read-write locks rather
//! than a cache: moka's per-entry bookkeeping for eviction (frequency sketch, access-order
//! queues, timestamps, its own copy of the key) cost ~300 bytes per key and ~150 ns per hit
//! for features the index must not use (BENCHMARKS.md, "Memory per key").

pub mod chain;
pub mod dir;
mod entry;
pub mod kube;
mod sealed;

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use jiff::Timestamp;

use crate::identity::{IdentityPolicy, Shape};
use crate::record::{KeyRecord, RecordError};
use crate::token::IdKey;

pub use chain::{Broken, ChainBreak, MAX_ANCESTORS};
pub use entry::{Grant, LoadedKey, SecretMatch};
pub use sealed::{Checked, same_entry};

/// What the index holds for a key ID.
#[derive(Debug, Clone)]
pub enum Entry {
    Key(Arc<LoadedKey>),
    /// A record exists under this ID but was refused; the reason is logged on each use.
    Invalid(Arc<RecordError>),
}

impl Entry {
    fn is_invalid(&self) -> bool {
        matches!(self, Entry::Invalid(_))
    }
}

/// The parsed form of one source record, before identity mapping.
pub type Parsed = Result<KeyRecord, RecordError>;

/// Why a store stopped feeding the index. A store runs for the life of the process, so any end
/// is a failure: from then on deletes, disables and rotations are no longer applied.
#[derive(Debug, thiserror::Error)]
pub enum StoreStopped {
    #[error("the dir store stopped: {0}")]
    Dir(dir::DirError),
    #[error("the kube store's watch of key Secrets ended")]
    KubeEnded,
    #[error("the {store} store panicked: {message}")]
    Panicked {
        store: &'static str,
        message: String,
    },
}

impl StoreStopped {
    /// A panic payload as text (`panic!` gives a `&str` or a `String`).
    pub fn panicked(store: &'static str, payload: &(dyn Any + Send)) -> Self {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned());
        StoreStopped::Panicked { store, message }
    }
}

/// Enough shards that the two writers of a reload and many readers rarely meet on one lock.
const SHARDS: usize = 32;

type Shard = RwLock<HashMap<IdKey, Entry>>;

/// Interned identity shapes (see [`Shape`]).
struct Shapes {
    set: HashSet<Arc<Shape>>,
    prune_at: usize,
}

/// The webhook's view of all keys. Cheap to clone (shared).
#[derive(Clone)]
pub struct Index {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Box<[Shard]>,
    shapes: Mutex<Shapes>,
    policy: IdentityPolicy,
    ready: AtomicBool,
    /// Set once when the store feeding the index stopped: the index can no longer be trusted
    /// to follow revocations, so it stops answering for good.
    failed: OnceLock<String>,
    invalid: AtomicI64,
    last_sync: AtomicI64,
    /// Set when records must carry a valid seal (see [`sealed`]).
    verifier: OnceLock<crate::seal::Verifier>,
    /// The highest seal seq seen per key; empty unless seals are checked. Every change that
    /// can race a direct read (watch upserts, deletes, re-lists) holds this lock.
    marks: Mutex<sealed::Marks>,
}

impl Index {
    pub fn new(policy: IdentityPolicy) -> Self {
        Index {
            inner: Arc::new(Inner {
                shards: (0..SHARDS).map(|_| Shard::default()).collect(),
                shapes: Mutex::new(Shapes {
                    set: HashSet::new(),
                    prune_at: 64,
                }),
                policy,
                ready: AtomicBool::new(false),
                failed: OnceLock::new(),
                invalid: AtomicI64::new(0),
                last_sync: AtomicI64::new(0),
                verifier: OnceLock::new(),
                marks: Mutex::default(),
            }),
        }
    }

    pub fn policy(&self) -> &IdentityPolicy {
        &self.inner.policy
    }

    fn shard(&self, k: &IdKey) -> &Shard {
        &self.inner.shards[k.spread() % SHARDS]
    }

    /// Looks up a key by its lowercased ID.
    pub fn get(&self, k: &IdKey) -> Option<Entry> {
        // A writer never panics while holding a shard, but a poisoned lock must not turn
        // into refused keys: the map itself is always consistent.
        let map = self.shard(k).read().unwrap_or_else(PoisonError::into_inner);
        map.get(k).cloned()
    }

    /// What a parsed record becomes in the index (identity mapped, answer serialized).
    /// Callable from any thread, so a store can prepare entries in parallel.
    pub fn entry_for(&self, id: &IdKey, parsed: Parsed) -> Entry {
        match parsed {
            Ok(record) => {
                let shape = self.intern(self.inner.policy.shape(&record));
                Entry::Key(Arc::new(LoadedKey::new(record, shape)))
            }
            Err(e) => {
                tracing::warn!(key_id = %id, error = %e, "key record refused");
                Entry::Invalid(Arc::new(e))
            }
        }
    }

    /// Adds or replaces the record for `k`.
    pub fn upsert(&self, k: IdKey, parsed: Parsed) {
        let entry = self.entry_for(&k, parsed);
        self.insert(k, entry);
    }

    fn insert(&self, k: IdKey, entry: Entry) {
        let is_invalid = entry.is_invalid();
        let old = self
            .shard(&k)
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(k, entry);
        self.adjust_invalid(old.is_some_and(|e| e.is_invalid()), is_invalid);
        self.touch();
    }

    pub fn remove(&self, k: &IdKey) {
        let _marks = self.forget_mark(k);
        let old = self
            .shard(k)
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(k);
        if let Some(old) = old {
            self.adjust_invalid(old.is_invalid(), false);
        }
        self.touch();
    }

    /// Replaces the whole content with a fresh full listing: every ID not in `records` is
    /// removed, so a re-list after a watch gap never leaves a deleted key behind.
    pub fn replace_all(&self, records: impl IntoIterator<Item = (IdKey, Parsed)>) {
        let entries = records.into_iter().map(|(k, parsed)| {
            let entry = self.entry_for(&k, parsed);
            (k, entry)
        });
        self.replace_entries(entries);
    }

    /// [`Index::replace_all`] with entries already prepared by [`Index::entry_for`]. The new
    /// maps are built aside and swapped in shard by shard; a later duplicate of an ID wins.
    pub fn replace_entries(&self, entries: impl IntoIterator<Item = (IdKey, Entry)>) {
        let mut fresh: Vec<HashMap<IdKey, Entry>> = (0..SHARDS).map(|_| HashMap::new()).collect();
        for (k, e) in entries {
            fresh[k.spread() % SHARDS].insert(k, e);
        }
        let invalid = fresh
            .iter()
            .flat_map(|m| m.values())
            .filter(|e| e.is_invalid())
            .count();
        let _marks = self.retain_marks(|k| fresh[k.spread() % SHARDS].contains_key(k));
        for (shard, map) in self.inner.shards.iter().zip(fresh) {
            let old = std::mem::replace(
                &mut *shard.write().unwrap_or_else(PoisonError::into_inner),
                map,
            );
            // Freed outside the lock: dropping a large map takes a while.
            drop(old);
        }
        self.inner.invalid.store(invalid as i64, Ordering::Relaxed);
        self.set_ready();
    }

    /// The shared copy of `shape`. Shapes no key uses any more are dropped when the set has
    /// doubled since it was last pruned, so edits cannot grow it without bound.
    fn intern(&self, shape: Shape) -> Arc<Shape> {
        let mut shapes = self
            .inner
            .shapes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = shapes.set.get(&shape) {
            return s.clone();
        }
        if shapes.set.len() >= shapes.prune_at {
            shapes.set.retain(|s| Arc::strong_count(s) > 1);
            shapes.prune_at = (shapes.set.len() * 2).max(64);
        }
        let s = Arc::new(shape);
        shapes.set.insert(s.clone());
        s
    }

    fn adjust_invalid(&self, was: bool, is: bool) {
        let delta = i64::from(is) - i64::from(was);
        if delta != 0 {
            self.inner.invalid.fetch_add(delta, Ordering::Relaxed);
        }
    }

    fn touch(&self) {
        self.inner
            .last_sync
            .store(Timestamp::now().as_second(), Ordering::Relaxed);
    }

    /// Marks the first full load done: the webhook starts answering.
    pub fn set_ready(&self) {
        self.inner.ready.store(true, Ordering::Release);
        self.touch();
    }

    /// Whether the webhook may answer from the index: loaded, and its store still running.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire) && self.failure().is_none()
    }

    /// Marks the index as no longer fed by its store (`reason` says why). Irreversible: the
    /// process is expected to exit and be restarted with a fresh load.
    pub fn fail(&self, reason: String) {
        let _ = self.inner.failed.set(reason);
    }

    /// Why the store stopped, once it has.
    pub fn failure(&self) -> Option<&str> {
        self.inner.failed.get().map(String::as_str)
    }

    /// Records that the store confirmed it is in sync (e.g. a watch bookmark or a rescan).
    pub fn mark_synced(&self) {
        self.touch();
    }

    /// Unix seconds of the last change or confirmed sync; 0 before the first.
    pub fn last_sync(&self) -> i64 {
        self.inner.last_sync.load(Ordering::Relaxed)
    }

    /// Entries in the index (usable keys plus refused records).
    pub fn len(&self) -> u64 {
        self.inner
            .shards
            .iter()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner).len() as u64)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records that were refused (wrong type, system group, bad hash, ...).
    pub fn invalid_len(&self) -> u64 {
        self.inner.invalid.load(Ordering::Relaxed).max(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{KeyId, SecretHash};

    fn rec(id: &str) -> Parsed {
        Ok(KeyRecord::new(
            id.parse().unwrap(),
            SecretHash::of(b"x"),
            "n",
        ))
    }

    fn key(id: &str) -> IdKey {
        id.parse::<KeyId>().unwrap().key()
    }

    const A: &str = "AAAAAAAAAAAAAAAAAAAAAa";
    const B: &str = "BBBBBBBBBBBBBBBBBBBBBb";
    const STALE: &str = "stalestalestalestalest";

    #[test]
    fn replace_all_drops_what_is_gone_and_sets_ready() {
        let idx = Index::new(IdentityPolicy::default());
        assert!(!idx.is_ready());
        idx.upsert(key(A), rec(A));
        idx.upsert(key(STALE), Err(RecordError::Missing("id")));
        assert_eq!(idx.invalid_len(), 1);
        idx.replace_all([(key(B), rec(B))]);
        assert!(idx.is_ready());
        assert!(idx.get(&key(A)).is_none());
        assert!(idx.get(&key(STALE)).is_none());
        assert!(matches!(idx.get(&key(B)), Some(Entry::Key(_))));
        assert_eq!(idx.len(), 1);
        assert_eq!(idx.invalid_len(), 0);
    }

    #[test]
    fn a_failed_index_is_not_ready_even_after_a_load() {
        let idx = Index::new(IdentityPolicy::default());
        idx.replace_all([(key(A), rec(A))]);
        assert!(idx.is_ready());
        idx.fail("the dir store stopped".into());
        assert!(!idx.is_ready());
        // A store still running somehow cannot make it ready again.
        idx.replace_all([(key(A), rec(A))]);
        assert!(!idx.is_ready());
        assert_eq!(idx.failure(), Some("the dir store stopped"));
    }

    #[test]
    fn panic_payloads_become_messages() {
        let p = std::panic::catch_unwind(|| panic!("boom {}", 1)).unwrap_err();
        let s = StoreStopped::panicked("dir", &*p).to_string();
        assert_eq!(s, "the dir store panicked: boom 1");
        let p = std::panic::catch_unwind(|| panic!("static")).unwrap_err();
        assert!(
            StoreStopped::panicked("kube", &*p)
                .to_string()
                .ends_with("static")
        );
    }

    #[test]
    fn upsert_replaces_and_tracks_invalid() {
        let idx = Index::new(IdentityPolicy::default());
        let a = key(A);
        idx.upsert(a, Err(RecordError::Missing("id")));
        assert!(matches!(idx.get(&a), Some(Entry::Invalid(_))));
        idx.upsert(a, rec(A));
        assert!(matches!(idx.get(&a), Some(Entry::Key(_))));
        assert_eq!(idx.invalid_len(), 0);
        idx.remove(&a);
        assert!(idx.get(&a).is_none());
    }
}
