//! The console's pages: askama templates (`src/console/templates`, compiled into the binary
//! and HTML-escaped by default) and the row model the key list shows.

use askama::Template;
use axum::response::{Html, IntoResponse, Response};
use http::StatusCode;
use jiff::Timestamp;

use super::backend::{About, BackendError};
use crate::age::short;
use crate::api::types::{AccessKey, AccessKeyStatus};

/// What every page around the console's content needs.
pub struct Base {
    pub title: String,
    pub csrf: String,
    pub about: About,
}

/// One key as the list shows it.
#[derive(Debug, Clone)]
pub struct Row {
    /// `metadata.name`: the path segment of the key's actions.
    pub name: String,
    pub id: String,
    pub display_name: String,
    pub description: String,
    pub username: String,
    pub owner: String,
    pub role: String,
    pub scope: String,
    pub state: &'static str,
    pub state_class: &'static str,
    pub disabled: bool,
    /// While an old secret still works after a regenerate.
    pub old_secret_until: Option<String>,
    pub expires: String,
    pub expires_at: String,
    pub last_used: String,
    pub last_used_at: String,
    pub age: String,
    pub created_at: String,
    /// Lowercased text the search matches.
    pub search: String,
    /// Whether the row passes the search (rows that do not are sent hidden, for the script).
    pub shown: bool,
}

/// A time of the API object (RFC 3339 text), if it is one.
fn time(t: Option<&String>) -> Option<Timestamp> {
    t.and_then(|t| t.parse().ok())
}

impl Row {
    pub fn new(k: &AccessKey, now: Timestamp) -> Self {
        let spec = &k.spec;
        // A key without a status is one the store has not described: shown with empty facts
        // rather than not at all, so it can still be deleted.
        let empty = AccessKeyStatus::default();
        let status = k.status.as_ref().unwrap_or(&empty);
        let role = if spec.inherit_creator {
            "inherits creator".to_owned()
        } else {
            spec.role.clone().unwrap_or_else(|| "none".to_owned())
        };
        let mut scope_text = if spec.scope.namespaces.is_empty() {
            "cluster".to_owned()
        } else {
            spec.scope.namespaces.join(", ")
        };
        if !spec.scope.rules.is_empty() {
            scope_text.push_str(&format!(" +{} rules", spec.scope.rules.len()));
        }
        let secs = |t: Timestamp| t.as_second() - now.as_second();
        let (state, state_class) = match status.state.as_str() {
            "Disabled" => ("Disabled", "disabled"),
            "Expired" => ("Expired", "expired"),
            _ => ("Active", "active"),
        };
        let expires = match (state, time(spec.expiration.as_ref())) {
            ("Expired", _) => "expired".to_owned(),
            (_, None) => "never".to_owned(),
            (_, Some(t)) => format!("in {}", short(secs(t))),
        };
        let last_used = time(status.last_used.as_ref());
        let created = time(status.created_at.as_ref());
        let mut row = Row {
            name: k.name().to_owned(),
            id: status.id.clone(),
            display_name: spec.display_name.clone(),
            description: spec.description.clone(),
            username: status.username.clone(),
            owner: status.owner.clone(),
            role,
            scope: scope_text,
            state,
            state_class,
            disabled: spec.disabled,
            old_secret_until: status.previous_secret_expiration.clone(),
            expires,
            expires_at: spec.expiration.clone().unwrap_or_default(),
            last_used: last_used
                .map(|t| format!("{} ago", short(secs(t))))
                .unwrap_or_else(|| "never".to_owned()),
            last_used_at: status.last_used.clone().unwrap_or_default(),
            age: created
                .map(|t| short(secs(t)))
                .unwrap_or_else(|| "-".to_owned()),
            created_at: status.created_at.clone().unwrap_or_default(),
            search: String::new(),
            shown: true,
        };
        row.search = [
            &row.display_name,
            &row.description,
            &row.id,
            &row.owner,
            &row.role,
            &row.scope,
            row.state,
        ]
        .map(|s| s.to_lowercase())
        .join(" ");
        row
    }

    /// Whether the row matches the search text `q` and the state filter (`""` = any).
    pub fn matches(&self, q: &str, state: &str) -> bool {
        let q = q.trim().to_lowercase();
        (state.is_empty() || self.state_class == state)
            && q.split_whitespace().all(|w| self.search.contains(w))
    }
}

/// Error messages of a form: one for the form, one per control.
#[derive(Debug, Default)]
pub struct Errors {
    pub general: Option<String>,
    fields: Vec<(&'static str, String)>,
}

/// The form control an API field belongs to.
fn control(field: &str) -> Option<&'static str> {
    let f = field.strip_prefix("spec.").unwrap_or(field);
    let head = f.split(['.', '[']).next().unwrap_or(f);
    Some(match head {
        "displayName" => "name",
        "description" => "description",
        "role" | "inheritCreator" | "groups" => "rights",
        "scope" => "namespaces",
        "expiration" => "expires",
        "gracePeriodSeconds" => "grace",
        _ => return None,
    })
}

impl Errors {
    /// An error about one control.
    pub fn on(control: &'static str, message: impl Into<String>) -> Self {
        Errors {
            general: None,
            fields: vec![(control, message.into())],
        }
    }

    /// An error about the whole form.
    pub fn form(message: impl Into<String>) -> Self {
        Errors {
            general: Some(message.into()),
            fields: Vec::new(),
        }
    }

    /// The API's refusal, next to the control it is about (else for the whole form).
    pub fn from_backend(e: &BackendError) -> Self {
        match e.field.as_deref().and_then(control) {
            Some(c) => Errors::on(c, e.message.clone()),
            None => Errors::form(describe(e)),
        }
    }

    pub fn get(&self, control: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(c, _)| *c == control)
            .map(|(_, m)| m.as_str())
    }
}

/// A refusal in words, with what kind it is.
pub fn describe(e: &BackendError) -> String {
    let kind = match e.code {
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::CONFLICT => "Conflict",
        StatusCode::UNPROCESSABLE_ENTITY => "Not valid",
        StatusCode::UNAUTHORIZED => "Not signed in",
        _ => "Failed",
    };
    format!("{kind} ({}): {}", e.code.as_u16(), e.message)
}

#[derive(Template)]
#[template(path = "list.html")]
pub struct ListPage {
    pub base: Base,
    pub rows: Vec<Row>,
    pub shown: usize,
    pub q: String,
    pub state: String,
    pub flash: Option<String>,
    pub error: Option<String>,
    /// A refused row action, shown in the key's row.
    pub row_error: Option<RowError>,
}

/// Why an action on a key of the list (deactivate, activate) was refused.
pub struct RowError {
    pub name: String,
    pub message: String,
}

/// The create form's values, as typed.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// admin, edit, view, none or inherit.
    #[serde(default)]
    pub rights: String,
    #[serde(default)]
    pub namespaces: String,
    #[serde(default)]
    pub expires: String,
    #[serde(default)]
    pub nonce: String,
}

#[derive(Template)]
#[template(path = "create.html")]
pub struct CreatePage {
    pub base: Base,
    pub form: CreateForm,
    pub errors: Errors,
}

#[derive(Template)]
#[template(path = "edit.html")]
pub struct EditPage {
    pub base: Base,
    pub key: Row,
    pub name: String,
    pub description: String,
    pub errors: Errors,
}

#[derive(Template)]
#[template(path = "regenerate.html")]
pub struct RegeneratePage {
    pub base: Base,
    pub key: Row,
    pub grace: String,
    pub nonce: String,
    pub errors: Errors,
}

#[derive(Template)]
#[template(path = "delete.html")]
pub struct DeletePage {
    pub base: Base,
    pub key: Row,
    pub errors: Errors,
}

/// A kubeconfig to download, inline in the page as a `data:` URL.
pub struct Download {
    pub file: String,
    pub href: String,
}

#[derive(Template)]
#[template(path = "reveal.html")]
pub struct RevealPage {
    pub base: Base,
    pub heading: String,
    pub key: Row,
    pub token: String,
    pub old_secret_until: Option<String>,
    pub kubeconfig: Option<Download>,
}

#[derive(Template)]
#[template(path = "refused.html")]
struct RefusedPage<'a> {
    code: u16,
    message: &'a str,
}

#[derive(Template)]
#[template(path = "enter.html")]
struct EnterPage;

/// `t` rendered with `status`.
pub fn page(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot render a console page");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot render this page").into_response()
        }
    }
}

/// The page for a request the guard refuses.
pub fn refused(status: StatusCode, message: &str) -> Response {
    let t = RefusedPage {
        code: status.as_u16(),
        message,
    };
    page(status, &t)
}

/// The answer to the session link: it sets the cookie, then moves on to the clean URL.
pub fn enter() -> Response {
    page(StatusCode::OK, &EnterPage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::{AccessKeySpec, Scope};

    #[test]
    fn rows_say_role_scope_and_times_in_words() {
        let now: Timestamp = "2030-01-10T00:00:00Z".parse().unwrap();
        let mut k = AccessKey {
            spec: AccessKeySpec {
                display_name: "CI deployer".into(),
                inherit_creator: true,
                scope: Scope {
                    namespaces: vec!["apps".into(), "web".into()],
                    rules: vec![Default::default()],
                },
                expiration: Some("2030-02-09T00:00:00Z".into()),
                ..AccessKeySpec::default()
            },
            ..AccessKey::default()
        };
        k.status = Some(AccessKeyStatus {
            state: "Active".into(),
            last_used: Some("2030-01-09T23:55:00Z".into()),
            ..AccessKeyStatus::default()
        });
        let r = Row::new(&k, now);
        assert_eq!(r.role, "inherits creator");
        assert_eq!(r.scope, "apps, web +1 rules");
        assert_eq!(r.expires, "in 30d");
        assert_eq!(r.last_used, "5m ago");
        assert_eq!(r.age, "-");
        assert!(r.matches("ci APPS", ""));
        assert!(r.matches("", "active"));
        assert!(!r.matches("", "disabled"));
        assert!(!r.matches("nope", ""));
    }

    #[test]
    fn api_fields_land_next_to_their_control() {
        let e = BackendError::invalid("spec.scope.namespaces[0]", "bad");
        assert_eq!(Errors::from_backend(&e).get("namespaces"), Some("bad"));
        let e = BackendError::invalid("spec.inheritCreator", "no");
        assert_eq!(Errors::from_backend(&e).get("rights"), Some("no"));
        let e = BackendError::new(StatusCode::FORBIDDEN, "you may not bind view");
        let errors = Errors::from_backend(&e);
        assert_eq!(
            errors.general.as_deref(),
            Some("Not allowed (403): you may not bind view")
        );
    }
}
