//! The page's model: the AccessKey object of the API (`keygate.dev/v1alpha1`), spec and
//! status, with the API's JSON names. Both backends produce it (the dir store converts its
//! records with [`AccessKey::from_record`]; the API answers it), so the page shows the same
//! thing whichever store is behind it.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Serialize};

use crate::identity::IdentityPolicy;
use crate::record::{Creator, Expiry, KeyRecord, ScopeRule};

pub const API_VERSION: &str = "keygate.dev/v1alpha1";
pub const KIND: &str = "AccessKey";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessKey {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: AccessKeySpec,
    #[serde(default)]
    pub status: AccessKeyStatus,
}

/// What the key is: chosen at creation (role, inheritCreator, scope, groups are fixed then);
/// displayName, description and disabled change later, and expiration may only come closer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeySpec {
    pub display_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// `admin`, `edit` or `view`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default)]
    pub inherit_creator: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<Timestamp>,
    #[serde(default)]
    pub disabled: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scope {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<ScopeRule>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    #[default]
    Active,
    Disabled,
    Expired,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "Active",
            State::Disabled => "Disabled",
            State::Expired => "Expired",
        }
    }
}

/// What keygate says about the key. `token` is set only in the answers to create and
/// regenerate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeyStatus {
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator: Option<Creator>,
    #[serde(default)]
    pub owner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(default)]
    pub state: State,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_expiration: Option<Timestamp>,
}

impl AccessKey {
    /// The AccessKey a stored record is (never with its token: the record has only a hash).
    pub fn from_record(r: &KeyRecord, identity: &IdentityPolicy, now: Timestamp) -> Self {
        let id = r.id.key();
        let state = if r.disabled {
            State::Disabled
        } else if r.is_expired(now) {
            State::Expired
        } else {
            State::Active
        };
        let scope = (!r.namespaces.is_empty() || !r.rules.is_empty()).then(|| Scope {
            namespaces: r.namespaces.clone(),
            rules: r.rules.clone(),
        });
        AccessKey {
            api_version: API_VERSION.to_owned(),
            kind: KIND.to_owned(),
            metadata: ObjectMeta {
                name: Some(id.to_string()),
                creation_timestamp: r.created.map(Time),
                ..ObjectMeta::default()
            },
            spec: AccessKeySpec {
                display_name: r.name.clone(),
                description: r.description.clone(),
                role: r.role.map(|r| r.to_string()),
                inherit_creator: r.inherit_creator,
                scope,
                groups: r.groups.clone(),
                // An unreadable expiration counts as past: the state says Expired.
                expiration: match r.expiration {
                    Some(Expiry::At(t)) => Some(t),
                    _ => None,
                },
                disabled: r.disabled,
            },
            status: AccessKeyStatus {
                id: r.id.to_string(),
                token: None,
                username: identity.username(&id),
                groups: identity.groups(r),
                creator: r.creator.clone(),
                owner: r.owner().to_owned(),
                parent: r.parent.as_ref().map(ToString::to_string),
                state,
                created_at: r.created,
                last_used: r.last_used,
                previous_secret_expiration: r.previous.as_ref().and_then(|p| match p.expires {
                    Expiry::At(t) if t > now => Some(t),
                    _ => None,
                }),
            },
        }
    }

    /// `metadata.name`: the ID lowercased, what the API's paths use.
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{PreviousSecret, Role};
    use crate::token::SecretHash;

    #[test]
    fn a_record_becomes_the_contract_object_and_back_through_json() {
        let now: Timestamp = "2030-01-10T00:00:00Z".parse().unwrap();
        let mut r = KeyRecord::new(
            "AbCdEfGhIjKlMnOpQrStUv".parse().unwrap(),
            SecretHash::of(b"x"),
            "ci",
        );
        r.role = Some(Role::View);
        r.namespaces = vec!["apps".into()];
        r.created_by = "alice".into();
        r.expiration = Some(Expiry::At("2030-01-01T00:00:00Z".parse().unwrap()));
        r.previous = Some(PreviousSecret {
            hash: SecretHash::of(b"y"),
            expires: Expiry::At("2030-01-10T01:00:00Z".parse().unwrap()),
        });
        let k = AccessKey::from_record(&r, &IdentityPolicy::default(), now);
        assert_eq!(k.name(), "abcdefghijklmnopqrstuv");
        assert_eq!(k.status.id, "AbCdEfGhIjKlMnOpQrStUv");
        assert_eq!(k.status.owner, "alice");
        assert_eq!(k.status.state, State::Expired);
        assert_eq!(k.status.username, "service-account-abcdefghijklmnopqrstuv");
        assert!(k.status.previous_secret_expiration.is_some());
        let json = serde_json::to_value(&k).unwrap();
        assert_eq!(json["spec"]["displayName"], "ci");
        assert_eq!(json["spec"]["scope"]["namespaces"][0], "apps");
        assert_eq!(json["status"]["state"], "Expired");
        assert_eq!(json["kind"], "AccessKey");
        assert!(json["status"].get("token").is_none());
        let back: AccessKey = serde_json::from_value(json).unwrap();
        assert_eq!(back, k);
    }
}
