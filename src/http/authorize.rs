//! `POST /authorize`: kube-apiserver's authorization webhook, next to `/authenticate` on the
//! same listener (same client-certificate rule, limits and body reading).
//!
//! Every answer is one kube-apiserver neither retries nor holds against the whole cluster: no
//! 5xx and no `Retry-After` (its webhook client retries those, for every user's request). A
//! body that is not a SubjectAccessReview is `400`, which kube-apiserver does not retry: it
//! logs the error and goes on to its next authorizer, as for no opinion. When the request
//! memory budget is spent, the answer is no opinion (`200`) without reading the body.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Response, StatusCode};
use http_body_util::Full;

use super::{HttpResponse, Webhook, text};
use crate::authorizer::wire::{self, ApiVersion, Verdict};

impl Webhook {
    /// Decides one SubjectAccessReview body. Only called when an authorizer is configured.
    pub async fn authorize(&self, body: &[u8], _peer: SocketAddr) -> HttpResponse {
        let Some(authorizer) = &self.authorizer else {
            return text(StatusCode::NOT_FOUND, "not found: /authorize is not served");
        };
        let review = match authorizer.read(body) {
            Ok(r) => r,
            Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
        };
        let decision = authorizer.decide(&review).await;
        json(wire::encode(
            review.api_version,
            decision.verdict,
            &decision.message,
        ))
    }

    /// The answer to `/authorize` when the memory budget is spent: no opinion, in v1 (the body,
    /// which says the version, was not read; a v1beta1 client reads this as no opinion too).
    pub(super) fn authorize_busy(&self) -> HttpResponse {
        self.metrics.request_memory_refused();
        json(wire::encode(
            ApiVersion::V1,
            Verdict::NoOpinion,
            "keygate is out of request memory (--max-request-memory)",
        ))
    }
}

fn json(body: Vec<u8>) -> HttpResponse {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}
