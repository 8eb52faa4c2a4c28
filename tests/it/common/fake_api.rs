//! A faked Kubernetes API server (tower-test): a `kube::Client` whose every request is logged
//! and answered by a function, for tests of what keygate sends and how it reacts.

use std::sync::{Arc, Mutex};

use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};

/// One request the fake API server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

impl Seen {
    pub fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path == path
    }
}

pub type Log = Arc<Mutex<Vec<Seen>>>;

/// A kube client whose API server is `respond`.
pub fn fake(respond: impl Fn(&Seen) -> (u16, Value) + Send + 'static) -> (kube::Client, Log) {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let log: Log = Arc::default();
    let log2 = log.clone();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let seen = Seen {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                query: parts.uri.query().unwrap_or_default().to_owned(),
                content_type: parts
                    .headers
                    .get("content-type")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            let (code, resp) = respond(&seen);
            log2.lock().unwrap().push(seen);
            let resp = Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&resp).unwrap()))
                .unwrap();
            send.send_response(resp);
        }
    });
    (kube::Client::new(svc, "default"), log)
}

pub fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "reason": reason, "message": message, "code": code}),
    )
}

/// The object of a create, as the API server returns it.
pub fn created(seen: &Seen) -> (u16, Value) {
    let mut b = seen.body.clone();
    b["metadata"]["resourceVersion"] = json!("1");
    b["metadata"]["creationTimestamp"] = json!("2030-01-01T00:00:00Z");
    (201, b)
}
