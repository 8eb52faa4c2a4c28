//! Issue 12 over real TLS: the record guard (admission webhook) on the webhook's listener,
//! and keys that work at once through a direct read of their record.

use serde_json::{Value, json};

use crate::common::fake_api;
use crate::common::*;
use keygate::admission::Guard;
use keygate::token::{KeyId, Token};

const API_SA: &str = "system:serviceaccount:keygate:keygate-api";
const REC: &str = "keygate-nfyyvdtg8k1adujwk3yfh1";

fn guard() -> Option<Guard> {
    Some(Guard {
        namespace: "keygate-system".into(),
        writers: vec![API_SA.into()],
    })
}

fn admission_review(version: &str, user: &str) -> String {
    json!({
        "apiVersion": version,
        "kind": "AdmissionReview",
        "request": {
            "uid": "0b0e3b4c-1",
            "kind": {"group": "", "version": "v1", "kind": "Secret"},
            "resource": {"group": "", "version": "v1", "resource": "secrets"},
            "namespace": "keygate-system",
            "name": REC,
            "operation": "UPDATE",
            "userInfo": {"username": user},
            "object": {"metadata": {"name": REC}, "type": "keygate.dev/access-key"},
            "oldObject": {"metadata": {"name": REC}, "type": "keygate.dev/access-key"},
        }
    })
    .to_string()
}

#[tokio::test]
async fn the_record_guard_answers_on_the_tls_listener_in_v1_and_v1beta1() {
    // Before the store is loaded too: the guard reads no keys.
    let srv = TestServer::start(ServerOptions {
        no_store: true,
        admission: guard(),
        ..ServerOptions::default()
    })
    .await;
    for proto in [Proto::Http1, Proto::Http2] {
        let mut c = srv.client().connect(srv.addr, proto).await.unwrap();
        for version in ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"] {
            let r = c
                .post(
                    "/validate-records?timeout=10s",
                    admission_review(version, API_SA),
                )
                .await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            let v: Value = r.json();
            assert_eq!(v["apiVersion"], version);
            assert_eq!(v["response"]["uid"], "0b0e3b4c-1");
            assert_eq!(v["response"]["allowed"], true);
            let r = c
                .post("/validate-records", admission_review(version, "edit-user"))
                .await;
            let v: Value = r.json();
            assert_eq!(v["response"]["allowed"], false);
            assert_eq!(v["response"]["status"]["code"], 403);
            assert!(
                v["response"]["status"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("AccessKey API")
            );
        }
        let r = c.post("/validate-records", "{not json").await;
        assert_eq!(r.status, 400);
    }
}

#[tokio::test]
async fn without_record_writers_there_is_no_guard_path() {
    let srv = TestServer::start(ServerOptions::default()).await;
    let mut c = srv.client().connect(srv.addr, Proto::Http1).await.unwrap();
    let r = c
        .post(
            "/validate-records",
            admission_review("admission.k8s.io/v1", API_SA),
        )
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn a_key_the_index_has_not_seen_works_on_first_use() {
    let token = Token::generate(KeyId::generate());
    let mut rec = keygate::record::KeyRecord::new(token.id.clone(), token.secret_hash(), "new");
    rec.created_by = "alice".into();
    let secret = serde_json::to_value(rec.to_secret("keygate-system")).unwrap();
    let name = token.id.record_name();
    let (client, log) = fake_api::fake(move |seen| {
        if seen.path.ends_with(&format!("/secrets/{name}")) {
            (200, secret.clone())
        } else {
            fake_api::status(404, "NotFound", "not found")
        }
    });
    let srv = TestServer::start(ServerOptions {
        read_through: Some((client, 20)),
        ..ServerOptions::default()
    })
    .await;
    let mut c = srv.client().connect(srv.addr, Proto::Http2).await.unwrap();
    let r = c.review(&token.expose()).await;
    assert_eq!(r.json()["status"]["authenticated"], true, "{:?}", r.body);
    // Known from now on: the second review reads nothing.
    let r = c.review(&token.expose()).await;
    assert_eq!(r.json()["status"]["authenticated"], true);
    assert_eq!(log.lock().unwrap().len(), 1);
    // An unknown ID is denied as before, and read once only.
    let other = Token::generate(KeyId::generate()).expose();
    for _ in 0..5 {
        let r = c.review(&other).await;
        assert_eq!(r.json()["status"]["authenticated"], false);
    }
    assert_eq!(log.lock().unwrap().len(), 2);
}
