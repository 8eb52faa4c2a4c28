//! Answers: objects as JSON, and failures as Kubernetes `Status` objects (kind `Status`,
//! `apiVersion: v1`) so kubectl and client libraries show their message as they would a
//! built-in resource's.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;
use serde_json::json;

use super::types::{GROUP, KIND, PLURAL};
use crate::http::HttpResponse;

/// One invalid field of a `422`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// The field path, e.g. `spec.role`.
    pub field: String,
    pub message: String,
}

/// A refused request: HTTP status, Kubernetes reason, and a message that says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: StatusCode,
    pub reason: &'static str,
    pub message: String,
    /// The AccessKey concerned, if any (`details.name`).
    pub name: Option<String>,
    /// The resource kind in `details.kind`: `accesskeys` for most, `AccessKey` for `422`.
    pub kind: &'static str,
    pub causes: Vec<Cause>,
}

impl ApiError {
    pub fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            name: None,
            kind: PLURAL,
            causes: Vec::new(),
        }
    }

    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// `422 Invalid`, naming each field (message `AccessKey.keygate.dev "NAME" is invalid: ...`
    /// as kube-apiserver writes it).
    pub fn invalid(name: Option<&str>, causes: Vec<Cause>) -> Self {
        let list = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect::<Vec<_>>()
            .join(", ");
        let message = format!(
            "{KIND}.{GROUP} {:?} is invalid: {list}",
            name.unwrap_or_default()
        );
        ApiError {
            code: StatusCode::UNPROCESSABLE_ENTITY,
            reason: "Invalid",
            message,
            name: name.map(str::to_owned),
            kind: KIND,
            causes,
        }
    }

    /// `422` for one field.
    pub fn field(name: Option<&str>, field: &str, message: impl Into<String>) -> Self {
        Self::invalid(
            name,
            vec![Cause {
                field: field.to_owned(),
                message: message.into(),
            }],
        )
    }

    pub fn not_found(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!(
                "{PLURAL}.{GROUP} {name:?} not found (you see only the keys you own, or the keys \
                 your key minted; `kubectl get {PLURAL}` lists them)"
            ),
        )
        .named(name)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    pub fn conflict(name: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", message).named(name)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", message)
    }

    pub fn unsupported_media(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            message,
        )
    }

    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_ACCEPTABLE, "NotAcceptable", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            message,
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }

    /// The `Status` object.
    pub fn to_status(&self) -> serde_json::Value {
        let mut details = json!({"group": GROUP, "kind": self.kind});
        if let Some(n) = &self.name {
            details["name"] = json!(n);
        }
        if !self.causes.is_empty() {
            details["causes"] = self
                .causes
                .iter()
                .map(|c| json!({"reason": "FieldValueInvalid", "message": c.message, "field": c.field}))
                .collect();
        }
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": details,
            "code": self.code.as_u16(),
        })
    }

    pub fn response(&self) -> HttpResponse {
        json_response(self.code, &self.to_status(), false)
    }
}

/// A JSON answer (indented when the client asked for `pretty`).
pub fn json_response(code: StatusCode, body: &impl Serialize, pretty: bool) -> HttpResponse {
    let bytes = if pretty {
        serde_json::to_vec_pretty(body)
    } else {
        serde_json::to_vec(body)
    };
    // Serializing our own plain types cannot fail; an empty object is a safe fallback.
    let mut bytes = bytes.unwrap_or_else(|_| b"{}".to_vec());
    bytes.push(b'\n');
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}
