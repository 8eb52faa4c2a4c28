//! The key record: one Secret of type `keygate.dev/access-key` per key (docs/design.md, "The
//! record").
//!
//! The same document is the record in the kube store (a Secret in the key namespace) and in the
//! dir store (a YAML or JSON file, read and written by [`file`]), so both parse through
//! [`KeyRecord::from_secret`] and are written through [`KeyRecord::to_secret`].

pub mod file;
mod plain_yaml;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::token::{IdKey, KeyId, SecretHash, TokenError};

pub const SECRET_TYPE: &str = "keygate.dev/access-key";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_KEY_ID: &str = "keygate.dev/key-id";
pub const ANNOTATION_LAST_USED: &str = "keygate.dev/last-used";
pub const MANAGER: &str = "keygate";

/// Why a Secret in the key namespace could not become a usable key. Logged (with the record
/// name, never its contents) and exposed as the `invalid_record` denial reason.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RecordError {
    #[error("type is {0:?}, not {SECRET_TYPE:?}")]
    WrongType(String),
    #[error("name {0:?} does not have the form keygate-<id lowercased>")]
    BadName(String),
    #[error("missing field {0:?}")]
    Missing(&'static str),
    #[error("field {field:?} is not UTF-8")]
    NotUtf8 { field: String },
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("id {id:?} does not match the record name {name:?}")]
    NameMismatch { id: String, name: String },
    #[error("role {0:?} is not one of admin, edit, view, none")]
    BadRole(String),
    #[error("group {0:?} begins with `system:`; keygate never emits system groups")]
    SystemGroup(String),
    #[error("group {0:?} begins with `keygate:`; those groups are keygate's own (roles, all keys)")]
    ReservedGroup(String),
    #[error("group {0:?} contains whitespace; a group is one name")]
    BadGroup(String),
    #[error("field {field:?} is not valid: {reason}")]
    BadField { field: &'static str, reason: String },
    #[error("key {id} is defined by more than one file ({files}); remove all but one")]
    Duplicate { id: String, files: String },
    /// The webhook checks seals (`--record-verify-key`) and this record's does not hold.
    #[error(transparent)]
    Seal(crate::seal::SealFailure),
}

/// The role a key carries cluster-wide (or in each scoped namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Admin,
    Edit,
    View,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Edit => "edit",
            Role::View => "view",
        }
    }

    /// The built-in ClusterRole a namespace-scoped key is bound to in each of its namespaces.
    pub fn cluster_role(self) -> &'static str {
        self.as_str()
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses `admin|edit|view`; `none` and the empty string mean "no role" (`Ok(None)`).
pub fn parse_role(s: &str) -> Result<Option<Role>, RecordError> {
    match s.trim() {
        "admin" => Ok(Some(Role::Admin)),
        "edit" => Ok(Some(Role::Edit)),
        "view" => Ok(Some(Role::View)),
        "none" | "" => Ok(None),
        other => Err(RecordError::BadRole(other.to_owned())),
    }
}

impl FromStr for Role {
    type Err = RecordError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_role(s)?.ok_or_else(|| RecordError::BadRole(s.to_owned()))
    }
}

/// An expiry instant as written in the record. An unparsable value is kept as `Invalid`, which
/// counts as already expired: a typo must never make a key live forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    At(Timestamp),
    Invalid,
}

impl Expiry {
    fn parse(s: &str) -> Self {
        s.trim().parse().map(Expiry::At).unwrap_or(Expiry::Invalid)
    }

    pub fn is_past(&self, now: Timestamp) -> bool {
        match self {
            Expiry::At(t) => *t <= now,
            Expiry::Invalid => true,
        }
    }
}

/// The previous secret during a rotation grace window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousSecret {
    pub hash: SecretHash,
    /// When the previous secret stops working. Missing or unparsable: it already has.
    pub expires: Expiry,
}

/// The authenticated user who created a key through the AccessKey API, as kube-apiserver's
/// front proxy named them. Kept with the record: an `inheritCreator` key acts as this user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Creator {
    pub username: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// One rule of a key's scope, in the shape (and JSON) of an RBAC `PolicyRule`: a request is
/// inside the rule when its verb, API group, resource (and name) or non-resource URL match, `*`
/// matching anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopeRule {
    pub verbs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    #[serde(
        default,
        rename = "nonResourceURLs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub non_resource_urls: Vec<String>,
}

/// Who disabled a key: a key disabled by a key admin comes back only through a key admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisabledBy {
    Owner,
    KeyAdmin,
}

impl DisabledBy {
    pub fn as_str(self) -> &'static str {
        match self {
            DisabledBy::Owner => "owner",
            DisabledBy::KeyAdmin => "key-admin",
        }
    }
}

/// Checks one extra group of a record: never `system:` or `keygate:`, never blank or spaced.
pub fn check_group(g: &str) -> Result<(), RecordError> {
    if g.starts_with("system:") {
        return Err(RecordError::SystemGroup(g.to_owned()));
    }
    if g.starts_with("keygate:") {
        return Err(RecordError::ReservedGroup(g.to_owned()));
    }
    if g.is_empty() || g.contains(|c: char| c.is_whitespace() || c == ',') {
        return Err(RecordError::BadGroup(g.to_owned()));
    }
    Ok(())
}

/// One access key, as stored. Holds a hash, never a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: KeyId,
    pub secret_hash: SecretHash,
    pub name: String,
    pub description: String,
    pub role: Option<Role>,
    pub groups: Vec<String>,
    pub namespaces: Vec<String>,
    pub expiration: Option<Expiry>,
    pub disabled: bool,
    pub created_by: String,
    pub previous: Option<PreviousSecret>,
    /// The username at the root of the chain of keys minting keys (Part 1 records: empty, the
    /// owner is `created_by`). See [`KeyRecord::owner`].
    pub owner: String,
    /// The key that minted this one, if a key did: this key works only while that one does.
    pub parent: Option<KeyId>,
    /// The authenticated creator (AccessKey API only).
    pub creator: Option<Creator>,
    /// Acts with its creator's live rights, reduced by the scope (keygate's authorizer).
    pub inherit_creator: bool,
    /// The scope's rules (RBAC PolicyRule shape), `inheritCreator` keys only.
    pub rules: Vec<ScopeRule>,
    /// Set while disabled, when known.
    pub disabled_by: Option<DisabledBy>,
    /// Read-only metadata, kept for listing.
    pub created: Option<Timestamp>,
    pub last_used: Option<Timestamp>,
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl KeyRecord {
    /// A new enabled record with only the required fields set.
    pub fn new(id: KeyId, secret_hash: SecretHash, name: impl Into<String>) -> Self {
        KeyRecord {
            id,
            secret_hash,
            name: name.into(),
            description: String::new(),
            role: None,
            groups: Vec::new(),
            namespaces: Vec::new(),
            expiration: None,
            disabled: false,
            created_by: String::new(),
            previous: None,
            owner: String::new(),
            parent: None,
            creator: None,
            inherit_creator: false,
            rules: Vec::new(),
            disabled_by: None,
            created: None,
            last_used: None,
        }
    }

    /// Reads a record from a Secret. `stringData` wins over `data`, as it does in the API server,
    /// so a hand-written file with either form works.
    pub fn from_secret(secret: &Secret) -> Result<Self, RecordError> {
        let ty = secret.type_.as_deref().unwrap_or("");
        if ty != SECRET_TYPE {
            return Err(RecordError::WrongType(ty.to_owned()));
        }
        let name = secret.metadata.name.clone().unwrap_or_default();
        let name_id =
            IdKey::from_record_name(&name).ok_or_else(|| RecordError::BadName(name.clone()))?;

        let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
        for (k, v) in secret.data.iter().flatten() {
            let text =
                std::str::from_utf8(&v.0).map_err(|_| RecordError::NotUtf8 { field: k.clone() })?;
            fields.insert(k, text);
        }
        for (k, v) in secret.string_data.iter().flatten() {
            fields.insert(k, v);
        }
        let get = |k: &str| {
            fields
                .get(k)
                .copied()
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };

        let id: KeyId = get("id").ok_or(RecordError::Missing("id"))?.parse()?;
        if id.key() != name_id {
            return Err(RecordError::NameMismatch {
                id: id.to_string(),
                name,
            });
        }
        let secret_hash = get("secret-hash")
            .ok_or(RecordError::Missing("secret-hash"))?
            .parse()?;
        let groups = get("groups").map(split_list).unwrap_or_default();
        for g in &groups {
            check_group(g)?;
        }
        let previous = match get("previous-secret-hash") {
            Some(h) => Some(PreviousSecret {
                hash: h.parse()?,
                expires: get("previous-secret-expiration")
                    .map(Expiry::parse)
                    .unwrap_or(Expiry::Invalid),
            }),
            None => None,
        };
        let disabled = get("disabled");
        if disabled.is_some_and(|v| v != "true") {
            // The contract: only exactly `true` disables. `True`, `yes` or `1` read as "disabled"
            // to a person, so a key that stays enabled must not go unnoticed. (The value itself
            // is not logged: whatever was typed there is not ours to repeat.)
            tracing::warn!(
                key_id = %id,
                record = %name,
                "field `disabled` is set but is not exactly `true`: the key stays ENABLED; write \"true\" to disable it, or remove the field"
            );
        }
        let annotations = secret.metadata.annotations.as_ref();
        Ok(KeyRecord {
            id,
            secret_hash,
            name: get("name").unwrap_or_default().to_owned(),
            description: get("description").unwrap_or_default().to_owned(),
            role: parse_role(get("role").unwrap_or(""))?,
            groups,
            namespaces: get("namespaces").map(split_list).unwrap_or_default(),
            expiration: get("expiration").map(Expiry::parse),
            disabled: disabled == Some("true"),
            created_by: get("created-by").unwrap_or_default().to_owned(),
            previous,
            owner: get("owner").unwrap_or_default().to_owned(),
            parent: get("parent").map(str::parse).transpose()?,
            creator: get("creator")
                .map(|v| json_field("creator", v))
                .transpose()?,
            inherit_creator: get("inherit-creator") == Some("true"),
            rules: get("scope-rules")
                .map(|v| json_field("scope-rules", v))
                .transpose()?
                .unwrap_or_default(),
            disabled_by: match get("disabled-by") {
                None => None,
                Some("owner") => Some(DisabledBy::Owner),
                Some("key-admin") => Some(DisabledBy::KeyAdmin),
                Some(_) => {
                    return Err(RecordError::BadField {
                        field: "disabled-by",
                        reason: "not one of owner, key-admin".to_owned(),
                    });
                }
            },
            created: secret.metadata.creation_timestamp.as_ref().map(|t| t.0),
            last_used: annotations
                .and_then(|a| a.get(ANNOTATION_LAST_USED))
                .and_then(|v| v.parse().ok()),
        })
    }

    /// The Secret that stores this record, in `stringData` form (what `kubectl apply` and the
    /// dir store write). Empty optional fields are left out.
    pub fn to_secret(&self, namespace: &str) -> Secret {
        let mut data = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            if !v.is_empty() {
                data.insert(k.to_owned(), v);
            }
        };
        put("id", self.id.to_string());
        put("secret-hash", self.secret_hash.to_string());
        put("name", self.name.clone());
        put("description", self.description.clone());
        put("role", self.role.map(|r| r.to_string()).unwrap_or_default());
        put("groups", self.groups.join(","));
        put("namespaces", self.namespaces.join(","));
        put(
            "expiration",
            match self.expiration {
                Some(Expiry::At(t)) => t.to_string(),
                // Keep an unparsable value unparsable (expired) rather than dropping it.
                Some(Expiry::Invalid) => "invalid".to_owned(),
                None => String::new(),
            },
        );
        if self.disabled {
            put("disabled", "true".to_owned());
        }
        put("created-by", self.created_by.clone());
        put("owner", self.owner.clone());
        put(
            "parent",
            self.parent
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_default(),
        );
        if let Some(c) = &self.creator {
            put("creator", to_json(c));
        }
        if self.inherit_creator {
            put("inherit-creator", "true".to_owned());
        }
        if !self.rules.is_empty() {
            put("scope-rules", to_json(&self.rules));
        }
        if let (true, Some(by)) = (self.disabled, self.disabled_by) {
            put("disabled-by", by.as_str().to_owned());
        }
        if let Some(prev) = &self.previous {
            put("previous-secret-hash", prev.hash.to_string());
            put(
                "previous-secret-expiration",
                match prev.expires {
                    Expiry::At(t) => t.to_string(),
                    Expiry::Invalid => "invalid".to_owned(),
                },
            );
        }
        let id = self.id.key();
        let annotations = self
            .last_used
            .map(|t| BTreeMap::from([(ANNOTATION_LAST_USED.to_owned(), t.to_string())]));
        Secret {
            metadata: ObjectMeta {
                name: Some(id.record_name()),
                namespace: Some(namespace.to_owned()),
                labels: Some(BTreeMap::from([
                    (LABEL_MANAGED_BY.to_owned(), MANAGER.to_owned()),
                    (LABEL_KEY_ID.to_owned(), id.to_string()),
                ])),
                annotations,
                ..ObjectMeta::default()
            },
            type_: Some(SECRET_TYPE.to_owned()),
            string_data: Some(data),
            ..Secret::default()
        }
    }

    /// The username at the root of the chain: `owner`, or `created-by` for Part 1 records.
    pub fn owner(&self) -> &str {
        if self.owner.is_empty() {
            &self.created_by
        } else {
            &self.owner
        }
    }

    /// Puts a new secret in place. With `keep_previous_until`, the current secret keeps
    /// working until then (a grace period for whoever still holds it); without, it stops now.
    pub fn rotate(&mut self, new_hash: SecretHash, keep_previous_until: Option<Timestamp>) {
        self.previous = keep_previous_until.map(|t| PreviousSecret {
            hash: self.secret_hash,
            expires: Expiry::At(t),
        });
        self.secret_hash = new_hash;
    }

    /// Whether the key is past its expiration at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expiration.is_some_and(|e| e.is_past(now))
    }
}

fn json_field<T: serde::de::DeserializeOwned>(
    field: &'static str,
    v: &str,
) -> Result<T, RecordError> {
    // serde_json's message names a line and column, never the value itself.
    serde_json::from_str(v).map_err(|e| RecordError::BadField {
        field,
        reason: e.to_string(),
    })
}

fn to_json(v: &impl Serialize) -> String {
    // Serializing plain data (strings, lists, maps of strings) cannot fail.
    serde_json::to_string(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    const ID: &str = "nFYyVdtg8K1aDujwk3YFh1";

    fn record() -> KeyRecord {
        let mut r = KeyRecord::new(ID.parse().unwrap(), SecretHash::of(b"s"), "ci");
        r.role = Some(Role::View);
        r.groups = vec!["team-a".into(), "team-b".into()];
        r.namespaces = vec!["a".into()];
        r.expiration = Some(Expiry::At("2030-01-01T00:00:00Z".parse().unwrap()));
        r.previous = Some(PreviousSecret {
            hash: SecretHash::of(b"old"),
            expires: Expiry::At("2029-01-01T00:00:00Z".parse().unwrap()),
        });
        r.created_by = "alice".into();
        r
    }

    /// A record with every Part 2 field set.
    fn api_record() -> KeyRecord {
        let mut r = record();
        r.owner = "alice".into();
        r.parent = Some("AAAAAAAAAAAAAAAAAAAAAb".parse().unwrap());
        r.creator = Some(Creator {
            username: "service-account-aaaaaaaaaaaaaaaaaaaaab".into(),
            groups: vec!["keygate:keys".into(), "team a, b".into()],
            extra: BTreeMap::from([("keygate.dev/key-id".into(), vec!["x".into()])]),
        });
        r.inherit_creator = true;
        r.rules = vec![ScopeRule {
            verbs: vec!["get".into(), "list".into()],
            api_groups: vec!["".into()],
            resources: vec!["pods".into()],
            ..ScopeRule::default()
        }];
        r.disabled = true;
        r.disabled_by = Some(DisabledBy::KeyAdmin);
        r
    }

    #[test]
    fn part_2_fields_round_trip() {
        let r = api_record();
        assert_eq!(KeyRecord::from_secret(&r.to_secret("ns")).unwrap(), r);
        assert_eq!(r.owner(), "alice");
        let mut old = record();
        old.owner.clear();
        assert_eq!(old.owner(), "alice", "Part 1: the creator owns the key");
        let mut s = r.to_secret("ns");
        let d = s.string_data.as_mut().unwrap();
        d.insert("creator".into(), "{not json".into());
        assert!(matches!(
            KeyRecord::from_secret(&s),
            Err(RecordError::BadField {
                field: "creator",
                ..
            })
        ));
    }

    #[test]
    fn round_trips_through_a_secret() {
        let r = record();
        let s = r.to_secret("keygate-system");
        assert_eq!(
            s.metadata.name.as_deref(),
            Some("keygate-nfyyvdtg8k1adujwk3yfh1")
        );
        assert_eq!(s.type_.as_deref(), Some(SECRET_TYPE));
        let labels = s.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_KEY_ID], "nfyyvdtg8k1adujwk3yfh1");
        assert_eq!(KeyRecord::from_secret(&s).unwrap(), r);
    }

    #[test]
    fn reads_base64_data_as_the_api_server_returns_it() {
        let mut s = record().to_secret("ns");
        let sd = s.string_data.take().unwrap();
        s.data = Some(
            sd.into_iter()
                .map(|(k, v)| (k, ByteString(v.into_bytes())))
                .collect(),
        );
        assert_eq!(KeyRecord::from_secret(&s).unwrap(), record());
    }

    fn with(field: &str, value: &str) -> Result<KeyRecord, RecordError> {
        let mut s = record().to_secret("ns");
        s.string_data
            .as_mut()
            .unwrap()
            .insert(field.into(), value.into());
        KeyRecord::from_secret(&s)
    }

    #[test]
    fn refuses_bad_records_with_a_reason() {
        assert!(
            matches!(with("groups", "ok,system:masters"), Err(RecordError::SystemGroup(g)) if g == "system:masters")
        );
        assert!(
            matches!(with("groups", "ok,keygate:admin"), Err(RecordError::ReservedGroup(g)) if g == "keygate:admin")
        );
        assert!(matches!(
            with("groups", "team a"),
            Err(RecordError::BadGroup(_))
        ));
        assert!(matches!(
            with("disabled-by", "someone"),
            Err(RecordError::BadField { .. })
        ));
        assert!(matches!(with("role", "root"), Err(RecordError::BadRole(_))));
        assert!(matches!(
            with("secret-hash", "sha256:00"),
            Err(RecordError::Token(TokenError::InvalidHash))
        ));
        assert!(matches!(
            with("id", "AAAAAAAAAAAAAAAAAAAAAA"),
            Err(RecordError::NameMismatch { .. })
        ));
        assert!(matches!(with("id", ""), Err(RecordError::Missing("id"))));
        let mut s = record().to_secret("ns");
        s.type_ = Some("Opaque".into());
        assert!(matches!(
            KeyRecord::from_secret(&s),
            Err(RecordError::WrongType(_))
        ));
        s.type_ = Some(SECRET_TYPE.into());
        s.metadata.name = Some("my-key".into());
        assert!(matches!(
            KeyRecord::from_secret(&s),
            Err(RecordError::BadName(_))
        ));
    }

    #[test]
    fn lenient_fields_fail_closed() {
        // Unparsable expiration = expired; anything but "true" = enabled; role none = no role.
        let r = with("expiration", "next tuesday").unwrap();
        assert_eq!(r.expiration, Some(Expiry::Invalid));
        assert!(r.is_expired(Timestamp::UNIX_EPOCH));
        assert!(!with("disabled", "yes").unwrap().disabled);
        assert!(with("disabled", "true").unwrap().disabled);
        assert_eq!(with("role", "none").unwrap().role, None);
        let r = with("previous-secret-expiration", "soon").unwrap();
        assert_eq!(r.previous.unwrap().expires, Expiry::Invalid);
        assert_eq!(with("groups", " a, ,b ").unwrap().groups, vec!["a", "b"]);
    }

    /// Log lines emitted while `f` runs (a subscriber for this thread only).
    fn logs_of(f: impl FnOnce()) -> String {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let out = buf.0.lock().unwrap().clone();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_disabled_value_other_than_true_warns_that_the_key_stays_enabled() {
        for value in ["True", "yes", "1", " TRUE "] {
            let mut rec = None;
            let logs = logs_of(|| rec = Some(with("disabled", value).unwrap()));
            assert!(
                !rec.unwrap().disabled,
                "{value}: the contract keeps it enabled"
            );
            assert!(logs.contains("WARN"), "{value}: {logs}");
            assert!(logs.contains("stays ENABLED"), "{value}: {logs}");
            assert!(logs.contains(&format!("key_id={}", record().id)), "{logs}");
        }
        for value in ["true", " true ", ""] {
            let logs = logs_of(|| {
                with("disabled", value).unwrap();
            });
            assert!(logs.is_empty(), "{value:?}: {logs}");
        }
    }

    #[test]
    fn id_case_is_kept_and_name_is_lowercase() {
        let r = with("id", "NFYYVDTG8K1ADUJWK3YFH1").unwrap();
        assert_eq!(r.id.as_str(), "NFYYVDTG8K1ADUJWK3YFH1");
    }
}
