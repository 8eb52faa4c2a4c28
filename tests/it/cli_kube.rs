//! Key commands against the kube store with a faked API server (tower-test): the requests
//! they send, and the rollback when a step fails.

use std::sync::{Arc, Mutex};

use keygate::commands::keys::{Ctx, execute};
use keygate::identity::DEFAULT_USER_PREFIX;
use keygate::keystore::{KeyStore, KubeKeys};
use keygate::record::{KeyRecord, Role};
use keygate::token::{KeyId, SecretHash};
use serde_json::{Value, json};

use crate::common::cli::keys;
use crate::common::fake_api::{Seen, created, fake, status};

const NS: &str = "keygate-system";
const SECRETS: &str = "/api/v1/namespaces/keygate-system/secrets";

async fn run(client: kube::Client, args: &[&str]) -> (anyhow::Result<()>, Ctx) {
    let store = KeyStore::Kube(KubeKeys::new(client, NS));
    let mut ctx = Ctx::new(store, DEFAULT_USER_PREFIX, "");
    ctx.server = Some("https://10.0.0.1:6443".into());
    let r = execute(&mut ctx, keys(args), None).await;
    (r, ctx)
}

/// A stored key Secret as the API server returns it (base64 data, resourceVersion).
fn stored(rec: &KeyRecord, rv: &str, annotations: Value) -> Value {
    let mut s = serde_json::to_value(rec.to_secret(NS)).unwrap();
    let sd = s["stringData"].take();
    let data: serde_json::Map<String, Value> = sd
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            use base64::Engine;
            let b = base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap());
            (k.clone(), json!(b))
        })
        .collect();
    s.as_object_mut().unwrap().remove("stringData");
    s["data"] = Value::Object(data);
    s["metadata"]["resourceVersion"] = json!(rv);
    s["metadata"]["creationTimestamp"] = json!("2030-01-01T00:00:00Z");
    s["metadata"]["annotations"] = annotations;
    s
}

fn record() -> KeyRecord {
    let mut r = KeyRecord::new(KeyId::generate(), SecretHash::of(b"old"), "ci");
    r.role = Some(Role::View);
    r.namespaces = vec!["apps".into()];
    r
}

fn path_of(id: &KeyId) -> String {
    format!("{SECRETS}/{}", id.record_name())
}

#[tokio::test]
async fn create_scoped_key_with_consumer_secret() {
    let (client, log) = fake(|s| match s.method.as_str() {
        "POST" if s.path.ends_with("selfsubjectreviews") => status(404, "NotFound", "not found"),
        "POST" => created(s),
        _ => status(500, "InternalError", "unexpected"),
    });
    let (r, ctx) = run(
        client,
        &[
            "create",
            "--name",
            "ci",
            "--role",
            "view",
            "--namespace-scope",
            "apps",
            "--consumer-secret",
            "ci-key",
            "--consumer-namespace",
            "ci",
            "-o",
            "json",
        ],
    )
    .await;
    r.unwrap();
    let out: Value = serde_json::from_str(&ctx.out).unwrap();
    let id = out["id"].as_str().unwrap().to_owned();
    let lower = id.to_lowercase();
    let token = out["token"].as_str().unwrap().to_owned();
    let log = log.lock().unwrap().clone();
    // The RoleBinding and the consumer Secret are dry-run first (the latter without the token).
    let dry: Vec<&Seen> = log.iter().filter(|s| s.query.contains("dryRun")).collect();
    assert_eq!(dry.len(), 2, "{log:#?}");
    assert!(
        dry.iter()
            .all(|s| !s.body.to_string().contains(&token[26..]))
    );
    let posts: Vec<&Seen> = log
        .iter()
        .filter(|s| s.method == "POST" && !s.query.contains("dryRun"))
        .collect();
    assert_eq!(posts.len(), 4, "{log:#?}");

    // The record: hash only, labels, the consumer's location.
    let rec = posts.iter().find(|s| s.path == SECRETS).unwrap();
    let b = &rec.body;
    assert_eq!(b["type"], "keygate.dev/access-key");
    assert_eq!(b["metadata"]["name"], format!("keygate-{lower}"));
    assert_eq!(b["metadata"]["labels"]["keygate.dev/key-id"], lower);
    assert_eq!(
        b["metadata"]["annotations"]["keygate.dev/consumer-secret"],
        "ci/ci-key"
    );
    assert_eq!(b["stringData"]["id"], id);
    assert_eq!(b["stringData"]["namespaces"], "apps");
    assert_eq!(b["stringData"]["role"], "view");
    assert!(
        b["stringData"]["secret-hash"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(
        !b.to_string().contains(&token[26..]),
        "no secret in the record"
    );

    // The RoleBinding: ClusterRole view to the key's user, in apps.
    let rb = posts
        .iter()
        .find(|s| s.path == "/apis/rbac.authorization.k8s.io/v1/namespaces/apps/rolebindings")
        .unwrap();
    assert_eq!(rb.body["metadata"]["name"], format!("keygate-{lower}"));
    assert_eq!(
        rb.body["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"})
    );
    assert_eq!(rb.body["subjects"][0]["kind"], "User");
    assert_eq!(
        rb.body["subjects"][0]["name"],
        format!("service-account-{lower}")
    );

    // The consumer Secret: token and server.
    let cs = posts
        .iter()
        .find(|s| s.path == "/api/v1/namespaces/ci/secrets")
        .unwrap();
    assert_eq!(cs.body["type"], "Opaque");
    assert_eq!(cs.body["metadata"]["labels"]["keygate.dev/key-id"], lower);
    assert_eq!(cs.body["stringData"]["token"], token);
    assert_eq!(cs.body["stringData"]["server"], "https://10.0.0.1:6443");

    // The creator is told what the Secret exposes, and to whom.
    let warning = ctx
        .notes
        .iter()
        .find(|n| n.contains("secret/ci-key -n ci"))
        .unwrap_or_else(|| panic!("no warning about the consumer Secret: {:?}", ctx.notes));
    assert!(
        warning.contains("plain text")
            && warning.contains("namespace ci")
            && warning.contains("role view in apps"),
        "{warning}"
    );
}

#[tokio::test]
async fn a_refused_rolebinding_rolls_back_the_secret_and_earlier_bindings() {
    let (client, log) = fake(|s| match s.method.as_str() {
        "POST" if s.path.ends_with("selfsubjectreviews") => status(404, "NotFound", "nope"),
        // Allowed in the dry run, refused for real (RBAC changed in between).
        "POST" if s.path.contains("/namespaces/b/rolebindings") && !s.query.contains("dryRun") => {
            status(
                403,
                "Forbidden",
                "rolebindings.rbac.authorization.k8s.io is forbidden: user \"bob\" is attempting to grant RBAC permissions not currently held",
            )
        }
        "POST" => created(s),
        "DELETE" => (200, json!({"kind": "Status", "status": "Success"})),
        _ => status(500, "InternalError", "unexpected"),
    });
    let (r, _) = run(
        client,
        &[
            "create",
            "--name",
            "x",
            "--role",
            "admin",
            "--namespace-scope",
            "a",
            "--namespace-scope",
            "b",
        ],
    )
    .await;
    let err = format!("{:#}", r.unwrap_err());
    assert!(err.contains("namespace b"), "{err}");
    assert!(err.contains("Rolled back"), "{err}");
    assert!(err.contains("more than you have"), "{err}");
    let log = log.lock().unwrap().clone();
    let deletes: Vec<&str> = log
        .iter()
        .filter(|s| s.method == "DELETE")
        .map(|s| s.path.as_str())
        .collect();
    assert_eq!(deletes.len(), 2, "{log:#?}");
    assert!(
        deletes[0]
            .starts_with("/apis/rbac.authorization.k8s.io/v1/namespaces/a/rolebindings/keygate-")
    );
    assert!(deletes[1].starts_with(&format!("{SECRETS}/keygate-")));
}

/// A consumer namespace that does not exist, or a RoleBinding RBAC refuses, is found by the
/// dry runs: nothing is written, so nothing needs rolling back.
#[tokio::test]
async fn a_missing_consumer_namespace_or_a_refused_binding_writes_nothing() {
    for (args, refuse) in [
        (
            &[
                "--consumer-secret",
                "ci-key",
                "--consumer-namespace",
                "nope",
            ][..],
            "/api/v1/namespaces/nope/secrets",
        ),
        (
            &["--role", "edit", "--namespace-scope", "b"][..],
            "/apis/rbac.authorization.k8s.io/v1/namespaces/b/rolebindings",
        ),
    ] {
        let (client, log) = fake(move |s| match s.method.as_str() {
            "POST" if s.path.ends_with("selfsubjectreviews") => status(404, "NotFound", "nope"),
            "POST" if s.path == refuse => status(404, "NotFound", "namespaces \"x\" not found"),
            "POST" => created(s),
            _ => status(500, "InternalError", "unexpected"),
        });
        let mut argv = vec!["create", "--name", "x"];
        argv.extend_from_slice(args);
        let err = format!("{:#}", run(client, &argv).await.0.unwrap_err());
        assert!(err.contains("Nothing was created"), "{err}");
        let log = log.lock().unwrap().clone();
        let written: Vec<&Seen> = log
            .iter()
            .filter(|s| {
                s.method != "GET" && !s.query.contains("dryRun") && !s.path.ends_with("reviews")
            })
            .collect();
        assert!(written.is_empty(), "{written:#?}");
    }
}

#[tokio::test]
async fn duplicate_and_forbidden_secrets_say_what_to_do() {
    let (client, _) = fake(|s| match s.method.as_str() {
        "POST" if s.path.ends_with("selfsubjectreviews") => status(404, "NotFound", "nope"),
        _ => status(409, "AlreadyExists", "secrets \"keygate-x\" already exists"),
    });
    let err = format!(
        "{:#}",
        run(client, &["create", "--name", "x"]).await.0.unwrap_err()
    );
    assert!(
        err.contains("already exists") && err.contains("run the command again"),
        "{err}"
    );

    let (client, _) = fake(|_| {
        status(
            403,
            "Forbidden",
            "secrets is forbidden: User \"bob\" cannot create resource \"secrets\"",
        )
    });
    let err = format!(
        "{:#}",
        run(client, &["create", "--name", "x"]).await.0.unwrap_err()
    );
    assert!(
        err.contains("namespace keygate-system") && err.contains("Role"),
        "{err}"
    );
    assert!(err.contains("Nothing was created"), "{err}");
}

#[tokio::test]
async fn create_records_the_caller_from_selfsubjectreview() {
    let (client, log) = fake(|s| {
        if s.path.ends_with("selfsubjectreviews") {
            (
                201,
                json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
                         "status": {"userInfo": {"username": "alice"}}}),
            )
        } else {
            created(s)
        }
    });
    run(client, &["create", "--name", "x"]).await.0.unwrap();
    let log = log.lock().unwrap();
    let rec = log.iter().find(|s| s.path == SECRETS).unwrap();
    assert_eq!(rec.body["stringData"]["created-by"], "alice");
}

#[tokio::test]
async fn list_reads_only_key_secrets_and_shows_a_table() {
    let (a, b) = (record(), record());
    let items = json!([
        stored(
            &a,
            "1",
            json!({"keygate.dev/last-used": "2030-01-01T00:00:00Z"})
        ),
        stored(&b, "2", Value::Null)
    ]);
    let (client, log) = fake(move |_| {
        (
            200,
            json!({"kind": "SecretList", "apiVersion": "v1", "metadata": {}, "items": items}),
        )
    });
    let (r, ctx) = run(client, &["list"]).await;
    r.unwrap();
    assert!(
        ctx.out.contains(a.id.as_str()) && ctx.out.contains(b.id.as_str()),
        "{}",
        ctx.out
    );
    assert!(
        ctx.out.contains("apps") && ctx.out.contains(" ago"),
        "{}",
        ctx.out
    );
    let log = log.lock().unwrap();
    assert!(log[0].is("GET", SECRETS));
    assert!(
        log[0]
            .query
            .contains("fieldSelector=type%3Dkeygate.dev%2Faccess-key"),
        "{}",
        log[0].query
    );
}

#[tokio::test]
async fn disable_retries_after_a_conflict_and_keeps_metadata() {
    let rec = record();
    let path = path_of(&rec.id);
    let puts = Arc::new(Mutex::new(0));
    let (p2, r2, puts2) = (path.clone(), rec.clone(), puts.clone());
    let (client, log) = fake(move |s| {
        if s.is("GET", &p2) {
            (
                200,
                stored(
                    &r2,
                    "7",
                    json!({"keygate.dev/last-used": "2030-01-01T00:00:00Z"}),
                ),
            )
        } else if s.is("PUT", &p2) {
            let mut n = puts2.lock().unwrap();
            *n += 1;
            if *n == 1 {
                status(409, "Conflict", "the object has been modified")
            } else {
                created(s)
            }
        } else {
            status(500, "InternalError", "unexpected")
        }
    });
    let (r, ctx) = run(client, &["disable", &rec.id.as_str().to_uppercase()]).await;
    r.unwrap();
    assert!(ctx.out.contains("disabled"), "{}", ctx.out);
    let log = log.lock().unwrap();
    let methods: Vec<&str> = log.iter().map(|s| s.method.as_str()).collect();
    assert_eq!(methods, ["GET", "PUT", "GET", "PUT"]);
    let put = &log[3].body;
    assert_eq!(put["metadata"]["resourceVersion"], "7");
    assert_eq!(put["stringData"]["disabled"], "true");
    assert_eq!(
        put["metadata"]["annotations"]["keygate.dev/last-used"],
        "2030-01-01T00:00:00Z"
    );
    assert_eq!(
        put["stringData"]["secret-hash"],
        SecretHash::of(b"old").to_string()
    );
}

#[tokio::test]
async fn regenerate_with_grace_keeps_the_old_hash_until_then() {
    let rec = record();
    let path = path_of(&rec.id);
    let (p2, r2) = (path.clone(), rec.clone());
    let (client, log) = fake(move |s| {
        if s.is("GET", &p2) {
            (200, stored(&r2, "3", Value::Null))
        } else {
            created(s)
        }
    });
    let (r, ctx) = run(
        client,
        &["regenerate", rec.id.as_str(), "--grace", "1h", "-o", "json"],
    )
    .await;
    r.unwrap();
    let out: Value = serde_json::from_str(&ctx.out).unwrap();
    assert_eq!(out["state"], "rotating");
    let log = log.lock().unwrap();
    let put = log.iter().find(|s| s.is("PUT", &path)).unwrap();
    let sd = &put.body["stringData"];
    assert_eq!(
        sd["previous-secret-hash"],
        SecretHash::of(b"old").to_string()
    );
    assert_ne!(sd["secret-hash"], sd["previous-secret-hash"]);
    let until: jiff::Timestamp = sd["previous-secret-expiration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let left = until.as_second() - jiff::Timestamp::now().as_second();
    assert!((3500..=3700).contains(&left), "{left}");
}

#[tokio::test]
async fn delete_removes_the_record_its_rolebindings_and_consumer_secret() {
    let rec = record();
    let lower = rec.id.key().to_string();
    let path = path_of(&rec.id);
    let consumer = "/api/v1/namespaces/ci/secrets/ci-key".to_owned();
    let (p2, r2, c2, l2) = (path.clone(), rec.clone(), consumer.clone(), lower.clone());
    let (client, log) = fake(move |s| {
        if s.is("GET", &p2) {
            (
                200,
                stored(
                    &r2,
                    "3",
                    json!({"keygate.dev/consumer-secret": "ci/ci-key"}),
                ),
            )
        } else if s.is("GET", &c2) {
            (
                200,
                json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                         "metadata": {"name": "ci-key", "namespace": "ci", "labels": {"keygate.dev/key-id": l2}}}),
            )
        } else if s.method == "DELETE" {
            (200, json!({"kind": "Status", "status": "Success"}))
        } else {
            status(500, "InternalError", "unexpected")
        }
    });
    let (r, ctx) = run(client, &["delete", rec.id.as_str()]).await;
    r.unwrap();
    assert!(ctx.out.contains("deleted"));
    let log = log.lock().unwrap();
    let deletes: Vec<&str> = log
        .iter()
        .filter(|s| s.method == "DELETE")
        .map(|s| s.path.as_str())
        .collect();
    assert_eq!(
        deletes,
        [
            path.as_str(),
            &format!(
                "/apis/rbac.authorization.k8s.io/v1/namespaces/apps/rolebindings/keygate-{lower}"
            ),
            consumer.as_str(),
        ]
    );
}

#[tokio::test]
async fn get_of_a_missing_key_suggests_list() {
    let (client, _) = fake(|_| status(404, "NotFound", "secrets \"keygate-x\" not found"));
    let err = format!(
        "{:#}",
        run(client, &["get", "AAAAAAAAAAAAAAAAAAAAAA"])
            .await
            .0
            .unwrap_err()
    );
    assert!(err.contains("keygate keys list"), "{err}");
}

#[tokio::test]
async fn last_use_is_written_to_the_keys_lease_never_to_the_record() {
    let (client, log) = fake(|s| match s.method.as_str() {
        "GET" => status(
            404,
            "NotFound",
            "leases \"keygate-aaaaaaaaaaaaaaaaaaaaaa\" not found",
        ),
        _ => created(s),
    });
    let writer = keygate::usage::UsageWriter::Kube(Box::new(kube::Api::namespaced(client, NS)));
    let at: jiff::Timestamp = "2030-01-02T03:04:05Z".parse().unwrap();
    writer
        .write(
            keygate::token::IdKey::new("aaaaaaaaaaaaaaaaaaaaaa").unwrap(),
            at,
        )
        .await
        .unwrap();
    let log = log.lock().unwrap();
    let lease = format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases");
    assert!(log[0].is("GET", &format!("{lease}/keygate-aaaaaaaaaaaaaaaaaaaaaa")));
    assert!(log[1].is("POST", &lease));
    assert_eq!(log[1].content_type, "application/json");
    assert_eq!(log.len(), 2);
    let body = &log[1].body;
    assert_eq!(body["metadata"]["name"], "keygate-aaaaaaaaaaaaaaaaaaaaaa");
    assert_eq!(body["spec"]["holderIdentity"], "keygate");
    let renew: jiff::Timestamp = body["spec"]["renewTime"].as_str().unwrap().parse().unwrap();
    assert_eq!(renew, at);
    assert!(!log.iter().any(|s| s.path.contains("/secrets")));
}

#[tokio::test]
async fn credential_reads_the_token_key_of_a_secret() {
    let (client, log) = fake(|s| {
        if s.is("GET", "/api/v1/namespaces/ci/secrets/ci-key") {
            (
                200,
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ci-key"},
                         "data": {"token": "a2dfdG9rZW4K"}}),
            )
        } else {
            status(404, "NotFound", "not found")
        }
    });
    let token = keygate::commands::credential::token_from_secret(client.clone(), "ci/ci-key")
        .await
        .unwrap();
    assert_eq!(token.trim(), "kg_token");
    assert_eq!(log.lock().unwrap().len(), 1);
    let err = keygate::commands::credential::token_from_secret(client.clone(), "ci/gone")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not found in namespace ci"), "{err}");
    let err = keygate::commands::credential::token_from_secret(client, "just-a-name")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("NAMESPACE/NAME"), "{err}");
}

#[tokio::test]
async fn a_cluster_wide_role_is_checked_with_a_dry_run_binding_before_anything_is_made() {
    // Allowed: the dry run passes, then the record is created.
    let (client, log) = fake(|s| match s.method.as_str() {
        "POST" if s.path.ends_with("selfsubjectreviews") => status(404, "NotFound", "nope"),
        "POST" => created(s),
        _ => status(404, "NotFound", "nope"),
    });
    let (r, _) = run(client, &["create", "--name", "ops", "--role", "admin"]).await;
    r.unwrap();
    let log = log.lock().unwrap().clone();
    let posts: Vec<&Seen> = log.iter().filter(|s| s.method == "POST").collect();
    let crb = posts
        .iter()
        .position(|s| s.path == "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings")
        .expect("a dry-run ClusterRoleBinding");
    let secret = posts
        .iter()
        .position(|s| s.path == format!("/api/v1/namespaces/{NS}/secrets"))
        .expect("the key Secret");
    assert!(crb < secret, "the check comes first");
    let dry = posts[crb];
    assert!(dry.query.contains("dryRun=All"), "{}", dry.query);
    assert_eq!(dry.body["roleRef"]["name"], "cluster-admin");
    assert_eq!(dry.body["subjects"][0]["kind"], "User");
    assert!(
        dry.body["subjects"][0]["name"]
            .as_str()
            .unwrap()
            .starts_with("service-account-")
    );

    // Refused by RBAC's escalation check: nothing is created and the error says why.
    let (client, log) = fake(|s| match s.method.as_str() {
        "POST" if s.path.ends_with("selfsubjectreviews") => status(404, "NotFound", "nope"),
        "POST" if s.path.ends_with("clusterrolebindings") => status(
            403,
            "Forbidden",
            "clusterrolebindings.rbac.authorization.k8s.io \"keygate-x\" is forbidden: user \"bob\" is attempting to grant RBAC permissions not currently held",
        ),
        "POST" => created(s),
        _ => status(404, "NotFound", "nope"),
    });
    let err = format!(
        "{:#}",
        run(client, &["create", "--name", "ops", "--role", "admin"])
            .await
            .0
            .unwrap_err()
    );
    assert!(err.contains("never exceed its creator"), "{err}");
    assert!(err.contains("Nothing was created"), "{err}");
    let log = log.lock().unwrap().clone();
    assert!(
        !log.iter()
            .any(|s| s.method == "POST" && s.path.ends_with("/secrets")),
        "no Secret may be created: {log:?}"
    );
}
