use serde_json::json;

use super::*;

const API: &str = "system:serviceaccount:keygate:keygate-api";

fn guard() -> Guard {
    Guard {
        namespace: "keygate-system".into(),
        writers: vec![API.into()],
    }
}

fn secret(name: &str, ty: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "keygate-system"}, "type": ty})
}

fn review(version: &str, user: &str, op: &str, object: Value, old: Value) -> Vec<u8> {
    let name = object
        .pointer("/metadata/name")
        .or_else(|| old.pointer("/metadata/name"))
        .cloned()
        .unwrap_or(json!(""));
    serde_json::to_vec(&json!({
        "apiVersion": version,
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Secret"},
            "resource": {"group": "", "version": "v1", "resource": "secrets"},
            "namespace": "keygate-system",
            "name": name,
            "operation": op,
            "userInfo": {"username": user, "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": old,
        }
    }))
    .unwrap()
}

fn answer(body: &[u8]) -> (Value, Verdict) {
    let (out, verdict) = guard().review(body).unwrap();
    (serde_json::from_slice(&out).unwrap(), verdict)
}

const REC: &str = "keygate-nfyyvdtg8k1adujwk3yfh1";

#[test]
fn only_the_api_identity_writes_records_in_v1_and_v1beta1() {
    for version in [API_V1, API_V1BETA1] {
        for op in ["CREATE", "UPDATE", "DELETE"] {
            let (obj, old) = match op {
                "CREATE" => (secret(REC, SECRET_TYPE), Value::Null),
                "UPDATE" => (secret(REC, SECRET_TYPE), secret(REC, SECRET_TYPE)),
                _ => (Value::Null, secret(REC, SECRET_TYPE)),
            };
            let (a, v) = answer(&review(version, API, op, obj.clone(), old.clone()));
            assert_eq!(a["apiVersion"], version);
            assert_eq!(a["kind"], "AdmissionReview");
            assert_eq!(a["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
            assert_eq!(a["response"]["allowed"], true, "{version} {op}");
            assert!(v.allowed);
            let (a, v) = answer(&review(version, "alice", op, obj, old));
            assert_eq!(a["response"]["allowed"], false, "{version} {op}");
            assert_eq!(a["response"]["status"]["code"], 403);
            let msg = a["response"]["status"]["message"].as_str().unwrap();
            assert!(
                msg.contains("AccessKey API") && msg.contains("\"alice\""),
                "{msg}"
            );
            assert_eq!(v.record.as_deref(), Some(REC));
        }
    }
}

#[test]
fn the_webhook_identity_and_cluster_admins_are_refused_too() {
    for user in [
        "system:serviceaccount:keygate:keygate-webhook",
        "kubernetes-admin",
        "system:serviceaccount:keygate-system:default",
    ] {
        let (a, _) = answer(&review(
            API_V1,
            user,
            "UPDATE",
            secret(REC, SECRET_TYPE),
            secret(REC, SECRET_TYPE),
        ));
        assert_eq!(a["response"]["allowed"], false, "{user}");
    }
}

#[test]
fn records_are_recognised_by_type_or_name_including_type_changes() {
    let cases = [
        // An Opaque Secret under a record name (prepared, then retyped or read as one).
        (secret(REC, "Opaque"), Value::Null, "CREATE"),
        // A record turned into something else, or something else into a record.
        (
            secret("other", "Opaque"),
            secret("other", SECRET_TYPE),
            "UPDATE",
        ),
        (
            secret("other", SECRET_TYPE),
            secret("other", "Opaque"),
            "UPDATE",
        ),
        (
            json!({"metadata": {"generateName": "keygate-"}, "type": "Opaque"}),
            Value::Null,
            "CREATE",
        ),
    ];
    for (obj, old, op) in cases {
        let (a, _) = answer(&review(API_V1, "alice", op, obj.clone(), old.clone()));
        assert_eq!(a["response"]["allowed"], false, "{obj} {old}");
    }
    // Other Secrets in the key namespace, and records elsewhere, are not the guard's business.
    let (a, v) = answer(&review(
        API_V1,
        "alice",
        "CREATE",
        secret("app-config", "Opaque"),
        Value::Null,
    ));
    assert_eq!(a["response"]["allowed"], true);
    assert_eq!(v.record, None);
    let mut other_ns: Value = serde_json::from_slice(&review(
        API_V1,
        "alice",
        "CREATE",
        secret(REC, SECRET_TYPE),
        Value::Null,
    ))
    .unwrap();
    other_ns["request"]["namespace"] = json!("default");
    let (a, _) = answer(&serde_json::to_vec(&other_ns).unwrap());
    assert_eq!(a["response"]["allowed"], true);
    let mut configmap = other_ns.clone();
    configmap["request"]["namespace"] = json!("keygate-system");
    configmap["request"]["resource"]["resource"] = json!("configmaps");
    let (a, _) = answer(&serde_json::to_vec(&configmap).unwrap());
    assert_eq!(a["response"]["allowed"], true);
}

#[test]
fn malformed_reviews_are_errors_that_never_quote_the_body() {
    let g = guard();
    let e = g.review(b"{\"kg_SECRET\"").unwrap_err().to_string();
    assert!(!e.contains("SECRET") && e.contains("line 1"), "{e}");
    let body = serde_json::to_vec(
        &json!({"apiVersion": "admission.k8s.io/v2", "kind": "AdmissionReview", "request": {}}),
    )
    .unwrap();
    assert!(matches!(
        g.review(&body),
        Err(AdmissionError::WrongApiVersion)
    ));
    let body =
        serde_json::to_vec(&json!({"apiVersion": API_V1, "kind": "TokenReview", "request": {}}))
            .unwrap();
    assert!(matches!(g.review(&body), Err(AdmissionError::WrongKind)));
    let body =
        serde_json::to_vec(&json!({"apiVersion": API_V1, "kind": "AdmissionReview"})).unwrap();
    assert!(matches!(g.review(&body), Err(AdmissionError::NoRequest)));
}
