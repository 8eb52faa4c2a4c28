//! The console on a cluster: each operation is one request to the AccessKey API, sent with the
//! user's own kubeconfig. The console decides nothing itself: whatever the API refuses (a role
//! the user may not grant, another user's key) reaches the page with the server's own words,
//! and a `422` with the field it is about.

use http::StatusCode;
use serde_json::{Map, Value, json};

use super::backend::{About, BackendError, KeyBackend, KeyPatch};
use crate::api::client::{AccessKeys, ClientError};
use crate::api::types::{AccessKey, AccessKeySpec};

pub struct ApiBackend {
    keys: AccessKeys,
    about: About,
}

impl ApiBackend {
    /// `server` is the API server URL the kubeconfig names; `user` who the console acts as, as
    /// far as it could be learnt (the page header says it).
    pub fn new(keys: AccessKeys, server: &str, user: &str) -> Self {
        ApiBackend {
            keys,
            about: About {
                store: format!("cluster {server}, AccessKey API"),
                user: user.to_owned(),
                notes: vec![
                    "Every action is a request to the AccessKey API with your own credentials: \
                     the cluster decides what you may see and do."
                        .to_owned(),
                ],
            },
        }
    }
}

/// The API's refusal as the page shows it. A `422` names its field in `details.causes`; with
/// one cause its own message is the one to put next to that field (the whole message repeats
/// the object and the field), with several the whole message lists them all.
fn refusal(e: ClientError) -> BackendError {
    match e {
        ClientError::Api {
            code,
            message,
            causes,
            ..
        } => {
            let code = StatusCode::from_u16(code)
                .ok()
                .filter(|c| c.is_client_error() || c.is_server_error())
                .unwrap_or(StatusCode::BAD_GATEWAY);
            match causes.as_slice() {
                [] => BackendError::new(code, message),
                [one] => BackendError {
                    code,
                    message: one.message.clone(),
                    field: Some(one.field.clone()),
                },
                [first, ..] => BackendError {
                    code,
                    message,
                    field: Some(first.field.clone()),
                },
            }
        }
        // Not an answer of the API at all: the cluster could not be reached.
        e @ ClientError::Transport { .. } => {
            BackendError::new(StatusCode::BAD_GATEWAY, e.to_string())
        }
    }
}

/// The merge patch for `patch`: only the fields it sets, so nothing else is touched.
fn merge_patch(patch: &KeyPatch) -> Value {
    let mut spec = Map::new();
    if let Some(n) = &patch.display_name {
        spec.insert("displayName".into(), json!(n));
    }
    if let Some(d) = &patch.description {
        spec.insert("description".into(), json!(d));
    }
    if let Some(d) = patch.disabled {
        spec.insert("disabled".into(), json!(d));
    }
    json!({ "spec": spec })
}

impl KeyBackend for ApiBackend {
    fn about(&self) -> About {
        self.about.clone()
    }

    async fn list(&self) -> Result<Vec<AccessKey>, BackendError> {
        let mut keys = self.keys.list().await.map_err(refusal)?;
        // Oldest first, as `keygate keys list` shows them (RFC 3339 UTC text sorts by time).
        keys.sort_by(|a, b| {
            let at = |k: &AccessKey| {
                k.status
                    .as_ref()
                    .map(|s| (s.created_at.clone(), s.id.clone()))
            };
            at(a).cmp(&at(b))
        });
        Ok(keys)
    }

    async fn get(&self, name: &str) -> Result<AccessKey, BackendError> {
        self.keys.get(name).await.map_err(refusal)
    }

    async fn create(&self, spec: AccessKeySpec) -> Result<AccessKey, BackendError> {
        self.keys.create(spec).await.map_err(refusal)
    }

    async fn regenerate(
        &self,
        name: &str,
        grace_period_seconds: Option<u64>,
    ) -> Result<AccessKey, BackendError> {
        self.keys
            .regenerate(name, grace_period_seconds)
            .await
            .map_err(refusal)
    }

    async fn patch(&self, name: &str, patch: KeyPatch) -> Result<AccessKey, BackendError> {
        self.keys
            .patch(name, &merge_patch(&patch))
            .await
            .map_err(refusal)
    }

    async fn delete(&self, name: &str) -> Result<(), BackendError> {
        self.keys.delete(name).await.map_err(refusal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{Seen, fake_kube};

    const PATH: &str = "/apis/keygate.dev/v1alpha1/accesskeys";

    fn key(name: &str, created: &str, token: Option<&str>) -> Value {
        json!({
            "apiVersion": "keygate.dev/v1alpha1", "kind": "AccessKey",
            "metadata": {"name": name},
            "spec": {"displayName": format!("key {name}"), "role": "view"},
            "status": {"id": name.to_uppercase(), "username": format!("service-account-{name}"),
                       "owner": "alice", "state": "Active", "createdAt": created,
                       "token": token},
        })
    }

    fn backend(
        respond: impl Fn(&Seen) -> (u16, Value) + Send + 'static,
    ) -> (ApiBackend, crate::fixtures::SeenLog) {
        let (client, log) = fake_kube(respond);
        (
            ApiBackend::new(AccessKeys::new(client), "https://k8s.example:6443", "alice"),
            log,
        )
    }

    #[tokio::test]
    async fn lists_oldest_first_and_creates_through_the_api() {
        let (b, log) = backend(|seen| match (seen.method.as_str(), seen.path.as_str()) {
            ("GET", PATH) => (
                200,
                json!({"apiVersion": "keygate.dev/v1alpha1", "kind": "AccessKeyList",
                       "metadata": {}, "items": [key("bbb", "2030-01-02T00:00:00Z", None),
                                                 key("aaa", "2030-01-01T00:00:00Z", None)]}),
            ),
            ("POST", PATH) => (201, key("ccc", "2030-01-03T00:00:00Z", Some("kg_CCC_s"))),
            _ => crate::fixtures::status(404, "NotFound"),
        });
        assert_eq!(
            b.about().store,
            "cluster https://k8s.example:6443, AccessKey API"
        );
        let names: Vec<String> = b
            .list()
            .await
            .unwrap()
            .iter()
            .map(|k| k.name().to_owned())
            .collect();
        assert_eq!(names, ["aaa", "bbb"]);

        let spec = AccessKeySpec {
            display_name: "ci".into(),
            role: Some("view".into()),
            ..AccessKeySpec::default()
        };
        let made = b.create(spec).await.unwrap();
        assert_eq!(made.status.unwrap().token.as_deref(), Some("kg_CCC_s"));
        let sent = log.lock().unwrap().last().unwrap().body.clone();
        assert_eq!(sent["kind"], "AccessKey");
        assert_eq!(sent["spec"]["displayName"], "ci");
        assert_eq!(sent["spec"]["role"], "view");
        assert!(
            sent["metadata"].get("name").is_none(),
            "the name is keygate's to choose"
        );
    }

    #[tokio::test]
    async fn patches_only_what_the_page_changed_and_regenerates_with_grace() {
        let (b, log) = backend(|_| (200, key("aaa", "2030-01-01T00:00:00Z", Some("kg_AAA_n"))));
        let p = KeyPatch {
            disabled: Some(true),
            ..KeyPatch::default()
        };
        b.patch("aaa", p).await.unwrap();
        b.regenerate("aaa", Some(60)).await.unwrap();
        b.delete("aaa").await.unwrap();
        let seen = log.lock().unwrap().clone();
        assert_eq!(
            (seen[0].method.as_str(), seen[0].path.as_str()),
            ("PATCH", "/apis/keygate.dev/v1alpha1/accesskeys/aaa")
        );
        assert_eq!(seen[0].body, json!({"spec": {"disabled": true}}));
        assert_eq!(seen[1].path, format!("{PATH}/aaa/regenerate"));
        assert_eq!(seen[1].body["gracePeriodSeconds"], 60);
        assert_eq!(seen[2].method, "DELETE");
    }

    #[tokio::test]
    async fn a_403_keeps_the_servers_words_and_a_422_its_field() {
        let (b, _) = backend(|seen| match seen.method.as_str() {
            "POST" => (
                403,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "reason": "Forbidden", "code": 403,
                       "message": "alice may not bind ClusterRole edit: the key would exceed its creator"}),
            ),
            _ => (
                422,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "reason": "Invalid", "code": 422,
                       "message": "AccessKey.keygate.dev \"aaa\" is invalid: spec.displayName: must not be empty",
                       "details": {"name": "aaa", "kind": "AccessKey",
                                   "causes": [{"reason": "FieldValueInvalid",
                                               "field": "spec.displayName",
                                               "message": "must not be empty"}]}}),
            ),
        });
        let e = b.create(AccessKeySpec::default()).await.unwrap_err();
        assert_eq!(e.code, StatusCode::FORBIDDEN);
        assert_eq!(
            e.message,
            "alice may not bind ClusterRole edit: the key would exceed its creator"
        );
        assert_eq!(e.field, None);

        let p = KeyPatch {
            display_name: Some(String::new()),
            ..KeyPatch::default()
        };
        let e = b.patch("aaa", p).await.unwrap_err();
        assert_eq!(e.code, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.field.as_deref(), Some("spec.displayName"));
        assert_eq!(e.message, "must not be empty");
    }

    #[tokio::test]
    async fn a_failing_server_stays_a_server_error() {
        let (b, _) = backend(|_| (503, json!("not a Status")));
        let e = b.list().await.unwrap_err();
        assert!(e.code.is_server_error(), "{e:?}");
        assert_eq!(e.field, None);
    }
}
