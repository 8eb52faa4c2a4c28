//! Keys that work at once: when a review finds no usable record for a well-formed token (an ID
//! the index does not know, a secret matching neither hash, or a record still unsealed), the
//! webhook reads the record `keygate-<id>` directly before denying, because kube-apiserver
//! would cache that denial for its whole webhook cache TTL. A record created or regenerated a
//! moment ago, not yet delivered by the watch, then authenticates on first use, at every replica.
//!
//! The reads are bounded three ways, so a flood of unknown IDs or wrong secrets cannot become
//! a flood of API calls: a token bucket (`--read-through-per-second`), a cap on reads in flight,
//! and a negative cache (bounded, short TTL) of IDs without a record and of (ID, secret)
//! pairs that did not match after a read. A refused read is a denial exactly as before.
//! A record read is parsed and seal-checked like a watched one, and applied to the index only
//! if the index did not move meanwhile (see `Index::upsert_read`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use tokio::sync::Semaphore;

use crate::index::{Index, same_entry};
use crate::token::{IdKey, SecretHash};

/// Longest a direct read may take before the review answers from what the index has.
pub const READ_TIMEOUT: Duration = Duration::from_secs(1);
/// Reads in flight at once.
pub const MAX_IN_FLIGHT: usize = 8;
/// Negative-cache size and lifetime: long enough to absorb a flood, short enough that a key
/// created just after a failed guess still works within moments.
pub const NEGATIVE_ENTRIES: u64 = 10_000;
pub const NEGATIVE_TTL: Duration = Duration::from_secs(3);

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct ReadStats {
    /// Reads that found a usable record and applied it.
    pub hits: AtomicU64,
    /// Reads that found no record, a refused one, or one whose secret still did not match.
    pub misses: AtomicU64,
    /// Reads not made: over the rate or the in-flight cap.
    pub limited: AtomicU64,
    /// Reads not made: the negative cache already knew the answer.
    pub cached: AtomicU64,
    /// Reads that failed or timed out.
    pub failed: AtomicU64,
}

/// A token bucket: `rate` per second, bursts of `rate`.
struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn take(&mut self, now: Instant) -> bool {
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Negative-cache key: the ID, and a prefix of the secret's hash (empty: any secret, the ID
/// has no usable record).
type NegKey = (IdKey, [u8; 8]);
const ANY_SECRET: [u8; 8] = [0; 8];

fn prefix(hash: &SecretHash) -> [u8; 8] {
    let text = hash.to_string();
    let mut out = [0u8; 8];
    // `sha256:` then hex: the first 8 bytes of the hex are enough to tell guesses apart.
    let hex = text.as_bytes().get(7..15).unwrap_or_default();
    out[..hex.len()].copy_from_slice(hex);
    out
}

/// Direct reads of key records for the webhook.
pub struct ReadThrough {
    api: Api<Secret>,
    index: Index,
    bucket: Mutex<Bucket>,
    in_flight: Semaphore,
    negative: moka::sync::Cache<NegKey, ()>,
    pub stats: Arc<ReadStats>,
}

impl ReadThrough {
    /// `api`: Secrets in the key namespace; `per_second` > 0.
    pub fn new(api: Api<Secret>, index: Index, per_second: u32) -> Self {
        let rate = f64::from(per_second.max(1));
        ReadThrough {
            api,
            index,
            bucket: Mutex::new(Bucket {
                rate,
                tokens: rate,
                last: Instant::now(),
            }),
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
            negative: moka::sync::Cache::builder()
                .max_capacity(NEGATIVE_ENTRIES)
                .time_to_live(NEGATIVE_TTL)
                .build(),
            stats: Arc::default(),
        }
    }

    /// Tries to bring the record of `id` into the index, for a presented secret whose hash is
    /// `hash`. Returns whether the index changed, so the review should decide again.
    pub async fn read(&self, id: IdKey, hash: &SecretHash) -> bool {
        let pair = (id, prefix(hash));
        if self.negative.contains_key(&(id, ANY_SECRET)) || self.negative.contains_key(&pair) {
            self.stats.cached.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let Ok(_permit) = self.in_flight.try_acquire() else {
            self.stats.limited.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let allowed = self
            .bucket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(Instant::now());
        if !allowed {
            self.stats.limited.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let seen = self.index.get(&id);
        let got = tokio::time::timeout(READ_TIMEOUT, self.api.get_opt(&id.record_name())).await;
        let secret = match got {
            Ok(Ok(Some(s))) => s,
            Ok(Ok(None)) => {
                self.miss((id, ANY_SECRET));
                return false;
            }
            Ok(Err(e)) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(key_id = %id, error = %crate::causes::chain(&e), "reading a key record directly failed; answering from the index");
                return false;
            }
            Err(_) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(key_id = %id, timeout_ms = READ_TIMEOUT.as_millis() as u64, "reading a key record directly timed out; answering from the index");
                return false;
            }
        };
        let checked = self.index.check(&secret);
        let record = match checked.parsed {
            Ok(r) => r,
            // Refused records reach the index through the watch, which logs why.
            Err(_) => {
                self.miss((id, ANY_SECRET));
                return false;
            }
        };
        // Applied only for the secret presented: a wrong guess never writes to the index.
        let matches = record.secret_hash.ct_eq(hash)
            || record.previous.as_ref().is_some_and(|p| p.hash.ct_eq(hash));
        if matches
            && self
                .index
                .upsert_read(id, record, checked.seq, seen.as_ref())
        {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        // Another secret, or nothing newer than the index holds (an older copy brought back):
        // remembered, so repeats do not read again.
        self.miss(pair);
        // The watch may have moved the index meanwhile.
        !same_entry(seen.as_ref(), self.index.get(&id).as_ref())
    }

    fn miss(&self, key: NegKey) {
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        self.negative.insert(key, ());
    }
}

#[cfg(test)]
mod tests;
