use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::*;
use crate::fixtures::{NAMESPACE, Seen, SeenLog, fake_kube, status};
use crate::token::KeyId;

/// A Lease store behind a faked API server: GET, POST, PUT (with resourceVersion checks) and
/// LIST. `interfere` runs before each request and may change the store (another writer).
fn leases(
    interfere: impl Fn(&Seen, &mut Option<Value>) + Send + 'static,
) -> (Api<Lease>, SeenLog, Arc<Mutex<Option<Value>>>) {
    let store: Arc<Mutex<Option<Value>>> = Arc::default();
    let s2 = store.clone();
    let (client, log) = fake_kube(move |seen| {
        let mut lease = s2.lock().unwrap();
        interfere(seen, &mut lease);
        let bump = |v: &mut Value| {
            let rv: u64 = v["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("0")
                .parse()
                .unwrap();
            v["metadata"]["resourceVersion"] = json!((rv + 1).to_string());
        };
        match (seen.method.as_str(), seen.path.ends_with("/leases")) {
            ("GET", true) => (
                200,
                json!({"apiVersion": "coordination.k8s.io/v1", "kind": "LeaseList", "metadata": {}, "items": lease.iter().collect::<Vec<_>>()}),
            ),
            ("GET", false) => match &*lease {
                Some(l) => (200, l.clone()),
                None => status(404, "NotFound"),
            },
            ("POST", _) if lease.is_some() => status(409, "AlreadyExists"),
            ("POST", _) => {
                let mut l = seen.body.clone();
                bump(&mut l);
                *lease = Some(l.clone());
                (201, l)
            }
            ("PUT", _) => {
                let current = lease
                    .as_ref()
                    .map(|l| l["metadata"]["resourceVersion"].clone());
                if current != Some(seen.body["metadata"]["resourceVersion"].clone()) {
                    return status(409, "Conflict");
                }
                let mut l = seen.body.clone();
                bump(&mut l);
                *lease = Some(l.clone());
                (200, l)
            }
            _ => status(405, "MethodNotAllowed"),
        }
    });
    (Api::namespaced(client, NAMESPACE), log, store)
}

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn stored_time(store: &Arc<Mutex<Option<Value>>>) -> Timestamp {
    let l: Lease = serde_json::from_value(store.lock().unwrap().clone().unwrap()).unwrap();
    renew_time(&l).unwrap()
}

fn methods(log: &SeenLog) -> Vec<String> {
    log.lock()
        .unwrap()
        .iter()
        .map(|s| s.method.clone())
        .collect()
}

#[tokio::test]
async fn creates_the_lease_when_absent_then_updates_it_with_its_resource_version() {
    let (api, log, store) = leases(|_, _| {});
    let id = KeyId::generate().key();
    write(&api, id, at("2030-01-01T00:00:00Z")).await.unwrap();
    assert_eq!(methods(&log), ["GET", "POST"]);
    {
        let l = store.lock().unwrap().clone().unwrap();
        assert_eq!(l["metadata"]["name"], json!(id.record_name()));
        assert_eq!(l["spec"]["holderIdentity"], json!("keygate"));
        assert_eq!(l["metadata"]["labels"][LABEL_MANAGED_BY], json!("keygate"));
    }
    write(&api, id, at("2030-01-01T00:05:00Z")).await.unwrap();
    assert_eq!(methods(&log), ["GET", "POST", "GET", "PUT"]);
    assert_eq!(
        log.lock().unwrap()[3].body["metadata"]["resourceVersion"],
        json!("1")
    );
    assert_eq!(stored_time(&store), at("2030-01-01T00:05:00Z"));
    assert_eq!(
        read(&api, &id).await.unwrap(),
        Some(at("2030-01-01T00:05:00Z"))
    );
    let all = read_all(&api).await.unwrap();
    assert_eq!(all.get(&id), Some(&at("2030-01-01T00:05:00Z")));
}

#[tokio::test]
async fn never_lowers_renew_time() {
    let (api, log, store) = leases(|_, _| {});
    let id = KeyId::generate().key();
    write(&api, id, at("2030-01-01T00:05:00Z")).await.unwrap();
    write(&api, id, at("2030-01-01T00:00:00Z")).await.unwrap();
    assert_eq!(
        methods(&log),
        ["GET", "POST", "GET"],
        "no write for an older time"
    );
    assert_eq!(stored_time(&store), at("2030-01-01T00:05:00Z"));
}

#[tokio::test]
async fn a_conflict_is_re_read_and_retried_and_a_newer_time_from_the_race_is_kept() {
    let id = KeyId::generate().key();
    // Another replica creates the Lease between our GET and POST, with a later time.
    let (api, log, store) = leases(move |seen, lease| {
        if seen.method == "POST" && lease.is_none() {
            *lease =
                Some(serde_json::to_value(new_lease(&id, at("2030-01-01T00:09:00Z"))).unwrap());
            lease.as_mut().unwrap()["metadata"]["resourceVersion"] = json!("5");
        }
    });
    write(&api, id, at("2030-01-01T00:01:00Z")).await.unwrap();
    assert_eq!(methods(&log), ["GET", "POST", "GET"]);
    assert_eq!(stored_time(&store), at("2030-01-01T00:09:00Z"));

    // Another replica updates it between our GET and PUT, with an earlier time: we retry.
    let (api, log, store) = leases(|seen, lease| {
        if seen.method == "PUT"
            && let Some(l) = lease.as_mut()
            && l["metadata"]["resourceVersion"] == json!("1")
        {
            l["metadata"]["resourceVersion"] = json!("2");
        }
    });
    write(&api, id, at("2030-01-01T00:01:00Z")).await.unwrap();
    write(&api, id, at("2030-01-01T00:02:00Z")).await.unwrap();
    assert_eq!(methods(&log), ["GET", "POST", "GET", "PUT", "GET", "PUT"]);
    assert_eq!(stored_time(&store), at("2030-01-01T00:02:00Z"));
}

#[tokio::test]
async fn endless_conflicts_give_up_with_the_conflict() {
    let (client, log) = fake_kube(|seen| match seen.method.as_str() {
        "GET" => (
            200,
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "x", "resourceVersion": "1"}, "spec": {}}),
        ),
        _ => status(409, "Conflict"),
    });
    let api = Api::namespaced(client, NAMESPACE);
    let e = write(&api, KeyId::generate().key(), at("2030-01-01T00:00:00Z"))
        .await
        .unwrap_err();
    assert!(is_conflict(&e));
    assert_eq!(methods(&log).len(), 2 * ATTEMPTS);
}
