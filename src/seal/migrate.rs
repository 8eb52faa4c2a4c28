//! Sealing the records that exist already (Part 1 records, written by `keys --store kube`
//! before the AccessKey API): `keygate keys seal`, run once by a cluster admin with the signing
//! key, before the record guard is installed (or impersonating the API's identity).

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ListParams, PostParams};

use super::{SealError, Sealer};
use crate::record::{KeyRecord, SECRET_TYPE};

/// What sealing the key namespace did, record by record (names only: no record content).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SealReport {
    /// Records sealed now.
    pub sealed: Vec<String>,
    /// Records whose seal already verified with this key: left alone.
    pub already: Vec<String>,
    /// Records that are not valid and were not sealed (name, why). They never authenticate
    /// once seals are checked; fix or delete them.
    pub refused: Vec<(String, String)>,
    /// Records whose update failed (name, why); run again.
    pub failed: Vec<(String, String)>,
}

/// Seals every valid, unsealed record in the namespace of `api`, each with one update that
/// carries the resourceVersion it read (a record changed meanwhile fails, and is reported).
pub async fn seal_all(api: &Api<Secret>, sealer: &Sealer) -> Result<SealReport, kube::Error> {
    let lp = ListParams::default().fields(&format!("type={SECRET_TYPE}"));
    let verifier = sealer.verifier();
    let mut report = SealReport::default();
    for mut secret in api.list(&lp).await?.items {
        let name = secret.metadata.name.clone().unwrap_or_default();
        let record = match KeyRecord::from_secret(&secret) {
            Ok(r) => r,
            Err(e) => {
                report.refused.push((name, e.to_string()));
                continue;
            }
        };
        if verifier.verify(&secret, &record).is_ok() {
            report.already.push(name);
            continue;
        }
        match sealer.seal(&mut secret, None) {
            Ok(_) => {}
            Err(SealError::Record { error }) => {
                report.refused.push((name, error.to_string()));
                continue;
            }
            Err(e) => {
                report.failed.push((name, e.to_string()));
                continue;
            }
        }
        match api.replace(&name, &PostParams::default(), &secret).await {
            Ok(_) => report.sealed.push(name),
            Err(e) => report.failed.push((name, crate::causes::chain(&e))),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fixtures::{NAMESPACE, fake_kube, record, sealed, sealer};
    use crate::token::KeyId;

    #[tokio::test]
    async fn seals_valid_unsealed_records_only_and_reports_each() {
        let sealer = sealer();
        let (plain, done, bad) = (KeyId::generate(), KeyId::generate(), KeyId::generate());
        let mut unsealed = record(&plain).to_secret(NAMESPACE);
        unsealed.metadata.uid = Some("u1".into());
        unsealed.metadata.resource_version = Some("7".into());
        let already = sealed(&sealer, &record(&done), "u2", None);
        let mut invalid = record(&bad).to_secret(NAMESPACE);
        invalid
            .string_data
            .as_mut()
            .unwrap()
            .insert("groups".into(), "system:masters".into());
        let items = json!([unsealed, already, invalid]);
        let (client, log) = fake_kube(move |seen| match seen.method.as_str() {
            "GET" => (
                200,
                json!({"apiVersion": "v1", "kind": "SecretList", "metadata": {}, "items": items}),
            ),
            _ => (200, seen.body.clone()),
        });
        let api = Api::namespaced(client, NAMESPACE);
        let report = seal_all(&api, &sealer).await.unwrap();
        assert_eq!(report.sealed, [plain.record_name()]);
        assert_eq!(report.already, [done.record_name()]);
        assert_eq!(report.refused.len(), 1);
        assert_eq!(report.refused[0].0, bad.record_name());
        assert!(report.failed.is_empty());
        let log = log.lock().unwrap();
        let puts: Vec<_> = log.iter().filter(|s| s.method == "PUT").collect();
        assert_eq!(puts.len(), 1);
        // The update carries what was read (resourceVersion) and a seal that verifies.
        let body: Secret = serde_json::from_value(puts[0].body.clone()).unwrap();
        assert_eq!(body.metadata.resource_version.as_deref(), Some("7"));
        assert!(sealer.verifier().check(&body).is_ok());
    }
}
