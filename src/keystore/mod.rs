//! Writing key records: one API over both stores (list, get, create, update, delete), and
//! which store that is ([`StoreSpec`], `--store`).
//!
//! The dir store keeps one Secret document per file (`keygate-<id lower>.yaml`, written
//! atomically); the kube store keeps one Secret per key in the key namespace. Updates are
//! optimistic: a record changed by someone else between read and write (resourceVersion in kube,
//! file content in dir) is re-read and the change re-applied, see [`KeyStore::modify`].

pub mod dir;
pub mod kube;
pub mod lifecycle;
pub mod provision;
mod spec;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::record::{KeyRecord, RecordError};
use crate::token::{IdKey, TokenError};

pub use self::dir::DirKeys;
pub use self::kube::KubeKeys;
pub use self::spec::{StoreSpec, StoreSpecError, in_cluster};

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("{0}; see `keygate keys list`")]
    BadId(TokenError),
    #[error("key {0} not found; see `keygate keys list` for the keys in this store")]
    NotFound(String),
    #[error(
        "a key with ID {0} (compared in lowercase) already exists; run the command again to get a new ID"
    )]
    Duplicate(String),
    #[error("key {0} kept changing while being updated; run the command again")]
    Conflict(String),
    #[error("the record of key {id} is invalid: {reason}; fix it or delete the key")]
    Invalid { id: String, reason: RecordError },
    #[error(transparent)]
    Dir(#[from] dir::DirKeysError),
    #[error(transparent)]
    Kube(#[from] kube::KubeKeysError),
    #[error(transparent)]
    Seal(crate::seal::SealError),
}

// By hand, not `#[from]`: the message already holds the cause, which must not be a `source`
// too (a cause chain would print it twice).
impl From<TokenError> for KeyStoreError {
    fn from(e: TokenError) -> Self {
        KeyStoreError::BadId(e)
    }
}

/// Records that could not be used, as (file or Secret name, reason).
pub type Refused = Vec<(String, String)>;

/// A record as read, with what is needed to write it back safely.
#[derive(Debug, Clone)]
pub struct Stored {
    pub record: KeyRecord,
    /// The Secret as stored (metadata kept on update: labels, annotations, resourceVersion).
    pub secret: Secret,
}

/// The Secret to write for `record`, keeping the labels and annotations of `base` (if any).
pub fn render(record: &KeyRecord, namespace: &str, base: Option<&Secret>) -> Secret {
    let mut s = record.to_secret(namespace);
    if let Some(base) = base {
        let m = &base.metadata;
        for (src, dst) in [
            (&m.labels, &mut s.metadata.labels),
            (&m.annotations, &mut s.metadata.annotations),
        ] {
            if let Some(src) = src {
                let dst = dst.get_or_insert_with(Default::default);
                for (k, v) in src {
                    dst.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
        // Everything else (resourceVersion, uid, owner references, finalizers) as stored.
        s.metadata = ObjectMeta {
            name: s.metadata.name.take(),
            namespace: m.namespace.clone().or(s.metadata.namespace.take()),
            labels: s.metadata.labels.take(),
            annotations: s.metadata.annotations.take(),
            ..m.clone()
        };
    }
    s
}

pub(crate) fn parse_stored(id: &IdKey, secret: Secret) -> Result<Stored, KeyStoreError> {
    let record = KeyRecord::from_secret(&secret).map_err(|reason| KeyStoreError::Invalid {
        id: id.to_string(),
        reason,
    })?;
    if record.id.key() != *id {
        return Err(KeyStoreError::NotFound(id.to_string()));
    }
    Ok(Stored { record, secret })
}

/// Where key records are written.
pub enum KeyStore {
    Dir(DirKeys),
    Kube(KubeKeys),
}

/// How often [`KeyStore::modify`] re-reads and retries after a concurrent change.
const ATTEMPTS: usize = 5;

impl KeyStore {
    /// Every valid record; invalid ones are reported in the second list as (name, reason).
    pub async fn list(&self) -> Result<(Vec<Stored>, Refused), KeyStoreError> {
        match self {
            KeyStore::Dir(d) => Ok(d.list()?),
            KeyStore::Kube(k) => Ok(k.list().await?),
        }
    }

    pub async fn get(&self, id: &IdKey) -> Result<Stored, KeyStoreError> {
        match self {
            KeyStore::Dir(d) => d.get(id),
            KeyStore::Kube(k) => k.get(id).await,
        }
    }

    /// [`KeyStore::get`] for showing: with the kube store, last use also from the key's Lease.
    pub async fn get_shown(&self, id: &IdKey) -> Result<Stored, KeyStoreError> {
        let mut stored = self.get(id).await?;
        stored.record.last_used = stored.record.last_used.max(self.last_use(id).await);
        Ok(stored)
    }

    /// Last use kept apart from the record: the key's Lease in the kube store (written by the
    /// webhooks, which may not write records); nothing in the dir store, whose records carry it.
    pub async fn last_use(&self, id: &IdKey) -> Option<Timestamp> {
        match self {
            KeyStore::Dir(_) => None,
            KeyStore::Kube(k) => k.last_use(id).await,
        }
    }

    /// Writes a new record; fails with [`KeyStoreError::Duplicate`] if the ID exists.
    pub async fn create(&self, record: &KeyRecord) -> Result<Stored, KeyStoreError> {
        match self {
            KeyStore::Dir(d) => d.create(record),
            KeyStore::Kube(k) => k.create(record).await,
        }
    }

    /// Replaces `old` with `record`; [`KeyStoreError::Conflict`] if it changed since read.
    pub async fn update(&self, old: &Stored, record: &KeyRecord) -> Result<Stored, KeyStoreError> {
        match self {
            KeyStore::Dir(d) => d.update(old, record),
            KeyStore::Kube(k) => k.update(old, record).await,
        }
    }

    /// Reads, applies `change`, writes; on a concurrent change, reads again and retries.
    pub async fn modify(
        &self,
        id: &IdKey,
        mut change: impl FnMut(&mut KeyRecord),
    ) -> Result<Stored, KeyStoreError> {
        for _ in 0..ATTEMPTS {
            let old = self.get(id).await?;
            let mut rec = old.record.clone();
            change(&mut rec);
            match self.update(&old, &rec).await {
                Err(KeyStoreError::Conflict(_)) => continue,
                other => return other,
            }
        }
        Err(KeyStoreError::Conflict(id.to_string()))
    }

    /// Removes the record. Returns it, unless it no longer parsed.
    pub async fn delete(&self, id: &IdKey) -> Result<Option<Stored>, KeyStoreError> {
        match self {
            KeyStore::Dir(d) => d.delete(id),
            KeyStore::Kube(k) => k.delete(id).await,
        }
    }
}
