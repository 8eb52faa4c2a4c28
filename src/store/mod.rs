//! Where key records live and the in-memory index the webhook reads them from.
//!
//! Two sources feed one [`Index`]: the kube store (a watcher on Secrets in the key namespace)
//! and the dir store (YAML/JSON files). Each source is a single task that applies
//! [`Index::upsert`], [`Index::remove`] and [`Index::replace_all`]; the webhook only reads.
//! The index is a moka cache keyed by the lowercased key ID, holding the parsed record with its
//! identity precomputed, so a review is one hash lookup and one SHA-256.

pub mod dir;
pub mod kube;
pub mod spec;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use jiff::Timestamp;
use k8s_openapi::api::authentication::v1::UserInfo;
use tokio::sync::watch;

use crate::record::{KeyRecord, RecordError};
use crate::review::IdentityPolicy;

pub use spec::StoreSpec;

/// A record the webhook can use, with the identity it maps to computed once at load time: the
/// `status.user` of every answer for this key is serialized here, not per review.
#[derive(Debug)]
pub struct LoadedKey {
    /// What `decide` needs; fields the webhook never reads (description, created-by, the
    /// group and namespace lists, already part of `user_json`) are dropped to save memory.
    pub record: KeyRecord,
    pub username: Box<str>,
    /// `status.user` as JSON (k8s-openapi's `UserInfo`).
    pub user_json: Box<[u8]>,
}

impl LoadedKey {
    pub fn new(mut record: KeyRecord, user: UserInfo) -> Self {
        // Serializing a plain struct of strings cannot fail.
        let user_json = serde_json::to_vec(&user)
            .unwrap_or_default()
            .into_boxed_slice();
        for s in [
            &mut record.name,
            &mut record.description,
            &mut record.created_by,
        ] {
            *s = String::new();
        }
        record.groups = Vec::new();
        record.namespaces = Vec::new();
        LoadedKey {
            username: user.username.unwrap_or_default().into_boxed_str(),
            record,
            user_json,
        }
    }

    /// The identity, decoded back (for tests and tools; the hot path uses `user_json`).
    pub fn user(&self) -> UserInfo {
        serde_json::from_slice(&self.user_json).unwrap_or_default()
    }
}

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

/// The webhook's view of all keys. Cheap to clone (shared).
#[derive(Clone)]
pub struct Index {
    inner: Arc<Inner>,
}

struct Inner {
    cache: moka::sync::Cache<String, Entry>,
    policy: IdentityPolicy,
    ready: watch::Sender<bool>,
    invalid: AtomicI64,
    last_sync: AtomicI64,
}

impl Index {
    pub fn new(policy: IdentityPolicy) -> Self {
        Index {
            inner: Arc::new(Inner {
                // Unbounded: the index mirrors the store, which is bounded by what can be
                // written to it. Unknown IDs are never inserted, so a flood of them cannot grow it.
                cache: moka::sync::Cache::builder().build(),
                policy,
                ready: watch::Sender::new(false),
                invalid: AtomicI64::new(0),
                last_sync: AtomicI64::new(0),
            }),
        }
    }

    pub fn policy(&self) -> &IdentityPolicy {
        &self.inner.policy
    }

    /// Looks up a key by its lowercased ID.
    pub fn get(&self, id_lower: &str) -> Option<Entry> {
        self.inner.cache.get(id_lower)
    }

    fn to_entry(&self, parsed: Parsed) -> Entry {
        match parsed {
            Ok(record) => {
                let user = self.inner.policy.user_info(&record);
                Entry::Key(Arc::new(LoadedKey::new(record, user)))
            }
            Err(e) => Entry::Invalid(Arc::new(e)),
        }
    }

    /// Adds or replaces the record for `id_lower`.
    pub fn upsert(&self, id_lower: &str, parsed: Parsed) {
        if let Err(e) = &parsed {
            tracing::warn!(key_id = id_lower, error = %e, "key record refused");
        }
        let entry = self.to_entry(parsed);
        let was_invalid = self.get(id_lower).is_some_and(|e| e.is_invalid());
        self.adjust_invalid(was_invalid, entry.is_invalid());
        self.inner.cache.insert(id_lower.to_owned(), entry);
        self.touch();
    }

    pub fn remove(&self, id_lower: &str) {
        if let Some(old) = self.inner.cache.remove(id_lower) {
            self.adjust_invalid(old.is_invalid(), false);
        }
        self.touch();
    }

    /// Replaces the whole content with a fresh full listing: every ID not in `records` is
    /// removed, so a re-list after a watch gap never leaves a deleted key behind.
    pub fn replace_all(&self, records: HashMap<String, Parsed>) {
        let stale: Vec<Arc<String>> = self
            .inner
            .cache
            .iter()
            .map(|(k, _)| k)
            .filter(|k| !records.contains_key(k.as_str()))
            .collect();
        for k in stale {
            self.remove(&k);
        }
        for (id, parsed) in records {
            self.upsert(&id, parsed);
        }
        self.inner.cache.run_pending_tasks();
        self.set_ready();
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
        self.inner.ready.send_replace(true);
        self.touch();
    }

    pub fn is_ready(&self) -> bool {
        *self.inner.ready.borrow()
    }

    /// Waits until the first full load is done.
    pub async fn wait_ready(&self) {
        let mut rx = self.inner.ready.subscribe();
        // Only fails if the sender is dropped, which cannot happen while `self` holds it.
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Records that the store confirmed it is in sync (e.g. a watch bookmark or a rescan).
    pub fn mark_synced(&self) {
        self.touch();
    }

    /// Unix seconds of the last change or confirmed sync; 0 before the first.
    pub fn last_sync(&self) -> i64 {
        self.inner.last_sync.load(Ordering::Relaxed)
    }

    /// Entries in the cache (usable keys plus refused records).
    pub fn len(&self) -> u64 {
        self.inner.cache.run_pending_tasks();
        self.inner.cache.entry_count()
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
    use crate::keys::SecretHash;

    fn rec(id: &str) -> Parsed {
        Ok(KeyRecord::new(
            id.parse().unwrap(),
            SecretHash::of(b"x"),
            "n",
        ))
    }

    const A: &str = "AAAAAAAAAAAAAAAAAAAAAa";
    const B: &str = "BBBBBBBBBBBBBBBBBBBBBb";

    #[test]
    fn replace_all_drops_what_is_gone_and_sets_ready() {
        let idx = Index::new(IdentityPolicy::default());
        assert!(!idx.is_ready());
        idx.upsert(&A.to_lowercase(), rec(A));
        idx.upsert("stale", Err(RecordError::Missing("id")));
        assert_eq!(idx.invalid_len(), 1);
        idx.replace_all(HashMap::from([(B.to_lowercase(), rec(B))]));
        assert!(idx.is_ready());
        assert!(idx.get(&A.to_lowercase()).is_none());
        assert!(idx.get("stale").is_none());
        assert!(matches!(idx.get(&B.to_lowercase()), Some(Entry::Key(_))));
        assert_eq!(idx.len(), 1);
        assert_eq!(idx.invalid_len(), 0);
    }

    #[test]
    fn upsert_replaces_and_tracks_invalid() {
        let idx = Index::new(IdentityPolicy::default());
        let a = A.to_lowercase();
        idx.upsert(&a, Err(RecordError::Missing("id")));
        assert!(matches!(idx.get(&a), Some(Entry::Invalid(_))));
        idx.upsert(&a, rec(A));
        assert!(matches!(idx.get(&a), Some(Entry::Key(_))));
        assert_eq!(idx.invalid_len(), 0);
        idx.remove(&a);
        assert!(idx.get(&a).is_none());
    }
}
