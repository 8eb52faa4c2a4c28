//! The kube store: Secrets of type `keygate.dev/access-key` in the key namespace, followed with
//! kube-runtime's watcher.
//!
//! The watcher lists, then watches; after a watch gap (API server restart, expired resource
//! version) it lists again. A re-list is collected in full and swapped in at `InitDone`, so keys
//! keep working from the cache during the gap and a key deleted meanwhile is dropped.
//! The webhook needs only `list` and `watch` on Secrets in that namespace.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};

use super::{Entry, Index, StoreStopped};
use crate::causes::{self, Repeats};
use crate::record::SECRET_TYPE;
use crate::token::IdKey;

/// Applies watcher events to the index.
pub struct Applier {
    index: Index,
    /// Entries of a re-list in progress, prepared as they arrive (so the full `KeyRecord`s of
    /// a large listing are never all held at once), swapped in at `InitDone`.
    relist: Option<HashMap<IdKey, Entry>>,
}

/// The key a record Secret is for, by its name (the record's own ID is checked against it).
fn key_of(secret: &Secret) -> Option<IdKey> {
    let name = secret.metadata.name.as_deref().unwrap_or_default();
    match IdKey::from_record_name(name) {
        Some(id) => Some(id),
        None => {
            tracing::warn!(
                secret = name,
                "ignoring access-key Secret: its name is not keygate-<id lowercased>"
            );
            None
        }
    }
}

impl Applier {
    pub fn new(index: Index) -> Self {
        Applier {
            index,
            relist: None,
        }
    }

    pub fn apply(&mut self, event: Event<Secret>) {
        match event {
            Event::Init => self.relist = Some(HashMap::new()),
            Event::InitApply(s) => {
                if let (Some(buf), Some(k)) = (self.relist.as_mut(), key_of(&s))
                    && let Some(entry) = self.index.relisted_entry(&k, self.index.check(&s))
                {
                    buf.insert(k, entry);
                }
            }
            Event::InitDone => {
                let records = self.relist.take().unwrap_or_default();
                tracing::info!(keys = records.len(), "key Secrets listed");
                self.index.replace_entries(records);
            }
            Event::Apply(s) => {
                if let Some(k) = key_of(&s) {
                    self.index.upsert_watched(k, self.index.check(&s));
                }
            }
            Event::Delete(s) => {
                if let Some(k) = s.metadata.name.as_deref().and_then(IdKey::from_record_name) {
                    self.index.remove(&k);
                }
            }
        }
    }
}

/// The watch stream for key Secrets in `namespace`, with kube's default backoff on errors.
pub fn watch(
    client: Client,
    namespace: &str,
) -> impl Stream<Item = Result<Event<Secret>, watcher::Error>> {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    // The field selector keeps every other Secret (and its data) off the wire.
    let config = watcher::Config::default().fields(&format!("type={SECRET_TYPE}"));
    watcher::watcher(api, config).default_backoff()
}

/// How often a healthy watch confirms the cache is in sync (advancing
/// `keygate_store_last_sync_timestamp_seconds` even when no key changes).
pub const SYNC_CONFIRM: Duration = Duration::from_secs(15);

/// A watch failure is logged at once, the same failure again after this, then at doubling
/// intervals up to [`REPEAT_MAX`]; kube's backoff retries meanwhile (0.8 s doubling to 30 s).
pub const REPEAT_FIRST: Duration = Duration::from_secs(10);
pub const REPEAT_MAX: Duration = Duration::from_secs(300);

/// Follows the key Secrets until the stream ends (it does not, short of a panic; see [`ended`]).
/// `server` is the API server's URL, for the logs.
pub async fn run(
    client: Client,
    namespace: String,
    server: String,
    index: Index,
    errors: impl Fn(),
) {
    let stream = watch(client, &namespace);
    let at = Source {
        namespace: &namespace,
        server: &server,
    };
    follow(stream, at, index, errors, SYNC_CONFIRM).await;
}

/// Where the key Secrets are watched, for the logs.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub namespace: &'a str,
    pub server: &'a str,
}

/// Waits for the task running [`run`] (or [`follow`]) and says why it ended. The watch retries
/// errors with backoff forever, so any end, a panic included, means revocations have stopped.
pub async fn ended(task: tokio::task::JoinHandle<()>) -> StoreStopped {
    match task.await {
        Err(e) if e.is_panic() => StoreStopped::panicked("kube", &*e.into_panic()),
        // Finished or cancelled: either way nothing follows the Secrets any more.
        Ok(()) | Err(_) => StoreStopped::KubeEnded,
    }
}

/// Applies `stream` to the index. While the watch is healthy (its last item was an event, not
/// an error) the index is marked in sync every `confirm`, so the last-sync time only falls
/// behind, and staleness only grows, while the API server cannot be reached. After an outage
/// the watcher re-lists and the re-list (which drops keys deleted meanwhile) makes it healthy.
///
/// Each failure carries its whole cause chain and what to fix; identical failures in a row are
/// logged at growing intervals ([`REPEAT_FIRST`], doubling) with their count, not at each retry.
pub async fn follow(
    stream: impl Stream<Item = Result<Event<Secret>, watcher::Error>>,
    at: Source<'_>,
    index: Index,
    errors: impl Fn(),
    confirm: Duration,
) {
    let Source { namespace, server } = at;
    let mut repeats = Repeats::new(REPEAT_FIRST, REPEAT_MAX);
    let mut applier = Applier::new(index.clone());
    futures::pin_mut!(stream);
    let mut healthy = false;
    let mut ticker = tokio::time::interval(confirm);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ev = stream.next() => match ev {
                None => break,
                // `Init` starts each (re-)list attempt, before the API server has answered: it
                // says nothing about health (and resets kube's backoff, so a server that keeps
                // failing is retried about every second).
                Some(Ok(Event::Init)) => applier.apply(Event::Init),
                Some(Ok(ev)) => {
                    healthy = true;
                    if let Some(failures) = repeats.success() {
                        tracing::info!(namespace, server, failures, "watching key Secrets again");
                    }
                    applier.apply(ev);
                }
                Some(Err(e)) => {
                    healthy = false;
                    errors();
                    let error = causes::chain(&e);
                    if let Some(failures) = repeats.failure(&error, Instant::now()) {
                        tracing::warn!(
                            namespace,
                            server,
                            error,
                            fix = causes::kube_fix(&e),
                            failures,
                            "watching key Secrets failed; serving cached keys and retrying \
                             (the same failure is logged again at growing intervals)"
                        );
                    }
                }
            },
            _ = ticker.tick() => {
                if healthy && index.is_ready() {
                    index.mark_synced();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::secret;
    use crate::identity::IdentityPolicy;
    use crate::index::Entry;
    use crate::token::KeyId;

    const SOURCE: Source<'static> = Source {
        namespace: "ns",
        server: "https://127.0.0.1:6443/",
    };

    #[tokio::test]
    async fn the_end_of_the_watch_stream_or_a_panic_is_reported() {
        let index = Index::new(IdentityPolicy::default());
        let stream = futures::stream::iter([Ok(Event::Init), Ok(Event::InitDone)]);

        let task = tokio::spawn(follow(
            stream,
            SOURCE,
            index.clone(),
            || {},
            std::time::Duration::from_secs(15),
        ));
        let why = ended(task).await;
        assert!(matches!(why, StoreStopped::KubeEnded), "{why}");
        assert!(index.is_ready(), "the listing was applied before the end");

        let task = tokio::spawn(async { panic!("watch state corrupt") });
        let why = ended(task).await.to_string();
        assert_eq!(why, "the kube store panicked: watch state corrupt");
    }

    #[test]
    fn relist_replaces_the_index_and_drops_deleted_keys() {
        let index = Index::new(IdentityPolicy::default());
        let mut a = Applier::new(index.clone());
        let (k1, k2) = (KeyId::generate(), KeyId::generate());
        a.apply(Event::Init);
        a.apply(Event::InitApply(secret(&k1)));
        a.apply(Event::InitApply(secret(&k2)));
        assert!(!index.is_ready(), "not ready before the first full list");
        a.apply(Event::InitDone);
        assert!(index.is_ready());
        assert_eq!(index.len(), 2);

        // A watch gap: k1 was deleted meanwhile. Until InitDone the cache keeps serving.
        a.apply(Event::Init);
        a.apply(Event::InitApply(secret(&k2)));
        assert!(index.get(&k1.key()).is_some());
        a.apply(Event::InitDone);
        assert!(index.get(&k1.key()).is_none());
        assert!(index.get(&k2.key()).is_some());
    }

    #[test]
    fn apply_and_delete_take_effect() {
        let index = Index::new(IdentityPolicy::default());
        let mut a = Applier::new(index.clone());
        let k = KeyId::generate();
        a.apply(Event::Apply(secret(&k)));
        assert!(matches!(index.get(&k.key()), Some(Entry::Key(_))));
        let mut bad = secret(&k);
        bad.string_data
            .as_mut()
            .unwrap()
            .insert("groups".into(), "system:masters".into());
        a.apply(Event::Apply(bad));
        assert!(matches!(index.get(&k.key()), Some(Entry::Invalid(_))));
        a.apply(Event::Delete(secret(&k)));
        assert!(index.get(&k.key()).is_none());
    }

    #[test]
    fn secrets_with_foreign_names_are_ignored() {
        let index = Index::new(IdentityPolicy::default());
        let mut a = Applier::new(index.clone());
        let mut s = secret(&KeyId::generate());
        s.metadata.name = Some("something-else".into());
        a.apply(Event::Apply(s.clone()));
        a.apply(Event::Delete(s));
        assert_eq!(index.len(), 0);
    }

    /// Staleness: a healthy, idle watch keeps confirming the sync; errors stop it; the re-list
    /// after the outage resumes it and drops what was deleted meanwhile. Real time: last_sync
    /// has a resolution of one second.
    #[tokio::test]
    async fn last_sync_advances_only_while_the_watch_is_healthy() {
        use std::time::{Duration, Instant};
        use tokio::sync::mpsc;

        async fn until(limit: Duration, f: impl Fn() -> bool) -> bool {
            let deadline = Instant::now() + limit;
            while !f() {
                if Instant::now() > deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            true
        }

        let index = Index::new(IdentityPolicy::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let stream =
            futures::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|ev| (ev, rx)) },
            );
        let errors = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let e2 = errors.clone();

        let task = tokio::spawn(follow(
            stream,
            SOURCE,
            index.clone(),
            move || {
                e2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            },
            Duration::from_millis(100),
        ));
        let (k1, k2) = (KeyId::generate(), KeyId::generate());
        tx.send(Ok(Event::Init)).unwrap();
        tx.send(Ok(Event::InitApply(secret(&k1)))).unwrap();
        tx.send(Ok(Event::InitApply(secret(&k2)))).unwrap();
        tx.send(Ok(Event::InitDone)).unwrap();
        assert!(until(Duration::from_secs(2), || index.is_ready()).await);
        // Healthy and idle: the sync keeps being confirmed.
        let t0 = index.last_sync();
        assert!(
            until(Duration::from_secs(3), || index.last_sync() > t0).await,
            "healthy idle watch did not confirm the sync"
        );
        // The API server goes away: an error, then no confirmation; the cache keeps serving.
        tx.send(Err(watcher::Error::NoResourceVersion)).unwrap();
        assert!(
            until(Duration::from_secs(2), || errors
                .load(std::sync::atomic::Ordering::Relaxed)
                == 1)
            .await
        );
        let t1 = index.last_sync();
        assert!(
            !until(Duration::from_millis(2500), || index.last_sync() > t1).await,
            "sync confirmed while disconnected"
        );
        assert!(index.get(&k1.key()).is_some());
        // It comes back: the re-list drops k1 (deleted meanwhile) and confirmation resumes.
        tx.send(Ok(Event::Init)).unwrap();
        tx.send(Ok(Event::InitApply(secret(&k2)))).unwrap();
        tx.send(Ok(Event::InitDone)).unwrap();
        assert!(until(Duration::from_secs(2), || index.get(&k1.key()).is_none()).await);
        assert!(index.get(&k2.key()).is_some());
        let t2 = index.last_sync();
        assert!(until(Duration::from_secs(3), || index.last_sync() > t2).await);
        drop(tx);
        task.await.unwrap();
    }
}
