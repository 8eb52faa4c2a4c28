//! The record guard: a ValidatingAdmissionWebhook (`POST /validate-records` on the TLS
//! listener) that lets only the AccessKey API's own identity create, change or delete key
//! records, so nobody else can write one by hand or put an older copy back in place.
//!
//! A request is about a record when it is a Secret in the key namespace and the object (new or
//! old) has type `keygate.dev/access-key` or a name beginning with `keygate-` (so a record
//! cannot be prepared under another type, nor a type change slip past). Everything else is
//! allowed: the ValidatingWebhookConfiguration already scopes the webhook to that namespace.
//! AdmissionReview `admission.k8s.io/v1` and `v1beta1` are both answered, in the version asked.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::record::SECRET_TYPE;

pub const PATH: &str = "/validate-records";
pub const API_V1: &str = "admission.k8s.io/v1";
pub const API_V1BETA1: &str = "admission.k8s.io/v1beta1";
pub const KIND: &str = "AdmissionReview";

/// Who may write records, and where they are.
#[derive(Debug, Clone)]
pub struct Guard {
    /// The key namespace.
    pub namespace: String,
    /// Usernames allowed to write records (`--record-writer`): the AccessKey API's identity.
    pub writers: Vec<String>,
}

/// Why a body is not an AdmissionReview we can answer (HTTP 400). Never quotes the body.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error("request body is not an AdmissionReview (line {line}, column {column})")]
    Json { line: usize, column: usize },
    #[error("apiVersion is not admission.k8s.io/v1 or admission.k8s.io/v1beta1")]
    WrongApiVersion,
    #[error("kind is not \"AdmissionReview\"")]
    WrongKind,
    #[error("the AdmissionReview has no request")]
    NoRequest,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Review {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    request: Option<Request>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Request {
    uid: String,
    resource: Resource,
    namespace: String,
    name: String,
    operation: String,
    user_info: UserInfo,
    object: Option<Value>,
    old_object: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Resource {
    group: String,
    resource: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct UserInfo {
    username: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Answer<'a> {
    api_version: &'a str,
    kind: &'static str,
    response: Response<'a>,
}

#[derive(Serialize)]
struct Response<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status>,
}

#[derive(Serialize)]
struct Status {
    code: u16,
    reason: &'static str,
    message: String,
}

/// The decision on one request, for the caller's log line and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// The Secret's name (public: `keygate-<id>`), when the request was about a record.
    pub record: Option<String>,
    pub username: String,
    pub operation: String,
}

fn field<'a>(object: &'a Option<Value>, path: &[&str]) -> Option<&'a str> {
    let mut v = object.as_ref()?;
    for p in path {
        v = v.get(p)?;
    }
    v.as_str()
}

impl Guard {
    fn is_record(&self, r: &Request) -> bool {
        if !(r.resource.group.is_empty() && r.resource.resource == "secrets") {
            return false;
        }
        if r.namespace != self.namespace {
            return false;
        }
        let typed = [&r.object, &r.old_object]
            .into_iter()
            .any(|o| field(o, &["type"]) == Some(SECRET_TYPE));
        let names = [
            Some(r.name.as_str()),
            field(&r.object, &["metadata", "name"]),
            field(&r.old_object, &["metadata", "name"]),
        ];
        // A create with generateName has no name yet: the prefix is what it will get.
        let generated = field(&r.object, &["metadata", "generateName"]);
        typed
            || names
                .into_iter()
                .flatten()
                .any(|n| n.starts_with("keygate-"))
            || generated.is_some_and(|n| n.starts_with("keygate"))
    }

    /// Decides one AdmissionReview body; returns the answer body and the verdict.
    pub fn review(&self, body: &[u8]) -> Result<(Vec<u8>, Verdict), AdmissionError> {
        let review: Review = serde_json::from_slice(body).map_err(|e| AdmissionError::Json {
            line: e.line(),
            column: e.column(),
        })?;
        if review.api_version != API_V1 && review.api_version != API_V1BETA1 {
            return Err(AdmissionError::WrongApiVersion);
        }
        if review.kind != KIND {
            return Err(AdmissionError::WrongKind);
        }
        let r = review.request.ok_or(AdmissionError::NoRequest)?;
        let record = self.is_record(&r);
        let allowed = !record || self.writers.contains(&r.user_info.username);
        let status = (!allowed).then(|| Status {
            code: 403,
            reason: "Forbidden",
            message: format!(
                "key records in namespace {ns} are written only by keygate's AccessKey API \
                 ({writers}); {user:?} may not {op} them: use the AccessKey API \
                 (`kubectl create -f` an AccessKey, `kubectl patch/delete accesskey`, or \
                 `keygate keys`)",
                ns = self.namespace,
                writers = self.writers.join(", "),
                user = r.user_info.username,
                op = r.operation.to_lowercase(),
            ),
        });
        let answer = Answer {
            api_version: &review.api_version,
            kind: KIND,
            response: Response {
                uid: &r.uid,
                allowed,
                status,
            },
        };
        // Plain data: serializing cannot fail.
        let out = serde_json::to_vec(&answer).unwrap_or_default();
        let name = Some(r.name.clone())
            .filter(|n| !n.is_empty())
            .or_else(|| field(&r.object, &["metadata", "name"]).map(str::to_owned));
        Ok((
            out,
            Verdict {
                allowed,
                record: if record { name } else { None },
                username: r.user_info.username,
                operation: r.operation,
            },
        ))
    }
}

#[cfg(test)]
mod tests;

/// Where kube-apiserver reaches the record guard.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// `https://...`, the path included.
    Url(String),
    /// A Service: namespace, name, port (the path is [`PATH`]).
    Service {
        namespace: String,
        name: String,
        port: u16,
    },
}

/// The ValidatingWebhookConfiguration that installs the record guard for the key namespace
/// `namespace`, trusting `ca` (PEM) for keygate's serving certificate. `failurePolicy: Fail`:
/// while the guard cannot be reached, records cannot be written at all (the AccessKey API
/// included), never written unchecked. Works on kube-apiserver 1.20 and later
/// (`admissionregistration.k8s.io/v1`, `namespaceSelector` on the automatic
/// `kubernetes.io/metadata.name` label, which 1.21 adds; on 1.20 label the namespace so).
pub fn webhook_configuration(endpoint: &Endpoint, ca: &[u8], namespace: &str) -> Value {
    use base64::Engine;
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(ca);
    let client_config = match endpoint {
        Endpoint::Url(url) => serde_json::json!({"url": url, "caBundle": ca_bundle}),
        Endpoint::Service {
            namespace,
            name,
            port,
        } => serde_json::json!({
            "service": {"namespace": namespace, "name": name, "path": PATH, "port": port},
            "caBundle": ca_bundle,
        }),
    };
    serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "keygate-records"},
        "webhooks": [{
            "name": "records.keygate.dev",
            "admissionReviewVersions": ["v1", "v1beta1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "matchPolicy": "Equivalent",
            "timeoutSeconds": 10,
            "clientConfig": client_config,
            "namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": namespace}
            },
            "rules": [{
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["secrets"],
                "operations": ["CREATE", "UPDATE", "DELETE"],
                "scope": "Namespaced",
            }],
        }],
    })
}
