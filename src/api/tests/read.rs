//! Reading: discovery and kubectl's Table.

use http::Method;
use serde_json::json;

use super::manage::admins;
use super::*;
use crate::record::Role;

const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

#[tokio::test]
async fn discovery_lists_what_is_served_and_no_watch() {
    let (api, _) = api(Policy::default());
    let got = get(&api, &person("u", &[]), "/apis/keygate.dev/v1alpha1").await;
    assert_eq!(got.code, 200);
    assert_eq!(got.body["kind"], "APIResourceList");
    assert_eq!(got.body["groupVersion"], "keygate.dev/v1alpha1");
    let r = &got.body["resources"];
    assert_eq!(r[0]["name"], "accesskeys");
    assert_eq!(r[0]["namespaced"], false);
    assert_eq!(r[0]["kind"], "AccessKey");
    assert_eq!(r[0]["shortNames"], json!(["ak"]));
    assert_eq!(r[0]["singularName"], "accesskey");
    assert_eq!(
        r[0]["verbs"],
        json!(["create", "delete", "get", "list", "patch"])
    );
    assert_eq!(r[1]["name"], "accesskeys/regenerate");
    assert_eq!(r[1]["verbs"], json!(["create"]));
    let groups = get(&api, &person("u", &[]), "/apis").await;
    assert_eq!(groups.body["groups"][0]["name"], "keygate.dev");
    let watch = get(&api, &person("u", &[]), &format!("{KEYS}?watch=true")).await;
    assert_eq!(watch.code, 405);
    assert_eq!(watch.body["reason"], "MethodNotAllowed");
}

#[tokio::test]
async fn get_prints_kubectls_table() {
    let (api, cluster) = api(admins());
    let a = stored_key(&cluster, "alice", None, |r| {
        r.role = Some(Role::Edit);
        r.namespaces = vec!["a".into(), "b".into()];
        r.name = "ci".into();
    });
    stored_key(&cluster, "alice", None, |r| {
        r.inherit_creator = true;
        r.rules = vec![
            crate::record::ScopeRule {
                verbs: vec!["get".into()],
                ..Default::default()
            };
            2
        ];
    });
    let alice = person("alice", &[]);
    let got = send(&api, &alice, Method::GET, KEYS, "", TABLE, None).await;
    assert_eq!(got.code, 200);
    assert_eq!(got.body["kind"], "Table");
    assert_eq!(got.body["apiVersion"], "meta.k8s.io/v1");
    let cols: Vec<_> = got.body["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        cols,
        [
            "ID",
            "Name",
            "Owner",
            "Role",
            "Scope",
            "State",
            "Expires",
            "Last Used",
            "Age"
        ]
    );
    let rows = got.body["rows"].as_array().unwrap();
    let row = rows
        .iter()
        .find(|r| r["cells"][0] == a.id.as_str())
        .unwrap();
    assert_eq!(
        row["cells"],
        json!([
            a.id.as_str(),
            "ci",
            "alice",
            "edit",
            "a,b",
            "Active",
            "never",
            "never",
            row["cells"][8]
        ])
    );
    assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
    let other = rows
        .iter()
        .find(|r| r["cells"][0] != a.id.as_str())
        .unwrap();
    assert_eq!(other["cells"][3], "inherited");
    assert_eq!(other["cells"][4], "cluster +2 rules");
    let uri = format!("{KEYS}/{}?includeObject=None", name(&a));
    let one = send(
        &api,
        &alice,
        Method::GET,
        &uri,
        "",
        "application/json;as=Table;v=v1beta1;g=meta.k8s.io",
        None,
    )
    .await;
    assert_eq!(one.body["apiVersion"], "meta.k8s.io/v1beta1");
    assert_eq!(one.body["rows"].as_array().unwrap().len(), 1);
    assert!(one.body["rows"][0].get("object").is_none());
}

/// Last use lives in the key's Lease, written by the webhook (another process, another
/// identity); `get` and `list` both show it as `status.lastUsed`, and reading it writes nothing.
#[tokio::test]
async fn last_use_comes_from_the_keys_lease() {
    let (api, cluster) = api(Policy::default());
    let key = stored_key(&cluster, "alice", None, |_| {});
    let n = name(&key);
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": format!("keygate-{n}"), "namespace": NAMESPACE},
        "spec": {"holderIdentity": "keygate", "renewTime": "2030-01-02T03:04:05.000000Z"},
    });
    cluster.objects.lock().unwrap().insert(
        format!("/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/keygate-{n}"),
        lease,
    );
    let alice = person("alice", &[]);
    let one = get(&api, &alice, &format!("{KEYS}/{n}")).await;
    assert_eq!(one.code, 200, "{}", one.body);
    assert_eq!(one.body["status"]["lastUsed"], "2030-01-02T03:04:05Z");
    let all = get(&api, &alice, KEYS).await;
    assert_eq!(
        all.body["items"][0]["status"]["lastUsed"],
        "2030-01-02T03:04:05Z"
    );
    assert!(cluster.writes().is_empty(), "{:?}", cluster.writes());
}
