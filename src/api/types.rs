//! The `AccessKey` resource as JSON, and how a stored record becomes one.
//!
//! The AccessKey's own labels and annotations are kept in the record Secret's annotations, as
//! one JSON map each ([`ANNOTATION_LABELS`], [`ANNOTATION_ANNOTATIONS`]): the Secret's labels
//! are keygate's (managed-by, key ID) and an AccessKey label key (`a.b/c`) cannot be nested in
//! an annotation key. `metadata.uid`, `resourceVersion` and `creationTimestamp` are the
//! Secret's, so optimistic concurrency on an AccessKey is that of its Secret.

use std::borrow::Cow;
use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::identity::{GroupPattern, IdentityPolicy};
use crate::keystore::Stored;
use crate::record::{Creator, Expiry, KeyRecord, ScopeRule};

pub const GROUP: &str = "keygate.dev";
pub const VERSION: &str = "v1alpha1";
pub const API_VERSION: &str = "keygate.dev/v1alpha1";
pub const KIND: &str = "AccessKey";
pub const LIST_KIND: &str = "AccessKeyList";
pub const PLURAL: &str = "accesskeys";
/// The record Secret annotation holding the AccessKey's labels (a JSON object).
pub const ANNOTATION_LABELS: &str = "keygate.dev/accesskey-labels";
/// The record Secret annotation holding the AccessKey's annotations (a JSON object).
pub const ANNOTATION_ANNOTATIONS: &str = "keygate.dev/accesskey-annotations";

/// One access key as the API shows it (`keygate.dev/v1alpha1`, kind `AccessKey`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessKey {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: AccessKeySpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<AccessKeyStatus>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What the creator asks for. `role` and `expiration` stay text here so that a bad value is a
/// `422` naming the field rather than a decoding error.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeySpec {
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default)]
    pub inherit_creator: bool,
    #[serde(default, skip_serializing_if = "Scope::is_empty")]
    pub scope: Scope,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
}

/// What a key may reach: namespaces, and (inheritCreator keys) RBAC-shaped rules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scope {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<ScopeRule>,
}

impl Scope {
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty() && self.rules.is_empty()
    }
}

/// What keygate knows about the key. Never stored: derived from the record on every read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeyStatus {
    pub id: String,
    /// The plaintext token: only in the answers to create and regenerate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub username: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator: Option<Creator>,
    #[serde(default)]
    pub owner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// `Active`, `Disabled` or `Expired`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_expiration: Option<String>,
}

impl AccessKey {
    /// `metadata.name`: the key ID lowercased, what the API's paths use.
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }
}

/// `AccessKeyList`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeyList {
    pub api_version: String,
    pub kind: String,
    pub metadata: serde_json::Value,
    pub items: Vec<AccessKey>,
}

impl AccessKeyList {
    pub fn new(items: Vec<AccessKey>) -> Self {
        AccessKeyList {
            api_version: API_VERSION.to_owned(),
            kind: LIST_KIND.to_owned(),
            metadata: serde_json::json!({}),
            items,
        }
    }
}

impl kube::Resource for AccessKey {
    type DynamicType = ();
    type Scope = kube::core::ClusterResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        KIND.into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        VERSION.into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        PLURAL.into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// `Active`, `Disabled` or `Expired` (disabled wins: enabling it would not make it work).
pub fn state(r: &KeyRecord, now: Timestamp) -> &'static str {
    if r.disabled {
        "Disabled"
    } else if r.is_expired(now) {
        "Expired"
    } else {
        "Active"
    }
}

fn expiry_text(e: &Expiry) -> String {
    match e {
        Expiry::At(t) => t.to_string(),
        // An unparsable stored value counts as expired; show it as the past, not as text.
        Expiry::Invalid => Timestamp::UNIX_EPOCH.to_string(),
    }
}

/// A JSON map kept in one annotation of the record Secret; unreadable means empty.
pub fn stored_map(stored: &Stored, annotation: &str) -> Option<BTreeMap<String, String>> {
    let raw = stored
        .secret
        .metadata
        .annotations
        .as_ref()?
        .get(annotation)?;
    serde_json::from_str(raw).ok()
}

/// The AccessKey for a stored record, without a token.
pub fn access_key(stored: &Stored, user_prefix: &str, now: Timestamp) -> AccessKey {
    let r = &stored.record;
    let m = &stored.secret.metadata;
    // Every group the record holds, as the webhook would emit them with no allow-list.
    let identity =
        IdentityPolicy::new(user_prefix.to_owned(), vec![GroupPattern::any()]).unwrap_or_default();
    AccessKey {
        api_version: API_VERSION.to_owned(),
        kind: KIND.to_owned(),
        metadata: ObjectMeta {
            name: Some(r.id.key().to_string()),
            uid: m.uid.clone(),
            resource_version: m.resource_version.clone(),
            creation_timestamp: m.creation_timestamp.clone(),
            labels: stored_map(stored, ANNOTATION_LABELS),
            annotations: stored_map(stored, ANNOTATION_ANNOTATIONS),
            ..ObjectMeta::default()
        },
        spec: AccessKeySpec {
            display_name: r.name.clone(),
            description: r.description.clone(),
            role: r.role.map(|r| r.to_string()),
            inherit_creator: r.inherit_creator,
            scope: Scope {
                namespaces: r.namespaces.clone(),
                rules: r.rules.clone(),
            },
            groups: r.groups.clone(),
            expiration: r.expiration.as_ref().map(expiry_text),
            disabled: r.disabled,
        },
        status: Some(AccessKeyStatus {
            id: r.id.to_string(),
            token: None,
            username: identity.username(&r.id.key()),
            groups: identity.groups(r),
            creator: r.creator.clone(),
            owner: r.owner().to_owned(),
            parent: r.parent.as_ref().map(ToString::to_string),
            state: state(r, now).to_owned(),
            created_at: r.created.map(|t| t.to_string()),
            last_used: r.last_used.map(|t| t.to_string()),
            previous_secret_expiration: r
                .previous
                .as_ref()
                .filter(|p| !p.expires.is_past(now))
                .map(|p| expiry_text(&p.expires)),
        }),
    }
}
