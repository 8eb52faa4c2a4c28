//! Last use of each key, recorded by the webhook: in the key's Lease (kube store, see
//! [`crate::lastuse`]) or as the `keygate.dev/last-used` annotation of its file (dir store).
//!
//! [`Usage::used`] is on the request path: it only notes `(id, time)` in a shared map under a
//! short lock (O(1), never blocks on I/O; past [`QUEUE`] keys noted and not yet taken, the event
//! is dropped and counted). The background task takes the map on each tick: a channel woke
//! that task for every review, a context switch per request that cost more than the review
//! (issue 16). The task keeps the latest time per key and writes it at most once per key per
//! interval: the key's Lease (kube; the record itself is never written) or an atomic rewrite
//! of the record file (dir). A failed or slow write is logged and counted; it never touches a review.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::fsutil;
use crate::keystore::DirKeys;
use crate::record::{ANNOTATION_LAST_USED, file};
use crate::token::IdKey;

/// Something the webhook tells about each successful authentication.
pub trait UsageSink: Send + Sync {
    /// Called on the request path: must not block or allocate much.
    fn used(&self, id: IdKey, at: Timestamp);
}

/// Keys noted between two ticks of the writer before new ones are dropped.
const QUEUE: usize = 64 * 1024;
/// Longest a single write may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("cannot write the key's Lease: {}", crate::causes::Chain(.0))]
    Kube(kube::Error),
    #[error("no record file for the key")]
    NoFile,
    #[error("{0}")]
    Dir(String),
    #[error("write took longer than {WRITE_TIMEOUT:?}")]
    Timeout,
}

// By hand, not `#[from]`: the message holds the cause, so it must not be a `source` too.
impl From<kube::Error> for UsageError {
    fn from(e: kube::Error) -> Self {
        UsageError::Kube(e)
    }
}

/// Where last-use times are written.
#[derive(Clone)]
pub enum UsageWriter {
    Kube(Box<Api<Lease>>),
    Dir(DirKeys),
}

impl UsageWriter {
    pub async fn write(&self, id: IdKey, at: Timestamp) -> Result<(), UsageError> {
        let fut = async {
            match self {
                UsageWriter::Kube(api) => Ok(crate::lastuse::write(api, id, at).await?),
                UsageWriter::Dir(d) => {
                    let d = d.clone();
                    tokio::task::spawn_blocking(move || write_file(&d, id, at))
                        .await
                        .map_err(|e| UsageError::Dir(e.to_string()))?
                }
            }
        };
        tokio::time::timeout(WRITE_TIMEOUT, fut)
            .await
            .map_err(|_| UsageError::Timeout)?
    }
}

/// Read-modify-write of the record file, skipped if it already says `at` or later.
fn write_file(d: &DirKeys, id: IdKey, at: Timestamp) -> Result<(), UsageError> {
    // Under the directory lock: a `keys` command writing meanwhile is never overwritten.
    let _lock = d.lock().map_err(|e| UsageError::Dir(e.to_string()))?;
    let (path, mut secret) = d
        .find(&id)
        .map_err(|e| UsageError::Dir(e.to_string()))?
        .pop()
        .ok_or(UsageError::NoFile)?;
    // Stamp the file, then check it still holds what was read: the stamp then names the
    // content the new version is based on, and the replace below refuses if it changes again.
    let stamp = fsutil::FileStamp::of(&path).map_err(|_| UsageError::NoFile)?;
    if file::read(&path).ok().as_ref() != Some(&secret) {
        return Err(UsageError::Dir(
            "the record changed while being read; will retry on next use".into(),
        ));
    }
    let annotations = secret
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    let newer = annotations
        .get(ANNOTATION_LAST_USED)
        .and_then(|v| v.parse::<Timestamp>().ok())
        .is_some_and(|t| t >= at);
    if newer {
        return Ok(());
    }
    annotations.insert(ANNOTATION_LAST_USED.to_owned(), at.to_string());
    let bytes = file::encode(&path, &secret).map_err(|e| UsageError::Dir(e.to_string()))?;
    // `rm` and editors do not take keygate's lock: never resurrect a file removed meanwhile.
    fsutil::replace_if_unchanged(&path, &bytes, &stamp).map_err(|e| UsageError::Dir(e.to_string()))
}

/// Counters of the last-use writer.
#[derive(Debug, Default)]
pub struct UsageStats {
    pub written: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
}

/// The webhook's [`UsageSink`]: notes events for the background writer.
pub struct Usage {
    /// Latest use per key since the writer last took the map.
    noted: Mutex<HashMap<IdKey, Timestamp>>,
    pub stats: Arc<UsageStats>,
}

impl UsageSink for Usage {
    fn used(&self, id: IdKey, at: Timestamp) {
        let mut noted = self.noted.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = noted.get_mut(&id) {
            *t = (*t).max(at);
        } else if noted.len() < QUEUE {
            noted.insert(id, at);
        } else {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Usage {
    /// Moves what was noted into `pending`, keeping the latest time per key.
    fn take_into(&self, pending: &mut HashMap<IdKey, Timestamp>) {
        let noted = std::mem::take(&mut *self.noted.lock().unwrap_or_else(PoisonError::into_inner));
        for (id, at) in noted {
            let e = pending.entry(id).or_insert(at);
            *e = (*e).max(at);
        }
    }
}

struct State {
    pending: HashMap<IdKey, Timestamp>,
    written: HashMap<IdKey, Instant>,
}

impl State {
    /// Takes the pending keys whose last write is at least `interval` ago (all when `all`).
    fn due(&mut self, interval: Duration, all: bool) -> Vec<(IdKey, Timestamp)> {
        let now = Instant::now();
        let ready: Vec<IdKey> = self
            .pending
            .keys()
            .filter(|id| {
                all || self
                    .written
                    .get(*id)
                    .is_none_or(|t| now.duration_since(*t) >= interval)
            })
            .copied()
            .collect();
        ready
            .into_iter()
            .filter_map(|id| self.pending.remove_entry(&id))
            .inspect(|(id, _)| {
                self.written.insert(*id, now);
            })
            .collect()
    }
}

async fn write_batch(writer: &UsageWriter, batch: Vec<(IdKey, Timestamp)>, stats: &UsageStats) {
    for (id, at) in batch {
        match writer.write(id, at).await {
            Ok(()) => {
                stats.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(key_id = %id, error = %e, "recording last use failed; will retry on next use");
            }
        }
    }
}

/// Starts the writer. When `stop` is cancelled it writes what is pending (bounded by the write
/// timeout) and ends; await the handle to let it finish.
pub fn spawn(
    writer: UsageWriter,
    interval: Duration,
    stop: CancellationToken,
) -> (Arc<Usage>, JoinHandle<()>) {
    let stats = Arc::new(UsageStats::default());
    let usage = Arc::new(Usage {
        noted: Mutex::new(HashMap::new()),
        stats: stats.clone(),
    });
    let noted = usage.clone();
    let tick = (interval / 10).clamp(Duration::from_millis(50), Duration::from_secs(10));
    let handle = tokio::spawn(async move {
        let mut state = State {
            pending: HashMap::new(),
            written: HashMap::new(),
        };
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut flushing: Option<JoinHandle<()>> = None;
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    noted.take_into(&mut state.pending);
                    if flushing.as_ref().is_some_and(|h| !h.is_finished()) {
                        continue;
                    }
                    let batch = state.due(interval, false);
                    if !batch.is_empty() {
                        let (w, s) = (writer.clone(), stats.clone());
                        flushing = Some(tokio::spawn(async move { write_batch(&w, batch, &s).await }));
                    }
                }
                _ = stop.cancelled() => break,
            }
        }
        if let Some(h) = flushing {
            let _ = h.await;
        }
        noted.take_into(&mut state.pending);
        let batch = state.due(interval, true);
        if !batch.is_empty() {
            tracing::info!(keys = batch.len(), "recording last use before exit");
            write_batch(&writer, batch, &stats).await;
        }
    });
    (usage, handle)
}
