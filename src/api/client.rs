//! A typed client of the AccessKey API, for the CLI and the console: the caller's own
//! kubeconfig, any credential kube-apiserver accepts. Errors keep the server's `Status`
//! message, which says what to fix.

use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use super::status::Cause;
use super::types::{API_VERSION, AccessKey, AccessKeySpec, KIND};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API answered with a failure `Status`; `message` is the server's, and `causes` the
    /// fields a `422` is about (`details.causes`), so a form can show each next to its input.
    #[error("{message}")]
    Api {
        code: u16,
        reason: String,
        message: String,
        causes: Vec<Cause>,
    },
    #[error("cannot reach the AccessKey API: {} ({})", crate::causes::Chain(&**.error), crate::causes::kube_fix(&**.error))]
    Transport { error: Box<kube::Error> },
}

impl From<kube::Error> for ClientError {
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(s) => ClientError::Api {
                code: s.code,
                causes: s
                    .details
                    .iter()
                    .flat_map(|d| &d.causes)
                    .filter(|c| !c.field.is_empty())
                    .map(|c| Cause {
                        field: c.field.clone(),
                        message: c.message.clone(),
                    })
                    .collect(),
                reason: s.reason,
                message: s.message,
            },
            other => ClientError::Transport {
                error: Box::new(other),
            },
        }
    }
}

impl ClientError {
    /// The HTTP status of an API failure (`404` for a key that does not exist for the caller).
    pub fn code(&self) -> Option<u16> {
        match self {
            ClientError::Api { code, .. } => Some(*code),
            ClientError::Transport { .. } => None,
        }
    }
}

/// AccessKeys through kube-apiserver.
#[derive(Clone)]
pub struct AccessKeys {
    api: Api<AccessKey>,
}

impl AccessKeys {
    pub fn new(client: Client) -> Self {
        AccessKeys {
            api: Api::all(client),
        }
    }

    /// Creates a key; the answer holds `status.token`, once.
    pub async fn create(&self, spec: AccessKeySpec) -> Result<AccessKey, ClientError> {
        self.create_key(AccessKey {
            spec,
            ..AccessKey::default()
        })
        .await
    }

    /// Creates `key` (its spec, labels and annotations; the name is keygate's).
    pub async fn create_key(&self, mut key: AccessKey) -> Result<AccessKey, ClientError> {
        key.api_version = API_VERSION.to_owned();
        key.kind = KIND.to_owned();
        Ok(self.api.create(&PostParams::default(), &key).await?)
    }

    pub async fn list(&self) -> Result<Vec<AccessKey>, ClientError> {
        Ok(self.api.list(&ListParams::default()).await?.items)
    }

    /// `name` is the key ID in any case.
    pub async fn get(&self, name: &str) -> Result<AccessKey, ClientError> {
        Ok(self.api.get(&name.to_ascii_lowercase()).await?)
    }

    /// Applies a merge patch, e.g. `{"spec": {"disabled": true}}`.
    pub async fn patch(
        &self,
        name: &str,
        merge: &serde_json::Value,
    ) -> Result<AccessKey, ClientError> {
        Ok(self
            .api
            .patch(
                &name.to_ascii_lowercase(),
                &PatchParams::default(),
                &Patch::Merge(merge),
            )
            .await?)
    }

    pub async fn delete(&self, name: &str) -> Result<(), ClientError> {
        self.api
            .delete(&name.to_ascii_lowercase(), &DeleteParams::default())
            .await?;
        Ok(())
    }

    /// A new secret; the old one keeps working `grace_seconds` (none when `None` or 0).
    pub async fn regenerate(
        &self,
        name: &str,
        grace_seconds: Option<u64>,
    ) -> Result<AccessKey, ClientError> {
        let mut body = json!({"apiVersion": API_VERSION, "kind": "AccessKeyRegenerate"});
        if let Some(g) = grace_seconds {
            body["gracePeriodSeconds"] = json!(g);
        }
        Ok(self
            .api
            .create_subresource(
                "regenerate",
                &name.to_ascii_lowercase(),
                &PostParams::default(),
                &body,
            )
            .await?)
    }
}
