//! The kube store: Secrets of type `keygate.dev/access-key` in the key namespace, followed with
//! kube-runtime's watcher.
//!
//! The watcher lists, then watches; after a watch gap (API server restart, expired resource
//! version) it lists again. A re-list is collected in full and swapped in at `InitDone`, so keys
//! keep working from the cache during the gap and a key deleted meanwhile is dropped.
//! The webhook needs only `list` and `watch` on Secrets in that namespace.

use std::collections::HashMap;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};

use super::{Index, Parsed};
use crate::record::{KeyRecord, SECRET_TYPE, id_from_record_name};

/// Applies watcher events to the index.
pub struct Applier {
    index: Index,
    relist: Option<HashMap<String, Parsed>>,
}

fn parse(secret: &Secret) -> Option<(String, Parsed)> {
    let name = secret.metadata.name.as_deref().unwrap_or_default();
    match id_from_record_name(name) {
        Some(id) => Some((id.to_owned(), KeyRecord::from_secret(secret))),
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
                if let (Some(buf), Some((id, p))) = (self.relist.as_mut(), parse(&s)) {
                    buf.insert(id, p);
                }
            }
            Event::InitDone => {
                let records = self.relist.take().unwrap_or_default();
                tracing::info!(keys = records.len(), "key Secrets listed");
                self.index.replace_all(records);
            }
            Event::Apply(s) => {
                if let Some((id, p)) = parse(&s) {
                    self.index.upsert(&id, p);
                }
            }
            Event::Delete(s) => {
                if let Some(id) = s.metadata.name.as_deref().and_then(id_from_record_name) {
                    self.index.remove(id);
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

/// Follows the key Secrets until the stream ends (it does not, short of a panic).
pub async fn run(client: Client, namespace: String, index: Index, errors: impl Fn()) {
    let mut applier = Applier::new(index);
    let stream = watch(client, &namespace);
    futures::pin_mut!(stream);
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(ev) => applier.apply(ev),
            Err(e) => {
                errors();
                tracing::warn!(namespace, error = %e, "watching key Secrets failed; serving cached keys and retrying");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyId, SecretHash};
    use crate::review::IdentityPolicy;
    use crate::store::Entry;

    fn secret(id: &KeyId) -> Secret {
        KeyRecord::new(id.clone(), SecretHash::of(b"s"), "n").to_secret("keygate-system")
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
        assert!(index.get(&k1.lowercase()).is_some());
        a.apply(Event::InitDone);
        assert!(index.get(&k1.lowercase()).is_none());
        assert!(index.get(&k2.lowercase()).is_some());
    }

    #[test]
    fn apply_and_delete_take_effect() {
        let index = Index::new(IdentityPolicy::default());
        let mut a = Applier::new(index.clone());
        let k = KeyId::generate();
        a.apply(Event::Apply(secret(&k)));
        assert!(matches!(index.get(&k.lowercase()), Some(Entry::Key(_))));
        let mut bad = secret(&k);
        bad.string_data
            .as_mut()
            .unwrap()
            .insert("groups".into(), "system:masters".into());
        a.apply(Event::Apply(bad));
        assert!(matches!(index.get(&k.lowercase()), Some(Entry::Invalid(_))));
        a.apply(Event::Delete(secret(&k)));
        assert!(index.get(&k.lowercase()).is_none());
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
}
