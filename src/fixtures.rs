//! Helpers shared by the unit tests: records, their Secrets, an index holding them, and the
//! identity a review answered with. (Integration tests have theirs in `tests/it/common`.)

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

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

/// One request a [`FakeCluster`] saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: serde_json::Value,
}

/// An in-memory kube-apiserver for unit tests: objects by path (create, get, list, replace with
/// resourceVersion checks, delete; `dryRun` writes nothing), and SubjectAccessReviews answered
/// by a function of their `spec` (`None`: the review fails with a `500`).
#[derive(Clone)]
pub struct FakeCluster {
    pub objects: Arc<Mutex<BTreeMap<String, Value>>>,
    pub log: Arc<Mutex<Vec<Seen>>>,
}

type SarRule = dyn Fn(&Value) -> Option<bool> + Send + Sync;

impl FakeCluster {
    /// The requests seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }

    /// The `spec`s of the SubjectAccessReviews seen so far.
    pub fn reviews(&self) -> Vec<Value> {
        self.seen()
            .into_iter()
            .filter(|s| s.path.ends_with("/subjectaccessreviews"))
            .map(|s| s.body["spec"].clone())
            .collect()
    }

    /// Requests that would change something (not reads, reviews or dry runs).
    pub fn writes(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method != "GET" && !s.path.ends_with("/subjectaccessreviews"))
            .filter(|s| !s.query.contains("dryRun"))
            .collect()
    }

    /// The stored objects under `prefix` (a collection path).
    pub fn under(&self, prefix: &str) -> Vec<Value> {
        let objects = self.objects.lock().unwrap();
        objects
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Stores `secret` as the API server would (resourceVersion, uid, creationTimestamp).
    pub fn put_secret(&self, secret: &Secret) {
        let mut v = serde_json::to_value(secret).unwrap();
        let name = v["metadata"]["name"].as_str().unwrap().to_owned();
        let ns = v["metadata"]["namespace"].as_str().unwrap().to_owned();
        stamp(&mut v, 1);
        self.objects
            .lock()
            .unwrap()
            .insert(format!("/api/v1/namespaces/{ns}/secrets/{name}"), v);
    }

    fn answer(&self, seen: &Seen, sar: &SarRule, rv: &mut u64) -> (u16, Value) {
        if seen.path.ends_with("/subjectaccessreviews") {
            return match sar(&seen.body["spec"]) {
                Some(allowed) => {
                    let mut b = seen.body.clone();
                    b["status"] = json!({"allowed": allowed});
                    (201, b)
                }
                None => failure(500, "InternalError", "authorizer broken"),
            };
        }
        let mut objects = self.objects.lock().unwrap();
        let dry = seen.query.contains("dryRun");
        match seen.method.as_str() {
            "POST" => {
                let name = seen.body["metadata"]["name"].as_str().unwrap_or_default();
                let key = format!("{}/{name}", seen.path);
                if objects.contains_key(&key) {
                    return failure(409, "AlreadyExists", "already exists");
                }
                *rv += 1;
                let mut b = seen.body.clone();
                stamp(&mut b, *rv);
                if !dry {
                    objects.insert(key, b.clone());
                }
                (201, b)
            }
            "GET" => match objects.get(&seen.path) {
                Some(v) => (200, v.clone()),
                None if is_collection(&seen.path) => {
                    let prefix = format!("{}/", seen.path);
                    let items: Vec<Value> = objects
                        .iter()
                        .filter(|(k, _)| k.starts_with(&prefix) && !k[prefix.len()..].contains('/'))
                        .map(|(_, v)| v.clone())
                        .collect();
                    (
                        200,
                        json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}),
                    )
                }
                None => failure(404, "NotFound", "not found"),
            },
            "PUT" => {
                let Some(old) = objects.get(&seen.path) else {
                    return failure(404, "NotFound", "not found");
                };
                if old["metadata"]["resourceVersion"] != seen.body["metadata"]["resourceVersion"] {
                    return failure(409, "Conflict", "the object has been modified");
                }
                *rv += 1;
                let mut b = seen.body.clone();
                b["metadata"]["resourceVersion"] = json!(rv.to_string());
                if !dry {
                    objects.insert(seen.path.clone(), b.clone());
                }
                (200, b)
            }
            "DELETE" => match objects.get(&seen.path).cloned() {
                Some(v) => {
                    if !dry {
                        objects.remove(&seen.path);
                    }
                    (200, v)
                }
                None => failure(404, "NotFound", "not found"),
            },
            _ => failure(405, "MethodNotAllowed", "no"),
        }
    }
}

/// Whether `path` names a collection (`/api/v1/namespaces/NS/secrets`) rather than an object.
fn is_collection(path: &str) -> bool {
    let segments = path.trim_matches('/').split('/').count();
    let want = match (path.starts_with("/api/"), path.contains("/namespaces/")) {
        (true, true) => 5,
        (true, false) => 3,
        (false, true) => 6,
        (false, false) => 4,
    };
    segments == want
}

fn stamp(v: &mut Value, rv: u64) {
    v["metadata"]["resourceVersion"] = json!(rv.to_string());
    if v["metadata"]["uid"].is_null() {
        v["metadata"]["uid"] = json!(format!("uid-{rv}"));
    }
    if v["metadata"]["creationTimestamp"].is_null() {
        v["metadata"]["creationTimestamp"] = json!("2030-01-01T00:00:00Z");
    }
}

fn failure(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "reason": reason, "message": message, "code": code}),
    )
}

/// A kube client talking to a fresh [`FakeCluster`] whose SubjectAccessReviews `sar` answers.
pub fn fake_cluster(
    sar: impl Fn(&Value) -> Option<bool> + Send + Sync + 'static,
) -> (kube::Client, FakeCluster) {
    let objects: Arc<Mutex<BTreeMap<String, Value>>> = Arc::default();
    // The answering side sees the same objects; the log is the one `fake_kube` keeps.
    let answering = FakeCluster {
        objects: objects.clone(),
        log: Arc::default(),
    };
    let rv = Mutex::new(100);
    let (client, log) =
        fake_kube(move |seen| answering.answer(seen, &sar, &mut rv.lock().unwrap()));
    (client, FakeCluster { objects, log })
}

/// Requests a [`fake_kube`] server saw.
pub type SeenLog = Arc<std::sync::Mutex<Vec<Seen>>>;

/// A kube client whose API server is `respond` (tower-test), and the log of what it was sent.
pub fn fake_kube(
    respond: impl Fn(&Seen) -> (u16, serde_json::Value) + Send + 'static,
) -> (kube::Client, SeenLog) {
    serve_fake(Some(Box::new(respond)))
}

/// A kube client whose API server takes requests and never answers (a hung kube-apiserver),
/// and the log of what it was sent.
pub fn hung_kube() -> (kube::Client, SeenLog) {
    serve_fake(None)
}

type Respond = Box<dyn Fn(&Seen) -> (u16, serde_json::Value) + Send>;

/// Logs every request, then answers it with `respond`, or holds it forever without one.
fn serve_fake(respond: Option<Respond>) -> (kube::Client, SeenLog) {
    use http::{Request, Response};
    use kube::client::Body;
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let log = SeenLog::default();
    let log2 = log.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let seen = Seen {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                query: parts.uri.query().unwrap_or_default().to_owned(),
                body: serde_json::from_slice(&bytes).unwrap_or_default(),
            };
            let answer = respond.as_ref().map(|r| r(&seen));
            log2.lock().unwrap().push(seen);
            let Some((code, resp)) = answer else {
                held.push(send);
                continue;
            };
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
    failure(code, reason, reason)
}
