//! The webhook's request handler (`POST /authenticate`), independent of sockets: routing,
//! body limits, the review, the decision log line. Tests call [`Webhook::handle`] directly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Body;
use jiff::Timestamp;

use super::body::{self, BodyError, MemoryBudget};
use super::{HttpResponse, text};
use crate::admission;
use crate::index::Index;
use crate::metrics::Metrics;
use crate::readthrough::ReadThrough;
use crate::review;
use crate::token::IdKey;
use crate::usage::UsageSink;

/// Request bodies larger than this are refused with 413 (a TokenReview is well under 1 KiB).
pub const MAX_BODY: usize = 64 * 1024;

/// The webhook request handler.
pub struct Webhook {
    pub index: Index,
    pub metrics: Arc<Metrics>,
    /// How long a client may take to send the request body.
    pub body_timeout: Duration,
    pub usage: Option<Arc<dyn UsageSink>>,
    /// Shared by all connections: see [`MemoryBudget`].
    pub memory: Arc<MemoryBudget>,
    /// The record guard, answered at [`admission::PATH`] when set (`--record-writer`).
    pub admission: Option<Arc<admission::Guard>>,
    /// Direct reads of records the index does not have yet (kube store).
    pub read_through: Option<Arc<ReadThrough>>,
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

    /// Every request's future holds this one, and hyper moves it (into its connection state,
    /// between the states of the handler) a few times per request: what only a rare request
    /// awaits (a direct read of a record, a key's authorization with its SubjectAccessReview,
    /// the API) is boxed, so the common future stays small. With all of it inline the
    /// handler's future was 5.4 KB, and `memmove` took ~0.7 µs more per HTTP/1.1 request than
    /// in the bare floor (`perf`, issue 16 third round, BENCHMARKS.md).
    async fn route<B>(&self, req: Request<B>, peer: SocketAddr) -> HttpResponse
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = req.uri().path();
        let admit = self.admission.as_ref().filter(|_| path == admission::PATH);
        let authorize = self.authorizer.is_some() && path == "/authorize";
        if path != "/authenticate" && admit.is_none() && !authorize {
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
        // (The record guard reads no keys; `/authorize` answers no opinion instead, see
        // `Webhook::authorize`.)
        if admit.is_none() && !authorize && !self.index.is_ready() {
            let why = match self.index.failure() {
                Some(_) => "key store stopped; keygate is restarting",
                None => "key store not loaded yet; retry",
            };
            let mut r = text(StatusCode::SERVICE_UNAVAILABLE, why);
            r.headers_mut()
                .insert(RETRY_AFTER, http::HeaderValue::from_static("1"));
            return r;
        }
        let (parts, body) = req.into_parts();
        let read = body::read(
            &parts.headers,
            parts.version,
            body,
            MAX_BODY,
            &self.memory,
            self.body_timeout,
        );
        // The headers (up to 16 KiB) are not needed while the body arrives.
        drop(parts);
        let body = match read.await {
            Ok(b) => b,
            Err(BodyError::Timeout) => {
                return text(
                    StatusCode::REQUEST_TIMEOUT,
                    "request body not received in time",
                );
            }
            Err(BodyError::TooLarge) => return too_large(),
            Err(BodyError::NoMemory) if authorize => return self.authorize_busy(),
            Err(BodyError::NoMemory) => return self.busy(),
            Err(BodyError::Read(e)) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read request body: {e}"),
                );
            }
        };
        if authorize {
            return self.authorize(&body, peer).await;
        }
        match admit {
            Some(guard) => guard_answer(guard, &body, peer),
            None if self.read_through.is_none() => self.review(&body, peer),
            // Boxed, as `Webhook::authorize`'s rare paths are: a direct read's future is large.
            None => Box::pin(self.review_reading(&body, peer)).await,
        }
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
        self.answer(request.api_version, decision, now, start, peer)
    }

    /// [`Webhook::review`], but a token the index cannot accept yet (unknown ID, a secret
    /// matching neither hash, an unsealed record) first gets a direct read of its record
    /// (see [`ReadThrough`]), and is decided again if that changed the index.
    pub async fn review_reading(&self, body: &[u8], peer: SocketAddr) -> HttpResponse {
        let Some(rt) = &self.read_through else {
            return self.review(body, peer);
        };
        let start = Instant::now();
        let request = match review::decode(body) {
            Ok(r) => r,
            Err(e) => return text(StatusCode::BAD_REQUEST, reason_400(&e)),
        };
        let mut now = Timestamp::now();
        let mut decision = review::decide(&self.index, request.token(), now);
        let retry = matches!(
            decision.reason,
            review::Reason::UnknownKey
                | review::Reason::WrongSecret
                | review::Reason::UnsealedRecord
        );
        if retry
            && let Ok(t) = crate::token::parse_token(request.token())
            && rt.read(t.key(), &t.secret_hash()).await
        {
            now = Timestamp::now();
            decision = review::decide(&self.index, request.token(), now);
        }
        self.answer(request.api_version, decision, now, start, peer)
    }

    fn answer(
        &self,
        api_version: review::ApiVersion,
        decision: review::Decision<'_>,
        now: Timestamp,
        start: Instant,
        peer: SocketAddr,
    ) -> HttpResponse {
        let out = review::encode(api_version, &decision);
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

/// Answers one AdmissionReview for the record guard and logs writes it refused (with the
/// record's name and the user, which are not secret).
fn guard_answer(guard: &admission::Guard, body: &[u8], peer: SocketAddr) -> HttpResponse {
    match guard.review(body) {
        Err(e) => text(StatusCode::BAD_REQUEST, e.to_string()),
        Ok((out, verdict)) => {
            if let Some(record) = verdict.record.as_deref() {
                tracing::info!(
                    record,
                    username = %verdict.username,
                    operation = %verdict.operation,
                    allowed = verdict.allowed,
                    peer = %peer,
                    "record write reviewed"
                );
            }
            let mut r = Response::new(Full::new(Bytes::from(out)));
            r.headers_mut().insert(
                CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            r
        }
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
        peer = %Peer(peer),
        duration_us = elapsed.as_micros() as u64,
        "tokenreview"
    );
}

/// A peer address as `SocketAddr` displays it, an IPv4 one (every client on a cluster network)
/// written in one piece instead of through the nested formatting of address, octets and port:
/// it is on every decision line.
struct Peer(SocketAddr);

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let SocketAddr::V4(a) = self.0 else {
            return self.0.fmt(f);
        };
        // "255.255.255.255:65535"
        let mut buf = [0u8; 21];
        let mut n = 0;
        for (i, o) in a.ip().octets().into_iter().enumerate() {
            if i > 0 {
                buf[n] = b'.';
                n += 1;
            }
            push_decimal(&mut buf, &mut n, u16::from(o));
        }
        buf[n] = b':';
        n += 1;
        push_decimal(&mut buf, &mut n, a.port());
        f.write_str(std::str::from_utf8(&buf[..n]).unwrap_or_default())
    }
}

/// Appends `v` in decimal at `buf[*n..]`.
fn push_decimal(buf: &mut [u8], n: &mut usize, v: u16) {
    let mut d = 10_000;
    while d > 1 && v / d == 0 {
        d /= 10;
    }
    while d > 0 {
        buf[*n] = b'0' + ((v / d) % 10) as u8;
        *n += 1;
        d /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_written_as_socket_addresses_are() {
        for p in [
            "0.0.0.0:0",
            "1.2.3.4:5",
            "10.0.10.100:443",
            "255.255.255.255:65535",
            "127.0.0.1:10000",
            "[::1]:8443",
            "[fe80::1%3]:1",
        ] {
            let a: SocketAddr = p.parse().unwrap();
            assert_eq!(Peer(a).to_string(), a.to_string());
        }
    }

    /// The fast decision-line writer (`telemetry::decision_line`) recognises the event by its
    /// target and fields; if this event changed shape it would silently take the slow path.
    #[test]
    fn the_decision_event_is_the_one_the_log_writes_itself() {
        use std::sync::Mutex;
        use tracing_subscriber::layer::SubscriberExt;
        struct Seen(Arc<Mutex<Vec<bool>>>);
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Seen {
            fn on_event(
                &self,
                e: &tracing::Event<'_>,
                _: tracing_subscriber::layer::Context<'_, S>,
            ) {
                self.0
                    .lock()
                    .unwrap()
                    .push(crate::telemetry::decision_line::is_decision(e.metadata()));
            }
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sub = tracing_subscriber::registry().with(Seen(seen.clone()));
        let (index, token) =
            crate::fixtures::index_with_key(crate::identity::IdentityPolicy::default(), |_| {});
        index.set_ready();
        let webhook = Webhook {
            index,
            metrics: Metrics::new(),
            body_timeout: Duration::from_secs(5),
            usage: None,
            memory: MemoryBudget::new(1 << 20),
            admission: None,
            read_through: None,
            authorizer: None,
        };
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        tracing::subscriber::with_default(sub, || {
            for t in [token.as_str(), "kg_AAAAAAAAAAAAAAAAAAAAAA_x", "nope"] {
                let body = format!(
                    r#"{{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{{"token":"{t}"}}}}"#
                );
                assert_eq!(
                    webhook.review(body.as_bytes(), peer).status(),
                    StatusCode::OK
                );
            }
        });
        assert_eq!(*seen.lock().unwrap(), [true, true, true]);
    }

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
