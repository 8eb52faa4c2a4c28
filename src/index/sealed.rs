//! Sealed records in the index: the seal check (`--record-verify-key`) and the highest
//! `seal-seq` seen per key.
//!
//! A sealed record whose seq is lower than one already seen is an older copy brought back (to
//! undo a disable, a regenerate or a delete while the webhook runs): it is refused, and keeps
//! being refused until a record with a higher seq arrives. The marks are forgotten when the
//! record is deleted; a record restored afterwards has a new uid, which its seal does not name.
//!
//! A record read directly from the API server (`read_through`) may be newer than what the
//! watch has delivered so far: the watch then still delivers the older states in order before
//! reaching it. Those are history, not a rollback, so while a key's mark comes from a direct
//! read, older (or refused) watch events for it are skipped rather than refusing the key.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};

use k8s_openapi::api::core::v1::Secret;

use super::{Entry, Index, Parsed};
use crate::record::{KeyRecord, RecordError};
use crate::seal::{SealFailure, Verifier};
use crate::token::IdKey;

/// The highest seq seen for a key, and whether it came from a direct read the watch has not
/// caught up with yet.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Mark {
    seq: u64,
    from_read: bool,
}

pub(super) type Marks = HashMap<IdKey, Mark>;

/// A record Secret checked for the index: parsed, and with its seal's seq when seals are
/// checked (`None` otherwise, or when it was refused).
pub struct Checked {
    pub parsed: Parsed,
    pub seq: Option<u64>,
}

/// Whether two lookups found the very same entry (nothing was applied in between).
pub fn same_entry(a: Option<&Entry>, b: Option<&Entry>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(Entry::Key(x)), Some(Entry::Key(y))) => Arc::ptr_eq(x, y),
        (Some(Entry::Invalid(x)), Some(Entry::Invalid(y))) => Arc::ptr_eq(x, y),
        _ => false,
    }
}

impl Index {
    /// Makes the index refuse records whose seal does not verify with `verifier`. Set once,
    /// before the store's first load.
    pub fn set_verifier(&self, verifier: Verifier) {
        let _ = self.inner.verifier.set(verifier);
    }

    /// Whether seals are checked.
    pub fn checks_seals(&self) -> bool {
        self.inner.verifier.get().is_some()
    }

    /// Parses a record Secret and, when seals are checked, verifies its seal.
    pub fn check(&self, secret: &Secret) -> Checked {
        match self.inner.verifier.get() {
            None => Checked {
                parsed: KeyRecord::from_secret(secret),
                seq: None,
            },
            Some(v) => match v.check(secret) {
                Ok((record, seq)) => Checked {
                    parsed: Ok(record),
                    seq: Some(seq),
                },
                Err(e) => Checked {
                    parsed: Err(e),
                    seq: None,
                },
            },
        }
    }

    fn marks(&self) -> std::sync::MutexGuard<'_, Marks> {
        self.inner
            .marks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// What a watched record becomes in the index; `None`: skip it (history older than a
    /// direct read). Updates the key's mark.
    fn watched_entry(&self, marks: &mut Marks, k: &IdKey, c: Checked) -> Option<Entry> {
        let mark = marks.get(k).copied();
        match (c.parsed, c.seq) {
            (Ok(record), Some(seq)) => match mark {
                Some(m) if seq < m.seq && m.from_read => None,
                Some(m) if seq < m.seq => Some(self.entry_for(
                    k,
                    Err(RecordError::Seal(SealFailure::Rollback {
                        seen: m.seq,
                        got: seq,
                    })),
                )),
                _ => {
                    marks.insert(
                        *k,
                        Mark {
                            seq,
                            from_read: false,
                        },
                    );
                    Some(self.entry_for(k, Ok(record)))
                }
            },
            (Err(_), _) if mark.is_some_and(|m| m.from_read) => None,
            (parsed, _) => Some(self.entry_for(k, parsed)),
        }
    }

    /// Applies a record delivered by the watch (see the module doc).
    pub fn upsert_watched(&self, k: IdKey, c: Checked) {
        let mut marks = self.marks();
        if let Some(entry) = self.watched_entry(&mut marks, &k, c) {
            // Under the marks lock: a direct read cannot slip in between check and insert.
            self.insert(k, entry);
        }
    }

    /// The entry a re-list should hold for a watched record (the current one if the record
    /// is history older than a direct read).
    pub fn relisted_entry(&self, k: &IdKey, c: Checked) -> Option<Entry> {
        let mut marks = self.marks();
        self.watched_entry(&mut marks, k, c).or_else(|| self.get(k))
    }

    /// Applies a usable record read directly from the API server, unless the index moved on
    /// meanwhile: `seen` is what [`Index::get`] returned before the read. With seals, a seq
    /// not above the key's mark is not applied either. Returns whether it was applied.
    pub fn upsert_read(
        &self,
        k: IdKey,
        record: KeyRecord,
        seq: Option<u64>,
        seen: Option<&Entry>,
    ) -> bool {
        let mut marks = self.marks();
        if !same_entry(self.get(&k).as_ref(), seen) {
            return false;
        }
        if let Some(seq) = seq {
            if marks.get(&k).is_some_and(|m| m.seq >= seq) {
                return false;
            }
            marks.insert(
                k,
                Mark {
                    seq,
                    from_read: true,
                },
            );
        }
        let entry = self.entry_for(&k, Ok(record));
        self.insert(k, entry);
        true
    }

    /// Drops `k`'s mark; the caller removes the entry while holding the returned guard.
    pub(super) fn forget_mark(&self, k: &IdKey) -> std::sync::MutexGuard<'_, Marks> {
        let mut marks = self.marks();
        marks.remove(k);
        marks
    }

    /// Keeps only the marks of keys `keep` accepts; the caller swaps its entries in while
    /// holding the returned guard.
    pub(super) fn retain_marks(
        &self,
        keep: impl Fn(&IdKey) -> bool,
    ) -> std::sync::MutexGuard<'_, Marks> {
        let mut marks = self.marks();
        marks.retain(|k, _| keep(k));
        marks
    }
}

#[cfg(test)]
mod tests;
