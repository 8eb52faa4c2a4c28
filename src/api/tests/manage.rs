//! Reading, patching, regenerating and deleting: ownership, key admins, patch rules, formats.

use http::Method;
use serde_json::json;

use super::*;
use crate::record::{DisabledBy, Role};

pub fn admins() -> Policy {
    Policy {
        admins: vec!["dave"],
        rights: vec![("alice", "bind", "*", "*"), ("dave", "bind", "*", "*")],
    }
}

#[tokio::test]
async fn others_keys_do_not_exist_for_self_service_users_and_key_admins_see_all() {
    let (api, cluster) = api(admins());
    let a = stored_key(&cluster, "alice", None, |_| {});
    let c = stored_key(&cluster, "carol", None, |_| {});
    let carol = person("carol", &[]);
    let got = get(&api, &carol, &format!("{KEYS}/{}", name(&a))).await;
    assert_eq!(got.code, 404);
    assert_eq!(
        got.body["details"],
        json!({"name": name(&a), "group": "keygate.dev", "kind": "accesskeys"})
    );
    assert_eq!(got.body["apiVersion"], "v1");
    assert_eq!(got.body["status"], "Failure");
    let list = get(&api, &carol, KEYS).await;
    assert_eq!(list.body["kind"], "AccessKeyList");
    let names: Vec<_> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["metadata"]["name"].clone())
        .collect();
    assert_eq!(names, [json!(name(&c))]);
    let list = get(&api, &person("dave", &[]), KEYS).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 2);
    // Deleting another's key is as if it did not exist.
    let del = send(
        &api,
        &carol,
        Method::DELETE,
        &format!("{KEYS}/{}", name(&a)),
        "",
        "",
        None,
    )
    .await;
    assert_eq!(del.code, 404);
    assert!(record_of(&cluster, &name(&a)).is_some());
}

#[tokio::test]
async fn only_the_owner_regenerates_and_grace_keeps_the_old_secret() {
    let (api, cluster) = api(admins());
    let a = stored_key(&cluster, "alice", None, |_| {});
    let uri = format!("{KEYS}/{}/regenerate", name(&a));
    let got = post(&api, &person("dave", &[]), &uri, json!({})).await;
    assert_eq!(
        got.code, 403,
        "a key admin never regenerates another's key: {}",
        got.body
    );
    assert!(
        got.body["message"]
            .as_str()
            .unwrap()
            .contains("only the owner")
    );
    assert_eq!(
        record_of(&cluster, &name(&a)).unwrap().secret_hash,
        a.secret_hash
    );
    let body = json!({"apiVersion": "keygate.dev/v1alpha1", "kind": "AccessKeyRegenerate", "gracePeriodSeconds": 600});
    let got = post(&api, &person("alice", &[]), &uri, body).await;
    assert_eq!(got.code, 201, "{}", got.body);
    let token = got.body["status"]["token"].as_str().unwrap();
    assert!(token.starts_with(&format!("kg_{}_", a.id)));
    assert!(got.body["status"]["previousSecretExpiration"].is_string());
    let now = record_of(&cluster, &name(&a)).unwrap();
    assert_ne!(now.secret_hash, a.secret_hash);
    assert_eq!(now.previous.unwrap().hash, a.secret_hash);
    // An empty body: no grace.
    let got = send(
        &api,
        &person("alice", &[]),
        Method::POST,
        &uri,
        "",
        "",
        None,
    )
    .await;
    assert_eq!(got.code, 201);
    assert!(record_of(&cluster, &name(&a)).unwrap().previous.is_none());
}

#[tokio::test]
async fn a_key_disabled_by_a_key_admin_is_enabled_only_by_a_key_admin() {
    let (api, cluster) = api(admins());
    let a = stored_key(&cluster, "alice", None, |r| r.role = Some(Role::View));
    let (alice, dave) = (person("alice", &[]), person("dave", &[]));
    let got = merge(&api, &dave, &name(&a), json!({"spec": {"disabled": true}})).await;
    assert_eq!(got.code, 200, "{}", got.body);
    assert_eq!(got.body["status"]["state"], "Disabled");
    assert_eq!(
        record_of(&cluster, &name(&a)).unwrap().disabled_by,
        Some(DisabledBy::KeyAdmin)
    );
    let got = merge(
        &api,
        &alice,
        &name(&a),
        json!({"spec": {"disabled": false}}),
    )
    .await;
    assert_eq!(got.code, 403, "{}", got.body);
    assert!(
        got.body["message"]
            .as_str()
            .unwrap()
            .contains("only a key admin")
    );
    // A key admin may not rename someone else's key.
    let got = merge(
        &api,
        &dave,
        &name(&a),
        json!({"spec": {"displayName": "mine"}}),
    )
    .await;
    assert_eq!(got.code, 403);
    let got = merge(&api, &dave, &name(&a), json!({"spec": {"disabled": false}})).await;
    assert_eq!(got.code, 200, "{}", got.body);
    // Enabling re-checks the creator's right to bind the role (alice, cluster-wide view).
    let last = cluster.reviews().pop().unwrap();
    assert_eq!(last["user"], "alice");
    assert_eq!(last["resourceAttributes"]["name"], "view");
    // The owner disables and enables her own key.
    assert_eq!(
        merge(&api, &alice, &name(&a), json!({"spec": {"disabled": true}}))
            .await
            .code,
        200
    );
    assert_eq!(
        record_of(&cluster, &name(&a)).unwrap().disabled_by,
        Some(DisabledBy::Owner)
    );
    assert_eq!(
        merge(
            &api,
            &alice,
            &name(&a),
            json!({"spec": {"disabled": false}})
        )
        .await
        .code,
        200
    );
}

#[tokio::test]
async fn enabling_fails_when_the_creator_lost_the_right() {
    let (api, cluster) = api(Policy {
        admins: vec![],
        rights: vec![],
    });
    let a = stored_key(&cluster, "alice", None, |r| {
        r.role = Some(Role::Admin);
        r.disabled = true;
        r.disabled_by = Some(DisabledBy::Owner);
    });
    let got = merge(
        &api,
        &person("alice", &[]),
        &name(&a),
        json!({"spec": {"disabled": false}}),
    )
    .await;
    assert_eq!(got.code, 403, "{}", got.body);
    assert!(
        got.body["message"]
            .as_str()
            .unwrap()
            .contains("cannot be enabled")
    );
    assert!(
        got.body["message"]
            .as_str()
            .unwrap()
            .contains("cluster-admin")
    );
    assert!(record_of(&cluster, &name(&a)).unwrap().disabled);
}

#[tokio::test]
async fn patches_change_only_what_may_change() {
    let (api, cluster) = api(admins());
    let a = stored_key(&cluster, "alice", None, |r| {
        r.role = Some(Role::View);
        r.expiration = Some(crate::record::Expiry::At(
            "2031-01-01T00:00:00Z".parse().unwrap(),
        ));
    });
    let alice = person("alice", &[]);
    let n = name(&a);
    for (patch, field) in [
        (json!({"spec": {"role": "admin"}}), "spec.role"),
        (json!({"spec": {"groups": ["x"]}}), "spec.groups"),
        (
            json!({"spec": {"scope": {"namespaces": ["x"]}}}),
            "spec.scope.namespaces",
        ),
        (
            json!({"spec": {"inheritCreator": true}}),
            "spec.inheritCreator",
        ),
        (
            json!({"spec": {"expiration": "2032-01-01T00:00:00Z"}}),
            "spec.expiration",
        ),
        (json!({"spec": {"expiration": null}}), "spec.expiration"),
        (json!({"metadata": {"name": "other"}}), "metadata.name"),
    ] {
        let got = merge(&api, &alice, &n, patch.clone()).await;
        assert_eq!(got.code, 422, "{patch}: {}", got.body);
        assert_eq!(got.body["details"]["causes"][0]["field"], field, "{patch}");
    }
    let got = merge(&api, &alice, &n, json!({"metadata": {"labels": {"team": "a"}}, "spec": {"role": "view", "displayName": "renamed", "expiration": "2030-06-01T00:00:00Z"}, "status": {"owner": "mallory"}})).await;
    assert_eq!(got.code, 200, "{}", got.body);
    assert_eq!(got.body["metadata"]["labels"], json!({"team": "a"}));
    assert_eq!(
        got.body["status"]["owner"], "alice",
        "status in a patch is ignored"
    );
    let r = record_of(&cluster, &n).unwrap();
    assert_eq!(r.name, "renamed");
    let sel = get(&api, &alice, &format!("{KEYS}?labelSelector=team%3Da")).await;
    assert_eq!(sel.body["items"].as_array().unwrap().len(), 1);
    let json_patch = json!([{"op": "replace", "path": "/spec/description", "value": "d"}]);
    let uri = format!("{KEYS}/{n}");
    let got = send(
        &api,
        &alice,
        Method::PATCH,
        &uri,
        "application/json-patch+json",
        "",
        Some(json_patch),
    )
    .await;
    assert_eq!(got.code, 200, "{}", got.body);
    assert_eq!(record_of(&cluster, &n).unwrap().description, "d");
    let got = send(
        &api,
        &alice,
        Method::PATCH,
        &uri,
        "application/apply-patch+yaml",
        "",
        Some(json!({})),
    )
    .await;
    assert_eq!(got.code, 415);
    assert_eq!(got.body["reason"], "UnsupportedMediaType");
    let stale = json!({"metadata": {"resourceVersion": "1"}, "spec": {"description": "e"}});
    assert_eq!(merge(&api, &alice, &n, stale).await.code, 409);
    let dry = format!("{uri}?dryRun=All");
    let writes = cluster.writes().len();
    let got = send(
        &api,
        &alice,
        Method::PATCH,
        &dry,
        "application/merge-patch+json",
        "",
        Some(json!({"spec": {"description": "z"}})),
    )
    .await;
    assert_eq!(got.code, 200);
    assert_eq!(got.body["spec"]["description"], "z");
    assert_eq!(cluster.writes().len(), writes, "dry run writes nothing");
}

#[tokio::test]
async fn delete_removes_the_record_and_role_bindings_before_answering() {
    let (api, cluster) = api(admins());
    let alice = person("alice", &[]);
    let body =
        key_body(json!({"displayName": "x", "role": "view", "scope": {"namespaces": ["apps"]}}));
    let created = post(&api, &alice, KEYS, body).await;
    assert_eq!(created.code, 201, "{}", created.body);
    let n = created.body["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let rbs = "/apis/rbac.authorization.k8s.io/v1/namespaces/apps/rolebindings/";
    assert_eq!(cluster.under(rbs).len(), 1);
    let uri = format!("{KEYS}/{n}");
    let got = send(
        &api,
        &alice,
        Method::DELETE,
        &uri,
        "application/json",
        "",
        Some(json!({"propagationPolicy": "Background"})),
    )
    .await;
    assert_eq!(got.code, 200, "{}", got.body);
    assert!(cluster.under(rbs).is_empty());
    assert!(record_of(&cluster, &n).is_none());
    assert_eq!(get(&api, &alice, &uri).await.code, 404);
    // kubectl's wait: a list by name is empty at once.
    let list = get(
        &api,
        &alice,
        &format!("{KEYS}?fieldSelector=metadata.name%3D{n}"),
    )
    .await;
    assert_eq!(list.body["items"], json!([]));
}
