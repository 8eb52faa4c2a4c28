//! `PATCH .../accesskeys/{name}`: merge patch and JSON patch (a strategic-merge patch is read
//! as a merge patch: an AccessKey has no lists to merge by key). Server-side apply is `415`.
//!
//! A patch may change `displayName`, `description`, `disabled`, labels and annotations, and
//! shorten `expiration`; `role`, `inheritCreator`, `scope` and `groups` are fixed (`422` naming
//! the field when a patch would change them). Only the owner changes text, labels and
//! expiration; a key admin may disable and enable any key it sees. Enabling re-checks that the
//! creator may still hand out what the key holds. `status` in a patch is ignored.
//!
//! The patch is applied to the AccessKey as last read and written back with that read's
//! resourceVersion: if the record changed meanwhile, it is read again and the patch re-applied;
//! a patch that names a `metadata.resourceVersion` that is no longer current is `409`.

use http::{HeaderMap, StatusCode};
use serde_json::Value;

use super::access::creator_of;
use super::create::{duration_text, meta_annotations};
use super::ops::{Ctx, check_type, store_error};
use super::request::{self, content_type};
use super::status::ApiError;
use super::types::{ANNOTATION_ANNOTATIONS, ANNOTATION_LABELS, AccessKey};
use super::{Answer, to_json};
use crate::keystore::{KeyStoreError, Stored};
use crate::record::{DisabledBy, Expiry, KeyRecord, parse_role};

const ATTEMPTS: usize = 5;

enum Kind {
    Merge,
    Json,
}

fn kind(ct: &str) -> Result<Kind, ApiError> {
    match ct {
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            Ok(Kind::Merge)
        }
        "application/json-patch+json" => Ok(Kind::Json),
        "application/apply-patch+yaml" => Err(ApiError::unsupported_media(
            "server-side apply is not served for accesskeys: use `kubectl patch --type merge`, \
             `kubectl edit`, or `kubectl apply` without --server-side",
        )),
        other => Err(ApiError::unsupported_media(format!(
            "patch type {other:?} is not served: use application/merge-patch+json, \
             application/json-patch+json or application/strategic-merge-patch+json"
        ))),
    }
}

fn apply(kind: &Kind, doc: &Value, patch: &Value) -> Result<Value, ApiError> {
    let mut doc = doc.clone();
    match kind {
        Kind::Merge => json_patch::merge(&mut doc, patch),
        Kind::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::bad_request(format!("the body is not a JSON patch: {e}")))?;
            json_patch::patch(&mut doc, &ops)
                .map_err(|e| ApiError::field(None, "patch", format!("cannot be applied: {e}")))?;
        }
    }
    Ok(doc)
}

/// The fields a patch may not change, compared as the record holds them.
fn fixed_changes(old: &KeyRecord, new: &AccessKey) -> Vec<&'static str> {
    let s = &new.spec;
    let mut ns = s.scope.namespaces.clone();
    ns.sort();
    ns.dedup();
    let mut out = Vec::new();
    if parse_role(s.role.as_deref().unwrap_or("")).ok() != Some(old.role) {
        out.push("spec.role");
    }
    if s.inherit_creator != old.inherit_creator {
        out.push("spec.inheritCreator");
    }
    if ns != old.namespaces {
        out.push("spec.scope.namespaces");
    }
    if s.scope.rules != old.rules {
        out.push("spec.scope.rules");
    }
    if s.groups != old.groups {
        out.push("spec.groups");
    }
    out
}

impl Ctx<'_> {
    pub async fn patch(
        &self,
        name: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Answer, ApiError> {
        let kind = kind(&content_type(headers))?;
        let patch = request::json(body)?;
        for _ in 0..ATTEMPTS {
            let (stored, descends) = self.load(name).await?;
            let current = self.view(&stored);
            let patched = apply(&kind, &to_json(&current), &patch)?;
            check_type(&patched)?;
            let decoded = request::decode_body::<AccessKey>(&patched, self.query.field_validation)?;
            let new = decoded.value;
            let rv = new.metadata.resource_version.as_deref();
            let pinned = rv.is_some() && rv != current.metadata.resource_version.as_deref();
            if pinned {
                return Err(ApiError::conflict(
                    name,
                    format!(
                        "the AccessKey {name} has been modified since metadata.resourceVersion \
                         {}; read it again and apply your change to the latest version",
                        rv.unwrap_or_default()
                    ),
                ));
            }
            let (record, base) = self.patched(name, &stored, descends, &new).await?;
            if self.query.dry_run {
                let mut preview = base.clone();
                preview.record = record;
                return Ok(Answer {
                    code: StatusCode::OK,
                    body: to_json(&self.view(&preview)),
                    warnings: decoded.warnings,
                });
            }
            match self.api.store.update(&base, &record).await {
                Ok(s) => {
                    tracing::info!(key_id = %s.record.id, by = %self.actor.caller.username, disabled = s.record.disabled, "key changed through the API");
                    return Ok(Answer {
                        code: StatusCode::OK,
                        body: to_json(&self.view(&s)),
                        warnings: decoded.warnings,
                    });
                }
                Err(KeyStoreError::Conflict(_)) if rv.is_some() => {
                    return Err(ApiError::conflict(
                        name,
                        format!(
                            "the AccessKey {name} was modified while your patch was applied; \
                             read it again and retry"
                        ),
                    ));
                }
                Err(KeyStoreError::Conflict(_)) => continue,
                Err(e) => return Err(store_error(e)),
            }
        }
        Err(ApiError::conflict(
            name,
            format!("the AccessKey {name} kept changing while being patched; try again"),
        ))
    }

    /// The record after the patch (and the stored version to write it over, with the
    /// AccessKey's labels and annotations in place), or why the patch is refused.
    async fn patched(
        &self,
        name: &str,
        stored: &Stored,
        descends: bool,
        new: &AccessKey,
    ) -> Result<(KeyRecord, Stored), ApiError> {
        let old = &stored.record;
        let current = self.view(stored);
        if new.metadata.name != current.metadata.name {
            return Err(ApiError::field(
                Some(name),
                "metadata.name",
                "cannot be changed",
            ));
        }
        let fixed = fixed_changes(old, new);
        if !fixed.is_empty() {
            return Err(ApiError::invalid(
                Some(name),
                fixed
                    .into_iter()
                    .map(|f| super::status::Cause {
                        field: f.to_owned(),
                        message: "is fixed when the key is created; create a new key instead"
                            .to_owned(),
                    })
                    .collect(),
            ));
        }
        let spec = &new.spec;
        let mut rec = old.clone();
        rec.name = spec.display_name.trim().to_owned();
        rec.description = spec.description.clone();
        if rec.name.is_empty() {
            return Err(ApiError::field(
                Some(name),
                "spec.displayName",
                "must not be empty",
            ));
        }
        if spec.expiration != current.spec.expiration {
            rec.expiration = Some(Expiry::At(self.shorter_expiry(name, old, spec)?));
        }
        let meta_changed = meta_annotations(new) != meta_annotations(&current);
        let text_changed = rec.name != old.name
            || rec.description != old.description
            || rec.expiration != old.expiration
            || meta_changed;
        let owns = self.actor.owns(old, descends);
        if text_changed && !owns {
            return Err(ApiError::forbidden(format!(
                "only the owner of key {name} ({}) may change its name, description, labels, \
                 annotations or expiration; a key admin may disable, enable or delete it",
                old.owner()
            ))
            .named(name));
        }
        if spec.disabled && !old.disabled {
            rec.disabled = true;
            rec.disabled_by = Some(if owns {
                DisabledBy::Owner
            } else {
                DisabledBy::KeyAdmin
            });
        } else if !spec.disabled && old.disabled {
            self.check_enable(name, old).await?;
            rec.disabled = false;
            rec.disabled_by = None;
        }
        let mut base = stored.clone();
        let annotations = base
            .secret
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        annotations.remove(ANNOTATION_LABELS);
        annotations.remove(ANNOTATION_ANNOTATIONS);
        annotations.extend(meta_annotations(new));
        Ok((rec, base))
    }

    /// A key disabled by a key admin comes back only through a key admin; and the creator
    /// must still be allowed to hand out what the key holds.
    async fn check_enable(&self, name: &str, old: &KeyRecord) -> Result<(), ApiError> {
        if old.disabled_by == Some(DisabledBy::KeyAdmin) && !self.actor.key_admin {
            return Err(ApiError::forbidden(format!(
                "key {name} was disabled by a key admin; only a key admin can enable it again"
            ))
            .named(name));
        }
        // Part 1 records kept no creator: whoever enables the key vouches for it.
        let creator = old
            .creator
            .clone()
            .unwrap_or_else(|| creator_of(&self.actor.caller));
        self.api
            .rights
            .check_escalation(&creator, old.role, &old.namespaces, &old.groups)
            .await
            .map_err(|mut e| {
                e.message = format!("key {name} cannot be enabled: {}", e.message);
                e
            })
    }

    /// The new expiration, if it is earlier than the current one (and within the maximum
    /// lifetime).
    fn shorter_expiry(
        &self,
        name: &str,
        old: &KeyRecord,
        spec: &super::types::AccessKeySpec,
    ) -> Result<jiff::Timestamp, ApiError> {
        let bad = |msg: String| ApiError::field(Some(name), "spec.expiration", msg);
        let Some(text) = spec.expiration.as_deref() else {
            return Err(bad(
                "can only be shortened, not removed; create a new key for a longer life".into(),
            ));
        };
        let t: jiff::Timestamp = text
            .parse()
            .map_err(|_| bad("is not an RFC 3339 time such as 2027-03-01T00:00:00Z".into()))?;
        match old.expiration {
            Some(Expiry::At(t0)) if t > t0 => Err(bad(format!(
                "can only be shortened: {t} is later than the current {t0}"
            ))),
            Some(Expiry::Invalid) => Err(bad("can only be shortened".into())),
            _ => {
                let max = self.api.settings.max_key_lifetime;
                let latest = max
                    .and_then(|d| jiff::SignedDuration::try_from(d).ok())
                    .and_then(|d| self.now.checked_add(d).ok());
                match (latest, max) {
                    (Some(latest), Some(d)) if t > latest && old.expiration.is_none() => {
                        Err(bad(format!(
                            "{t} is later than the maximum key lifetime (--max-key-lifetime {}) \
                             allows",
                            duration_text(d)
                        )))
                    }
                    _ => Ok(t),
                }
            }
        }
    }
}
