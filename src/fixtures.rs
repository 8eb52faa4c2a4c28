//! Helpers shared by the unit tests: records, their Secrets, an index holding them, and the
//! identity a review answered with. (Integration tests have theirs in `tests/it/common`.)

use std::sync::Arc;

use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::api::core::v1::Secret;

use crate::identity::IdentityPolicy;
use crate::index::{Index, LoadedKey};
use crate::record::KeyRecord;
use crate::token::{KeyId, SecretHash, Token};

/// The key namespace the fixtures' Secrets are in.
pub const NAMESPACE: &str = "keygate-system";

/// An enabled record for `id` whose secret is `s`, named `n`.
pub fn record(id: &KeyId) -> KeyRecord {
    KeyRecord::new(id.clone(), SecretHash::of(b"s"), "n")
}

/// The Secret that stores [`record`]`(id)`.
pub fn secret(id: &KeyId) -> Secret {
    record(id).to_secret(NAMESPACE)
}

/// An index (with `policy`) holding one fresh key built by `edit`, and that key's token.
pub fn index_with_key(
    policy: IdentityPolicy,
    edit: impl FnOnce(&mut KeyRecord),
) -> (Index, String) {
    let token = Token::generate(KeyId::generate());
    let mut rec = KeyRecord::new(token.id.clone(), token.secret_hash(), "ci deploy");
    edit(&mut rec);
    let index = Index::new(policy);
    index.replace_all([(token.id.key(), Ok(rec))]);
    (index, token.expose())
}

/// The `status.user` a review answers for `key`, decoded.
pub fn user_of(key: &Arc<LoadedKey>) -> UserInfo {
    let mut buf = Vec::new();
    key.write_user(&mut buf);
    serde_json::from_slice(&buf).expect("status.user is valid JSON")
}

/// A faked Kubernetes API server (tower-test) answering every request with `respond(body)`,
/// and counting what it saw.
pub struct FakeKube {
    pub client: kube::Client,
    seen: Seen,
}

impl FakeKube {
    /// Request bodies seen so far, in order.
    pub fn seen(&self) -> Vec<serde_json::Value> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// An API server that takes requests and never answers.
    pub fn hung() -> Self {
        fake_with(|mut handle, log| async move {
            let mut held = Vec::new();
            while let Some((_, send)) = handle.next_request().await {
                log.lock().unwrap().push(serde_json::Value::Null);
                held.push(send);
            }
        })
    }
}

type Seen = Arc<std::sync::Mutex<Vec<serde_json::Value>>>;
type Handle =
    tower_test::mock::Handle<http::Request<kube::client::Body>, http::Response<kube::client::Body>>;

/// A client whose requests go to `serve`, run as a task with the mock's handle and the log.
fn fake_with<F: std::future::Future<Output = ()> + Send + 'static>(
    serve: impl FnOnce(Handle, Seen) -> F,
) -> FakeKube {
    let (svc, handle) = tower_test::mock::pair();
    let seen = Seen::default();
    tokio::spawn(serve(handle, seen.clone()));
    FakeKube {
        client: kube::Client::new(svc, "default"),
        seen,
    }
}

pub fn fake_kube(
    respond: impl Fn(&serde_json::Value) -> (u16, serde_json::Value) + Send + 'static,
) -> FakeKube {
    fake_with(|mut handle, log| async move {
        while let Some((req, send)) = handle.next_request().await {
            let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
            let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
            let (code, answer) = respond(&body);
            log.lock().unwrap().push(body);
            let resp = http::Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(kube::client::Body::from(
                    serde_json::to_vec(&answer).unwrap(),
                ))
                .unwrap();
            send.send_response(resp);
        }
    })
}
