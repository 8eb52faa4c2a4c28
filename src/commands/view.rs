//! How keys are shown: a table like kubectl's, `key: value` text, and JSON/YAML documents.

use jiff::Timestamp;
use serde::Serialize;

use crate::age::short;
use crate::api::types::AccessKey;
use crate::identity;
use crate::record::{Expiry, KeyRecord, ScopeRule};

fn is_false(b: &bool) -> bool {
    !*b
}

/// A key as shown to users and scripts (never the secret or its hash).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyView {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub username: String,
    pub role: Option<String>,
    pub namespaces: Vec<String>,
    pub groups: Vec<String>,
    pub state: &'static str,
    pub disabled: bool,
    pub expiration: Option<String>,
    pub created: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub created_by: String,
    pub last_used: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_expiration: Option<String>,
    /// The user at the root of the chain of keys minting keys.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub owner: String,
    /// The key that minted this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Acts with its creator's live rights, reduced by its scope (`role` is then null).
    #[serde(skip_serializing_if = "is_false")]
    pub inherit_creator: bool,
    /// The scope's rules (RBAC PolicyRule shape), `inheritCreator` keys only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<ScopeRule>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The times behind the table's relative columns (not part of the documents).
    #[serde(skip)]
    pub times: Times,
}

/// When a key was created, last used and expires, for the table's ages.
#[derive(Debug, Clone, Default)]
pub struct Times {
    pub created: Option<Timestamp>,
    pub last_used: Option<Timestamp>,
    pub expires: Option<Expiry>,
}

fn expiry_text(e: &Expiry) -> String {
    match e {
        Expiry::At(t) => t.to_string(),
        Expiry::Invalid => "invalid (treated as expired)".to_owned(),
    }
}

/// active, disabled, expired or rotating (an old secret still works during its grace period).
pub fn state(r: &KeyRecord, now: Timestamp) -> &'static str {
    if r.disabled {
        "disabled"
    } else if r.is_expired(now) {
        "expired"
    } else if r.previous.as_ref().is_some_and(|p| !p.expires.is_past(now)) {
        "rotating"
    } else {
        "active"
    }
}

impl KeyView {
    pub fn new(r: &KeyRecord, user_prefix: &str, now: Timestamp) -> Self {
        KeyView {
            id: r.id.to_string(),
            name: r.name.clone(),
            description: r.description.clone(),
            username: identity::username(user_prefix, &r.id.key()),
            role: r.role.map(|r| r.to_string()),
            namespaces: r.namespaces.clone(),
            groups: r.groups.clone(),
            state: state(r, now),
            disabled: r.disabled,
            expiration: r.expiration.as_ref().map(expiry_text),
            created: r.created.map(|t| t.to_string()),
            created_by: r.created_by.clone(),
            last_used: r.last_used.map(|t| t.to_string()),
            previous_secret_expiration: r
                .previous
                .as_ref()
                .filter(|p| !p.expires.is_past(now))
                .map(|p| expiry_text(&p.expires)),
            owner: r.owner().to_owned(),
            parent: r.parent.as_ref().map(ToString::to_string),
            inherit_creator: r.inherit_creator,
            rules: r.rules.clone(),
            token: None,
            times: Times {
                created: r.created,
                last_used: r.last_used,
                expires: r.expiration,
            },
        }
    }

    /// An AccessKey as the API answered it (its `status.token` included, when present).
    pub fn from_access_key(k: &AccessKey, now: Timestamp) -> Self {
        let status = k.status.clone().unwrap_or_default();
        let spec = &k.spec;
        let time = |t: &Option<String>| t.as_deref().and_then(|t| t.parse::<Timestamp>().ok());
        let expires = spec.expiration.as_ref().map(|e| match e.parse() {
            Ok(t) => Expiry::At(t),
            Err(_) => Expiry::Invalid,
        });
        let previous = time(&status.previous_secret_expiration).filter(|t| *t > now);
        let state = match status.state.as_str() {
            "Disabled" => "disabled",
            "Expired" => "expired",
            _ if previous.is_some() => "rotating",
            _ => "active",
        };
        KeyView {
            id: status.id.clone(),
            name: spec.display_name.clone(),
            description: spec.description.clone(),
            username: status.username.clone(),
            role: spec.role.clone().filter(|r| !r.is_empty()),
            namespaces: spec.scope.namespaces.clone(),
            groups: spec.groups.clone(),
            state,
            disabled: spec.disabled,
            expiration: expires.as_ref().map(expiry_text),
            created: status.created_at.clone(),
            created_by: status
                .creator
                .as_ref()
                .map(|c| c.username.clone())
                .unwrap_or_default(),
            last_used: status.last_used.clone(),
            previous_secret_expiration: previous.map(|t| t.to_string()),
            owner: status.owner.clone(),
            parent: status.parent.clone(),
            inherit_creator: spec.inherit_creator,
            rules: spec.scope.rules.clone(),
            token: status.token.clone(),
            times: Times {
                created: time(&status.created_at),
                last_used: time(&status.last_used),
                expires,
            },
        }
    }

    /// The ROLE column: the role, `inherited`, or `-`.
    pub fn role_text(&self) -> &str {
        if self.inherit_creator {
            "inherited"
        } else {
            self.role.as_deref().unwrap_or("-")
        }
    }

    /// The SCOPE column: namespaces or `cluster`, and `+N rules` when rules are set.
    pub fn scope_text(&self) -> String {
        let mut s = if self.namespaces.is_empty() {
            "cluster".to_owned()
        } else {
            self.namespaces.join(",")
        };
        if !self.rules.is_empty() {
            s.push_str(&format!(" +{} rules", self.rules.len()));
        }
        s
    }

    /// `key: value` lines for humans.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let mut line = |k: &str, v: &str| {
            if !v.is_empty() {
                out.push_str(&format!("{k:<13}{v}\n"));
            }
        };
        line("ID:", &self.id);
        line("Name:", &self.name);
        line("Description:", &self.description);
        line("Username:", &self.username);
        let role = match self.role_text() {
            "inherited" => "inherited (the creator's rights, reduced by the scope)",
            "-" => "none",
            r => r,
        };
        line("Role:", role);
        line("Scope:", &self.scope_text());
        for r in &self.rules {
            line("Rule:", &rule_text(r));
        }
        line("Groups:", &self.groups.join(", "));
        line("State:", self.state);
        line("Expires:", self.expiration.as_deref().unwrap_or("never"));
        line("Created:", self.created.as_deref().unwrap_or(""));
        line("Created by:", &self.created_by);
        if self.owner != self.created_by {
            line("Owner:", &self.owner);
        }
        line("Parent key:", self.parent.as_deref().unwrap_or(""));
        line("Last used:", self.last_used.as_deref().unwrap_or("never"));
        if let Some(p) = &self.previous_secret_expiration {
            line("Old secret:", &format!("works until {p}"));
        }
        out
    }
}

/// A rule as `--rule` takes it: VERBS:GROUPS:RESOURCES or VERBS:/PATH (resource names after
/// a `/` in brackets, which `--rule` cannot set but the API can).
pub fn rule_text(r: &ScopeRule) -> String {
    let verbs = r.verbs.join(",");
    let mut s = if r.non_resource_urls.is_empty() {
        format!(
            "{verbs}:{}:{}",
            r.api_groups.join(","),
            r.resources.join(",")
        )
    } else {
        format!("{verbs}:{}", r.non_resource_urls.join(","))
    };
    if !r.resource_names.is_empty() {
        s.push_str(&format!(" [{}]", r.resource_names.join(",")));
    }
    s
}

fn since(t: Option<Timestamp>, now: Timestamp) -> Option<i64> {
    t.map(|t| now.as_second() - t.as_second())
}

/// The rows of `keys list` (wide adds USERNAME, GROUPS, CREATED BY, DESCRIPTION).
pub fn table(keys: &[KeyView], now: Timestamp, wide: bool) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut head = vec![
        "ID",
        "NAME",
        "ROLE",
        "SCOPE",
        "AGE",
        "EXPIRES",
        "LAST USED",
        "STATE",
    ];
    if wide {
        head.extend(["USERNAME", "GROUPS", "CREATED BY", "DESCRIPTION"]);
    }
    rows.push(head.into_iter().map(str::to_owned).collect());
    for k in keys {
        let expires = match k.times.expires {
            None => "never".to_owned(),
            Some(Expiry::Invalid) => "invalid".to_owned(),
            Some(Expiry::At(t)) if t <= now => "expired".to_owned(),
            Some(Expiry::At(t)) => format!("in {}", short(t.as_second() - now.as_second())),
        };
        let mut row = vec![
            k.id.clone(),
            k.name.clone(),
            k.role_text().to_owned(),
            k.scope_text(),
            since(k.times.created, now)
                .map(short)
                .unwrap_or_else(|| "-".into()),
            expires,
            since(k.times.last_used, now)
                .map(|s| format!("{} ago", short(s)))
                .unwrap_or_else(|| "never".into()),
            k.state.to_owned(),
        ];
        if wide {
            row.extend([
                k.username.clone(),
                k.groups.join(","),
                k.created_by.clone(),
                k.description.clone(),
            ]);
        }
        rows.push(row);
    }
    let cols = rows[0].len();
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == cols {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(widths[c] - cell.chars().count() + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{PreviousSecret, Role};
    use crate::token::SecretHash;

    #[test]
    fn table_has_the_contract_columns_and_states() {
        let now: Timestamp = "2030-01-10T00:00:00Z".parse().unwrap();
        let mut a = KeyRecord::new(
            "AAAAAAAAAAAAAAAAAAAAAa".parse().unwrap(),
            SecretHash::of(b"x"),
            "ci",
        );
        a.role = Some(Role::View);
        a.namespaces = vec!["apps".into()];
        a.created = Some("2030-01-07T00:00:00Z".parse().unwrap());
        a.last_used = Some("2030-01-09T23:55:00Z".parse().unwrap());
        a.previous = Some(PreviousSecret {
            hash: SecretHash::of(b"y"),
            expires: Expiry::At("2030-01-10T01:00:00Z".parse().unwrap()),
        });
        let mut b = a.clone();
        b.id = "BBBBBBBBBBBBBBBBBBBBBb".parse().unwrap();
        b.disabled = true;
        let views: Vec<KeyView> = [a, b].iter().map(|r| KeyView::new(r, "u-", now)).collect();
        let t = table(&views, now, false);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("ID"), "{t}");
        for col in [
            "NAME",
            "ROLE",
            "SCOPE",
            "AGE",
            "EXPIRES",
            "LAST USED",
            "STATE",
        ] {
            assert!(lines[0].contains(col), "{t}");
        }
        assert!(lines[1].contains("apps") && lines[1].contains("3d"), "{t}");
        assert!(
            lines[1].contains("5m ago") && lines[1].ends_with("rotating"),
            "{t}"
        );
        assert!(lines[2].ends_with("disabled"), "{t}");
    }
}
