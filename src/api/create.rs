//! `POST .../accesskeys`: a new key, its token in the answer once.
//!
//! The name is keygate's (the ID lowercased): a client-chosen `metadata.name` is `422`,
//! `generateName` is ignored. The creator comes from the caller, never the body (`status` is
//! ignored). A key never exceeds its creator: see [`super::access`]. With `dryRun=All`
//! everything is checked and nothing written (and no token minted).

use std::collections::BTreeMap;
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use jiff::{SignedDuration, Timestamp};

use super::access::creator_of;
use super::ops::{Ctx, check_type, store_error};
use super::request::{self, content_type};
use super::status::{ApiError, Cause};
use super::types::{ANNOTATION_ANNOTATIONS, ANNOTATION_LABELS, AccessKey, AccessKeySpec};
use super::{Answer, ApiSettings, FLAG_ALLOW_INHERIT_MASTERS, FLAG_ALLOW_INHERIT_SA, to_json};
use crate::identity;
use crate::keystore::{Stored, provision};
use crate::record::{DisabledBy, Expiry, KeyRecord, Role, ScopeRule, check_group, parse_role};
use crate::token::{KeyId, Token};

/// A spec that passed validation.
pub(crate) struct Checked {
    pub role: Option<Role>,
    pub namespaces: Vec<String>,
    pub rules: Vec<ScopeRule>,
    pub groups: Vec<String>,
    pub expiration: Option<Timestamp>,
}

/// `90d`, `12h`, `30m` or `45s`: a lifetime as the flag takes it.
pub(crate) fn duration_text(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s > 0 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s > 0 && s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Checks a spec against the contract; every problem is a cause of one `422`.
pub(crate) fn validate(
    spec: &AccessKeySpec,
    settings: &ApiSettings,
    now: Timestamp,
    name: Option<&str>,
) -> Result<Checked, ApiError> {
    let mut causes = Vec::new();
    let mut bad = |field: String, message: String| causes.push(Cause { field, message });
    if spec.display_name.trim().is_empty() {
        bad(
            "spec.displayName".into(),
            "is required: a name people recognise the key by".into(),
        );
    }
    let role = match parse_role(spec.role.as_deref().unwrap_or("")) {
        Ok(r) => r,
        Err(_) => {
            bad(
                "spec.role".into(),
                format!(
                    "{:?} is not one of admin, edit, view",
                    spec.role.as_deref().unwrap_or("")
                ),
            );
            None
        }
    };
    if spec.inherit_creator && spec.role.as_deref().is_some_and(|r| !r.is_empty()) {
        bad(
            "spec.role".into(),
            "cannot be combined with spec.inheritCreator: an inheritCreator key acts with its \
             creator's rights, reduced by its scope; remove one of them"
                .into(),
        );
    }
    if spec.inherit_creator && !spec.groups.is_empty() {
        bad(
            "spec.groups".into(),
            "cannot be combined with spec.inheritCreator; remove one of them".into(),
        );
    }
    for (i, g) in spec.groups.iter().enumerate() {
        if let Err(e) = check_group(g) {
            bad(format!("spec.groups[{i}]"), e.to_string());
        }
    }
    let mut namespaces = spec.scope.namespaces.clone();
    namespaces.sort();
    namespaces.dedup();
    for ns in &namespaces {
        if ns == &settings.namespace {
            bad(
                "spec.scope.namespaces".into(),
                format!(
                    "{ns} is keygate's key namespace, which holds key records only and can \
                     never be a key's scope"
                ),
            );
        } else if !is_dns_label(ns) {
            bad(
                "spec.scope.namespaces".into(),
                format!("{ns:?} is not a namespace name"),
            );
        }
    }
    if !namespaces.is_empty() && role.is_none() && !spec.inherit_creator {
        bad(
            "spec.scope.namespaces".into(),
            "needs spec.role (the key gets that role in each namespace) or \
             spec.inheritCreator"
                .into(),
        );
    }
    if !spec.scope.rules.is_empty() && !spec.inherit_creator {
        bad(
            "spec.scope.rules".into(),
            "is only for inheritCreator keys; a role key's scope is its namespaces".into(),
        );
    }
    for (i, r) in spec.scope.rules.iter().enumerate() {
        if r.verbs.is_empty() {
            bad(
                format!("spec.scope.rules[{i}].verbs"),
                "must name at least one verb (or `*`)".into(),
            );
        }
    }
    let expiration = match spec.expiration.as_deref().map(str::parse::<Timestamp>) {
        None => None,
        Some(Err(_)) => {
            bad(
                "spec.expiration".into(),
                "is not an RFC 3339 time such as 2027-03-01T00:00:00Z".into(),
            );
            None
        }
        Some(Ok(t)) => {
            let max = settings
                .max_key_lifetime
                .and_then(|d| SignedDuration::try_from(d).ok())
                .and_then(|d| now.checked_add(d).ok());
            if t <= now {
                bad("spec.expiration".into(), format!("{t} is in the past"));
            } else if let (Some(max), Some(d)) = (max, settings.max_key_lifetime)
                && t > max
            {
                bad(
                    "spec.expiration".into(),
                    format!(
                        "{t} is later than the maximum key lifetime (--max-key-lifetime {}) \
                         allows: {max} at the latest",
                        duration_text(d)
                    ),
                );
            }
            Some(t)
        }
    };
    if !causes.is_empty() {
        return Err(ApiError::invalid(name, causes));
    }
    Ok(Checked {
        role,
        namespaces,
        rules: spec.scope.rules.clone(),
        groups: spec.groups.clone(),
        expiration,
    })
}

/// The record Secret annotations that keep an AccessKey's own labels and annotations.
pub(crate) fn meta_annotations(key: &AccessKey) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, map) in [
        (ANNOTATION_LABELS, &key.metadata.labels),
        (ANNOTATION_ANNOTATIONS, &key.metadata.annotations),
    ] {
        if let Some(m) = map.as_ref().filter(|m| !m.is_empty()) {
            out.insert(
                name.to_owned(),
                serde_json::to_string(m).unwrap_or_default(),
            );
        }
    }
    out
}

impl Ctx<'_> {
    pub async fn create(&self, headers: &HeaderMap, body: &[u8]) -> Result<Answer, ApiError> {
        let ct = content_type(headers);
        if !ct.is_empty() && ct != "application/json" {
            return Err(ApiError::unsupported_media(format!(
                "create takes application/json, not {ct}"
            )));
        }
        let raw = request::json(body)?;
        if !raw.is_object() {
            return Err(ApiError::bad_request(
                "create needs an AccessKey object as the body",
            ));
        }
        check_type(&raw)?;
        let decoded = request::decode_body::<AccessKey>(&raw, self.query.field_validation)?;
        let key = decoded.value;
        if key.metadata.name.as_deref().is_some_and(|n| !n.is_empty()) {
            return Err(ApiError::field(
                None,
                "metadata.name",
                "is assigned by keygate (the key ID, lowercased); leave it out or set \
                 metadata.generateName (its value is ignored)",
            ));
        }
        let settings = &self.api.settings;
        let checked = validate(&key.spec, settings, self.now, None)?;
        let caller = &self.actor.caller;
        if key.spec.inherit_creator {
            let masters = caller.groups.iter().any(|g| g == "system:masters");
            if masters && !settings.allow_inherit_for_masters {
                return Err(ApiError::forbidden(format!(
                    "{} is in system:masters, whose rights RBAC cannot take away, so an \
                     inheritCreator key of theirs could never be reduced. Use a role key, or \
                     run keygate with {FLAG_ALLOW_INHERIT_MASTERS}",
                    caller.username
                )));
            }
            let sa = caller.username.starts_with("system:serviceaccount:");
            if sa && !settings.allow_inherit_for_service_accounts {
                return Err(ApiError::forbidden(format!(
                    "{} is a ServiceAccount: an inheritCreator key would keep acting as it after \
                     the pod whose token made it is gone. Use a role key, or run keygate with \
                     {FLAG_ALLOW_INHERIT_SA}",
                    caller.username
                )));
            }
        }
        let creator = creator_of(caller);
        self.api
            .rights
            .check_escalation(&creator, checked.role, &checked.namespaces, &checked.groups)
            .await?;

        let token = Token::generate(KeyId::generate());
        let mut record = KeyRecord::new(
            token.id.clone(),
            token.secret_hash(),
            key.spec.display_name.trim(),
        );
        record.description = key.spec.description.clone();
        record.role = checked.role;
        record.groups = checked.groups;
        record.namespaces = checked.namespaces;
        record.rules = checked.rules;
        record.inherit_creator = key.spec.inherit_creator;
        let expiration = checked.expiration.or_else(|| {
            let d = SignedDuration::try_from(settings.max_key_lifetime?).ok()?;
            self.now.checked_add(d).ok()
        });
        record.expiration = expiration.map(Expiry::At);
        record.disabled = key.spec.disabled;
        record.disabled_by = key.spec.disabled.then_some(DisabledBy::Owner);
        record.created_by = caller.username.clone();
        record.owner = self.actor.owner().to_owned();
        record.parent = self.actor.key.as_ref().map(|k| k.id.clone());
        record.creator = Some(creator);
        let annotations = meta_annotations(&key);

        if self.query.dry_run {
            let mut secret = record.to_secret(&settings.namespace);
            secret.metadata.annotations = Some(annotations);
            record.created = Some(self.now);
            let view = self.view(&Stored { record, secret });
            return Ok(Answer {
                code: StatusCode::CREATED,
                body: to_json(&view),
                warnings: decoded.warnings,
            });
        }
        let stored = if record.role.is_some() && !record.namespaces.is_empty() {
            let username = identity::username(&settings.user_prefix, &record.id.key());
            provision::create_with_bindings(
                &self.api.keys,
                &record,
                &username,
                "",
                None,
                annotations,
            )
            .await
            .map_err(|e| {
                ApiError::unavailable(format!(
                    "the key was not created: {}",
                    crate::causes::chain(&e)
                ))
            })?
        } else {
            self.api
                .keys
                .create_with(&record, annotations)
                .await
                .map_err(store_error)?
        };
        tracing::info!(key_id = %stored.record.id, by = %caller.username, owner = %stored.record.owner(), "key created through the API");
        Ok(self.minted(&stored, &token, decoded.warnings))
    }
}
