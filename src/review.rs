//! The TokenReview exchange: decoding what kube-apiserver sends, deciding, encoding the answer.
//!
//! Decisions are pure functions of the token, the index and the clock, so they are tested here
//! without a server. The HTTP layer (`server`) only maps a [`Review`] result to a status code.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use k8s_openapi::api::authentication::v1::{TokenReviewSpec, UserInfo};
use serde::Deserialize;

use crate::keys::{self, KeyError};
use crate::record::KeyRecord;
use crate::store::{Entry, IdKey, Index, LoadedKey, Shape};

pub const API_V1: &str = "authentication.k8s.io/v1";
pub const API_V1BETA1: &str = "authentication.k8s.io/v1beta1";
pub const KIND: &str = "TokenReview";
/// Every key is in this group, so one binding can address all keygate keys.
pub const GROUP_ALL_KEYS: &str = "keygate:keys";
pub const EXTRA_KEY_ID: &str = "keygate.dev/key-id";
pub const EXTRA_KEY_NAME: &str = "keygate.dev/key-name";
pub const DEFAULT_USER_PREFIX: &str = "service-account-";

/// One entry of `--allowed-group`: an exact group name, or a prefix ending in `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPattern(String);

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "invalid --allowed-group {0:?}: use a group name, a prefix ending in `*` (e.g. `team-*`), or `*`"
    )]
    BadPattern(String),
    #[error("invalid --user-prefix {0:?}: it must not be empty or begin with `system:`")]
    BadPrefix(String),
}

impl FromStr for GroupPattern {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        let s = s.trim();
        let body = s.strip_suffix('*').unwrap_or(s);
        if (s.is_empty() || body.contains('*') || s.contains(',')) && s != "*" {
            return Err(PolicyError::BadPattern(s.to_owned()));
        }
        Ok(GroupPattern(s.to_owned()))
    }
}

impl GroupPattern {
    fn matches(&self, group: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => group.starts_with(prefix),
            None => group == self.0,
        }
    }
}

impl fmt::Display for GroupPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a record becomes a Kubernetes identity: the username prefix and which record groups may
/// be emitted. `system:` groups never are, whatever the allow-list says.
#[derive(Debug, Clone)]
pub struct IdentityPolicy {
    user_prefix: String,
    allowed_groups: Vec<GroupPattern>,
}

impl Default for IdentityPolicy {
    fn default() -> Self {
        IdentityPolicy {
            user_prefix: DEFAULT_USER_PREFIX.to_owned(),
            allowed_groups: vec![GroupPattern("*".to_owned())],
        }
    }
}

impl IdentityPolicy {
    pub fn new(
        user_prefix: String,
        allowed_groups: Vec<GroupPattern>,
    ) -> Result<Self, PolicyError> {
        if user_prefix.is_empty() || user_prefix.starts_with("system:") {
            return Err(PolicyError::BadPrefix(user_prefix));
        }
        Ok(IdentityPolicy {
            user_prefix,
            allowed_groups,
        })
    }

    pub fn username(&self, id_lower: &str) -> String {
        format!("{}{id_lower}", self.user_prefix)
    }

    /// The username for the log line, written without allocating; empty without an ID.
    pub fn display_username(&self, id: Option<IdKey>) -> impl fmt::Display + '_ {
        struct Username<'p>(&'p str, Option<IdKey>);
        impl fmt::Display for Username<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match &self.1 {
                    Some(id) => write!(f, "{}{id}", self.0),
                    None => Ok(()),
                }
            }
        }
        Username(&self.user_prefix, id)
    }

    fn group_allowed(&self, g: &str) -> bool {
        !g.starts_with("system:") && self.allowed_groups.iter().any(|p| p.matches(g))
    }

    /// The groups a record maps to: `keygate:keys`, `keygate:<role>` for a cluster-wide role,
    /// then the record's own groups that the allow-list lets through (others are logged).
    pub fn groups(&self, record: &KeyRecord) -> Vec<String> {
        let mut groups = vec![GROUP_ALL_KEYS.to_owned()];
        if let (Some(role), true) = (record.role, record.namespaces.is_empty()) {
            groups.push(format!("keygate:{role}"));
        }
        for g in &record.groups {
            if self.group_allowed(g) {
                if !groups.contains(g) {
                    groups.push(g.clone());
                }
            } else {
                tracing::warn!(key_id = %record.id, group = %g, "group not in --allowed-group; not emitted");
            }
        }
        groups
    }

    /// The parts of a record's identity that many keys share, serialized once.
    pub fn shape(&self, record: &KeyRecord) -> Shape {
        Shape::new(&self.user_prefix, &self.groups(record))
    }

    /// The identity a valid key becomes (design.md, "The identity a valid key becomes").
    pub fn user_info(&self, record: &KeyRecord) -> UserInfo {
        let id_lower = record.id.lowercase();
        UserInfo {
            username: Some(self.username(&id_lower)),
            uid: Some(format!("keygate:{id_lower}")),
            groups: Some(self.groups(record)),
            extra: Some(BTreeMap::from([
                (EXTRA_KEY_ID.to_owned(), vec![record.id.to_string()]),
                (EXTRA_KEY_NAME.to_owned(), vec![record.name.clone()]),
            ])),
        }
    }
}

/// Why a token was accepted or refused; the `reason` label of metrics and log events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    Ok,
    /// Accepted with the previous secret inside its rotation grace window.
    OkPreviousSecret,
    /// Not a keygate token (no `kg_` prefix): answered without a lookup.
    ForeignToken,
    MalformedToken,
    UnknownKey,
    /// A record exists but was refused when loaded (see the log for why).
    InvalidRecord,
    WrongSecret,
    /// The previous secret, after its grace window ended.
    SecretRotated,
    Expired,
    Disabled,
}

impl Reason {
    pub const ALL: [Reason; 10] = [
        Reason::Ok,
        Reason::OkPreviousSecret,
        Reason::ForeignToken,
        Reason::MalformedToken,
        Reason::UnknownKey,
        Reason::InvalidRecord,
        Reason::WrongSecret,
        Reason::SecretRotated,
        Reason::Expired,
        Reason::Disabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Ok => "ok",
            Reason::OkPreviousSecret => "ok_previous_secret",
            Reason::ForeignToken => "foreign_token",
            Reason::MalformedToken => "malformed_token",
            Reason::UnknownKey => "unknown_key",
            Reason::InvalidRecord => "invalid_record",
            Reason::WrongSecret => "wrong_secret",
            Reason::SecretRotated => "secret_rotated",
            Reason::Expired => "expired",
            Reason::Disabled => "disabled",
        }
    }

    pub fn authenticated(self) -> bool {
        matches!(self, Reason::Ok | Reason::OkPreviousSecret)
    }

    /// Position in [`Reason::ALL`], for per-reason metric handles.
    pub fn index(self) -> usize {
        Reason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// The outcome of checking one token.
pub struct Decision<'t> {
    pub reason: Reason,
    /// The key ID as written in the token, when the token had one (public, safe to log).
    pub key_id: Option<&'t str>,
    /// The matched key, when authenticated.
    pub key: Option<std::sync::Arc<LoadedKey>>,
}

/// Checks a bearer token against the index at time `now`.
pub fn decide<'t>(index: &Index, token: &'t str, now: Timestamp) -> Decision<'t> {
    let deny = |reason, key_id| Decision {
        reason,
        key_id,
        key: None,
    };
    let parsed = match keys::parse_token(token) {
        Ok(p) => p,
        Err(KeyError::Foreign) => return deny(Reason::ForeignToken, None),
        Err(_) => return deny(Reason::MalformedToken, None),
    };
    let id = Some(parsed.id);
    // Lowercased on the stack: no allocation on the hot path.
    let Some(id_key) = IdKey::new(parsed.id) else {
        return deny(Reason::MalformedToken, None);
    };

    let key = match index.get_key(&id_key) {
        None => return deny(Reason::UnknownKey, id),
        Some(Entry::Invalid(e)) => {
            tracing::warn!(key_id = parsed.id, error = %e, "token for a refused key record");
            return deny(Reason::InvalidRecord, id);
        }
        // IDs are case-sensitive; the lowercase lookup only finds the candidate.
        Some(Entry::Key(k)) if k.id() != parsed.id => {
            return deny(Reason::UnknownKey, id);
        }
        Some(Entry::Key(k)) => k,
    };

    let hash = parsed.secret_hash();
    // Both comparisons always run, each in constant time.
    let current = key.secret_hash.ct_eq(&hash);
    let previous = key.previous.as_ref().map(|p| (p.hash.ct_eq(&hash), p));
    let reason = match (current, previous) {
        (true, _) => Reason::Ok,
        (false, Some((true, p))) if !p.expires.is_past(now) => Reason::OkPreviousSecret,
        (false, Some((true, _))) => Reason::SecretRotated,
        _ => Reason::WrongSecret,
    };
    let reason = match reason {
        r if !r.authenticated() => r,
        _ if key.disabled => Reason::Disabled,
        _ if key.is_expired(now) => Reason::Expired,
        r => r,
    };
    Decision {
        reason,
        key_id: id,
        key: reason.authenticated().then_some(key),
    }
}

/// Why a request body is not a TokenReview we can answer (HTTP 400).
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("request body is not a TokenReview: {0}")]
    Json(#[from] serde_json::Error),
    #[error("kind is {0:?}, expected \"TokenReview\"")]
    WrongKind(String),
    #[error(
        "apiVersion is {0:?}, expected authentication.k8s.io/v1 or authentication.k8s.io/v1beta1"
    )]
    WrongApiVersion(String),
    #[error("spec.token is missing or empty")]
    MissingToken,
}

/// The TokenReview versions keygate answers. v1beta1 has the same schema as v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    V1,
    V1beta1,
}

impl ApiVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V1 => API_V1,
            ApiVersion::V1beta1 => API_V1BETA1,
        }
    }
}

/// The parts of a TokenReview request keygate reads; `metadata` and `status` are ignored.
/// `apiVersion` and `kind` borrow from the body (no allocation unless they hold escapes).
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "apiVersion", default, borrow)]
    api_version: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default)]
    spec: Option<TokenReviewSpec>,
}

/// A decoded request.
pub struct ReviewRequest {
    pub api_version: ApiVersion,
    pub spec: TokenReviewSpec,
}

impl ReviewRequest {
    pub fn token(&self) -> &str {
        self.spec.token.as_deref().unwrap_or_default()
    }
}

pub fn decode(body: &[u8]) -> Result<ReviewRequest, ReviewError> {
    let env: Envelope<'_> = serde_json::from_slice(body)?;
    if env.kind != KIND {
        return Err(ReviewError::WrongKind(env.kind.into_owned()));
    }
    let api_version = match &*env.api_version {
        API_V1 => ApiVersion::V1,
        API_V1BETA1 => ApiVersion::V1beta1,
        _ => return Err(ReviewError::WrongApiVersion(env.api_version.into_owned())),
    };
    let spec = env.spec.unwrap_or_default();
    if spec.token.as_deref().is_none_or(str::is_empty) {
        return Err(ReviewError::MissingToken);
    }
    Ok(ReviewRequest { api_version, spec })
}

/// The answer body. Denials carry no `status.error`, so kube-apiserver caches them. The
/// identity part is the key's `status.user`, serialized once when the key was loaded; only the
/// constant framing is written here.
pub fn encode(api_version: ApiVersion, decision: &Decision<'_>) -> Vec<u8> {
    const HEAD: &[u8] = b"{\"apiVersion\":\"";
    const MID: &[u8] = b"\",\"kind\":\"TokenReview\",\"status\":{\"authenticated\":";
    let user = decision.key.as_deref();
    let mut buf = Vec::with_capacity(96 + user.map_or(0, LoadedKey::user_len));
    buf.extend_from_slice(HEAD);
    buf.extend_from_slice(api_version.as_str().as_bytes());
    buf.extend_from_slice(MID);
    match user {
        Some(user) if decision.reason.authenticated() => {
            buf.extend_from_slice(b"true,\"user\":");
            user.write_user(&mut buf);
        }
        _ => buf.extend_from_slice(b"false"),
    }
    buf.extend_from_slice(b"}}");
    buf
}

#[cfg(test)]
mod tests;
