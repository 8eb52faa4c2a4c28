//! `POST /authorize` over real TLS, next to `/authenticate`, and key chains in the TokenReview
//! path, with the dir store.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::fake_api;
use crate::common::*;
use keygate::authorizer::AuthorizerSettings;
use keygate::record::{Creator, Expiry, KeyRecord};
use keygate::token::{KeyId, Token};

const SOON: Duration = Duration::from_secs(5);
const SAR_V1: &str = include_str!("../fixtures/subjectaccessreview/request-v1.json");
const SAR_V1BETA1: &str = include_str!("../fixtures/subjectaccessreview/request-v1beta1.json");

/// The fixture as key `id` sends it (the key's username and `keygate.dev/key-id`).
fn as_key(fixture: &str, id: &KeyId) -> String {
    let mut v: Value = serde_json::from_str(fixture).unwrap();
    v["spec"]["user"] = json!(format!("service-account-{}", id.key()));
    v["spec"]["extra"] = json!({"keygate.dev/key-id": [id.as_str()]});
    v.to_string()
}

/// `status` of a 200 answer, checked to be in `api_version` and never an error.
fn status(r: &Reply, api_version: &str) -> Value {
    assert_eq!(r.status, 200, "{:?}", r.body);
    let v = r.json();
    assert_eq!(v["apiVersion"], api_version, "{v}");
    assert_eq!(v["kind"], "SubjectAccessReview");
    v["status"].clone()
}

fn no_opinion(s: &Value) -> bool {
    s["allowed"] == false && s.get("denied").is_none()
}

#[tokio::test]
async fn answers_in_the_version_asked_with_the_webhook_client_certificate() {
    let srv = TestServer::start(ServerOptions {
        client_ca: true,
        ..ServerOptions::default()
    })
    .await;
    let trusted = srv.client().with_identity(&srv.bundle.client);
    for proto in [Proto::Http1, Proto::Http2] {
        let mut c = trusted.connect(srv.addr, proto).await.unwrap();
        for (body, version) in [
            (SAR_V1, "authorization.k8s.io/v1"),
            (SAR_V1BETA1, "authorization.k8s.io/v1beta1"),
        ] {
            let s = status(&c.post("/authorize", body).await, version);
            assert!(no_opinion(&s), "{s}");
            assert!(
                s.get("reason").is_none(),
                "nothing to say to a plain user: {s}"
            );
        }
    }
    // Without the client certificate: no answer, as for /authenticate.
    let mut tls = srv.client().connect(srv.addr, Proto::Http1).await;
    if let Ok(c) = &mut tls {
        let req = http::Request::post("https://localhost/authorize")
            .body(http_body_util::Full::new(bytes::Bytes::from(SAR_V1)))
            .unwrap();
        assert!(c.send(req).await.is_err(), "answered without a certificate");
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn no_opinion_before_the_store_is_loaded_and_never_a_5xx() {
    let srv = TestServer::start(ServerOptions {
        no_store: true,
        authorizer: AuthorizerSettings {
            deny_revoked: true,
            ..AuthorizerSettings::default()
        },
        ..ServerOptions::default()
    })
    .await;
    let mut c = srv.client().connect(srv.addr, Proto::Http2).await.unwrap();
    let key = KeyId::generate();
    for body in [SAR_V1.to_owned(), as_key(SAR_V1, &key)] {
        let s = status(&c.post("/authorize", body).await, "authorization.k8s.io/v1");
        assert!(no_opinion(&s), "{s}");
    }
    assert_eq!(
        c.review("kg_anything").await.status,
        503,
        "/authenticate waits"
    );
    srv.index.set_ready();
    // Loaded, instant revocation on: the unknown key is denied now.
    let s = status(
        &c.post("/authorize", as_key(SAR_V1, &key)).await,
        "authorization.k8s.io/v1",
    );
    assert_eq!(s["denied"], true, "{s}");
    assert!(s["reason"].as_str().unwrap().contains("no such key"), "{s}");

    // Garbage is a 4xx (kube-apiserver does not retry those), never a 5xx or Retry-After.
    let big = format!("{{\"kind\":\"{}\"}}", "x".repeat(100 * 1024));
    let bodies: [&str; 6] = [
        "",
        "{not json",
        "[]",
        r#"{"apiVersion":"authorization.k8s.io/v1","kind":"TokenReview"}"#,
        r#"{"apiVersion":"authorization.k8s.io/v2","kind":"SubjectAccessReview"}"#,
        &big,
    ];
    for body in bodies {
        let r = c.post("/authorize", body.to_owned()).await;
        assert!(
            (400..500).contains(&r.status),
            "{} for {:.40}",
            r.status,
            body
        );
        assert!(r.headers.get("retry-after").is_none());
    }
    srv.shutdown().await;
}

/// An inheriting key's record in the dir store, created by `creator`.
fn inheriting(token: &Token, creator: &str, namespaces: &[&str]) -> KeyRecord {
    let mut r = KeyRecord::new(token.id.clone(), token.secret_hash(), "inherited");
    r.inherit_creator = true;
    r.creator = Some(Creator {
        username: creator.into(),
        groups: vec!["dev".into()],
        ..Creator::default()
    });
    r.namespaces = namespaces.iter().map(|s| s.to_string()).collect();
    r
}

#[tokio::test]
async fn an_inheriting_key_gets_its_creators_answer_inside_its_scope() {
    let (kube, seen) = fake_api::fake(|req| {
        let allowed = req.body["spec"]["user"] == "alice";
        (
            201,
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                   "status": {"allowed": allowed}}),
        )
    });
    let srv = TestServer::start(ServerOptions {
        kube: Some(kube),
        ..ServerOptions::default()
    })
    .await;
    let (alice, bob) = (
        Token::generate(KeyId::generate()),
        Token::generate(KeyId::generate()),
    );
    write_record(&srv.keys_dir, &inheriting(&alice, "alice", &["apps"]));
    write_record(&srv.keys_dir, &inheriting(&bob, "bob", &["apps"]));
    assert!(eventually(SOON, || async { srv.index.len() == 2 }).await);
    let mut c = srv.client().connect(srv.addr, Proto::Http2).await.unwrap();
    for (fixture, version) in [
        (SAR_V1, "authorization.k8s.io/v1"),
        (SAR_V1BETA1, "authorization.k8s.io/v1beta1"),
    ] {
        let s = status(
            &c.post("/authorize", as_key(fixture, &alice.id)).await,
            version,
        );
        assert_eq!(s["allowed"], true, "{s}");
        let s = status(
            &c.post("/authorize", as_key(fixture, &bob.id)).await,
            version,
        );
        assert!(no_opinion(&s), "{s}");
        assert!(
            s["reason"].as_str().unwrap().contains("\"bob\" may not"),
            "{s}"
        );
    }
    // One review per creator: the second version hit the cache.
    let sent = seen.lock().unwrap().clone();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent[0].is("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews"));
    // Outside the scope: no review at all.
    let mut other = serde_json::from_str::<Value>(&as_key(SAR_V1, &alice.id)).unwrap();
    other["spec"]["resourceAttributes"]["namespace"] = json!("kube-system");
    let s = status(
        &c.post("/authorize", other.to_string()).await,
        "authorization.k8s.io/v1",
    );
    assert!(no_opinion(&s), "{s}");
    assert_eq!(seen.lock().unwrap().len(), 2);
    let (code, metrics) = admin_get(srv.admin, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains(
            r#"keygate_authorize_decisions_total{result="allowed",reason="creator_allowed"} 2"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains("keygate_authorize_creator_reviews_total{result=\"ok\"} 2"));
    srv.shutdown().await;
}

#[tokio::test]
async fn with_the_dir_store_an_inheriting_key_gets_no_opinion_saying_why() {
    let srv = TestServer::start(ServerOptions::default()).await;
    let t = Token::generate(KeyId::generate());
    write_record(&srv.keys_dir, &inheriting(&t, "alice", &[]));
    assert!(eventually(SOON, || async { srv.index.len() == 1 }).await);
    let mut c = srv.client().connect(srv.addr, Proto::Http1).await.unwrap();
    let s = status(
        &c.post("/authorize", as_key(SAR_V1, &t.id)).await,
        "authorization.k8s.io/v1",
    );
    assert!(no_opinion(&s), "{s}");
    assert!(s["reason"].as_str().unwrap().contains("kube store"), "{s}");
    srv.shutdown().await;
}

/// Writes a chain of `n` keys, root first, each minted by the one before; returns their tokens.
fn write_chain(dir: &std::path::Path, n: usize) -> Vec<(KeyRecord, String)> {
    let mut out: Vec<(KeyRecord, String)> = Vec::new();
    for i in 0..n {
        let t = Token::generate(KeyId::generate());
        let mut r = KeyRecord::new(t.id.clone(), t.secret_hash(), format!("level {i}"));
        r.parent = out.last().map(|(p, _)| p.id.clone());
        write_record(dir, &r);
        out.push((r, t.expose()));
    }
    out
}

#[tokio::test]
async fn a_key_minted_by_a_key_stops_when_a_key_above_it_does() {
    let srv = TestServer::start(ServerOptions::default()).await;
    let chain = write_chain(&srv.keys_dir, 3);
    let (root, child) = (&chain[0].0, &chain[2].1);
    assert!(
        srv.until_authenticated(child, true).await,
        "a live chain works"
    );

    let mut r = root.clone();
    r.disabled = true;
    write_record(&srv.keys_dir, &r);
    assert!(
        srv.until_authenticated(child, false).await,
        "parent disabled"
    );
    assert!(srv.until_authenticated(&chain[1].1, false).await);
    write_record(&srv.keys_dir, root);
    assert!(srv.until_authenticated(child, true).await, "enabled again");

    let mut r = root.clone();
    r.expiration = Some(Expiry::At("2020-01-01T00:00:00Z".parse().unwrap()));
    write_record(&srv.keys_dir, &r);
    assert!(
        srv.until_authenticated(child, false).await,
        "parent expired"
    );

    std::fs::remove_file(record_path(&srv.keys_dir, &root.id)).unwrap();
    assert!(
        srv.until_authenticated(child, false).await,
        "parent deleted"
    );
    let (code, metrics) = admin_get(srv.admin, "/metrics").await;
    assert_eq!(code, 200);
    for reason in ["ancestor_disabled", "ancestor_expired", "ancestor_unknown"] {
        let line = format!("keygate_decisions_total{{result=\"denied\",reason=\"{reason}\"}}");
        assert!(metrics.contains(&line), "{reason}: {metrics}");
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn a_chain_deeper_than_the_limit_is_refused() {
    let srv = TestServer::start(ServerOptions::default()).await;
    let max = keygate::index::MAX_ANCESTORS;
    let chain = write_chain(&srv.keys_dir, max + 2);
    assert!(
        srv.until_authenticated(&chain[max].1, true).await,
        "at the limit"
    );
    assert!(
        srv.until_authenticated(&chain[max + 1].1, false).await,
        "past it"
    );
    let (_, metrics) = admin_get(srv.admin, "/metrics").await;
    assert!(
        metrics.contains(r#"keygate_decisions_total{result="denied",reason="chain_too_deep"} "#),
        "{metrics}"
    );
    srv.shutdown().await;
}

#[test]
fn webhook_config_prints_the_authorizer_file() {
    let env = cli::Env::new();
    let ca = env.tmp.path().join("ca.crt");
    std::fs::write(&ca, "CA").unwrap();
    let ca = ca.display().to_string();
    let out = env.ok(&[
        "webhook-config",
        "--authorizer",
        "--certificate-authority",
        &ca,
    ]);
    assert!(
        out.contains("server: https://127.0.0.1:8443/authorize"),
        "{out}"
    );
    let out = env.ok(&["webhook-config", "--certificate-authority", &ca]);
    assert!(
        out.contains("server: https://127.0.0.1:8443/authenticate"),
        "{out}"
    );
    let err = env.fails(&[
        "webhook-config",
        "--authorizer",
        "--server",
        "https://keygate:8443/authenticate",
        "--certificate-authority",
        &ca,
    ]);
    assert!(err.contains("ends in /authorize"), "{err}");
}

/// kube-apiserver's `apiserver.config.k8s.io/v1` AuthorizationConfiguration, as its Go types
/// define it (unknown fields refused, required fields required).
mod authz_config {
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Config {
        pub api_version: String,
        pub kind: String,
        pub authorizers: Vec<Authorizer>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Authorizer {
        #[serde(rename = "type")]
        pub ty: String,
        pub name: String,
        pub webhook: Option<Webhook>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Webhook {
        #[serde(rename = "authorizedTTL")]
        pub authorized_ttl: String,
        #[serde(rename = "unauthorizedTTL")]
        pub unauthorized_ttl: String,
        pub timeout: String,
        pub subject_access_review_version: String,
        pub match_condition_subject_access_review_version: String,
        pub failure_policy: String,
        pub connection_info: ConnectionInfo,
        #[serde(default)]
        pub match_conditions: Vec<MatchCondition>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct ConnectionInfo {
        #[serde(rename = "type")]
        pub ty: String,
        pub kube_config_file: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct MatchCondition {
        pub expression: String,
    }
}

#[test]
fn authorization_config_manifest_matches_the_v1_types() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/authorization/authorization-config.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let cfg: authz_config::Config = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(cfg.api_version, "apiserver.config.k8s.io/v1");
    assert_eq!(cfg.kind, "AuthorizationConfiguration");
    let types: Vec<&str> = cfg.authorizers.iter().map(|a| a.ty.as_str()).collect();
    assert_eq!(types, ["Node", "Webhook", "RBAC"], "keygate before RBAC");
    for a in &cfg.authorizers {
        let dns1123 = !a.name.is_empty()
            && a.name.len() <= 63
            && a.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        assert!(dns1123, "name {:?}", a.name);
        assert_eq!(
            a.webhook.is_some(),
            a.ty == "Webhook",
            "webhook only on Webhook"
        );
    }
    let w = cfg.authorizers[1].webhook.as_ref().unwrap();
    let secs = |d: &str| d.parse::<jiff::SignedDuration>().unwrap().as_secs_f64();
    assert!(
        secs(&w.timeout) > 0.0 && secs(&w.timeout) <= 30.0,
        "timeout at most 30s"
    );
    assert!(secs(&w.timeout) > AuthorizerSettings::default().sar_timeout.as_secs_f64());
    assert!(secs(&w.authorized_ttl) <= 1.0 && secs(&w.unauthorized_ttl) <= 1.0);
    assert!(["v1", "v1beta1"].contains(&w.subject_access_review_version.as_str()));
    assert_eq!(w.match_condition_subject_access_review_version, "v1");
    assert!(["NoOpinion", "Deny"].contains(&w.failure_policy.as_str()));
    assert_eq!(w.connection_info.ty, "KubeConfigFile");
    assert!(w.connection_info.kube_config_file.is_some());
    let exprs: Vec<&str> = w
        .match_conditions
        .iter()
        .map(|m| m.expression.as_str())
        .collect();
    let group = keygate::identity::GROUP_ALL_KEYS;
    assert_eq!(exprs, [format!("'{group}' in request.groups")]);
}
