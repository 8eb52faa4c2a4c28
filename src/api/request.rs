//! What a request asks besides its path: query parameters kubectl sends (`dryRun`,
//! `fieldManager`, `fieldValidation`, `pretty`, selectors, `includeObject`), the answer format
//! (`Accept`: JSON or kubectl's Table), and reading a JSON body with unknown fields handled as
//! `fieldValidation` says.

use http::HeaderMap;
use http::header::{ACCEPT, CONTENT_TYPE};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::status::{ApiError, Cause};

/// How unknown fields in a body are treated (`fieldValidation`; kube-apiserver's default is
/// `Warn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

/// The query parameters that matter here. Others (`fieldManager`, `limit`, `timeout`,
/// `propagationPolicy`...) are accepted and have nothing to change.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub dry_run: bool,
    pub field_validation: FieldValidation,
    pub pretty: bool,
    pub field_selector: Option<String>,
    pub label_selector: Option<String>,
    /// `includeObject` of a Table: `None`, `Metadata` (default) or `Object`.
    pub include_object: Option<String>,
    pub watch: bool,
}

fn decode(s: &str) -> String {
    // Query values are percent-encoded, `+` meaning space (form encoding, as Go clients send).
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Query {
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut q = Query::default();
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = decode(v);
            match k {
                "dryRun" => match v.as_str() {
                    "All" => q.dry_run = true,
                    "" => {}
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "dryRun={other} is not supported: use dryRun=All (or leave it out)"
                        )));
                    }
                },
                "fieldValidation" => {
                    q.field_validation = match v.as_str() {
                        "Ignore" => FieldValidation::Ignore,
                        "Warn" | "" => FieldValidation::Warn,
                        "Strict" => FieldValidation::Strict,
                        other => {
                            return Err(ApiError::bad_request(format!(
                                "fieldValidation={other} is not one of Ignore, Warn, Strict"
                            )));
                        }
                    }
                }
                "pretty" => q.pretty = v == "true" || v == "1",
                "fieldSelector" => q.field_selector = Some(v).filter(|v| !v.is_empty()),
                "labelSelector" => q.label_selector = Some(v).filter(|v| !v.is_empty()),
                "includeObject" => q.include_object = Some(v),
                "watch" => q.watch = v == "true" || v == "1",
                _ => {}
            }
        }
        Ok(q)
    }
}

/// The answer format the client accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    /// kubectl's server-side printing: `meta.k8s.io` Table in this version (`v1`, `v1beta1`).
    Table(&'static str),
}

/// Picks the first acceptable media range of `Accept`, as kube-apiserver does. kubectl asks
/// `application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;
/// g=meta.k8s.io,application/json`.
pub fn negotiate(headers: &HeaderMap) -> Result<Format, ApiError> {
    let accept = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    if accept.trim().is_empty() {
        return Ok(Format::Json);
    }
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default();
        if !matches!(media, "application/json" | "application/*" | "*/*") {
            continue;
        }
        let (mut as_, mut g, mut v) = ("", "", "");
        for p in parts {
            match p.split_once('=') {
                Some(("as", x)) => as_ = x,
                Some(("g", x)) => g = x,
                Some(("v", x)) => v = x,
                _ => {}
            }
        }
        match (as_, g, v) {
            ("", _, _) => return Ok(Format::Json),
            ("Table", "meta.k8s.io", "v1") => return Ok(Format::Table("v1")),
            ("Table", "meta.k8s.io", "v1beta1") => return Ok(Format::Table("v1beta1")),
            _ => continue,
        }
    }
    Err(ApiError::not_acceptable(format!(
        "none of the formats in Accept ({accept}) is served: ask for application/json, or \
         application/json;as=Table;v=v1;g=meta.k8s.io"
    )))
}

/// The media type of the body, without parameters.
pub fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// The fields each object of an AccessKey (or regenerate) body may have: `*` allows anything
/// below (metadata's own bookkeeping, `status`, which is ignored).
fn known(path: &str) -> Option<&'static [&'static str]> {
    Some(match path {
        "" => &[
            "apiVersion",
            "kind",
            "metadata",
            "spec",
            "status",
            "gracePeriodSeconds",
        ],
        "metadata" => &[
            "name",
            "generateName",
            "namespace",
            "labels",
            "annotations",
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "generation",
            "managedFields",
            "finalizers",
            "ownerReferences",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ],
        "spec" => &[
            "displayName",
            "description",
            "role",
            "inheritCreator",
            "scope",
            "groups",
            "expiration",
            "disabled",
        ],
        "spec.scope" => &["namespaces", "rules"],
        "spec.scope.rules" => &[
            "verbs",
            "apiGroups",
            "resources",
            "resourceNames",
            "nonResourceURLs",
        ],
        _ => return None,
    })
}

/// The unknown fields of `v` (paths like `spec.colour`), sorted.
pub fn unknown_fields(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(v, "", &mut out);
    out.sort();
    out
}

fn walk(v: &Value, path: &str, out: &mut Vec<String>) {
    let Some(fields) = known(path) else { return };
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let child_path = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if fields.contains(&k.as_str()) {
                    walk(child, &child_path, out);
                } else {
                    out.push(child_path);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| walk(i, path, out)),
        _ => {}
    }
}

/// A decoded body and the warnings for its unknown fields (`Warn`).
pub struct Decoded<T> {
    pub value: T,
    pub warnings: Vec<String>,
}

/// Decodes a JSON body into `T`, refusing (`Strict`), reporting (`Warn`) or ignoring unknown
/// fields.
pub fn decode_body<T: DeserializeOwned>(
    raw: &Value,
    validation: FieldValidation,
) -> Result<Decoded<T>, ApiError> {
    let unknown = unknown_fields(raw);
    if validation == FieldValidation::Strict && !unknown.is_empty() {
        return Err(ApiError::invalid(
            None,
            unknown
                .iter()
                .map(|f| Cause {
                    field: f.clone(),
                    message: "unknown field (fieldValidation=Strict); remove it or check its \
                              spelling"
                        .to_owned(),
                })
                .collect(),
        ));
    }
    let value = serde_json::from_value(raw.clone()).map_err(|e| {
        ApiError::bad_request(format!(
            "the body is not a valid AccessKey: {e}; see `kubectl explain` style docs in \
             docs/design.md for the fields"
        ))
    })?;
    let warnings = match validation {
        FieldValidation::Warn => unknown
            .into_iter()
            .map(|f| format!("unknown field {f:?}"))
            .collect(),
        _ => Vec::new(),
    };
    Ok(Decoded { value, warnings })
}

/// Parses a body as JSON; an empty body is `null`.
pub fn json(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_decoded() {
        let q = Query::parse(Some(
            "fieldSelector=metadata.name%3Dabc&labelSelector=a+in+(x)&dryRun=All&pretty=true",
        ))
        .unwrap();
        assert_eq!(q.field_selector.as_deref(), Some("metadata.name=abc"));
        assert_eq!(q.label_selector.as_deref(), Some("a in (x)"));
        assert!(q.dry_run && q.pretty);
        assert!(Query::parse(Some("dryRun=Some")).is_err());
        assert!(Query::parse(Some("fieldValidation=Loose")).is_err());
    }

    #[test]
    fn kubectl_accept_header_gets_a_table() {
        let mut h = HeaderMap::new();
        h.insert(
            ACCEPT,
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
                .parse()
                .unwrap(),
        );
        assert_eq!(negotiate(&h).unwrap(), Format::Table("v1"));
        h.insert(
            ACCEPT,
            "application/json;as=Table;v=v1beta1;g=meta.k8s.io"
                .parse()
                .unwrap(),
        );
        assert_eq!(negotiate(&h).unwrap(), Format::Table("v1beta1"));
        h.insert(ACCEPT, "application/json".parse().unwrap());
        assert_eq!(negotiate(&h).unwrap(), Format::Json);
        h.insert(
            ACCEPT,
            "application/vnd.kubernetes.protobuf".parse().unwrap(),
        );
        assert_eq!(negotiate(&h).unwrap_err().code.as_u16(), 406);
    }

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        let v = serde_json::json!({
            "apiVersion": "x", "metadata": {"generateName": "a", "colour": 1},
            "spec": {"displayName": "a", "scope": {"rules": [{"verbs": [], "verb": 1}]}, "rol": "x"},
            "status": {"anything": 1}
        });
        assert_eq!(
            unknown_fields(&v),
            ["metadata.colour", "spec.rol", "spec.scope.rules.verb"]
        );
    }
}
