//! What a key brings into the cluster besides its record: a RoleBinding per scoped namespace
//! and an optional consumer Secret holding the token. Created with the caller's credentials (so
//! RBAC's escalation check bounds a key by its creator) and all-or-nothing: on any failure,
//! everything already made is deleted again.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};

use super::kube::{KubeKeys, KubeKeysError, Op, explain, status};
use super::{KeyStoreError, Stored};
use crate::record::{KeyRecord, LABEL_KEY_ID, LABEL_MANAGED_BY, MANAGER, Role, SECRET_TYPE};
use crate::token::IdKey;

/// Annotation on the record naming its consumer Secret (`namespace/name`), so delete finds it.
pub const ANNOTATION_CONSUMER: &str = "keygate.dev/consumer-secret";

/// A Secret for workloads that use the key: `token` and `server`.
#[derive(Debug, Clone)]
pub struct Consumer {
    pub name: String,
    pub namespace: String,
    /// The API server URL the workload should talk to.
    pub server: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{failed}: {cause}\n{undo}")]
pub struct ProvisionError {
    pub failed: String,
    pub cause: KeyStoreError,
    pub undo: String,
}

fn labels(id: &IdKey) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED_BY.to_owned(), MANAGER.to_owned()),
        (LABEL_KEY_ID.to_owned(), id.to_string()),
    ])
}

/// The ClusterRole a cluster-wide key's role reaches through keygate's ClusterRoleBindings
/// (`keygate:admin` → cluster-admin, `keygate:edit` → edit, `keygate:view` → view).
pub fn cluster_wide_role(role: Role) -> &'static str {
    match role {
        Role::Admin => "cluster-admin",
        Role::Edit => "edit",
        Role::View => "view",
    }
}

fn user_subject(username: &str) -> Subject {
    Subject {
        api_group: Some("rbac.authorization.k8s.io".to_owned()),
        kind: "User".to_owned(),
        name: username.to_owned(),
        namespace: None,
    }
}

/// A cluster-wide role reaches the key through a group binding the creator never makes, so
/// RBAC would not stop a creator from minting more than they hold. Ask the API server to
/// dry-run a ClusterRoleBinding of that role to the key's user with the creator's credentials:
/// its escalation check refuses exactly when the creator could not grant the role themselves.
/// Nothing is stored.
async fn check_creator_may_grant(
    keys: &KubeKeys,
    id: &IdKey,
    username: &str,
    role: Role,
) -> Result<(), KeyStoreError> {
    let crb = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(id.record_name()),
            labels: Some(labels(id)),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "ClusterRole".to_owned(),
            name: cluster_wide_role(role).to_owned(),
        },
        subjects: Some(vec![user_subject(username)]),
    };
    let pp = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    match Api::<ClusterRoleBinding>::all(keys.client.clone())
        .create(&pp, &crb)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => Err(explain(
            Op {
                verb: "grant",
                resource: "clusterrolebindings",
            },
            "* (cluster-wide)",
            e,
        )
        .into()),
    }
}

/// The RoleBinding that gives the key's user `role` in `namespace`.
pub fn role_binding(id: &IdKey, username: &str, role: Role, namespace: &str) -> RoleBinding {
    RoleBinding {
        metadata: ObjectMeta {
            name: Some(id.record_name()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels(id)),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "ClusterRole".to_owned(),
            name: role.cluster_role().to_owned(),
        },
        subjects: Some(vec![user_subject(username)]),
    }
}

fn consumer_secret(id: &IdKey, c: &Consumer, token: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(c.name.clone()),
            namespace: Some(c.namespace.clone()),
            labels: Some(labels(id)),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        string_data: Some(BTreeMap::from([
            ("token".to_owned(), token.to_owned()),
            ("server".to_owned(), c.server.clone()),
        ])),
        ..Secret::default()
    }
}

/// Something created along the way, to delete on rollback.
enum Made {
    Record,
    Binding(String),
    Consumer(String, String),
}

fn describe(m: &Made, keys: &KubeKeys, id: &IdKey) -> String {
    match m {
        Made::Record => format!("secret/{} -n {}", id.record_name(), keys.namespace),
        Made::Binding(ns) => format!("rolebinding/{} -n {ns}", id.record_name()),
        Made::Consumer(ns, name) => format!("secret/{name} -n {ns}"),
    }
}

async fn undo(keys: &KubeKeys, id: &IdKey, made: &Made) -> Result<(), kube::Error> {
    let name = id.record_name();
    let dp = DeleteParams::default();
    let r = match made {
        Made::Record => keys.api().delete(&name, &dp).await.map(|_| ()),
        Made::Binding(ns) => Api::<RoleBinding>::namespaced(keys.client.clone(), ns)
            .delete(&name, &dp)
            .await
            .map(|_| ()),
        Made::Consumer(ns, n) => Api::<Secret>::namespaced(keys.client.clone(), ns)
            .delete(n, &dp)
            .await
            .map(|_| ()),
    };
    match r {
        Err(e) if status(&e) == Some(404) => Ok(()),
        other => other,
    }
}

/// A step that failed: what was being done, and why.
type StepError = (String, KeyStoreError);

async fn create_binding(
    keys: &KubeKeys,
    pp: &PostParams,
    id: &IdKey,
    username: &str,
    role: Role,
    ns: &str,
) -> Result<(), StepError> {
    let rb = role_binding(id, username, role, ns);
    Api::<RoleBinding>::namespaced(keys.client.clone(), ns)
        .create(pp, &rb)
        .await
        .map_err(|e| {
            let op = Op {
                verb: "create",
                resource: "rolebindings",
            };
            (
                format!("creating RoleBinding {} in namespace {ns}", rb.name_any()),
                explain(op, ns, e).into(),
            )
        })?;
    Ok(())
}

async fn create_consumer(
    keys: &KubeKeys,
    pp: &PostParams,
    id: &IdKey,
    c: &Consumer,
    token: &str,
) -> Result<(), StepError> {
    Api::<Secret>::namespaced(keys.client.clone(), &c.namespace)
        .create(pp, &consumer_secret(id, c, token))
        .await
        .map_err(|e| {
            let op = Op {
                verb: "create",
                resource: "secrets",
            };
            let err = if status(&e) == Some(409) {
                KubeKeysError::Api {
                    verb: "create",
                    resource: "secrets",
                    namespace: c.namespace.clone(),
                    error: Box::new(e),
                    hint: String::new(),
                }
            } else {
                explain(op, &c.namespace, e)
            };
            (
                format!(
                    "creating consumer Secret {} in namespace {} (pick a name not in use)",
                    c.name, c.namespace
                ),
                err.into(),
            )
        })?;
    Ok(())
}

/// Creates the record, one RoleBinding per namespace of `record.namespaces` (binding the
/// ClusterRole of its role to `username`), and the consumer Secret. All or nothing: each is
/// dry-run before the record is written, and what was made is deleted if a step still fails.
/// A cluster-wide role is first checked against the client's own rights (the CLI, with the
/// creator's credentials).
pub async fn create_key(
    keys: &KubeKeys,
    record: &KeyRecord,
    username: &str,
    token: &str,
    consumer: Option<&Consumer>,
) -> Result<Stored, ProvisionError> {
    let id = record.id.key();
    if let (Some(role), true) = (record.role, record.namespaces.is_empty()) {
        check_creator_may_grant(keys, &id, username, role)
            .await
            .map_err(|cause| ProvisionError {
                failed: format!(
                    "checking that you may grant role {role} ({}) cluster-wide",
                    cluster_wide_role(role)
                ),
                cause,
                undo: "Nothing was created.".to_owned(),
            })?;
    }
    let mut annotations = BTreeMap::new();
    if let Some(c) = consumer {
        annotations.insert(
            ANNOTATION_CONSUMER.to_owned(),
            format!("{}/{}", c.namespace, c.name),
        );
    }
    create_with_bindings(keys, record, username, token, consumer, annotations).await
}

/// [`create_key`] without the cluster-wide grant check (the AccessKey API checks the creator
/// with SubjectAccessReviews instead, and writes with its own client), with extra annotations
/// on the record Secret.
pub async fn create_with_bindings(
    keys: &KubeKeys,
    record: &KeyRecord,
    username: &str,
    token: &str,
    consumer: Option<&Consumer>,
    annotations: BTreeMap<String, String>,
) -> Result<Stored, ProvisionError> {
    let id = record.id.key();
    let mut made: Vec<Made> = Vec::new();
    let result: Result<Stored, StepError> = async {
        // Dry runs first: a missing namespace, a name in use or RBAC refusing a RoleBinding
        // or the consumer Secret stop the command before anything is written. The dry run
        // of the consumer Secret carries no token.
        let dry = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        if let Some(role) = record.role {
            for ns in &record.namespaces {
                create_binding(keys, &dry, &id, username, role, ns).await?;
            }
        }
        if let Some(c) = consumer {
            create_consumer(keys, &dry, &id, c, "").await?;
        }
        let stored = keys.create_with(record, annotations).await.map_err(|e| {
            (
                format!("creating the key Secret in namespace {}", keys.namespace),
                e,
            )
        })?;
        made.push(Made::Record);
        let pp = PostParams::default();
        if let Some(role) = record.role {
            for ns in &record.namespaces {
                create_binding(keys, &pp, &id, username, role, ns).await?;
                made.push(Made::Binding(ns.clone()));
            }
        }
        if let Some(c) = consumer {
            create_consumer(keys, &pp, &id, c, token).await?;
            made.push(Made::Consumer(c.namespace.clone(), c.name.clone()));
        }
        Ok(stored)
    }
    .await;
    let (failed, cause) = match result {
        Ok(s) => return Ok(s),
        Err(e) => e,
    };
    let mut left = Vec::new();
    for m in made.iter().rev() {
        if let Err(e) = undo(keys, &id, m).await {
            tracing::warn!(object = describe(m, keys, &id), error = %crate::causes::Chain(&e), "rollback failed");
            left.push(describe(m, keys, &id));
        }
    }
    let undo = if made.is_empty() {
        "Nothing was created.".to_owned()
    } else if left.is_empty() {
        format!(
            "Rolled back: {}; nothing was left behind. Fix the cause and run the command again.",
            made.iter()
                .map(|m| describe(m, keys, &id))
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        format!(
            "Rollback failed for: {}. Delete them by hand (kubectl delete {}).",
            left.join(", "),
            left.join("; kubectl delete ")
        )
    };
    Err(ProvisionError {
        failed,
        cause,
        undo,
    })
}

/// Deletes the key's RoleBindings and consumer Secret. Returns what could not be removed.
pub async fn delete_extras(keys: &KubeKeys, stored: &Stored) -> Vec<String> {
    let id = stored.record.id.key();
    let mut left = Vec::new();
    for ns in &stored.record.namespaces {
        let m = Made::Binding(ns.clone());
        if let Err(e) = undo(keys, &id, &m).await {
            left.push(format!("{} ({e})", describe(&m, keys, &id)));
        }
    }
    let consumers: Vec<(String, String)> =
        match stored.secret.annotations().get(ANNOTATION_CONSUMER) {
            Some(v) => v
                .split_once('/')
                .map(|(ns, n)| vec![(ns.to_owned(), n.to_owned())])
                .unwrap_or_default(),
            None => {
                // No record of where: search by label (needs list on secrets cluster-wide).
                let lp = ListParams::default().labels(&format!("{LABEL_KEY_ID}={id}"));
                match Api::<Secret>::all(keys.client.clone()).list(&lp).await {
                    Ok(l) => l
                        .items
                        .into_iter()
                        .filter(|s| s.type_.as_deref() != Some(SECRET_TYPE))
                        .map(|s| (s.namespace().unwrap_or_default(), s.name_any()))
                        .collect(),
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot search for consumer Secrets");
                        Vec::new()
                    }
                }
            }
        };
    for (ns, name) in consumers {
        left.extend(delete_consumer(keys, &id, &ns, &name).await);
    }
    left
}

/// Deletes the consumer Secret `ns/name` if it is labelled for key `id` (a name found in an
/// editable annotation must not delete anything else). Returns what could not be removed.
pub async fn delete_consumer(keys: &KubeKeys, id: &IdKey, ns: &str, name: &str) -> Option<String> {
    let api = Api::<Secret>::namespaced(keys.client.clone(), ns);
    match api.get_opt(name).await {
        Ok(Some(s)) if s.labels().get(LABEL_KEY_ID).map(String::as_str) == Some(id.as_str()) => {
            let m = Made::Consumer(ns.to_owned(), name.to_owned());
            undo(keys, id, &m)
                .await
                .err()
                .map(|e| format!("{} ({e})", describe(&m, keys, id)))
        }
        Ok(_) => None,
        Err(e) => Some(format!("secret/{name} -n {ns} ({e})")),
    }
}

/// Writes the consumer Secret of key `id` with the client's credentials: a dry run without the
/// token when `token` is empty. For keys minted through the AccessKey API, where the CLI writes
/// the Secret after the key exists.
pub async fn write_consumer(
    keys: &KubeKeys,
    id: &IdKey,
    c: &Consumer,
    token: &str,
) -> Result<(), ProvisionError> {
    let pp = PostParams {
        dry_run: token.is_empty(),
        ..PostParams::default()
    };
    create_consumer(keys, &pp, id, c, token)
        .await
        .map_err(|(failed, cause)| ProvisionError {
            failed,
            cause,
            undo: String::new(),
        })
}
