//! keygate over HTTP: the TLS listener and its webhook handler, and the plain-HTTP admin
//! endpoints. Handlers ([`webhook`], [`admin`]) know nothing of sockets; [`listener`] owns
//! connections, TLS, limits and shutdown.

pub mod admin;
mod authorize;
pub mod handshake;
pub mod listener;
pub mod webhook;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Response, StatusCode};
use http_body_util::Full;

pub use listener::Limits;
pub use webhook::{MemoryBudget, Webhook};

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
