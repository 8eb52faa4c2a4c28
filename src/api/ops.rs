//! Reading, deleting and regenerating keys; what every verb shares (finding a key the caller
//! may see, answering in the format asked).

use std::collections::HashMap;

use http::StatusCode;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::Value;

use super::actor::Actor;
use super::request::{self, Format, Query};
use super::select::Selector;
use super::status::ApiError;
use super::types::{API_VERSION, AccessKey, AccessKeyList, access_key};
use super::{AccessKeyApi, Answer, to_json};
use crate::keystore::{KeyStoreError, Stored, provision};
use crate::token::{IdKey, Token};

/// One request's context.
pub(crate) struct Ctx<'a> {
    pub api: &'a AccessKeyApi,
    pub actor: &'a Actor,
    pub query: &'a Query,
    pub format: Format,
    pub now: Timestamp,
}

/// A store failure as the API answers it.
pub(crate) fn store_error(e: KeyStoreError) -> ApiError {
    match e {
        KeyStoreError::NotFound(id) => ApiError::not_found(&id),
        KeyStoreError::BadId(_) => ApiError::bad_request(e.to_string()),
        KeyStoreError::Conflict(id) => ApiError::conflict(
            &id,
            format!("key {id} kept changing while being updated; read it again and retry"),
        ),
        KeyStoreError::Duplicate(id) => ApiError::new(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("a key with ID {id} already exists; send the request again for a new ID"),
        )
        .named(id),
        KeyStoreError::Invalid { .. } => ApiError::internal(format!(
            "{e}. A key admin can remove the record Secret in the key namespace"
        )),
        KeyStoreError::Seal(_) => ApiError::internal(format!(
            "keygate could not seal the record: {}",
            crate::causes::chain(&e)
        )),
        KeyStoreError::Kube(_) | KeyStoreError::Dir(_) => ApiError::unavailable(format!(
            "keygate cannot read or write its key records: {}",
            crate::causes::chain(&e)
        )),
    }
}

/// The key `name` (its ID lowercased); anything else is no key.
fn id_of(name: &str) -> Result<IdKey, ApiError> {
    IdKey::new(name)
        .filter(|k| k.as_str() == name)
        .ok_or_else(|| ApiError::not_found(name))
}

/// The regenerate body: empty, or `{"apiVersion": "keygate.dev/v1alpha1", "kind":
/// "AccessKeyRegenerate", "gracePeriodSeconds": N}` (`kind` optional).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Regenerate {
    api_version: Option<String>,
    kind: Option<String>,
    grace_period_seconds: Option<i64>,
}

impl Ctx<'_> {
    /// The key `name` if the caller sees it, and whether it descends from the caller's key.
    pub async fn load(&self, name: &str) -> Result<(Stored, bool), ApiError> {
        let id = id_of(name)?;
        let stored = self.api.store.get(&id).await.map_err(store_error)?;
        let descends = self.actor.descends(&stored.record, &self.api.store).await?;
        if !self.actor.sees(&stored.record, descends) {
            return Err(ApiError::not_found(name));
        }
        Ok((stored, descends))
    }

    pub fn view(&self, stored: &Stored) -> AccessKey {
        access_key(stored, &self.api.settings.user_prefix, self.now)
    }

    /// One key or a list, as JSON or a Table.
    fn render(&self, keys: Vec<AccessKey>, one: bool) -> Result<Answer, ApiError> {
        match self.format {
            Format::Table(version) => Ok(Answer::ok(super::table::table(
                &keys,
                version,
                self.query.include_object.as_deref(),
                self.now,
            )?)),
            Format::Json if one => Ok(Answer::ok(to_json(&keys[0]))),
            Format::Json => Ok(Answer::ok(to_json(&AccessKeyList::new(keys)))),
        }
    }

    pub async fn get(&self, name: &str) -> Result<Answer, ApiError> {
        let (mut stored, _) = self.load(name).await?;
        // Last use is in the key's Lease, written by the webhooks: other processes, which
        // may not write records (a list reads every Lease the same way).
        let lease = self.api.store.last_use(&stored.record.id.key()).await;
        stored.record.last_used = stored.record.last_used.max(lease);
        self.render(vec![self.view(&stored)], true)
    }

    pub async fn list(&self) -> Result<Answer, ApiError> {
        let fields = self.query.field_selector.as_deref().map(Selector::fields);
        let labels = self.query.label_selector.as_deref().map(Selector::labels);
        let (fields, labels) = (fields.transpose()?, labels.transpose()?);
        let (all, refused) = self.api.store.list().await.map_err(store_error)?;
        for (name, reason) in refused {
            tracing::debug!(record = %name, %reason, "invalid record left out of the list");
        }
        let by_id: HashMap<IdKey, _> = all
            .iter()
            .map(|s| (s.record.id.key(), s.record.clone()))
            .collect();
        let mut keys: Vec<(Option<Timestamp>, AccessKey)> = all
            .iter()
            .filter(|s| {
                let descends = self.actor.descends_in(&s.record, &by_id);
                self.actor.sees(&s.record, descends)
            })
            .map(|s| (s.record.created, self.view(s)))
            .filter(|(_, k)| fields.as_ref().is_none_or(|f| f.matches_fields(k)))
            .filter(|(_, k)| labels.as_ref().is_none_or(|l| l.matches_labels(k)))
            .collect();
        keys.sort_by(|a, b| (a.0, &a.1.metadata.name).cmp(&(b.0, &b.1.metadata.name)));
        self.render(keys.into_iter().map(|(_, k)| k).collect(), false)
    }

    /// Removes the key's RoleBindings (and consumer Secret), then its record, before
    /// answering: a `get` afterwards is `404`, so kubectl's wait ends at once.
    pub async fn delete(&self, name: &str) -> Result<Answer, ApiError> {
        let (stored, _) = self.load(name).await?;
        let view = self.view(&stored);
        if self.query.dry_run {
            return Ok(Answer::ok(to_json(&view)));
        }
        let left = provision::delete_extras(&self.api.keys, &stored).await;
        if !left.is_empty() {
            return Err(ApiError::unavailable(format!(
                "key {name} was not deleted: keygate could not remove what it made for it ({}); \
                 the key still works. Try again, or ask a cluster admin to check keygate's rights \
                 on rolebindings",
                left.join("; ")
            )));
        }
        match self.api.store.delete(&stored.record.id.key()).await {
            Ok(_) | Err(KeyStoreError::NotFound(_)) => {}
            Err(e) => return Err(store_error(e)),
        }
        tracing::info!(key_id = %stored.record.id, by = %self.actor.caller.username, "key deleted through the API");
        Ok(Answer::ok(to_json(&view)))
    }

    /// A new secret for the key, shown once; with a grace period the old one works that long.
    pub async fn regenerate(&self, name: &str, body: &[u8]) -> Result<Answer, ApiError> {
        let (stored, descends) = self.load(name).await?;
        if !self.actor.owns(&stored.record, descends) {
            return Err(ApiError::forbidden(format!(
                "only the owner of key {name} ({}) may regenerate it: the new token would carry \
                 the owner's rights. Disable or delete it instead",
                stored.record.owner()
            ))
            .named(name));
        }
        let raw = request::json(body)?;
        let req: Regenerate = if raw.is_null() {
            Regenerate::default()
        } else {
            let d = request::decode_body(&raw, self.query.field_validation)?;
            d.value
        };
        if req.api_version.as_deref().is_some_and(|v| v != API_VERSION) {
            return Err(ApiError::bad_request(format!(
                "regenerate: apiVersion must be {API_VERSION}"
            )));
        }
        if req
            .kind
            .as_deref()
            .is_some_and(|k| k != "AccessKeyRegenerate")
        {
            return Err(ApiError::bad_request(
                "regenerate: kind must be AccessKeyRegenerate (or left out)",
            ));
        }
        let grace = match req.grace_period_seconds {
            None | Some(0) => None,
            Some(s) if s < 0 => {
                return Err(ApiError::field(
                    Some(name),
                    "gracePeriodSeconds",
                    "must not be negative",
                ));
            }
            Some(s) => Some(
                self.now
                    .checked_add(jiff::SignedDuration::from_secs(s))
                    .map_err(|_| {
                        ApiError::field(Some(name), "gracePeriodSeconds", "is too large")
                    })?,
            ),
        };
        if self.query.dry_run {
            return Ok(Answer {
                code: StatusCode::CREATED,
                body: to_json(&self.view(&stored)),
                warnings: Vec::new(),
            });
        }
        let token = Token::generate(stored.record.id.clone());
        let updated = self
            .api
            .store
            .modify(&stored.record.id.key(), |r| {
                r.rotate(token.secret_hash(), grace)
            })
            .await
            .map_err(store_error)?;
        tracing::info!(key_id = %updated.record.id, by = %self.actor.caller.username, grace_seconds = req.grace_period_seconds.unwrap_or(0), "key regenerated through the API");
        Ok(self.minted(&updated, &token, Vec::new()))
    }

    /// `201` with the key and its new token: the only answers that ever hold a token.
    pub fn minted(&self, stored: &Stored, token: &Token, warnings: Vec<String>) -> Answer {
        let mut view = self.view(stored);
        if let Some(s) = view.status.as_mut() {
            s.token = Some(token.expose());
        }
        Answer {
            code: StatusCode::CREATED,
            body: to_json(&view),
            warnings,
        }
    }
}

/// The AccessKey a body holds, as JSON with `apiVersion`/`kind` checked.
pub(crate) fn check_type(raw: &Value) -> Result<(), ApiError> {
    if let Some(v) = raw.get("apiVersion").and_then(Value::as_str)
        && v != API_VERSION
    {
        return Err(ApiError::bad_request(format!(
            "apiVersion {v:?} is not served here; use {API_VERSION}"
        )));
    }
    if let Some(k) = raw.get("kind").and_then(Value::as_str)
        && k != super::types::KIND
    {
        return Err(ApiError::bad_request(format!(
            "kind {k:?} does not belong at accesskeys; use AccessKey"
        )));
    }
    Ok(())
}
