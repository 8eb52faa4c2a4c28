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
