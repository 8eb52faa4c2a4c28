//! `keygate keys ...` with the kube store against a faked kube-apiserver: which way the commands
//! go (the AccessKey API when discovery answers, the record Secrets only when the group is not
//! registered, an error when the APIService does not answer), what they send to the API, and
//! that the output is the same as with the record Secrets.

use clap::Parser;
use keygate::cli::Cli;
use keygate::commands::keys::{Ctx, execute};
use keygate::identity::DEFAULT_USER_PREFIX;
use keygate::keystore::{DirKeys, KeyStore};
use serde_json::{Value, json};

use crate::common::cli::keys;
use crate::common::fake_api::{Log, Seen, created, fake, status};

const NS: &str = "keygate-system";
const DISCOVERY: &str = "/apis/keygate.dev/v1alpha1";
const KEYS: &str = "/apis/keygate.dev/v1alpha1/accesskeys";
const ID: &str = "AbCdEfGhIjKlMnOpQrStUv";

/// Runs `keygate --store kube keys ARGS` against `client`, discovery included.
async fn run(client: kube::Client, args: &[&str]) -> (anyhow::Result<()>, Option<Ctx>) {
    let server = Some("https://10.0.0.1:6443".to_owned());
    let mut ctx = match Ctx::for_cluster(client, NS, DEFAULT_USER_PREFIX, server).await {
        Ok(c) => c,
        Err(e) => return (Err(e), None),
    };
    let r = execute(&mut ctx, keys(args), None).await;
    (r, Some(ctx))
}

fn discovery() -> (u16, Value) {
    (
        200,
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "keygate.dev/v1alpha1",
               "resources": [{"name": "accesskeys", "namespaced": false, "kind": "AccessKey",
                              "verbs": ["create", "delete", "get", "list", "patch"]}]}),
    )
}

/// An AccessKey as the API shows it, with `spec`.
fn access_key(id: &str, spec: Value) -> Value {
    let name = id.to_lowercase();
    json!({"apiVersion": "keygate.dev/v1alpha1", "kind": "AccessKey",
           "metadata": {"name": name, "resourceVersion": "7"},
           "spec": spec,
           "status": {"id": id, "username": format!("service-account-{name}"),
                      "groups": ["keygate:keys"], "owner": "alice",
                      "creator": {"username": "alice", "groups": ["dev"]},
                      "state": "Active", "createdAt": "2030-01-01T00:00:00Z"}})
}

/// The API's answer to a create: the object with an ID, a token, owner alice.
fn minted(seen: &Seen) -> (u16, Value) {
    let mut k = access_key(ID, seen.body["spec"].clone());
    k["metadata"]["annotations"] = seen.body["metadata"]["annotations"].clone();
    k["status"]["token"] = json!(format!("kg_{ID}_{}", "s".repeat(43)));
    (201, k)
}

fn writes(log: &Log) -> Vec<Seen> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|s| s.method != "GET")
        .cloned()
        .collect()
}

fn no_secret_written(log: &Log) {
    let w = writes(log);
    assert!(
        w.iter().all(|s| !s.path.contains("/secrets")),
        "a Secret was written: {w:#?}"
    );
}

#[tokio::test]
async fn discovery_200_sends_create_to_the_api_and_writes_no_secret() {
    let (client, log) = fake(|s| match (s.method.as_str(), s.path.as_str()) {
        ("GET", DISCOVERY) => discovery(),
        ("POST", KEYS) => minted(s),
        _ => status(500, "InternalError", "unexpected"),
    });
    let args = [
        "create",
        "--name",
        "ci",
        "--role",
        "view",
        "--namespace-scope",
        "apps",
        "--expires",
        "30d",
        "-o",
        "json",
    ];
    let (r, ctx) = run(client, &args).await;
    r.unwrap();
    let ctx = ctx.unwrap();
    no_secret_written(&log);
    let w = writes(&log);
    assert_eq!(w.len(), 1, "{w:#?}");
    let spec = &w[0].body["spec"];
    assert_eq!(w[0].body["kind"], "AccessKey");
    assert_eq!(spec["displayName"], "ci");
    assert_eq!(spec["role"], "view");
    assert_eq!(spec["scope"], json!({"namespaces": ["apps"]}));
    assert!(
        spec["expiration"].as_str().unwrap().ends_with('Z'),
        "{spec}"
    );
    assert!(w[0].body["metadata"].get("name").is_none());

    // The same JSON shape as with the record Secrets, the token once, plus the owner.
    let out: Value = serde_json::from_str(&ctx.out).unwrap();
    assert_eq!(out["id"], ID);
    assert_eq!(out["name"], "ci");
    assert_eq!(
        out["username"],
        format!("service-account-{}", ID.to_lowercase())
    );
    assert_eq!(out["role"], "view");
    assert_eq!(out["namespaces"], json!(["apps"]));
    assert_eq!(out["state"], "active");
    assert_eq!(out["disabled"], false);
    assert_eq!(out["createdBy"], "alice");
    assert_eq!(out["owner"], "alice");
    assert!(
        out["token"]
            .as_str()
            .unwrap()
            .starts_with(&format!("kg_{ID}_"))
    );
    assert!(out.get("inheritCreator").is_none() && out.get("rules").is_none());
    assert!(ctx.notes.iter().any(|n| n.contains("shown only this once")));
}

#[tokio::test]
async fn discovery_404_writes_the_record_secret_as_before() {
    let (client, log) = fake(|s| match (s.method.as_str(), s.path.as_str()) {
        ("GET", DISCOVERY) => status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ),
        ("POST", p) if p.ends_with("selfsubjectreviews") => status(404, "NotFound", "no"),
        ("POST", _) => created(s),
        _ => status(500, "InternalError", "unexpected"),
    });
    let (r, _) = run(client, &["create", "--name", "ci", "-o", "json"]).await;
    r.unwrap();
    let w = writes(&log);
    assert!(
        w.iter()
            .any(|s| s.path == format!("/api/v1/namespaces/{NS}/secrets")),
        "{w:#?}"
    );
    assert!(w.iter().all(|s| !s.path.starts_with(KEYS)), "{w:#?}");
}

#[tokio::test]
async fn discovery_503_fails_naming_the_apiservice_and_writes_nothing() {
    for (code, body) in [
        status(503, "ServiceUnavailable", "service unavailable"),
        status(
            403,
            "Forbidden",
            "forbidden: User \"x\" cannot get path \"/apis/keygate.dev/v1alpha1\"",
        ),
    ] {
        let (client, log) = fake(move |s| match (s.method.as_str(), s.path.as_str()) {
            ("GET", DISCOVERY) => (code, body.clone()),
            ("POST", _) => created(s),
            _ => status(500, "InternalError", "unexpected"),
        });
        let (r, _) = run(client, &["create", "--name", "ci", "--role", "view"]).await;
        let err = format!("{:#}", r.unwrap_err());
        assert!(err.contains("APIService v1alpha1.keygate.dev"), "{err}");
        assert!(err.contains("not available"), "{err}");
        assert!(
            err.contains("kubectl get apiservice v1alpha1.keygate.dev"),
            "{err}"
        );
        assert!(err.contains(&code.to_string()), "{err}");
        assert!(writes(&log).is_empty(), "{:#?}", writes(&log));
    }
}

#[tokio::test]
async fn a_refusal_from_the_api_keeps_its_message_and_names_the_command() {
    let (client, log) = fake(|s| match (s.method.as_str(), s.path.as_str()) {
        ("GET", DISCOVERY) => discovery(),
        ("POST", KEYS) => status(
            403,
            "Forbidden",
            "bob may not bind ClusterRole cluster-admin (role admin needs bind on it)",
        ),
        ("PATCH", _) => status(
            403,
            "Forbidden",
            "key was disabled by a key admin; only a key admin may enable it",
        ),
        _ => status(500, "InternalError", "unexpected"),
    });
    let (r, _) = run(
        client.clone(),
        &["create", "--name", "ops", "--role", "admin"],
    )
    .await;
    let err = format!("{:#}", r.unwrap_err());
    assert!(err.contains("cannot create key \"ops\""), "{err}");
    assert!(
        err.contains("bob may not bind ClusterRole cluster-admin"),
        "{err}"
    );
    assert!(err.contains("403"), "{err}");
    let (r, _) = run(client, &["enable", ID]).await;
    let err = format!("{:#}", r.unwrap_err());
    assert!(err.contains(&format!("cannot enable key {ID}")), "{err}");
    assert!(err.contains("only a key admin may enable it"), "{err}");
    no_secret_written(&log);
}

#[tokio::test]
async fn inherit_with_rules_sends_inherit_creator_and_the_rules() {
    let (client, log) = fake(|s| match (s.method.as_str(), s.path.as_str()) {
        ("GET", DISCOVERY) => discovery(),
        ("POST", KEYS) => minted(s),
        _ => status(500, "InternalError", "unexpected"),
    });
    let args = [
        "create",
        "--name",
        "ci",
        "--inherit",
        "--namespace-scope",
        "apps",
        "--rule",
        "get,list,watch::pods",
        "--rule",
        "*:apps:deployments,replicasets",
        "--rule",
        "get:/healthz,/version",
    ];
    let (r, ctx) = run(client, &args).await;
    r.unwrap();
    let spec = writes(&log)[0].body["spec"].clone();
    assert_eq!(spec["inheritCreator"], true);
    assert!(
        spec.get("role").is_none() && spec.get("groups").is_none(),
        "{spec}"
    );
    assert_eq!(
        spec["scope"],
        json!({"namespaces": ["apps"], "rules": [
            {"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["pods"]},
            {"verbs": ["*"], "apiGroups": ["apps"], "resources": ["deployments", "replicasets"]},
            {"verbs": ["get"], "nonResourceURLs": ["/healthz", "/version"]},
        ]})
    );
    assert!(ctx.unwrap().out.contains(&format!("Created key {ID} (ci)")));
}

#[test]
fn bad_rules_and_inherit_with_a_role_are_refused_by_the_command_line() {
    for bad in [
        "pods",
        "get:pods",
        ":apps:deployments",
        "get::",
        "get:/healthz,metrics",
    ] {
        let argv = [
            "keygate",
            "keys",
            "create",
            "--name",
            "x",
            "--inherit",
            "--rule",
            bad,
        ];
        let err = Cli::try_parse_from(argv).unwrap_err().to_string();
        assert!(err.contains("VERBS:GROUPS:RESOURCES"), "{bad}: {err}");
    }
    for argv in [
        &["--inherit", "--role", "view"][..],
        &["--inherit", "--group", "ops"][..],
        &["--rule", "get::pods"][..],
    ] {
        let all = ["keygate", "keys", "create", "--name", "x"]
            .iter()
            .chain(argv);
        assert!(Cli::try_parse_from(all).is_err(), "{argv:?}");
    }
}

#[tokio::test]
async fn inherit_is_refused_without_the_api() {
    let (client, log) = fake(|s| match (s.method.as_str(), s.path.as_str()) {
        ("GET", DISCOVERY) => status(404, "NotFound", "not found"),
        ("POST", _) => created(s),
        _ => status(500, "InternalError", "unexpected"),
    });
    let (r, _) = run(client, &["create", "--name", "x", "--inherit"]).await;
    let err = format!("{:#}", r.unwrap_err());
    assert!(err.contains("--inherit needs the AccessKey API"), "{err}");
    assert!(err.contains("v1alpha1.keygate.dev"), "{err}");
    assert!(writes(&log).is_empty());

    let tmp = tempfile::tempdir().unwrap();
    let mut ctx = Ctx::new(
        KeyStore::Dir(DirKeys::new(tmp.path().join("keys"), NS.to_owned())),
        DEFAULT_USER_PREFIX,
        "tester",
    );
    let cmd = keys(&[
        "create",
        "--name",
        "x",
        "--inherit",
        "--namespace-scope",
        "a",
    ]);
    let err = format!("{:#}", execute(&mut ctx, cmd, None).await.unwrap_err());
    assert!(err.contains("the dir store has no cluster to ask"), "{err}");
    assert!(
        !tmp.path().join("keys").exists()
            || std::fs::read_dir(tmp.path().join("keys"))
                .unwrap()
                .next()
                .is_none()
    );
}

#[tokio::test]
async fn list_through_the_api_prints_the_same_table_and_json() {
    let (client, log) = fake(|s| match (s.method.as_str(), s.path.as_str()) {
        ("GET", DISCOVERY) => discovery(),
        ("GET", KEYS) => {
            let a = access_key(
                ID,
                json!({"displayName": "ci", "role": "view", "scope": {"namespaces": ["apps"]}}),
            );
            let mut b = access_key(
                "ZzZzZzZzZzZzZzZzZzZzZz",
                json!({"displayName": "job", "inheritCreator": true, "disabled": true,
                       "scope": {"rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]},
                                           {"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]}]}}),
            );
            b["status"]["state"] = json!("Disabled");
            b["status"]["parent"] = json!(ID);
            (
                200,
                json!({"apiVersion": "keygate.dev/v1alpha1", "kind": "AccessKeyList", "metadata": {}, "items": [b, a]}),
            )
        }
        _ => status(500, "InternalError", "unexpected"),
    });
    let (r, ctx) = run(client.clone(), &["list"]).await;
    r.unwrap();
    let out = ctx.unwrap().out;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("ID") && lines[0].contains("ROLE") && lines[0].contains("SCOPE"));
    let first: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(first[..4], [ID, "ci", "view", "apps"], "{out}");
    assert!(lines[1].ends_with("active"), "{out}");
    assert!(
        lines[2].contains("inherited") && lines[2].contains("cluster +2 rules"),
        "{out}"
    );
    assert!(lines[2].ends_with("disabled"), "{out}");

    let (r, ctx) = run(client, &["list", "-o", "json"]).await;
    r.unwrap();
    let v: Value = serde_json::from_str(&ctx.unwrap().out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    let job = &v[1];
    assert_eq!(job["name"], "job");
    assert_eq!(job["role"], Value::Null);
    assert_eq!(job["inheritCreator"], true);
    assert_eq!(job["state"], "disabled");
    assert_eq!(job["parent"], ID);
    assert_eq!(
        job["rules"][0],
        json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]})
    );
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|k| k.get("token").is_none())
    );
    no_secret_written(&log);
}

#[tokio::test]
async fn edit_disable_regenerate_and_delete_go_to_the_api() {
    let name = ID.to_lowercase();
    let item = format!("{KEYS}/{name}");
    let consumer_path = "/api/v1/namespaces/ci/secrets/ci-key";
    let (client, log) = {
        let item = item.clone();
        let name = name.clone();
        fake(move |s| match (s.method.as_str(), s.path.as_str()) {
            ("GET", DISCOVERY) => discovery(),
            ("GET", p) if p == item => {
                let mut k = access_key(ID, json!({"displayName": "ci"}));
                k["metadata"]["annotations"] = json!({"keygate.dev/consumer-secret": "ci/ci-key"});
                (200, k)
            }
            ("PATCH", p) if p == item => {
                let mut k = access_key(ID, json!({"displayName": "ci"}));
                if let Some(d) = s.body["spec"].get("disabled") {
                    k["spec"]["disabled"] = d.clone();
                }
                (200, k)
            }
            ("POST", p) if p == format!("{item}/regenerate") => {
                let mut k = access_key(ID, json!({"displayName": "ci"}));
                k["status"]["token"] = json!(format!("kg_{ID}_{}", "n".repeat(43)));
                k["status"]["previousSecretExpiration"] = json!("2999-01-01T00:00:00Z");
                (201, k)
            }
            ("DELETE", p) if p == item => (200, json!({"kind": "Status", "status": "Success"})),
            ("GET", p) if p == consumer_path => (
                200,
                json!({"apiVersion": "v1", "kind": "Secret",
                       "metadata": {"name": "ci-key", "namespace": "ci",
                                    "labels": {"keygate.dev/key-id": name}}}),
            ),
            ("DELETE", p) if p == consumer_path => {
                (200, json!({"kind": "Status", "status": "Success"}))
            }
            _ => status(500, "InternalError", "unexpected"),
        })
    };
    let (r, ctx) = run(client.clone(), &["disable", &name]).await;
    r.unwrap();
    assert!(ctx.unwrap().out.contains(&format!("key {ID} disabled")));
    let (r, _) = run(client.clone(), &["edit", ID, "--description", "nightly"]).await;
    r.unwrap();
    let (r, ctx) = run(client.clone(), &["regenerate", ID, "--grace", "1h"]).await;
    r.unwrap();
    let out = ctx.unwrap().out;
    assert!(
        out.contains("keeps working until 2999-01-01T00:00:00Z"),
        "{out}"
    );
    assert!(out.contains(&format!("kg_{ID}_nnn")), "{out}");
    let (r, ctx) = run(client, &["delete", ID]).await;
    r.unwrap();
    assert!(ctx.unwrap().out.contains(&format!("key {ID} deleted")));

    let w = writes(&log);
    let sent: Vec<(&str, &str)> = w
        .iter()
        .map(|s| (s.method.as_str(), s.path.as_str()))
        .collect();
    let regen = format!("{item}/regenerate");
    assert_eq!(
        sent,
        [
            ("PATCH", item.as_str()),
            ("PATCH", item.as_str()),
            ("POST", regen.as_str()),
            ("DELETE", item.as_str()),
            ("DELETE", consumer_path),
        ]
    );
    assert_eq!(w[0].body, json!({"spec": {"disabled": true}}));
    assert_eq!(w[0].content_type, "application/merge-patch+json");
    assert_eq!(w[1].body, json!({"spec": {"description": "nightly"}}));
    assert_eq!(w[2].body["gracePeriodSeconds"], 3600);
}

#[tokio::test]
async fn a_consumer_secret_is_written_by_the_cli_after_the_api_mints_the_key() {
    let (client, log) = fake(|s| match (s.method.as_str(), s.path.as_str()) {
        ("GET", DISCOVERY) => discovery(),
        ("POST", KEYS) => minted(s),
        ("POST", "/api/v1/namespaces/ci/secrets") => created(s),
        _ => status(500, "InternalError", "unexpected"),
    });
    let args = [
        "create",
        "--name",
        "ci",
        "--role",
        "view",
        "--consumer-secret",
        "ci-key",
        "--consumer-namespace",
        "ci",
    ];
    let (r, ctx) = run(client, &args).await;
    r.unwrap();
    let w = writes(&log);
    assert_eq!(w.len(), 3, "{w:#?}");
    // A dry run without the token, the key, then the Secret with the token.
    assert!(w[0].query.contains("dryRun") && w[0].body["stringData"]["token"] == "");
    assert_eq!(w[1].path, KEYS);
    assert_eq!(
        w[1].body["metadata"]["annotations"]["keygate.dev/consumer-secret"],
        "ci/ci-key"
    );
    let token = format!("kg_{ID}_{}", "s".repeat(43));
    assert_eq!(w[2].body["stringData"]["token"], token);
    assert_eq!(w[2].body["stringData"]["server"], "https://10.0.0.1:6443");
    assert_eq!(
        w[2].body["metadata"]["labels"]["keygate.dev/key-id"],
        ID.to_lowercase()
    );
    let ctx = ctx.unwrap();
    assert!(
        ctx.out.contains("Consumer:  secret/ci-key -n ci"),
        "{}",
        ctx.out
    );
    assert!(
        ctx.notes
            .iter()
            .any(|n| n.contains("role view cluster-wide")),
        "{:?}",
        ctx.notes
    );
}
