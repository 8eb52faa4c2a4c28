//! keygate over HTTP: the TLS listener, its [`router`] (the webhook, and the AccessKey API
//! with `--api`), and the plain-HTTP admin endpoints. Handlers ([`webhook`], [`admin`], the
//! API) know nothing of sockets; [`listener`] owns connections, TLS, limits and shutdown.

pub mod admin;
mod authorize;
pub mod body;
mod coalesce;
pub mod handshake;
pub mod listener;
pub mod router;
mod streams;
pub mod webhook;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Response, StatusCode};
use http_body_util::Full;

pub use body::MemoryBudget;
pub use listener::Limits;
pub use router::Router;
pub use webhook::Webhook;

pub type HttpResponse = Response<Full<Bytes>>;

/// A plain-text answer (a status with a sentence saying why).
pub(crate) fn text(status: StatusCode, msg: impl Into<String>) -> HttpResponse {
    let mut body = msg.into();
    body.push('\n');
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A Kubernetes `Status` answer (what kubectl and kube-apiserver expect from an API server):
/// `reason` is the machine-readable word (`Unauthorized`, `RequestEntityTooLarge`, ...).
pub(crate) fn kube_status(status: StatusCode, reason: &str, msg: &str) -> HttpResponse {
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": msg,
        "reason": reason,
        "code": status.as_u16(),
    });
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}
