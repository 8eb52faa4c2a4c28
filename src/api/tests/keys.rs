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
