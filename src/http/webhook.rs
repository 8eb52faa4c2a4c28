//! The webhook's request handler (`POST /authenticate`), independent of sockets: routing,
//! body limits, the review, the decision log line. Tests call [`Webhook::handle`] directly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use jiff::Timestamp;

use super::{HttpResponse, text};
use crate::index::Index;
use crate::metrics::Metrics;
use crate::review;
use crate::token::IdKey;
use crate::usage::UsageSink;

/// Request bodies larger than this are refused with 413 (a TokenReview is well under 1 KiB).
pub const MAX_BODY: usize = 64 * 1024;

/// What a request is charged against the [`MemoryBudget`] besides its headers and body: an
/// allowance for the stream's state in hyper and h2, its task and the handler's future.
pub const REQUEST_OVERHEAD: usize = 4 * 1024;

/// One budget, in bytes, for every request whose body is being received, on all connections
/// together: its headers, its body buffer and [`REQUEST_OVERHEAD`]. A request that cannot get
/// its share is answered `503` with `Retry-After: 1` at once (see [`Webhook::handle`]), so what
/// slow or stalled uploads can make the server hold is this budget, whatever the number of
/// connections and streams.
pub struct MemoryBudget {
    bytes: tokio::sync::Semaphore,
    total: usize,
}

impl MemoryBudget {
    pub fn new(total: usize) -> Arc<Self> {
        let total = total.min(tokio::sync::Semaphore::MAX_PERMITS);
        Arc::new(MemoryBudget {
            bytes: tokio::sync::Semaphore::new(total),
            total,
        })
    }

    /// Bytes held by requests right now.
    pub fn in_use(&self) -> usize {
        self.total - self.bytes.available_permits()
    }

    pub fn total(&self) -> usize {
        self.total
    }

    fn take(&self, bytes: usize) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.bytes.try_acquire_many(u32::try_from(bytes).ok()?).ok()
    }
}

/// The webhook request handler.
pub struct Webhook {
    pub index: Index,
    pub metrics: Arc<Metrics>,
    /// How long a client may take to send the request body.
    pub body_timeout: Duration,
    pub usage: Option<Arc<dyn UsageSink>>,
    /// Shared by all connections: see [`MemoryBudget`].
    pub memory: Arc<MemoryBudget>,
    /// Answers `POST /authorize` (see [`super::authorize`]); `None`: that path is not served.
    pub authorizer: Option<Arc<crate::authorizer::Authorizer>>,
}

impl Webhook {
    /// Routes and answers one request. Never panics on any input; every failure is a status.
    pub async fn handle<B>(&self, req: Request<B>, peer: SocketAddr) -> HttpResponse
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // A HEAD answer carries no body; over HTTP/2 one would be a protocol error.
        let head = req.method() == Method::HEAD;
        let mut resp = self.route(req, peer).await;
        if head {
            *resp.body_mut() = Full::new(Bytes::new());
        }
        self.metrics.http_response(resp.status().as_u16());
        resp
    }

    async fn route<B>(&self, req: Request<B>, peer: SocketAddr) -> HttpResponse
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let authorize = self.authorizer.is_some() && req.uri().path() == "/authorize";
        if req.uri().path() != "/authenticate" && !authorize {
            return text(
                StatusCode::NOT_FOUND,
                "not found: the webhook path is /authenticate",
            );
        }
        if req.method() != Method::POST {
            let mut r = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "use POST with a TokenReview body",
            );
            r.headers_mut()
                .insert(ALLOW, http::HeaderValue::from_static("POST"));
            return r;
        }
        // Never a false denial before the store is loaded: kube-apiserver would cache it.
        // After the store stopped, never an answer that may ignore a revocation either.
        // `/authorize` answers no opinion instead (see `Webhook::authorize`).
        if !self.index.is_ready() && !authorize {
            let why = match self.index.failure() {
                Some(_) => "key store stopped; keygate is restarting",
                None => "key store not loaded yet; retry",
            };
            let mut r = text(StatusCode::SERVICE_UNAVAILABLE, why);
            r.headers_mut()
                .insert(RETRY_AFTER, http::HeaderValue::from_static("1"));
            return r;
        }
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        // HTTP/1.1 only: see `read_body`.
        let drain = req.version() < Version::HTTP_2;
        if declared.is_some_and(|n| n > MAX_BODY as u64 && (!drain || n > DRAIN_MAX as u64)) {
            return too_large();
        }
        // Headers as HPACK counts them (32 bytes of overhead each).
        let header_bytes: usize = req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 32)
            .sum();
        let Some(held) = self.memory.take(REQUEST_OVERHEAD + header_bytes) else {
            return if authorize {
                self.authorize_busy()
            } else {
                self.busy()
            };
        };
        let first = declared.map_or(1024, |n| n.min(MAX_BODY as u64) as usize);
        let read = read_body(req.into_body(), drain, first, &self.memory, held);
        let body = match tokio::time::timeout(self.body_timeout, read).await {
            Err(_) => {
                return text(
                    StatusCode::REQUEST_TIMEOUT,
                    "request body not received in time",
                );
            }
            Ok(Err(BodyError::TooLarge)) => return too_large(),
            Ok(Err(BodyError::NoMemory)) if authorize => return self.authorize_busy(),
            Ok(Err(BodyError::NoMemory)) => return self.busy(),
            Ok(Err(BodyError::Read(e))) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read request body: {e}"),
                );
            }
            Ok(Ok(b)) => b,
        };
        if authorize {
            return self.authorize(&body, peer).await;
        }
        self.review(&body, peer)
    }

    /// The answer when the [`MemoryBudget`] is spent: kube-apiserver retries a 503 (its webhook
    /// client backs off and retries server errors) and does not cache it. 503 rather than 429:
    /// the server as a whole is out of room, not this client over a quota of its own.
    fn busy(&self) -> HttpResponse {
        self.metrics.request_memory_refused();
        let mut r = text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many requests in flight: memory budget reached (--max-request-memory); retry",
        );
        r.headers_mut()
            .insert(RETRY_AFTER, http::HeaderValue::from_static("1"));
        r
    }

    /// Decides one TokenReview body and logs the decision.
    pub fn review(&self, body: &[u8], peer: SocketAddr) -> HttpResponse {
        let start = Instant::now();
        let request = match review::decode(body) {
            Ok(r) => r,
            Err(e) => return text(StatusCode::BAD_REQUEST, reason_400(&e)),
        };
        let now = Timestamp::now();
        let decision = review::decide(&self.index, request.token(), now);
        let out = review::encode(request.api_version, &decision);
        let elapsed = start.elapsed();
        self.metrics
            .decision(decision.reason, elapsed.as_secs_f64());
        if let (Some(key), Some(usage)) = (&decision.key, &self.usage) {
            usage.used(key.id_key(), now);
        }
        log_decision(&self.index, &decision, peer, elapsed);
        let mut r = Response::new(Full::new(Bytes::from(out)));
        r.headers_mut().insert(
            CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        r
    }
}

/// The plain reason of a 400, which never echoes the request: serde_json's messages quote the
/// offending value (`invalid type: string "kg_…"`), which may be the token, and kube-apiserver
/// logs webhook error answers. Only the kind of error and where it is are said.
fn reason_400(e: &review::ReviewError) -> String {
    use review::ReviewError;
    use serde_json::error::Category;
    match e {
        ReviewError::Json(j) => {
            let what = match j.classify() {
                Category::Io => "cannot be read",
                Category::Syntax => "is not valid JSON",
                Category::Data => "has a field of the wrong type, or is not an object",
                Category::Eof => "ends before the JSON does",
            };
            format!(
                "request body is not a TokenReview: it {what} (line {}, column {})",
                j.line(),
                j.column()
            )
        }
        ReviewError::WrongKind(_) => "kind is not \"TokenReview\"".to_owned(),
        ReviewError::WrongApiVersion(_) => {
            "apiVersion is not authentication.k8s.io/v1 or authentication.k8s.io/v1beta1".to_owned()
        }
        ReviewError::MissingToken => e.to_string(),
    }
}

/// Over HTTP/1.1, an oversized body is read on and discarded up to this many bytes before the
/// 413 is sent: closing a connection with unread data makes the kernel reset it, which can
/// destroy the answer before the client reads it. Larger bodies are refused at once.
const DRAIN_MAX: usize = 2 * 1024 * 1024;

enum BodyError {
    TooLarge,
    NoMemory,
    Read(Box<dyn std::error::Error + Send + Sync>),
}

/// Reads a body of at most [`MAX_BODY`] bytes; with `drain`, keeps reading (and discarding) an
/// oversized one up to [`DRAIN_MAX`] so the 413 can be delivered. The buffer starts at `first`
/// bytes and every byte of its capacity is charged to `memory` (added to `held`) before it is
/// allocated.
async fn read_body<B>(
    body: B,
    drain: bool,
    first: usize,
    memory: &MemoryBudget,
    mut held: tokio::sync::SemaphorePermit<'_>,
) -> Result<Bytes, BodyError>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = std::pin::pin!(body);
    let mut buf = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.as_mut().frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.into()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.remaining());
        if seen > MAX_BODY {
            if !drain || seen > DRAIN_MAX {
                return Err(BodyError::TooLarge);
            }
            continue;
        }
        if seen > buf.capacity() {
            // Grow by doubling (from `first`), never past MAX_BODY, charging the growth first.
            let cap = seen.max(first).max(buf.capacity() * 2).min(MAX_BODY);
            let more = memory
                .take(cap - buf.capacity())
                .ok_or(BodyError::NoMemory)?;
            held.merge(more);
            buf.reserve_exact(cap - buf.len());
        }
        buf.put(data);
    }
    if seen > MAX_BODY {
        return Err(BodyError::TooLarge);
    }
    // `held` is released here: the review that follows is synchronous and short.
    drop(held);
    Ok(Bytes::from(buf))
}

fn too_large() -> HttpResponse {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body over {MAX_BODY} bytes"),
    )
}

/// One structured event per decision. Fields: key id (public), username, result, reason, peer,
/// duration. Never the token or any part of the secret.
fn log_decision(index: &Index, d: &review::Decision<'_>, peer: SocketAddr, elapsed: Duration) {
    // `key_id` is set whenever the token parsed, so also whenever a key matched.
    let username = index
        .policy()
        .display_username(d.key_id.and_then(IdKey::new));
    let result = if d.reason.authenticated() {
        "authenticated"
    } else {
        "denied"
    };
    // Display (`%`), not the default Debug of `&str`, which escapes character by character:
    // every value here is base62 or a fixed word, so there is nothing to escape, and this line
    // is written once per review.
    tracing::info!(
        key_id = %d.key_id.unwrap_or_default(),
        %username,
        result = %result,
        reason = %d.reason.as_str(),
        peer = %peer,
        duration_us = elapsed.as_micros() as u64,
        "tokenreview"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_request_reasons_never_echo_the_body() {
        let t = "kg_AAAAAAAAAAAAAAAAAAAAAA_SECRETsecretSECRETsecretSECRETsecretSECRETs";
        let bodies = [
            format!("\"{t}\""),
            format!(
                "{{\"kind\":\"TokenReview\",\"apiVersion\":\"authentication.k8s.io/v1\",\"spec\":\"{t}\"}}"
            ),
            format!(
                "{{\"kind\":\"{t}\",\"apiVersion\":\"authentication.k8s.io/v1\",\"spec\":{{\"token\":\"x\"}}}}"
            ),
            format!(
                "{{\"kind\":\"TokenReview\",\"apiVersion\":\"{t}\",\"spec\":{{\"token\":\"x\"}}}}"
            ),
            format!(
                "{{\"kind\":\"TokenReview\",\"apiVersion\":\"authentication.k8s.io/v1\",\"spec\":{{\"token\":\"{t}\",\"audiences\":\"{t}\"}}}}"
            ),
            format!("{{\"kind\":\"TokenReview\",\"{t}\""),
            t.to_owned(),
        ];
        for b in &bodies {
            let e = review::decode(b.as_bytes()).err().unwrap();
            let reason = reason_400(&e);
            assert!(!reason.contains("SECRET"), "{reason}");
            assert!(!reason.is_empty());
        }
        let e = review::decode(b"not json").err().unwrap();
        assert!(reason_400(&e).contains("not a TokenReview"));
        assert!(reason_400(&e).contains("line 1, column"));
    }
}
