//! kubectl's server-side printing: a `meta.k8s.io` Table (v1 or v1beta1) with the columns ID,
//! NAME, OWNER, ROLE, SCOPE, STATE, EXPIRES, LAST USED, AGE. Each row carries the object as
//! `includeObject` asks: `None`, `Metadata` (the default; a PartialObjectMetadata) or `Object`.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::status::ApiError;
use super::types::AccessKey;
use crate::age::short;

const COLUMNS: [(&str, &str, &str); 9] = [
    ("ID", "name", "The key ID, case kept, as in its token"),
    ("Name", "", "spec.displayName"),
    (
        "Owner",
        "",
        "The user at the root of the chain of keys minting keys",
    ),
    ("Role", "", "spec.role; `inherited` for inheritCreator keys"),
    (
        "Scope",
        "",
        "spec.scope.namespaces, or `cluster`; `+N rules` when rules are set",
    ),
    ("State", "", "Active, Disabled or Expired"),
    ("Expires", "", "spec.expiration"),
    ("Last Used", "", "status.lastUsed"),
    ("Age", "", "Since the key was created"),
];

fn ago(t: &str, now: Timestamp) -> Option<i64> {
    let t: Timestamp = t.parse().ok()?;
    Some(now.as_second() - t.as_second())
}

/// The cells of one row, in column order.
pub fn cells(key: &AccessKey, now: Timestamp) -> Vec<String> {
    let status = key.status.clone().unwrap_or_default();
    let spec = &key.spec;
    let role = if spec.inherit_creator {
        "inherited".to_owned()
    } else {
        spec.role.clone().unwrap_or_else(|| "<none>".to_owned())
    };
    let mut scope = if spec.scope.namespaces.is_empty() {
        "cluster".to_owned()
    } else {
        spec.scope.namespaces.join(",")
    };
    if !spec.scope.rules.is_empty() {
        scope.push_str(&format!(" +{} rules", spec.scope.rules.len()));
    }
    let expires = match &spec.expiration {
        None => "never".to_owned(),
        Some(e) => match ago(e, now) {
            Some(s) if s >= 0 => "expired".to_owned(),
            Some(s) => format!("in {}", short(-s)),
            None => e.clone(),
        },
    };
    let last_used = status
        .last_used
        .as_deref()
        .and_then(|t| ago(t, now))
        .map(|s| format!("{} ago", short(s)))
        .unwrap_or_else(|| "never".to_owned());
    let age = status
        .created_at
        .as_deref()
        .and_then(|t| ago(t, now))
        .map(short)
        .unwrap_or_else(|| "<unknown>".to_owned());
    vec![
        status.id,
        spec.display_name.clone(),
        status.owner,
        role,
        scope,
        status.state,
        expires,
        last_used,
        age,
    ]
}

/// The object of a row, as `includeObject` asks.
fn row_object(key: &AccessKey, include: &str, version: &str) -> Value {
    match include {
        "None" => Value::Null,
        "Object" => serde_json::to_value(key).unwrap_or_default(),
        _ => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": format!("meta.k8s.io/{version}"),
            "metadata": key.metadata,
        }),
    }
}

/// A Table of `keys` (`version`: `v1` or `v1beta1`).
pub fn table(
    keys: &[AccessKey],
    version: &str,
    include_object: Option<&str>,
    now: Timestamp,
) -> Result<Value, ApiError> {
    let include = include_object.unwrap_or("Metadata");
    if !matches!(include, "None" | "Metadata" | "Object") {
        return Err(ApiError::bad_request(format!(
            "includeObject={include} is not one of None, Metadata, Object"
        )));
    }
    let columns: Vec<Value> = COLUMNS
        .iter()
        .map(|(name, format, description)| {
            json!({"name": name, "type": "string", "format": format,
                   "description": description, "priority": 0})
        })
        .collect();
    let rows: Vec<Value> = keys
        .iter()
        .map(|k| {
            let mut row = json!({"cells": cells(k, now)});
            let object = row_object(k, include, version);
            if !object.is_null() {
                row["object"] = object;
            }
            row
        })
        .collect();
    Ok(json!({
        "kind": "Table",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": {},
        "columnDefinitions": columns,
        "rows": rows,
    }))
}
