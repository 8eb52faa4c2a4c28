//! The identity a valid key becomes: username, uid, groups and extra (docs/design.md,
//! "Identity"). One home for these rules, used by the webhook (`status.user`), by the index
//! (which serializes the shared parts once per key) and by the command line (usernames shown
//! and bound in RoleBindings).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::authentication::v1::UserInfo;

use crate::record::KeyRecord;
use crate::token::{ID_LEN, IdKey};

/// Every key is in this group, so one binding can address all keygate keys.
pub const GROUP_ALL_KEYS: &str = "keygate:keys";
pub const EXTRA_KEY_ID: &str = "keygate.dev/key-id";
pub const EXTRA_KEY_NAME: &str = "keygate.dev/key-name";
pub const DEFAULT_USER_PREFIX: &str = "service-account-";
/// The prefix of the uid (`keygate:<id lowercased>`).
const UID_PREFIX: &str = "keygate:";

/// The one rule for `--user-prefix`, of `serve` and of `keys` alike: not empty, and not in
/// `system:` (a username there would be one of Kubernetes' own).
pub fn check_user_prefix(user_prefix: &str) -> Result<(), IdentityError> {
    if user_prefix.is_empty() || user_prefix.starts_with("system:") {
        return Err(IdentityError::BadPrefix(user_prefix.to_owned()));
    }
    Ok(())
}

/// The username of a key: the prefix, then the ID lowercased.
pub fn username(user_prefix: &str, id: &IdKey) -> String {
    format!("{user_prefix}{id}")
}

/// One entry of `--allowed-group`: an exact group name, or a prefix ending in `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPattern(String);

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "invalid --allowed-group {0:?}: use a group name, a prefix ending in `*` (e.g. `team-*`), or `*`"
    )]
    BadPattern(String),
    #[error("invalid --user-prefix {0:?}: it must not be empty or begin with `system:`")]
    BadPrefix(String),
}

impl FromStr for GroupPattern {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, IdentityError> {
        let s = s.trim();
        let body = s.strip_suffix('*').unwrap_or(s);
        if (s.is_empty() || body.contains('*') || s.contains(',')) && s != "*" {
            return Err(IdentityError::BadPattern(s.to_owned()));
        }
        Ok(GroupPattern(s.to_owned()))
    }
}

impl GroupPattern {
    /// `*`: every group (still never a `system:` one).
    pub fn any() -> Self {
        GroupPattern("*".to_owned())
    }

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
            allowed_groups: vec![GroupPattern::any()],
        }
    }
}

impl IdentityPolicy {
    pub fn new(
        user_prefix: String,
        allowed_groups: Vec<GroupPattern>,
    ) -> Result<Self, IdentityError> {
        check_user_prefix(&user_prefix)?;
        Ok(IdentityPolicy {
            user_prefix,
            allowed_groups,
        })
    }

    pub fn username(&self, id: &IdKey) -> String {
        username(&self.user_prefix, id)
    }

    /// What every key's username begins with.
    pub fn user_prefix(&self) -> &str {
        &self.user_prefix
    }

    /// The key whose username `username` is (`<prefix><id lowercased>`), if it is one.
    pub fn key_of_username(&self, username: &str) -> Option<IdKey> {
        let id = username.strip_prefix(self.user_prefix.as_str())?;
        IdKey::new(id).filter(|k| k.as_str() == id)
    }

    /// The username for the log line, written without allocating; empty without an ID.
    pub fn display_username(&self, id: Option<IdKey>) -> impl fmt::Display + '_ {
        struct Username<'p>(&'p str, Option<IdKey>);
        impl fmt::Display for Username<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Two plain writes, not `write!`: this is on every decision line.
                match &self.1 {
                    Some(id) => {
                        f.write_str(self.0)?;
                        f.write_str(id.as_str())
                    }
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

    /// The identity a valid key becomes, as a typed value (the webhook writes the same bytes
    /// with [`write_user`]).
    pub fn user_info(&self, record: &KeyRecord) -> UserInfo {
        let id = record.id.key();
        UserInfo {
            username: Some(self.username(&id)),
            uid: Some(format!("{UID_PREFIX}{id}")),
            groups: Some(self.groups(record)),
            extra: Some(BTreeMap::from([
                (EXTRA_KEY_ID.to_owned(), vec![record.id.to_string()]),
                (EXTRA_KEY_NAME.to_owned(), vec![record.name.clone()]),
            ])),
        }
    }
}

/// The parts of `status.user` that many keys share: the username prefix and the group list,
/// each serialized once. The index interns them, so a million keys with a handful of roles
/// share a handful of these.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    /// `"<prefix>`: the username up to the ID, as JSON (opening quote, escaped).
    username_head: Box<str>,
    /// The groups as a JSON array.
    groups: Box<str>,
}

impl Shape {
    pub fn new(user_prefix: &str, groups: &[String]) -> Self {
        // Serializing strings cannot fail.
        let mut head = serde_json::to_string(user_prefix).unwrap_or_default();
        head.pop(); // the closing quote: the ID follows
        Shape {
            username_head: head.into_boxed_str(),
            groups: serde_json::to_string(groups)
                .unwrap_or_default()
                .into_boxed_str(),
        }
    }
}

/// Appends `status.user` (k8s-openapi's `UserInfo`, fields in its order) as JSON, the same
/// bytes serde would write for [`IdentityPolicy::user_info`]. `id` is the ID as minted, and
/// `name_json` the key's display name already serialized as a JSON string. IDs are base62, so
/// nothing is escaped here: a review writes its answer without escaping or allocating.
#[inline]
pub fn write_user(buf: &mut Vec<u8>, id: &[u8; ID_LEN], name_json: &str, shape: &Shape) {
    let mut low = *id;
    low.make_ascii_lowercase();
    for part in [
        &b"{\"extra\":{\"keygate.dev/key-id\":[\""[..],
        id,
        b"\"],\"keygate.dev/key-name\":[",
        name_json.as_bytes(),
        b"]},\"groups\":",
        shape.groups.as_bytes(),
        b",\"uid\":\"keygate:",
        &low,
        b"\",\"username\":",
        shape.username_head.as_bytes(),
        &low,
        b"\"}",
    ] {
        buf.extend_from_slice(part);
    }
}

/// How many bytes [`write_user`] appends, to size the buffer once: the fixed parts (103
/// bytes), the ID three times, and the variable parts.
#[inline]
pub fn user_len(name_json: &str, shape: &Shape) -> usize {
    103 + 3 * ID_LEN + name_json.len() + shape.groups.len() + shape.username_head.len()
}
