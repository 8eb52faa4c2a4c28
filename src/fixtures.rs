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

/// Requests a [`fake_kube`] server saw: method and path.
pub type SeenRequests = Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// A kube client whose API server is `respond(method, path)` -> (status, JSON body).
pub fn fake_kube(
    respond: impl Fn(&str, &str) -> (u16, serde_json::Value) + Send + 'static,
) -> (kube::Client, SeenRequests) {
    use http::{Request, Response};
    use kube::client::Body;
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen = SeenRequests::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let (method, path) = (req.method().to_string(), req.uri().path().to_owned());
            let (code, body) = respond(&method, &path);
            log.lock().unwrap().push((method, path));
            let resp = Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap();
            send.send_response(resp);
        }
    });
    (kube::Client::new(svc, "default"), seen)
}
