//! The console on the embedded dir store: the same lifecycle `keygate keys` runs
//! ([`crate::keystore::lifecycle`]), answering as the AccessKey API would (the same object, the
//! same error codes and fields), so the page cannot tell the stores apart.

use std::time::Duration;

use http::StatusCode;
use jiff::Timestamp;

use super::backend::{About, BackendError, KeyBackend, KeyPatch};
use crate::api::types::{AccessKey, AccessKeySpec, access_key};
use crate::keystore::lifecycle::{self, Edit, Field, LifecycleError, NewKey};
use crate::keystore::{DirKeys, KeyStore, KeyStoreError, Stored};
use crate::record::Role;
use crate::token::IdKey;

pub struct DirBackend {
    store: KeyStore,
    dir: String,
    /// `keygate serve --user-prefix`: the username each key's status shows.
    user_prefix: String,
    /// The person at the keyboard (`$USER`): recorded as each new key's creator and owner.
    user: String,
}

impl DirBackend {
    pub fn new(keys: DirKeys, user_prefix: &str, user: &str) -> Self {
        DirBackend {
            dir: keys.dir.display().to_string(),
            store: KeyStore::Dir(keys),
            user_prefix: user_prefix.to_owned(),
            user: user.to_owned(),
        }
    }

    /// The record as the API would show it: the same conversion the API's own handlers use.
    fn view(&self, stored: &Stored) -> AccessKey {
        access_key(stored, &self.user_prefix, Timestamp::now())
    }
}

/// `key` as the answer to a create or a regenerate: with its new token, once.
fn with_token(mut key: AccessKey, token: String) -> AccessKey {
    if let Some(status) = key.status.as_mut() {
        status.token = Some(token);
    }
    key
}

/// The API's field path for a lifecycle input.
fn field(f: Field) -> &'static str {
    match f {
        Field::Name => "spec.displayName",
        Field::Namespaces => "spec.scope.namespaces",
        Field::Groups => "spec.groups",
        Field::Expiration => "spec.expiration",
        Field::Grace => "gracePeriodSeconds",
    }
}

fn store_error(e: KeyStoreError, name: &str) -> BackendError {
    match e {
        // As the API answers: a name that is no key is simply not found.
        KeyStoreError::NotFound(_) | KeyStoreError::BadId(_) => BackendError::new(
            StatusCode::NOT_FOUND,
            format!("accesskeys \"{name}\" not found"),
        ),
        e @ (KeyStoreError::Duplicate(_) | KeyStoreError::Conflict(_)) => {
            BackendError::new(StatusCode::CONFLICT, e.to_string())
        }
        e => BackendError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn lifecycle_error(e: LifecycleError, name: &str) -> BackendError {
    match (e.field(), e) {
        (_, LifecycleError::Store(e)) => store_error(e, name),
        (Some(f), e) => BackendError::invalid(field(f), e.to_string()),
        (None, e) => BackendError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    }
}

fn parse_name(name: &str) -> Result<IdKey, BackendError> {
    IdKey::parse(name).map_err(|e| store_error(KeyStoreError::BadId(e), name))
}

/// The new key `spec` asks for, or the 422 the API would give.
fn new_key(spec: AccessKeySpec, user: &str) -> Result<NewKey, BackendError> {
    if spec.inherit_creator {
        return Err(BackendError::invalid(
            "spec.inheritCreator",
            "the dir store has no cluster to ask what you may do, so a key cannot inherit your \
             rights here; pick a role, or run the console with --store kube (the AccessKey API)",
        ));
    }
    let role = match spec.role.as_deref() {
        None => None,
        Some(r) => Some(r.parse::<Role>().map_err(|_| {
            BackendError::invalid(
                "spec.role",
                format!("role {r:?} is not admin, edit or view"),
            )
        })?),
    };
    let scope = spec.scope;
    if !scope.rules.is_empty() {
        return Err(BackendError::invalid(
            "spec.scope.rules",
            "scope rules apply to keys that inherit their creator's rights only",
        ));
    }
    let expiration = spec
        .expiration
        .map(|t| {
            t.parse::<Timestamp>().map_err(|_| {
                BackendError::invalid(
                    "spec.expiration",
                    format!("{t:?} is not a time (RFC 3339, e.g. 2030-01-01T00:00:00Z)"),
                )
            })
        })
        .transpose()?;
    Ok(NewKey {
        name: spec.display_name,
        description: spec.description,
        role,
        namespaces: scope.namespaces,
        groups: spec.groups,
        expiration,
        created_by: user.to_owned(),
    })
}

impl KeyBackend for DirBackend {
    fn about(&self) -> About {
        About {
            store: format!("dir store {}", self.dir),
            user: self.user.clone(),
            notes: vec![
                "No cluster is involved: a namespace scope is recorded with the key, but no \
                 RoleBindings are made for it."
                    .to_owned(),
            ],
        }
    }

    async fn list(&self) -> Result<Vec<AccessKey>, BackendError> {
        let (mut keys, bad) = self.store.list().await.map_err(|e| store_error(e, ""))?;
        for (name, reason) in bad {
            tracing::warn!(record = %name, %reason, "skipping an invalid key record");
        }
        // Oldest first, as `keygate keys list` shows them.
        keys.sort_by(|a, b| {
            (a.record.created, &a.record.id).cmp(&(b.record.created, &b.record.id))
        });
        let now = Timestamp::now();
        Ok(keys
            .iter()
            .map(|s| access_key(s, &self.user_prefix, now))
            .collect())
    }

    async fn get(&self, name: &str) -> Result<AccessKey, BackendError> {
        let id = parse_name(name)?;
        let stored = self
            .store
            .get(&id)
            .await
            .map_err(|e| store_error(e, name))?;
        Ok(self.view(&stored))
    }

    async fn create(&self, spec: AccessKeySpec) -> Result<AccessKey, BackendError> {
        let new = new_key(spec, &self.user)?;
        let (mut record, token) =
            lifecycle::mint(&new, Timestamp::now()).map_err(|e| lifecycle_error(e, ""))?;
        record.owner = self.user.clone();
        let stored = self
            .store
            .create(&record)
            .await
            .map_err(|e| store_error(e, ""))?;
        Ok(with_token(self.view(&stored), token.expose()))
    }

    async fn regenerate(
        &self,
        name: &str,
        grace_period_seconds: Option<u64>,
    ) -> Result<AccessKey, BackendError> {
        let id = parse_name(name)?;
        let grace = grace_period_seconds
            .filter(|s| *s > 0)
            .map(Duration::from_secs);
        let done = lifecycle::regenerate(&self.store, &id, grace, Timestamp::now())
            .await
            .map_err(|e| lifecycle_error(e, name))?;
        Ok(with_token(self.view(&done.stored), done.token.expose()))
    }

    async fn patch(&self, name: &str, patch: KeyPatch) -> Result<AccessKey, BackendError> {
        let id = parse_name(name)?;
        let change = Edit {
            name: patch.display_name.as_deref(),
            description: patch.description.as_deref(),
            disabled: patch.disabled,
        };
        let stored = lifecycle::edit(&self.store, &id, change)
            .await
            .map_err(|e| lifecycle_error(e, name))?;
        Ok(self.view(&stored))
    }

    async fn delete(&self, name: &str) -> Result<(), BackendError> {
        let id = parse_name(name)?;
        self.store
            .delete(&id)
            .await
            .map_err(|e| store_error(e, name))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::Scope;

    fn backend(tmp: &tempfile::TempDir) -> DirBackend {
        let keys = DirKeys::new(tmp.path().join("keys"), "keygate-system");
        DirBackend::new(keys, crate::identity::DEFAULT_USER_PREFIX, "alice")
    }

    fn spec(name: &str) -> AccessKeySpec {
        AccessKeySpec {
            display_name: name.into(),
            role: Some("view".into()),
            ..AccessKeySpec::default()
        }
    }

    #[tokio::test]
    async fn answers_each_operation_as_the_api_would() {
        let tmp = tempfile::tempdir().unwrap();
        let b = backend(&tmp);
        let k = b.create(spec("ci")).await.unwrap();
        let status = k.status.clone().unwrap();
        let token = status.token.clone().unwrap();
        assert!(token.starts_with(&format!("kg_{}_", status.id)));
        assert_eq!(
            (status.owner.as_str(), status.state.as_str()),
            ("alice", "Active")
        );
        assert_eq!(status.username, format!("service-account-{}", k.name()));

        let listed = b.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        let listed = listed[0].status.as_ref().unwrap();
        assert_eq!(listed.token, None, "a read never shows the token");

        let r = b.regenerate(k.name(), Some(3600)).await.unwrap();
        let r = r.status.unwrap();
        assert_ne!(r.token.as_deref(), Some(token.as_str()));
        assert!(r.previous_secret_expiration.is_some());

        let patch = KeyPatch {
            display_name: Some("renamed".into()),
            disabled: Some(true),
            ..KeyPatch::default()
        };
        let p = b.patch(k.name(), patch).await.unwrap();
        assert_eq!(
            (
                p.spec.display_name.as_str(),
                p.status.unwrap().state.as_str()
            ),
            ("renamed", "Disabled")
        );

        b.delete(k.name()).await.unwrap();
        let gone = b.get(k.name()).await.unwrap_err();
        assert_eq!(gone.code, StatusCode::NOT_FOUND);
        assert_eq!(
            b.delete("not-a-key").await.unwrap_err().code,
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn refusals_name_the_field() {
        let tmp = tempfile::tempdir().unwrap();
        let b = backend(&tmp);
        let field = |e: BackendError| {
            assert_eq!(e.code, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
            e.field.unwrap()
        };
        let mut s = spec("ci");
        s.expiration = Some("2020-01-01T00:00:00Z".into());
        assert_eq!(field(b.create(s).await.unwrap_err()), "spec.expiration");
        let mut s = spec("ci");
        s.expiration = Some("tomorrow".into());
        assert_eq!(field(b.create(s).await.unwrap_err()), "spec.expiration");
        let mut s = spec(" ");
        s.role = None;
        assert_eq!(field(b.create(s).await.unwrap_err()), "spec.displayName");
        let mut s = spec("ci");
        s.inherit_creator = true;
        assert_eq!(field(b.create(s).await.unwrap_err()), "spec.inheritCreator");
        let mut s = spec("ci");
        s.role = Some("root".into());
        assert_eq!(field(b.create(s).await.unwrap_err()), "spec.role");
        let mut s = spec("ci");
        s.role = None;
        s.scope = Scope {
            namespaces: vec!["apps".into()],
            ..Scope::default()
        };
        assert_eq!(
            field(b.create(s).await.unwrap_err()),
            "spec.scope.namespaces"
        );
        assert!(b.list().await.unwrap().is_empty());
    }
}
