//! What the console asks of a key store, one method per operation of the AccessKey API, so the
//! API client (`--store kube`: the user's own kubeconfig, any credential) and the embedded dir
//! store ([`super::dir::DirBackend`]) plug in alike. Errors carry what the API's `Status` says:
//! its code, its message (a 403 names the missing right) and, for a 422, the field.

use std::future::Future;

use http::StatusCode;

use crate::api::types::{AccessKey, AccessKeySpec};

/// A refusal or failure, as the API's `Status` object describes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    /// The HTTP status (`Status.code`).
    pub code: StatusCode,
    /// In words, what went wrong and what to do (`Status.message`).
    pub message: String,
    /// The field it is about, as the API names it (`Status.details.causes[].field`, e.g.
    /// `spec.expiration`), when the error is about one.
    pub field: Option<String>,
}

impl BackendError {
    pub fn new(code: StatusCode, message: impl Into<String>) -> Self {
        BackendError {
            code,
            message: message.into(),
            field: None,
        }
    }

    /// A `422 Invalid` about `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        BackendError {
            code: StatusCode::UNPROCESSABLE_ENTITY,
            message: message.into(),
            field: Some(field.to_owned()),
        }
    }
}

/// A merge patch of the fields the page edits; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPatch {
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub disabled: Option<bool>,
}

/// Where the keys live, as the page header says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct About {
    /// E.g. "dir store /home/me/keygate-data/keys" or "cluster https://…, AccessKey API".
    pub store: String,
    /// Who the console acts as.
    pub user: String,
    /// Limits of this store worth knowing before creating a key.
    pub notes: Vec<String>,
}

/// The AccessKey API's operations. `name` is `metadata.name` (the key ID lowercased).
pub trait KeyBackend: Send + Sync + 'static {
    fn about(&self) -> About;

    /// `GET .../accesskeys`: the keys this user may see.
    fn list(&self) -> impl Future<Output = Result<Vec<AccessKey>, BackendError>> + Send;

    /// `GET .../accesskeys/{name}`.
    fn get(&self, name: &str) -> impl Future<Output = Result<AccessKey, BackendError>> + Send;

    /// `POST .../accesskeys`: the created key, with `status.token` (shown once).
    fn create(
        &self,
        spec: AccessKeySpec,
    ) -> impl Future<Output = Result<AccessKey, BackendError>> + Send;

    /// `POST .../accesskeys/{name}/regenerate`: the key with its new `status.token`; with a
    /// grace period the old secret keeps working that many seconds.
    fn regenerate(
        &self,
        name: &str,
        grace_period_seconds: Option<u64>,
    ) -> impl Future<Output = Result<AccessKey, BackendError>> + Send;

    /// `PATCH .../accesskeys/{name}` (merge patch of displayName, description, disabled).
    fn patch(
        &self,
        name: &str,
        patch: KeyPatch,
    ) -> impl Future<Output = Result<AccessKey, BackendError>> + Send;

    /// `DELETE .../accesskeys/{name}`: answered once the key and what keygate made for it
    /// are gone.
    fn delete(&self, name: &str) -> impl Future<Output = Result<(), BackendError>> + Send;
}
