//! With `--record-signing-key`, every record the API writes carries a seal the webhook's
//! verifier accepts, and each write raises its sequence number.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use serde_json::json;

use super::*;
use crate::seal::{Verifier, seq_of};

fn stored_secret(cluster: &FakeCluster, name: &str) -> Secret {
    let path = format!("/api/v1/namespaces/{NAMESPACE}/secrets/keygate-{name}");
    let v = cluster.objects.lock().unwrap().get(&path).cloned().unwrap();
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn records_written_through_the_api_are_sealed_and_resealed_on_every_change() {
    let sealer = Arc::new(crate::fixtures::sealer());
    let verifier: Verifier = sealer.verifier();
    let policy = Policy {
        admins: vec![],
        rights: vec![("alice", "bind", "*", "*")],
    };
    let s = sealer.clone();
    let (api, cluster) = api_with(policy, move |settings| settings.sealer = Some(s));
    let alice = person("alice", &["dev"]);
    let got = post(
        &api,
        &alice,
        KEYS,
        key_body(json!({"displayName": "ci", "role": "view"})),
    )
    .await;
    assert_eq!(got.code, 201, "{}", got.body);
    let name = got.body["metadata"]["name"].as_str().unwrap().to_owned();
    let created = stored_secret(&cluster, &name);
    let (record, seq1) = verifier
        .check(&created)
        .expect("the created record is sealed");
    assert_eq!(record.name, "ci");

    let got = merge(&api, &alice, &name, json!({"spec": {"disabled": true}})).await;
    assert_eq!(got.code, 200, "{}", got.body);
    let changed = stored_secret(&cluster, &name);
    let (record, seq2) = verifier
        .check(&changed)
        .expect("the changed record is sealed");
    assert!(record.disabled);
    assert!(seq2 > seq1, "{seq2} > {seq1}");
    assert_eq!(seq_of(&changed), Some(seq2));

    // The older copy still verifies on its own: refusing it is the index's job (its seq is
    // below the one already seen), tested in index::sealed.
    assert!(verifier.check(&created).is_ok());
}

#[tokio::test]
async fn a_signing_key_the_webhook_does_not_trust_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = (dir.path().join("seal.key"), dir.path().join("seal.pub"));
    crate::seal::write_key_pair(&private, &public).unwrap();
    let (other_private, other_public) = (dir.path().join("o.key"), dir.path().join("o.pub"));
    crate::seal::write_key_pair(&other_private, &other_public).unwrap();
    let signer = crate::seal::Sealer::load(&private, "--record-signing-key").unwrap();
    assert!(
        Verifier::load(&public, "--record-verify-key")
            .unwrap()
            .trusts(&signer)
    );
    assert!(
        !Verifier::load(&other_public, "--record-verify-key")
            .unwrap()
            .trusts(&signer)
    );
}
