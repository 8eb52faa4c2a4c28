//! Last use of each key in the kube store, kept in a Lease per key (`keygate-<id lowercased>`
//! in the key namespace, `spec.renewTime`), so the webhook needs no write access to records:
//! get, create and update on Leases only.
//!
//! A write never lowers `renewTime` (two replicas, or a late batch, may race) and a conflict
//! (409: another writer updated or created the Lease meanwhile) is re-read and retried.

use std::collections::HashMap;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::{ListParams, PostParams};

use crate::record::{LABEL_KEY_ID, LABEL_MANAGED_BY, MANAGER};
use crate::token::IdKey;

/// `spec.holderIdentity` of keygate's Leases.
pub const HOLDER: &str = "keygate";
/// Attempts of one write when other writers keep winning the race.
const ATTEMPTS: usize = 4;

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

fn renew_time(lease: &Lease) -> Option<Timestamp> {
    lease.spec.as_ref()?.renew_time.as_ref().map(|t| t.0)
}

fn new_lease(id: &IdKey, at: Timestamp) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(id.record_name()),
            labels: Some(
                [
                    (LABEL_MANAGED_BY.to_owned(), MANAGER.to_owned()),
                    (LABEL_KEY_ID.to_owned(), id.to_string()),
                ]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(HOLDER.to_owned()),
            renew_time: Some(MicroTime(at)),
            ..LeaseSpec::default()
        }),
    }
}

/// Records that key `id` was last used at `at`, unless its Lease already says `at` or later.
pub async fn write(api: &Api<Lease>, id: IdKey, at: Timestamp) -> Result<(), kube::Error> {
    let name = id.record_name();
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let result = match api.get_opt(&name).await? {
            None => api
                .create(&PostParams::default(), &new_lease(&id, at))
                .await
                .map(drop),
            Some(lease) if renew_time(&lease).is_some_and(|t| t >= at) => return Ok(()),
            Some(mut lease) => {
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                spec.renew_time = Some(MicroTime(at));
                spec.holder_identity = Some(HOLDER.to_owned());
                // The resourceVersion read above makes this fail with 409 if anyone wrote since.
                api.replace(&name, &PostParams::default(), &lease)
                    .await
                    .map(drop)
            }
        };
        match result {
            Err(e) if is_conflict(&e) => last = Some(e),
            other => return other,
        }
    }
    Err(last.expect("the loop ran and only conflicts continue it"))
}

/// Last use of every key with a Lease, in one list call.
pub async fn read_all(api: &Api<Lease>) -> Result<HashMap<IdKey, Timestamp>, kube::Error> {
    let lp = ListParams::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGER}"));
    let list = api.list(&lp).await?;
    Ok(list
        .items
        .iter()
        .filter_map(|l| {
            let id = IdKey::from_record_name(l.metadata.name.as_deref()?)?;
            Some((id, renew_time(l)?))
        })
        .collect())
}

/// Last use of one key, from its Lease.
pub async fn read(api: &Api<Lease>, id: &IdKey) -> Result<Option<Timestamp>, kube::Error> {
    Ok(api
        .get_opt(&id.record_name())
        .await?
        .as_ref()
        .and_then(renew_time))
}

#[cfg(test)]
mod tests;
