//! Which handler answers a request on the TLS listener, and whether this connection may ask.
//!
//! Client certificates are checked per path, on what the handshake established once per
//! connection ([`crate::tls::Client`]):
//!
//! - the AccessKey API (`/apis`, `/apis/...`, `/openapi/...`, with `--api`) answers only
//!   kube-apiserver's front proxy (a certificate signed by the request-header CA with an
//!   allowed common name), and takes the caller from its `X-Remote-*` headers; anyone else gets
//!   `401` as a Kubernetes `Status`, whatever headers they sent;
//! - every other path (the webhooks: `/authenticate`) needs a certificate signed by
//!   `--client-ca` when it is set, as before; `X-Remote-*` headers are never read there.
//!
//! A new webhook path (`/authorize`) needs no change here: it is served by the webhook with
//! the same client-certificate rule as `/authenticate`.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::header::RETRY_AFTER;
use http::{HeaderName, Method, Request, StatusCode};
use http_body_util::Full;
use hyper::body::Body;
use tokio_util::task::AbortOnDropHandle;

use super::body::{self, BodyError};
use super::{HttpResponse, Webhook, kube_status, text};
use crate::api::{AccessKeyApi, Caller};
use crate::requestheader::RequestHeaderConfig;
use crate::tls::Client;

/// The largest AccessKey API request body (kube-apiserver's own limit is 3 MiB).
pub const API_MAX_BODY: usize = 3 << 20;

/// What answers the API paths once the caller is known: the [`AccessKeyApi`] (the router
/// needs no more of it, so tests of the listener can put a recorder there).
pub trait ApiHandler: Send + Sync {
    /// Answers one request (body read within [`API_MAX_BODY`]) for `caller`.
    fn handle(&self, req: Request<Bytes>, caller: Caller) -> BoxFuture<'_, HttpResponse>;
}

impl ApiHandler for AccessKeyApi {
    fn handle(&self, req: Request<Bytes>, caller: Caller) -> BoxFuture<'_, HttpResponse> {
        Box::pin(AccessKeyApi::handle(self, req, caller))
    }
}

/// The handlers of the TLS listener.
pub struct Router {
    pub webhook: Arc<Webhook>,
    api: Option<Arc<dyn ApiHandler>>,
}

/// One TLS connection: the router, the peer's address and what its certificate allows.
pub struct Connection {
    pub router: Arc<Router>,
    pub peer: SocketAddr,
    pub client: Client,
}

impl Router {
    /// A router serving the webhook only.
    pub fn new(webhook: Arc<Webhook>) -> Self {
        Router { webhook, api: None }
    }

    /// Also serves the AccessKey API to the front proxy.
    pub fn with_api(self, api: Arc<dyn ApiHandler>) -> Self {
        Router {
            api: Some(api),
            ..self
        }
    }
}

/// Whether `path` belongs to the AccessKey API (discovery, the group, OpenAPI documents).
fn is_api_path(path: &str) -> bool {
    let under = |root: &str| {
        path.strip_prefix(root)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    under("/apis") || under("/openapi")
}

impl Connection {
    /// Routes and answers one request. Never panics on any input; every failure is a status.
    pub async fn handle<B>(&self, req: Request<B>) -> HttpResponse
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let webhook = &self.router.webhook;
        if let Some(api) = &self.router.api
            && is_api_path(req.uri().path())
        {
            let head = req.method() == Method::HEAD;
            // Boxed: the API's future is large, and kept inline it would make every webhook
            // request's future as large (see `Webhook::route`).
            let mut resp = Box::pin(self.api(api.clone(), req)).await;
            if head {
                *resp.body_mut() = Full::new(Bytes::new());
            }
            webhook.metrics.http_response(resp.status().as_u16());
            return resp;
        }
        if !self.client.webhook {
            webhook
                .metrics
                .http_response(StatusCode::UNAUTHORIZED.as_u16());
            return text(
                StatusCode::UNAUTHORIZED,
                "client certificate not signed by --client-ca: this path answers kube-apiserver's \
                 webhook client only",
            );
        }
        webhook.handle(req, self.peer).await
    }

    async fn api<B>(&self, api: Arc<dyn ApiHandler>, req: Request<B>) -> HttpResponse
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Some(front_proxy) = &self.client.front_proxy else {
            tracing::debug!(peer = %self.peer, path = req.uri().path(), "API request refused: not the front proxy");
            return kube_status(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "keygate's API answers kube-apiserver's front proxy only (a client certificate \
                 signed by the request-header CA with an allowed common name); reach it through \
                 kube-apiserver",
            );
        };
        let caller = match front_proxy.caller(req.headers()) {
            Ok(c) => c,
            Err(why) => {
                tracing::debug!(peer = %self.peer, error = %why, "API request refused");
                return kube_status(StatusCode::UNAUTHORIZED, "Unauthorized", &why.to_string());
            }
        };
        let (mut parts, body) = req.into_parts();
        strip_identity(&mut parts.headers, front_proxy);
        let webhook = &self.router.webhook;
        let read = body::read(
            &parts.headers,
            parts.version,
            body,
            API_MAX_BODY,
            &webhook.memory,
            webhook.body_timeout,
        );
        let body = match read.await {
            Ok(b) => b,
            Err(e) => return body_error(e, webhook),
        };
        // A task of its own: an HTTP/2 connection's requests run inside its task (see
        // `streams`), and an API request can take long (a list of many keys).
        let req = Request::from_parts(parts, body);
        let task = tokio::spawn(async move { api.handle(req, caller).await });
        match AbortOnDropHandle::new(task).await {
            Ok(resp) => resp,
            Err(e) => {
                tracing::error!(error = %e, "AccessKey API request failed");
                kube_status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "keygate failed to answer this request; see its log",
                )
            }
        }
    }
}

/// Removes the headers the caller was read from, so the API sees its identity only as the
/// [`crate::api::Caller`] (as kube-apiserver's own filter does).
fn strip_identity(headers: &mut http::HeaderMap, config: &RequestHeaderConfig) {
    let extra: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            config
                .extra_prefixes
                .iter()
                .any(|p| k.as_str().starts_with(p.as_str()))
        })
        .cloned()
        .collect();
    let named = config.username_headers.iter().chain(&config.group_headers);
    for name in named.chain(&extra) {
        headers.remove(name);
    }
}

fn body_error(e: BodyError, webhook: &Webhook) -> HttpResponse {
    match e {
        BodyError::TooLarge => kube_status(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            &format!("request body over {API_MAX_BODY} bytes"),
        ),
        BodyError::NoMemory => {
            webhook.metrics.request_memory_refused();
            let mut r = kube_status(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "too many requests in flight: memory budget reached (--max-request-memory); retry",
            );
            r.headers_mut()
                .insert(RETRY_AFTER, http::HeaderValue::from_static("1"));
            r
        }
        BodyError::Timeout => kube_status(
            StatusCode::REQUEST_TIMEOUT,
            "Timeout",
            "request body not received in time",
        ),
        BodyError::Read(e) => kube_status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("cannot read request body: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths_are_whole_segments() {
        for p in [
            "/apis",
            "/apis/",
            "/apis/keygate.dev/v1alpha1",
            "/openapi/v2",
        ] {
            assert!(is_api_path(p), "{p}");
        }
        for p in [
            "/authenticate",
            "/apisx",
            "/api",
            "/",
            "/openapiv2",
            "/healthz",
        ] {
            assert!(!is_api_path(p), "{p}");
        }
    }
}
