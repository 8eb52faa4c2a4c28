//! Create: name rules, token once, escalation checks, refusals.

use http::Method;
use serde_json::json;

use super::*;

fn binder(user: &'static str, name: &'static str, ns: &'static str) -> Policy {
    Policy {
        admins: vec![],
        rights: vec![(user, "bind", name, ns)],
    }
}

#[tokio::test]
async fn create_answers_the_token_once_and_asks_to_bind_the_role() {
    let (api, cluster) = api(binder("alice", "view", ""));
    let alice = person("alice", &["devs"]);
    let got = post(
        &api,
        &alice,
        KEYS,
        key_body(json!({"displayName": "ci", "role": "view"})),
    )
    .await;
    assert_eq!(got.code, 201, "{}", got.body);
    let status = &got.body["status"];
    let token = status["token"].as_str().unwrap().to_owned();
    let id = status["id"].as_str().unwrap();
    assert!(token.starts_with(&format!("kg_{id}_")));
    assert_eq!(got.body["metadata"]["name"], id.to_ascii_lowercase());
    assert_eq!(status["owner"], "alice");
    assert_eq!(
        status["creator"],
        json!({"username": "alice", "groups": ["devs"]})
    );
    assert_eq!(status["state"], "Active");
    assert_eq!(status["groups"], json!(["keygate:keys", "keygate:view"]));
    // The one check sent: bind on the ClusterRole keygate:view is bound to, cluster-wide.
    let reviews: Vec<_> = cluster
        .reviews()
        .into_iter()
        .filter(|r| r["resourceAttributes"]["verb"] != "administer")
        .collect();
    assert_eq!(reviews.len(), 1);
    assert_eq!(reviews[0]["user"], "alice");
    assert_eq!(reviews[0]["groups"], json!(["devs"]));
    assert_eq!(
        reviews[0]["resourceAttributes"],
        json!({"verb": "bind", "group": "rbac.authorization.k8s.io", "resource": "clusterroles", "name": "view"})
    );
    // Never stored, never read back.
    let stored = serde_json::to_string(&cluster.under("/api/v1")).unwrap();
    assert!(!stored.contains(&token[token.len() - 43..]));
    let name = got.body["metadata"]["name"].as_str().unwrap();
    let again = get(&api, &alice, &format!("{KEYS}/{name}")).await;
    assert_eq!(again.code, 200);
    assert!(
        again.body["status"].get("token").is_none(),
        "{}",
        again.body
    );
}

#[tokio::test]
async fn an_admin_key_needs_bind_on_cluster_admin_and_the_refusal_names_it() {
    let (api, cluster) = api(binder("bob", "view", ""));
    let bob = person("bob", &[]);
    let got = post(
        &api,
        &bob,
        KEYS,
        key_body(json!({"displayName": "x", "role": "admin"})),
    )
    .await;
    assert_eq!(got.code, 403, "{}", got.body);
    assert_eq!(got.body["kind"], "Status");
    assert_eq!(got.body["reason"], "Forbidden");
    let msg = got.body["message"].as_str().unwrap();
    for part in [
        "bob may not bind",
        "clusterroles.rbac.authorization.k8s.io",
        "\"cluster-admin\"",
        "cluster-wide",
        "kubectl auth can-i",
    ] {
        assert!(msg.contains(part), "{part}: {msg}");
    }
    assert!(cluster.writes().is_empty());
}

#[tokio::test]
async fn a_namespace_scope_needs_bind_in_each_namespace_and_gets_role_bindings() {
    let (api, cluster) = api(binder("ann", "edit", "apps"));
    let ann = person("ann", &[]);
    let spec = |ns: Value| {
        key_body(json!({"displayName": "x", "role": "edit", "scope": {"namespaces": ns}}))
    };
    let got = post(&api, &ann, KEYS, spec(json!(["apps", "web"]))).await;
    assert_eq!(got.code, 403);
    let msg = got.body["message"].as_str().unwrap();
    assert!(msg.contains("\"edit\" in namespace web"), "{msg}");
    assert!(cluster.writes().is_empty());

    let got = post(&api, &ann, KEYS, spec(json!(["apps"]))).await;
    assert_eq!(got.code, 201, "{}", got.body);
    let name = got.body["metadata"]["name"].as_str().unwrap();
    let rb = cluster.under("/apis/rbac.authorization.k8s.io/v1/namespaces/apps/rolebindings/");
    assert_eq!(rb.len(), 1);
    assert_eq!(rb[0]["roleRef"]["name"], "edit");
    assert_eq!(rb[0]["subjects"][0]["name"], format!("{PREFIX}{name}"));
    let ns_review = cluster
        .reviews()
        .into_iter()
        .find(|r| r["resourceAttributes"]["namespace"] == "apps")
        .unwrap();
    assert_eq!(ns_review["resourceAttributes"]["name"], "edit");
}

#[tokio::test]
async fn each_group_needs_impersonate_and_reserved_groups_are_invalid() {
    let policy = Policy {
        admins: vec![],
        rights: vec![("gil", "impersonate", "team-a", "*")],
    };
    let (api, cluster) = api(policy);
    let gil = person("gil", &[]);
    let with = |groups: Value| key_body(json!({"displayName": "x", "groups": groups}));
    let got = post(&api, &gil, KEYS, with(json!(["team-a"]))).await;
    assert_eq!(got.code, 201, "{}", got.body);
    let r = cluster
        .reviews()
        .into_iter()
        .find(|r| r["resourceAttributes"]["verb"] == "impersonate")
        .unwrap();
    assert_eq!(
        r["resourceAttributes"],
        json!({"verb": "impersonate", "group": "", "resource": "groups", "name": "team-a"})
    );
    let got = post(&api, &gil, KEYS, with(json!(["team-b"]))).await;
    assert_eq!(got.code, 403);
    assert!(
        got.body["message"]
            .as_str()
            .unwrap()
            .contains("impersonate groups \"team-b\""),
        "{}",
        got.body
    );
    for bad in ["system:masters", "keygate:admin", "a,b", "a b"] {
        let got = post(&api, &gil, KEYS, with(json!([bad]))).await;
        assert_eq!(got.code, 422, "{bad}: {}", got.body);
        assert_eq!(got.body["details"]["causes"][0]["field"], "spec.groups[0]");
    }
}

#[tokio::test]
async fn names_are_keygates_and_the_key_namespace_is_never_a_scope() {
    let (api, cluster) = api(binder("al", "*", "*"));
    let al = person("al", &[]);
    let mut body = key_body(json!({"displayName": "x"}));
    body["metadata"] = json!({"name": "mine"});
    let got = post(&api, &al, KEYS, body).await;
    assert_eq!(got.code, 422);
    assert_eq!(got.body["reason"], "Invalid");
    assert_eq!(got.body["details"]["causes"][0]["field"], "metadata.name");
    assert_eq!(got.body["details"]["kind"], "AccessKey");
    let got = post(
        &api,
        &al,
        KEYS,
        key_body(json!({"displayName": "x", "role": "view", "scope": {"namespaces": [NAMESPACE]}})),
    )
    .await;
    assert_eq!(got.code, 422);
    assert!(
        got.body["message"]
            .as_str()
            .unwrap()
            .contains("key namespace")
    );
    let got = post(&api, &al, KEYS, key_body(json!({"displayName": ""}))).await;
    assert_eq!(
        got.body["details"]["causes"][0]["field"],
        "spec.displayName"
    );
    assert!(cluster.writes().is_empty());
    // generateName is ignored: the name is the ID.
    let got = post(&api, &al, KEYS, key_body(json!({"displayName": "x"}))).await;
    assert_eq!(got.code, 201);
    assert_ne!(got.body["metadata"]["name"], "x-");
}

#[tokio::test]
async fn inherit_creator_rules() {
    let (api, _) = api(Policy::default());
    let u = person("u", &[]);
    let post_spec = |spec: Value| key_body(spec);
    let got = post(
        &api,
        &u,
        KEYS,
        post_spec(json!({"displayName": "x", "inheritCreator": true, "role": "view"})),
    )
    .await;
    assert_eq!(got.code, 422);
    assert_eq!(got.body["details"]["causes"][0]["field"], "spec.role");
    let rules = json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]);
    let got = post(
        &api,
        &u,
        KEYS,
        post_spec(json!({"displayName": "x", "scope": {"rules": rules}})),
    )
    .await;
    assert_eq!(got.code, 422);
    assert_eq!(
        got.body["details"]["causes"][0]["field"],
        "spec.scope.rules"
    );
    let inherit =
        post_spec(json!({"displayName": "x", "inheritCreator": true, "scope": {"rules": rules}}));
    let got = post(&api, &u, KEYS, inherit.clone()).await;
    assert_eq!(got.code, 201, "{}", got.body);
    assert_eq!(got.body["spec"]["scope"]["rules"], rules);
    let masters = person("root", &["system:masters"]);
    let got = post(&api, &masters, KEYS, inherit.clone()).await;
    assert_eq!(got.code, 403);
    assert!(
        got.body["message"]
            .as_str()
            .unwrap()
            .contains(crate::api::FLAG_ALLOW_INHERIT_MASTERS)
    );
    let sa = person("system:serviceaccount:ci:deployer", &[]);
    let got = post(&api, &sa, KEYS, inherit.clone()).await;
    assert_eq!(got.code, 403);
    assert!(
        got.body["message"]
            .as_str()
            .unwrap()
            .contains(crate::api::FLAG_ALLOW_INHERIT_SA)
    );
    let (api, _) = api_with(Policy::default(), |s| {
        s.allow_inherit_for_masters = true;
        s.allow_inherit_for_service_accounts = true;
    });
    assert_eq!(post(&api, &masters, KEYS, inherit.clone()).await.code, 201);
    assert_eq!(post(&api, &sa, KEYS, inherit).await.code, 201);
}

#[tokio::test]
async fn dry_run_checks_and_writes_nothing() {
    let (api, cluster) = api(binder("d", "view", ""));
    let d = person("d", &[]);
    let uri = format!("{KEYS}?dryRun=All&fieldManager=kubectl-create");
    let got = post(
        &api,
        &d,
        &uri,
        key_body(json!({"displayName": "x", "role": "view"})),
    )
    .await;
    assert_eq!(got.code, 201, "{}", got.body);
    assert!(got.body["status"].get("token").is_none());
    assert!(cluster.writes().is_empty(), "{:?}", cluster.writes());
    let got = post(
        &api,
        &d,
        &uri,
        key_body(json!({"displayName": "x", "role": "edit"})),
    )
    .await;
    assert_eq!(got.code, 403, "the checks still run");
}

#[tokio::test]
async fn field_validation_strict_refuses_and_warn_warns() {
    let (api, _) = api(Policy::default());
    let u = person("u", &[]);
    let body = key_body(json!({"displayName": "x", "colour": "red"}));
    let got = post(
        &api,
        &u,
        &format!("{KEYS}?fieldValidation=Strict"),
        body.clone(),
    )
    .await;
    assert_eq!(got.code, 422);
    assert_eq!(got.body["details"]["causes"][0]["field"], "spec.colour");
    let got = post(&api, &u, KEYS, body.clone()).await;
    assert_eq!(got.code, 201);
    let warning = got.headers.get("warning").unwrap().to_str().unwrap();
    assert!(
        warning.starts_with("299 - ") && warning.contains("spec.colour"),
        "{warning}"
    );
    let got = post(&api, &u, &format!("{KEYS}?fieldValidation=Ignore"), body).await;
    assert_eq!(got.code, 201);
    assert!(got.headers.get("warning").is_none());
}

#[tokio::test]
async fn a_failed_review_is_503_never_an_allow() {
    let (client, cluster) = fake_cluster(|_| None);
    let api = AccessKeyApi::new(client, ApiSettings::new(NAMESPACE, PREFIX));
    let got = send(&api, &person("u", &[]), Method::GET, KEYS, "", "", None).await;
    assert_eq!(got.code, 503, "{}", got.body);
    assert_eq!(got.body["reason"], "ServiceUnavailable");
    assert!(
        got.body["message"]
            .as_str()
            .unwrap()
            .contains("subjectaccessreviews")
    );
    assert!(cluster.writes().is_empty());
}

#[tokio::test]
async fn max_key_lifetime_fills_in_and_bounds_expiration() {
    let (api, _) = api_with(Policy::default(), |s| {
        s.max_key_lifetime = Some(std::time::Duration::from_secs(90 * 86_400));
    });
    let u = person("u", &[]);
    let got = post(&api, &u, KEYS, key_body(json!({"displayName": "x"}))).await;
    assert_eq!(got.code, 201);
    assert!(got.body["spec"]["expiration"].is_string());
    let got = post(
        &api,
        &u,
        KEYS,
        key_body(json!({"displayName": "x", "expiration": "2999-01-01T00:00:00Z"})),
    )
    .await;
    assert_eq!(got.code, 422);
    assert!(
        got.body["message"]
            .as_str()
            .unwrap()
            .contains("--max-key-lifetime 90d"),
        "{}",
        got.body
    );
}
