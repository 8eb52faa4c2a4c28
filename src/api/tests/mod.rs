//! Tests of the AccessKey API against a faked kube-apiserver ([`crate::fixtures::fake_cluster`]):
//! what is checked (SubjectAccessReviews sent), who sees what, and the answers' shapes.

mod create;
mod keys;
mod lifetime;
mod manage;
mod read;
mod sealed;

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::{AccessKeyApi, ApiSettings, Caller};
use crate::fixtures::{FakeCluster, NAMESPACE, fake_cluster};
use crate::record::KeyRecord;
use crate::token::{KeyId, SecretHash};

pub const PREFIX: &str = "service-account-";
pub const KEYS: &str = "/apis/keygate.dev/v1alpha1/accesskeys";

/// A person with these groups.
pub fn person(name: &str, groups: &[&str]) -> Caller {
    Caller {
        username: name.to_owned(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        extra: BTreeMap::new(),
    }
}

/// The caller a key is when it uses the API.
pub fn key_caller(rec: &KeyRecord) -> Caller {
    Caller {
        username: format!("{PREFIX}{}", rec.id.key()),
        groups: vec!["keygate:keys".to_owned(), "system:authenticated".to_owned()],
        extra: BTreeMap::from([("keygate.dev/key-id".to_owned(), vec![rec.id.to_string()])]),
    }
}

/// Who may do what in the fake cluster: key admins (`administer`), and per user the
/// (verb, name, namespace) rights they hold (`*` for any name or namespace).
#[derive(Clone, Default)]
pub struct Policy {
    pub admins: Vec<&'static str>,
    pub rights: Vec<(&'static str, &'static str, &'static str, &'static str)>,
}

impl Policy {
    pub fn allows(&self, spec: &Value) -> bool {
        let user = spec["user"].as_str().unwrap_or_default();
        let attrs = &spec["resourceAttributes"];
        let verb = attrs["verb"].as_str().unwrap_or_default();
        if verb == "administer" {
            return self.admins.contains(&user);
        }
        let name = attrs["name"].as_str().unwrap_or_default();
        let ns = attrs["namespace"].as_str().unwrap_or_default();
        self.rights.iter().any(|(u, v, n, s)| {
            *u == user && *v == verb && (*n == "*" || *n == name) && (*s == "*" || *s == ns)
        })
    }
}

pub fn api_with(
    policy: Policy,
    edit: impl FnOnce(&mut ApiSettings),
) -> (AccessKeyApi, FakeCluster) {
    let (client, cluster) = fake_cluster(move |spec| Some(policy.allows(spec)));
    let mut settings = ApiSettings::new(NAMESPACE, PREFIX);
    edit(&mut settings);
    (AccessKeyApi::new(client, settings), cluster)
}

pub fn api(policy: Policy) -> (AccessKeyApi, FakeCluster) {
    api_with(policy, |_| {})
}

/// An answer: status code, JSON body, headers.
pub struct Got {
    pub code: u16,
    pub body: Value,
    pub headers: HeaderMap,
}

pub async fn send(
    api: &AccessKeyApi,
    caller: &Caller,
    method: Method,
    uri: &str,
    content_type: &str,
    accept: &str,
    body: Option<Value>,
) -> Got {
    let mut req = Request::builder().method(method).uri(uri);
    if !content_type.is_empty() {
        req = req.header("content-type", content_type);
    }
    if !accept.is_empty() {
        req = req.header("accept", accept);
    }
    let bytes = body
        .map(|b| serde_json::to_vec(&b).unwrap())
        .unwrap_or_default();
    let resp = api
        .handle(req.body(Bytes::from(bytes)).unwrap(), caller.clone())
        .await;
    let code = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Got {
        code,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        headers,
    }
}

pub async fn get(api: &AccessKeyApi, caller: &Caller, uri: &str) -> Got {
    send(api, caller, Method::GET, uri, "", "application/json", None).await
}

pub async fn post(api: &AccessKeyApi, caller: &Caller, uri: &str, body: Value) -> Got {
    send(
        api,
        caller,
        Method::POST,
        uri,
        "application/json",
        "",
        Some(body),
    )
    .await
}

pub async fn merge(api: &AccessKeyApi, caller: &Caller, name: &str, body: Value) -> Got {
    let uri = format!("{KEYS}/{name}");
    let ct = "application/merge-patch+json";
    send(api, caller, Method::PATCH, &uri, ct, "", Some(body)).await
}

/// An AccessKey body with this spec.
pub fn key_body(spec: Value) -> Value {
    json!({"apiVersion": "keygate.dev/v1alpha1", "kind": "AccessKey",
           "metadata": {"generateName": "x-"}, "spec": spec})
}

/// A record owned by `owner` (as the API would write it), stored in the fake cluster.
pub fn stored_key(
    cluster: &FakeCluster,
    owner: &str,
    parent: Option<&KeyRecord>,
    edit: impl FnOnce(&mut KeyRecord),
) -> KeyRecord {
    let mut r = KeyRecord::new(KeyId::generate(), SecretHash::of(b"s"), "k");
    r.owner = owner.to_owned();
    r.created_by = owner.to_owned();
    r.parent = parent.map(|p| p.id.clone());
    r.creator = Some(crate::record::Creator {
        username: owner.to_owned(),
        ..Default::default()
    });
    edit(&mut r);
    cluster.put_secret(&r.to_secret(NAMESPACE));
    r
}

pub fn name(r: &KeyRecord) -> String {
    r.id.key().to_string()
}

/// The stored record of key `name` in the fake cluster.
pub fn record_of(cluster: &FakeCluster, name: &str) -> Option<KeyRecord> {
    let path = format!("/api/v1/namespaces/{NAMESPACE}/secrets/keygate-{name}");
    let v = cluster.objects.lock().unwrap().get(&path).cloned()?;
    KeyRecord::from_secret(&serde_json::from_value(v).unwrap()).ok()
}
