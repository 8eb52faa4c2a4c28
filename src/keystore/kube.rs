//! Key records as Secrets in the key namespace, written with the caller's credentials.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};

use super::{KeyStoreError, Refused, Stored, parse_stored, render};
use crate::record::{KeyRecord, SECRET_TYPE};
use crate::token::IdKey;

#[derive(Debug, thiserror::Error)]
pub enum KubeKeysError {
    #[error("forbidden to {verb} {resource} in namespace {namespace}: {message}. {hint}")]
    Forbidden {
        verb: &'static str,
        resource: &'static str,
        namespace: String,
        message: String,
        hint: String,
    },
    #[error(
        "namespace {0} not found; create it (kubectl create namespace {0}) or pick another with --namespace"
    )]
    NoNamespace(String),
    #[error(
        "cannot {verb} {resource} in namespace {namespace}: {}{hint}",
        crate::causes::Chain(&**.error)
    )]
    Api {
        verb: &'static str,
        resource: &'static str,
        namespace: String,
        error: Box<kube::Error>,
        hint: String,
    },
}

/// What the caller was doing when the API server answered with an error.
#[derive(Debug, Clone, Copy)]
pub struct Op {
    pub verb: &'static str,
    pub resource: &'static str,
}

pub(crate) fn status(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Turns an API error into one that says what to do next.
pub fn explain(op: Op, namespace: &str, e: kube::Error) -> KubeKeysError {
    match &e {
        kube::Error::Api(s) if s.code == 403 => KubeKeysError::Forbidden {
            verb: op.verb,
            resource: op.resource,
            namespace: namespace.to_owned(),
            message: s.message.clone(),
            hint: if op.resource == "clusterrolebindings" {
                "A key's role can never exceed its creator's: keygate dry-runs a \
                 ClusterRoleBinding of that role to the key's user and RBAC refused it. You need \
                 `create` on clusterrolebindings (ClusterRole keygate:key-manager:grant) and must \
                 hold every permission of the role cluster-wide. Otherwise ask a cluster admin to \
                 create the key, choose a smaller --role, or scope it with --namespace-scope"
                    .to_owned()
            } else if op.resource == "rolebindings" {
                format!(
                    "To scope a key to namespace {namespace} you need `create` on rolebindings \
                     there and must hold every permission of the key's role in it yourself \
                     (Kubernetes refuses to let you grant more than you have)"
                )
            } else {
                format!(
                    "Ask a cluster admin for a Role in {namespace} granting {verb} on \
                     {resource} (keygate keys needs get, list, create, update and delete on \
                     secrets there), or use another --namespace or --context",
                    verb = op.verb,
                    resource = op.resource
                )
            },
        },
        kube::Error::Api(s)
            if s.code == 404 && op.verb == "create" && s.message.contains("namespace") =>
        {
            KubeKeysError::NoNamespace(namespace.to_owned())
        }
        _ => KubeKeysError::Api {
            verb: op.verb,
            resource: op.resource,
            namespace: namespace.to_owned(),
            hint: match &e {
                kube::Error::Api(_) => String::new(),
                _ => format!(" ({})", crate::causes::kube_fix(&e)),
            },
            error: Box::new(e),
        },
    }
}

const SECRETS: &str = "secrets";

/// The kube store, for writing.
#[derive(Clone)]
pub struct KubeKeys {
    pub client: Client,
    pub namespace: String,
    /// Seals every record written (the AccessKey API with `--record-signing-key`).
    sealer: Option<std::sync::Arc<crate::seal::Sealer>>,
}

impl KubeKeys {
    pub fn new(client: Client, namespace: impl Into<String>) -> Self {
        KubeKeys {
            client,
            namespace: namespace.into(),
            sealer: None,
        }
    }

    /// Seals every record this store writes from now on.
    pub fn with_sealer(mut self, sealer: Option<std::sync::Arc<crate::seal::Sealer>>) -> Self {
        self.sealer = sealer;
        self
    }

    pub fn api(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn err(&self, verb: &'static str, e: kube::Error) -> KeyStoreError {
        explain(
            Op {
                verb,
                resource: SECRETS,
            },
            &self.namespace,
            e,
        )
        .into()
    }

    pub async fn list(&self) -> Result<(Vec<Stored>, Refused), KubeKeysError> {
        let lp = ListParams::default().fields(&format!("type={SECRET_TYPE}"));
        let list = self.api().list(&lp).await.map_err(|e| {
            explain(
                Op {
                    verb: "list",
                    resource: SECRETS,
                },
                &self.namespace,
                e,
            )
        })?;
        let used = self.last_use_all().await;
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        for secret in list.items {
            match KeyRecord::from_secret(&secret) {
                Ok(mut record) => {
                    let lease = used.get(&record.id.key()).copied();
                    record.last_used = record.last_used.max(lease);
                    ok.push(Stored { record, secret })
                }
                Err(e) => bad.push((
                    secret.metadata.name.clone().unwrap_or_default(),
                    e.to_string(),
                )),
            }
        }
        ok.sort_by_key(|a| a.record.created);
        Ok((ok, bad))
    }

    pub async fn get(&self, id: &IdKey) -> Result<Stored, KeyStoreError> {
        match self.api().get_opt(&id.record_name()).await {
            Ok(Some(s)) => parse_stored(id, s),
            Ok(None) => Err(KeyStoreError::NotFound(id.to_string())),
            Err(e) => Err(self.err("get", e)),
        }
    }

    /// Creates the record Secret, with extra annotations (e.g. where its consumer Secret is).
    pub async fn create_with(
        &self,
        record: &KeyRecord,
        annotations: BTreeMap<String, String>,
    ) -> Result<Stored, KeyStoreError> {
        let id = record.id.key();
        let mut secret = render(record, &self.namespace, None);
        if !annotations.is_empty() {
            secret
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .extend(annotations);
        }
        match self.api().create(&PostParams::default(), &secret).await {
            Ok(s) => parse_stored(&id, self.seal_created(&id, s).await?),
            Err(e) if status(&e) == Some(409) => Err(KeyStoreError::Duplicate(id.to_string())),
            Err(e) => Err(self.err("create", e)),
        }
    }

    /// Seals `stored` (just created, so it has its uid) and writes the seal. On failure the
    /// unsealed record is deleted again: it could never authenticate, and it must not linger.
    async fn seal_created(&self, id: &IdKey, mut stored: Secret) -> Result<Secret, KeyStoreError> {
        let Some(sealer) = &self.sealer else {
            return Ok(stored);
        };
        let name = id.record_name();
        let sealed = match sealer.seal(&mut stored, None) {
            Ok(_) => self
                .api()
                .replace(&name, &PostParams::default(), &stored)
                .await
                .map_err(|e| self.err("update", e)),
            Err(e) => Err(KeyStoreError::Seal(e)),
        };
        if sealed.is_err() {
            let _ = self.api().delete(&name, &DeleteParams::default()).await;
        }
        sealed
    }

    pub async fn create(&self, record: &KeyRecord) -> Result<Stored, KeyStoreError> {
        self.create_with(record, BTreeMap::new()).await
    }

    pub async fn update(&self, old: &Stored, record: &KeyRecord) -> Result<Stored, KeyStoreError> {
        let id = old.record.id.key();
        let mut secret = render(record, &self.namespace, Some(&old.secret));
        if let Some(sealer) = &self.sealer {
            // The stored uid binds the seal to this object; the seq grows past the old one's.
            secret.metadata.uid = old.secret.metadata.uid.clone();
            sealer
                .seal(&mut secret, Some(&old.secret))
                .map_err(KeyStoreError::Seal)?;
        }
        let name = id.record_name();
        match self
            .api()
            .replace(&name, &PostParams::default(), &secret)
            .await
        {
            Ok(s) => parse_stored(&id, s),
            Err(e) if status(&e) == Some(409) => Err(KeyStoreError::Conflict(id.to_string())),
            Err(e) if status(&e) == Some(404) => Err(KeyStoreError::NotFound(id.to_string())),
            Err(e) => Err(self.err("update", e)),
        }
    }

    /// Deletes the record Secret; returns it if it still parsed.
    pub async fn delete(&self, id: &IdKey) -> Result<Option<Stored>, KeyStoreError> {
        let secret = match self.api().get_opt(&id.record_name()).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(KeyStoreError::NotFound(id.to_string())),
            Err(e) => return Err(self.err("get", e)),
        };
        if secret.type_.as_deref() != Some(SECRET_TYPE) {
            return Err(KeyStoreError::NotFound(id.to_string()));
        }
        match self
            .api()
            .delete(&id.record_name(), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(e) if status(&e) == Some(404) => {
                return Err(KeyStoreError::NotFound(id.to_string()));
            }
            Err(e) => return Err(self.err("delete", e)),
        }
        Ok(KeyRecord::from_secret(&secret)
            .ok()
            .map(|record| Stored { record, secret }))
    }

    /// Last use of every key from their Leases (one list). Part 1 records keep theirs in an
    /// annotation, which the caller merges; a caller not allowed to list Leases sees those only.
    async fn last_use_all(&self) -> HashMap<IdKey, Timestamp> {
        let api = Api::namespaced(self.client.clone(), &self.namespace);
        crate::lastuse::read_all(&api).await.unwrap_or_else(|e| {
            tracing::debug!(error = %crate::causes::chain(&e), "cannot list last-use Leases; showing the records' own");
            HashMap::new()
        })
    }

    /// Last use of one key from its Lease, if the caller may read it.
    pub async fn last_use(&self, id: &IdKey) -> Option<Timestamp> {
        let api = Api::namespaced(self.client.clone(), &self.namespace);
        crate::lastuse::read(&api, id).await.ok().flatten()
    }

    /// The caller's username from a SelfSubjectReview, if the API server offers it.
    pub async fn whoami(&self) -> Option<String> {
        crate::kubeclient::whoami(&self.client).await
    }
}
