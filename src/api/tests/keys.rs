//! A key using the API: what it mints belongs to its owner, and it never reaches its owner's
//! other keys.

use http::Method;
use serde_json::json;

use super::*;
use crate::record::Role;

fn policy() -> Policy {
    Policy {
        admins: vec![],
        rights: vec![("alice", "bind", "*", "*")],
    }
}

#[tokio::test]
async fn a_key_mints_keys_for_its_owner_and_sees_only_those() {
    let (api, cluster) = api(policy());
    let view = stored_key(&cluster, "alice", None, |r| r.role = Some(Role::View));
    let admin = stored_key(&cluster, "alice", None, |r| r.role = Some(Role::Admin));
    let caller = key_caller(&view);
    let got = post(
        &api,
        &caller,
        KEYS,
        key_body(json!({"displayName": "child"})),
    )
    .await;
    assert_eq!(got.code, 201, "{}", got.body);
    assert_eq!(got.body["status"]["owner"], "alice");
    assert_eq!(got.body["status"]["parent"], view.id.as_str());
    assert_eq!(got.body["status"]["creator"]["username"], caller.username);
    let child = got.body["metadata"]["name"].as_str().unwrap().to_owned();
    // A grandchild, minted by the child.
    let child_rec = record_of(&cluster, &child).unwrap();
    let got = post(
        &api,
        &key_caller(&child_rec),
        KEYS,
        key_body(json!({"displayName": "grandchild"})),
    )
    .await;
    assert_eq!(got.code, 201);
    let grandchild = got.body["metadata"]["name"].as_str().unwrap().to_owned();

    // The view key sees what it minted, directly or not, and nothing else of alice's.
    let list = get(&api, &caller, KEYS).await;
    let mut names: Vec<String> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    let mut want = vec![child.clone(), grandchild.clone()];
    want.sort();
    assert_eq!(names, want);
    assert_eq!(
        get(&api, &caller, &format!("{KEYS}/{grandchild}"))
            .await
            .code,
        200
    );

    // SECURITY: the view key cannot regenerate, read, change or delete its owner's admin key,
    // nor itself.
    for target in [name(&admin), name(&view)] {
        let regen = post(
            &api,
            &caller,
            &format!("{KEYS}/{target}/regenerate"),
            json!({}),
        )
        .await;
        assert_eq!(regen.code, 404, "{}", regen.body);
        assert_eq!(
            get(&api, &caller, &format!("{KEYS}/{target}")).await.code,
            404
        );
        let patch = merge(&api, &caller, &target, json!({"spec": {"disabled": true}})).await;
        assert_eq!(patch.code, 404);
        let uri = format!("{KEYS}/{target}");
        assert_eq!(
            send(&api, &caller, Method::DELETE, &uri, "", "", None)
                .await
                .code,
            404
        );
    }
    assert_eq!(
        record_of(&cluster, &name(&admin)).unwrap().secret_hash,
        admin.secret_hash
    );
    // The child cannot reach its parent either.
    let up = get(
        &api,
        &key_caller(&child_rec),
        &format!("{KEYS}/{}", name(&view)),
    )
    .await;
    assert_eq!(up.code, 404);
    // The owner herself sees all four.
    let all = get(&api, &person("alice", &[]), KEYS).await;
    assert_eq!(all.body["items"].as_array().unwrap().len(), 4);
    // And the view key may regenerate what it minted.
    let regen = post(
        &api,
        &caller,
        &format!("{KEYS}/{child}/regenerate"),
        json!({}),
    )
    .await;
    assert_eq!(regen.code, 201, "{}", regen.body);
}

#[tokio::test]
async fn a_disabled_or_unknown_key_cannot_use_the_api() {
    let (api, cluster) = api(policy());
    let off = stored_key(&cluster, "alice", None, |r| r.disabled = true);
    let got = get(&api, &key_caller(&off), KEYS).await;
    assert_eq!(got.code, 403);
    assert!(
        got.body["message"]
            .as_str()
            .unwrap()
            .contains("is disabled")
    );
    let gone = KeyRecord::new(KeyId::generate(), SecretHash::of(b"s"), "gone");
    let got = get(&api, &key_caller(&gone), KEYS).await;
    assert_eq!(got.code, 403);
    // A key-shaped username without its key-id extra is refused, not taken for a person.
    let on = stored_key(&cluster, "alice", None, |_| {});
    let mut stripped = key_caller(&on);
    stripped.extra.clear();
    let got = post(&api, &stripped, KEYS, key_body(json!({"displayName": "x"}))).await;
    assert_eq!(got.code, 403, "{}", got.body);
    assert!(cluster.writes().is_empty());
}

/// SECURITY: an inheriting key acts on AccessKeys only inside its own scope, and inside the
/// scope of every inheriting key above it; a key under a disabled key cannot act at all.
#[tokio::test]
async fn an_inheriting_key_is_held_to_its_scope_on_the_api() {
    use crate::record::ScopeRule;
    let (api, cluster) = api(policy());
    let rule = |verbs: &[&str], resources: &[&str]| ScopeRule {
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        api_groups: vec!["keygate.dev".to_owned()],
        resources: resources.iter().map(|r| (*r).to_owned()).collect(),
        ..ScopeRule::default()
    };
    // Pods only: nothing on AccessKeys.
    let pods = stored_key(&cluster, "alice", None, |r| {
        r.inherit_creator = true;
        r.rules = vec![ScopeRule {
            verbs: vec!["get".into()],
            api_groups: vec![String::new()],
            resources: vec!["pods".into()],
            ..ScopeRule::default()
        }];
    });
    let body = key_body(json!({"displayName": "child", "inheritCreator": true}));
    let got = post(&api, &key_caller(&pods), KEYS, body.clone()).await;
    assert_eq!(got.code, 403, "{}", got.body);
    let msg = got.body["message"].as_str().unwrap();
    assert!(msg.contains("has no rule that matches"), "{msg}");
    assert!(msg.contains("create accesskeys.keygate.dev"), "{msg}");
    assert_eq!(get(&api, &key_caller(&pods), KEYS).await.code, 403);

    // A namespace scope never covers AccessKeys (cluster-scoped).
    let ns = stored_key(&cluster, "alice", None, |r| {
        r.inherit_creator = true;
        r.namespaces = vec!["apps".into()];
    });
    let got = post(&api, &key_caller(&ns), KEYS, body.clone()).await;
    assert_eq!(got.code, 403, "{}", got.body);
    assert!(
        got.body["message"]
            .as_str()
            .unwrap()
            .contains("cluster-wide")
    );

    // Create and list allowed: it mints; its child (unscoped, inheriting) is still held to the
    // parent's scope, which has no `delete`.
    let minter = stored_key(&cluster, "alice", None, |r| {
        r.inherit_creator = true;
        r.rules = vec![rule(&["create", "list", "get"], &["accesskeys"])];
    });
    let got = post(&api, &key_caller(&minter), KEYS, body.clone()).await;
    assert_eq!(got.code, 201, "{}", got.body);
    let child = record_of(&cluster, got.body["metadata"]["name"].as_str().unwrap()).unwrap();
    assert_eq!(get(&api, &key_caller(&minter), KEYS).await.code, 200);
    let uri = format!("{KEYS}/{}", name(&child));
    let del = send(
        &api,
        &key_caller(&child),
        Method::DELETE,
        &uri,
        "",
        "",
        None,
    )
    .await;
    assert_eq!(del.code, 403, "{}", del.body);
    let msg = del.body["message"].as_str().unwrap();
    assert!(msg.contains(&format!("above key {}", child.id)), "{msg}");
    // Regenerate is `create` on the subresource: `accesskeys` alone does not cover it.
    let regen = post(
        &api,
        &key_caller(&minter),
        &format!("{uri}/regenerate"),
        json!({}),
    )
    .await;
    assert_eq!(regen.code, 403, "{}", regen.body);

    // The minter disabled: its child cannot act on the API.
    let mut off = record_of(&cluster, &name(&minter)).unwrap();
    off.disabled = true;
    cluster.objects.lock().unwrap().clear();
    for r in [&off, &child] {
        cluster.put_secret(&r.to_secret(NAMESPACE));
    }
    let got = get(&api, &key_caller(&child), KEYS).await;
    assert_eq!(got.code, 403, "{}", got.body);
    assert!(
        got.body["message"]
            .as_str()
            .unwrap()
            .contains("is disabled")
    );
}
