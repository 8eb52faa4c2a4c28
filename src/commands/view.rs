//! How keys are shown: a table like kubectl's, `key: value` text, and JSON/YAML documents.

use jiff::Timestamp;
use serde::Serialize;

use crate::age::short;
use crate::identity;
use crate::record::{Expiry, KeyRecord};

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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
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
            token: None,
        }
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
        line("Role:", self.role.as_deref().unwrap_or("none"));
        line("Scope:", &scope(&self.namespaces));
        line("Groups:", &self.groups.join(", "));
        line("State:", self.state);
        line("Expires:", self.expiration.as_deref().unwrap_or("never"));
        line("Created:", self.created.as_deref().unwrap_or(""));
        line("Created by:", &self.created_by);
        line("Last used:", self.last_used.as_deref().unwrap_or("never"));
        if let Some(p) = &self.previous_secret_expiration {
            line("Old secret:", &format!("works until {p}"));
        }
        out
    }
}

pub fn scope(namespaces: &[String]) -> String {
    if namespaces.is_empty() {
        "cluster".to_owned()
    } else {
        namespaces.join(",")
    }
}

fn since(t: Option<Timestamp>, now: Timestamp) -> Option<i64> {
    t.map(|t| now.as_second() - t.as_second())
}

/// The rows of `keys list` (wide adds USERNAME, GROUPS, CREATED BY, DESCRIPTION).
pub fn table(keys: &[KeyRecord], user_prefix: &str, now: Timestamp, wide: bool) -> String {
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
    for r in keys {
        let expires = match r.expiration {
            None => "never".to_owned(),
            Some(Expiry::Invalid) => "invalid".to_owned(),
            Some(Expiry::At(t)) if t <= now => "expired".to_owned(),
            Some(Expiry::At(t)) => format!("in {}", short(t.as_second() - now.as_second())),
        };
        let mut row = vec![
            r.id.to_string(),
            r.name.clone(),
            r.role.map(|r| r.to_string()).unwrap_or_else(|| "-".into()),
            scope(&r.namespaces),
            since(r.created, now)
                .map(short)
                .unwrap_or_else(|| "-".into()),
            expires,
            since(r.last_used, now)
                .map(|s| format!("{} ago", short(s)))
                .unwrap_or_else(|| "never".into()),
            state(r, now).to_owned(),
        ];
        if wide {
            row.extend([
                identity::username(user_prefix, &r.id.key()),
                r.groups.join(","),
                r.created_by.clone(),
                r.description.clone(),
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
        let t = table(&[a, b], "u-", now, false);
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
