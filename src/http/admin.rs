//! The admin endpoints on the plain-HTTP listener: `/healthz`, `/readyz`, `/metrics`.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;

use super::{HttpResponse, text};
use crate::index::Index;
use crate::metrics::Metrics;

/// The admin endpoints on the plain-HTTP listener. While `draining` (after SIGTERM, during
/// --shutdown-delay) /readyz fails so load balancers stop sending new connections, while the
/// webhook keeps answering the ones that still arrive.
pub fn handle<B>(
    req: &Request<B>,
    index: &Index,
    metrics: &Metrics,
    draining: bool,
) -> HttpResponse {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok"),
        (&Method::GET, "/readyz") if index.failure().is_some() => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "key store stopped; see the log",
        ),
        (&Method::GET, "/readyz") if draining => {
            text(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
        }
        (&Method::GET, "/readyz") if index.is_ready() => text(StatusCode::OK, "ok"),
        (&Method::GET, "/readyz") => {
            text(StatusCode::SERVICE_UNAVAILABLE, "key store not loaded yet")
        }
        (&Method::GET, "/metrics") => {
            let mut r = Response::new(Full::new(Bytes::from(metrics.encode(index))));
            r.headers_mut().insert(
                CONTENT_TYPE,
                http::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        (_, "/healthz" | "/readyz" | "/metrics") => text(StatusCode::METHOD_NOT_ALLOWED, "use GET"),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /healthz, /readyz or /metrics",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentityPolicy;

    #[test]
    fn readyz_fails_once_the_store_stopped() {
        let (index, metrics) = (Index::new(IdentityPolicy::default()), Metrics::new());
        let get = || Request::get("/readyz").body(()).unwrap();
        index.replace_all([]);
        assert_eq!(
            handle(&get(), &index, &metrics, false).status(),
            StatusCode::OK
        );
        index.fail("the dir store stopped".into());
        let r = handle(&get(), &index, &metrics, false);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
