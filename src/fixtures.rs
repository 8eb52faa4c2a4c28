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

/// A record signer with a fresh key.
pub fn sealer() -> crate::seal::Sealer {
    let (key, _) = crate::seal::generate().expect("a key pair");
    crate::seal::Sealer::from_pem(key.as_bytes(), std::path::Path::new("test"), "--test")
        .expect("a generated key loads")
}

/// The Secret of `record` as stored with `uid`, sealed by `sealer` (with `seq`, when given).
pub fn sealed(
    sealer: &crate::seal::Sealer,
    record: &KeyRecord,
    uid: &str,
    seq: Option<u64>,
) -> Secret {
    let mut s = record.to_secret(NAMESPACE);
    s.metadata.uid = Some(uid.to_owned());
    if let Some(seq) = seq {
        // The sealer uses the stored seq + 1 when it is above the clock.
        let sd = s.string_data.get_or_insert_with(Default::default);
        sd.insert(crate::seal::FIELD_SEQ.to_owned(), (seq - 1).to_string());
    }
    sealer.seal(&mut s, None).expect("a valid record seals");
    s
}

/// One request a faked API server saw: method, path, JSON body.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub body: serde_json::Value,
}

pub type SeenLog = Arc<std::sync::Mutex<Vec<Seen>>>;

/// A kube client whose API server is `respond` (tower-test), and the log of what it was sent.
pub fn fake_kube(
    respond: impl Fn(&Seen) -> (u16, serde_json::Value) + Send + 'static,
) -> (kube::Client, SeenLog) {
    use http::{Request, Response};
    use kube::client::Body;
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let log = SeenLog::default();
    let log2 = log.clone();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let seen = Seen {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                body: serde_json::from_slice(&bytes).unwrap_or_default(),
            };
            let (code, resp) = respond(&seen);
            log2.lock().unwrap().push(seen);
            let resp = Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&resp).unwrap()))
                .unwrap();
            send.send_response(resp);
        }
    });
    (kube::Client::new(svc, NAMESPACE), log)
}

/// A Kubernetes `Status` answer.
pub fn status(code: u16, reason: &str) -> (u16, serde_json::Value) {
    (
        code,
        serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "reason": reason, "message": reason, "code": code}),
    )
}
