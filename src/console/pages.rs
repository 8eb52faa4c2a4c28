//! The console's routes. Reads are GETs; every change is a form POST that the guard has
//! checked (session, origin, CSRF). A POST that mints a token answers with the page that shows
//! it, so the token is never kept on the server nor put in a URL; other changes redirect back
//! to the list (303), so a reload repeats nothing.

use std::sync::Arc;
use std::time::Duration;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse as _, Redirect, Response};
use base64::Engine as _;
use http::StatusCode;
use jiff::Timestamp;
use kube::config::AuthInfo;
use serde::Deserialize;

use super::App;
use super::backend::{BackendError, KeyBackend, KeyPatch};
use super::security::random_secret;
use super::views::{
    Base, CreateForm, CreatePage, DeletePage, Download, EditPage, Errors, ListPage, RegeneratePage,
    RevealPage, Row, RowError, describe, page,
};
use crate::api::types::{AccessKey, AccessKeySpec, Scope};
use crate::keystore::lifecycle::{Expires, parse_duration};
use crate::kubeconfig::{self, ClusterInfo};

type AppState<B> = State<Arc<App<B>>>;

fn base<B: KeyBackend>(app: &App<B>, title: &str) -> Base {
    Base {
        title: title.to_owned(),
        csrf: app.session.csrf().to_owned(),
        about: app.backend.about(),
    }
}

/// Back to the list, saying what was done to which key.
fn done(what: &str, key: &AccessKey) -> Response {
    let label: String = form_urlencoded::byte_serialize(key.spec.display_name.as_bytes()).collect();
    Redirect::to(&format!("/?done={what}&key={label}")).into_response()
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    done: String,
    #[serde(default)]
    key: String,
}

/// `GET /`: the keys, filtered by `q` and `state`.
pub async fn list<B: KeyBackend>(State(app): AppState<B>, Query(q): Query<ListQuery>) -> Response {
    render_list(&app, q, None).await
}

/// The list; `refused` puts a message in one key's row (or above the list) with its status.
async fn render_list<B: KeyBackend>(
    app: &App<B>,
    q: ListQuery,
    refused: Option<(StatusCode, RowError)>,
) -> Response {
    let now = Timestamp::now();
    let (keys, error, mut code) = match app.backend.list().await {
        Ok(keys) => (keys, None, StatusCode::OK),
        Err(e) => (Vec::new(), Some(describe(&e)), e.code),
    };
    let state = match q.state.as_str() {
        s @ ("active" | "disabled" | "expired") => s.to_owned(),
        _ => String::new(),
    };
    let rows: Vec<Row> = keys
        .iter()
        .map(|k| {
            let mut r = Row::new(k, now);
            r.shown = r.matches(&q.q, &state);
            r
        })
        .collect();
    let flash = match q.done.as_str() {
        "updated" => Some(format!("Key “{}” updated.", q.key)),
        "disabled" => Some(format!(
            "Key “{}” deactivated: it no longer authenticates until activated again.",
            q.key
        )),
        "enabled" => Some(format!("Key “{}” activated.", q.key)),
        "deleted" => Some(format!("Key “{}” deleted.", q.key)),
        _ => None,
    };
    let (error, row_error) = match refused {
        Some((c, r)) if rows.iter().any(|row| row.name == r.name) => {
            code = c;
            (error, Some(r))
        }
        Some((c, r)) => {
            code = c;
            (Some(r.message), None)
        }
        None => (error, None),
    };
    let t = ListPage {
        base: base(app, "Access keys"),
        shown: rows.iter().filter(|r| r.shown).count(),
        rows,
        q: q.q,
        state,
        flash,
        error,
        row_error,
    };
    page(code, &t)
}

/// A key that could not be read: the list, with why above it.
async fn failed<B: KeyBackend>(app: &App<B>, name: &str, e: &BackendError) -> Response {
    let refused = RowError {
        name: name.to_owned(),
        message: describe(e),
    };
    render_list(app, ListQuery::default(), Some((e.code, refused))).await
}

/// `GET /keys/new`.
pub async fn new_form<B: KeyBackend>(State(app): AppState<B>) -> Response {
    let form = CreateForm {
        rights: "view".to_owned(),
        nonce: random_secret(),
        ..CreateForm::default()
    };
    create_page(&app, form, Errors::default(), StatusCode::OK)
}

fn create_page<B: KeyBackend>(
    app: &App<B>,
    form: CreateForm,
    errors: Errors,
    code: StatusCode,
) -> Response {
    let t = CreatePage {
        base: base(app, "Create a key"),
        form,
        errors,
    };
    page(code, &t)
}

/// The AccessKey `form` asks for, or what is wrong with it.
fn spec_of(form: &CreateForm, now: Timestamp) -> Result<AccessKeySpec, Errors> {
    let (role, inherit_creator) = match form.rights.as_str() {
        r @ ("admin" | "edit" | "view") => (Some(r.to_owned()), false),
        "none" => (None, false),
        "inherit" => (None, true),
        _ => return Err(Errors::on("rights", "choose what the key may do")),
    };
    let namespaces: Vec<String> = form
        .namespaces
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let expiration = match form.expires.trim() {
        "" => None,
        text => {
            let e: Expires = text.parse().map_err(|m| Errors::on("expires", m))?;
            // Whether it is in the future is the store's to say, as the API does.
            let at = e
                .resolve(now)
                .map_err(|m| Errors::on("expires", m.to_string()))?;
            Some(at.to_string())
        }
    };
    Ok(AccessKeySpec {
        display_name: form.name.trim().to_owned(),
        description: form.description.trim().to_owned(),
        role,
        inherit_creator,
        scope: Scope {
            namespaces,
            rules: Vec::new(),
        },
        expiration,
        ..AccessKeySpec::default()
    })
}

/// The answer to a form sent twice (a reload of the page that showed a token).
fn already_sent() -> Errors {
    Errors::form(
        "This form was already sent, and its token was shown once. Find the key in the list \
         (regenerate it if the token is lost), or start again from the list.",
    )
}

/// `POST /keys`: creates the key and shows its token, once.
pub async fn create<B: KeyBackend>(
    State(app): AppState<B>,
    Form(form): Form<CreateForm>,
) -> Response {
    let spec = match spec_of(&form, Timestamp::now()) {
        Ok(s) => s,
        Err(errors) => {
            return create_page(&app, form, errors, StatusCode::UNPROCESSABLE_ENTITY);
        }
    };
    if !app.reserve(&form.nonce) {
        return create_page(&app, form, already_sent(), StatusCode::CONFLICT);
    }
    match app.backend.create(spec).await {
        Ok(key) => reveal(&app, key, "Key created"),
        Err(e) => {
            app.release(&form.nonce);
            create_page(&app, form, Errors::from_backend(&e), e.code)
        }
    }
}

/// A kubeconfig for the key: the cluster the console was told about, the token inline.
fn download(app_cluster: &super::ClusterTarget, key: &AccessKey, token: &str) -> Option<Download> {
    let user = format!("keygate-{}", key.name());
    let kc = kubeconfig::single(
        &ClusterInfo {
            name: &app_cluster.name,
            server: &app_cluster.server,
            ca_pem: app_cluster.ca_pem.as_deref(),
        },
        &user,
        AuthInfo {
            token: Some(token.to_owned().into()),
            ..AuthInfo::default()
        },
    );
    let yaml = kubeconfig::to_yaml(&kc).ok()?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(yaml);
    Some(Download {
        file: format!("{user}.kubeconfig"),
        href: format!("data:application/yaml;base64,{b64}"),
    })
}

/// The one page that shows a token: built from the API's answer, sent, forgotten.
fn reveal<B: KeyBackend>(app: &App<B>, key: AccessKey, heading: &str) -> Response {
    let status = key.status.clone().unwrap_or_default();
    let Some(token) = status.token else {
        let e = BackendError::new(
            StatusCode::BAD_GATEWAY,
            "the store answered without a token; regenerate the key to get one",
        );
        return page(
            e.code,
            &RevealPage {
                base: base(app, heading),
                heading: describe(&e),
                key: Row::new(&key, Timestamp::now()),
                token: String::new(),
                old_secret_until: None,
                kubeconfig: None,
            },
        );
    };
    let kubeconfig = app.cluster.as_ref().and_then(|c| download(c, &key, &token));
    let t = RevealPage {
        base: base(app, heading),
        heading: heading.to_owned(),
        old_secret_until: status.previous_secret_expiration,
        key: Row::new(&key, Timestamp::now()),
        token,
        kubeconfig,
    };
    page(StatusCode::OK, &t)
}

/// `GET /keys/{name}/edit`.
pub async fn edit_form<B: KeyBackend>(
    State(app): AppState<B>,
    Path(name): Path<String>,
) -> Response {
    match app.backend.get(&name).await {
        Ok(k) => edit_page(&app, &k, None, Errors::default(), StatusCode::OK),
        Err(e) => failed(&app, &name, &e).await,
    }
}

fn edit_page<B: KeyBackend>(
    app: &App<B>,
    key: &AccessKey,
    typed: Option<EditForm>,
    errors: Errors,
    code: StatusCode,
) -> Response {
    let typed = typed.unwrap_or_else(|| EditForm {
        name: key.spec.display_name.clone(),
        description: key.spec.description.clone(),
    });
    let t = EditPage {
        base: base(app, "Edit a key"),
        key: Row::new(key, Timestamp::now()),
        name: typed.name,
        description: typed.description,
        errors,
    };
    page(code, &t)
}

#[derive(Debug, Deserialize)]
pub struct EditForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
}

/// `POST /keys/{name}/edit`: a merge patch of displayName and description.
pub async fn edit<B: KeyBackend>(
    State(app): AppState<B>,
    Path(name): Path<String>,
    Form(form): Form<EditForm>,
) -> Response {
    let patch = KeyPatch {
        display_name: Some(form.name.trim().to_owned()),
        description: Some(form.description.trim().to_owned()),
        disabled: None,
    };
    match app.backend.patch(&name, patch).await {
        Ok(k) => done("updated", &k),
        Err(e) => match app.backend.get(&name).await {
            Ok(k) => edit_page(&app, &k, Some(form), Errors::from_backend(&e), e.code),
            Err(_) => failed(&app, &name, &e).await,
        },
    }
}

/// `GET /keys/{name}/regenerate`.
pub async fn regenerate_form<B: KeyBackend>(
    State(app): AppState<B>,
    Path(name): Path<String>,
) -> Response {
    match app.backend.get(&name).await {
        Ok(k) => {
            let fresh = (String::new(), random_secret());
            regenerate_page(&app, &k, fresh, Errors::default(), StatusCode::OK)
        }
        Err(e) => failed(&app, &name, &e).await,
    }
}

/// The regenerate form, with what was typed (grace period, submission ID).
fn regenerate_page<B: KeyBackend>(
    app: &App<B>,
    key: &AccessKey,
    (grace, nonce): (String, String),
    errors: Errors,
    code: StatusCode,
) -> Response {
    let t = RegeneratePage {
        base: base(app, "Regenerate a key"),
        key: Row::new(key, Timestamp::now()),
        grace,
        nonce,
        errors,
    };
    page(code, &t)
}

#[derive(Debug, Deserialize)]
pub struct RegenerateForm {
    #[serde(default)]
    grace: String,
    #[serde(default)]
    nonce: String,
}

/// `POST /keys/{name}/regenerate`: a new secret, shown once; the old one works for the grace
/// period, if any.
pub async fn regenerate<B: KeyBackend>(
    State(app): AppState<B>,
    Path(name): Path<String>,
    Form(form): Form<RegenerateForm>,
) -> Response {
    let grace = match form.grace.trim() {
        "" => Ok(None),
        g => parse_duration(g).map(|d| Some(whole_seconds(d))),
    };
    let (refusal, code) = match grace {
        Err(m) => (Errors::on("grace", m), StatusCode::UNPROCESSABLE_ENTITY),
        Ok(_) if !app.reserve(&form.nonce) => (already_sent(), StatusCode::CONFLICT),
        Ok(grace) => match app.backend.regenerate(&name, grace).await {
            Ok(key) => {
                let heading = format!("New token for {}", key.spec.display_name);
                return reveal(&app, key, &heading);
            }
            Err(e) => {
                app.release(&form.nonce);
                (Errors::from_backend(&e), e.code)
            }
        },
    };
    match app.backend.get(&name).await {
        Ok(k) => regenerate_page(&app, &k, (form.grace, form.nonce), refusal, code),
        Err(e) => failed(&app, &name, &e).await,
    }
}

fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// `GET /keys/{name}/delete`: asks first.
pub async fn delete_form<B: KeyBackend>(
    State(app): AppState<B>,
    Path(name): Path<String>,
) -> Response {
    match app.backend.get(&name).await {
        Ok(k) => delete_page(&app, &k, Errors::default(), StatusCode::OK),
        Err(e) => failed(&app, &name, &e).await,
    }
}

fn delete_page<B: KeyBackend>(
    app: &App<B>,
    key: &AccessKey,
    errors: Errors,
    code: StatusCode,
) -> Response {
    let t = DeletePage {
        base: base(app, "Delete a key"),
        key: Row::new(key, Timestamp::now()),
        errors,
    };
    page(code, &t)
}

/// `POST /keys/{name}/delete`.
pub async fn delete<B: KeyBackend>(State(app): AppState<B>, Path(name): Path<String>) -> Response {
    let key = match app.backend.get(&name).await {
        Ok(k) => k,
        Err(e) => return failed(&app, &name, &e).await,
    };
    match app.backend.delete(&name).await {
        Ok(()) => done("deleted", &key),
        Err(e) => delete_page(&app, &key, Errors::from_backend(&e), e.code),
    }
}

/// `POST /keys/{name}/disable`.
pub async fn disable<B: KeyBackend>(State(app): AppState<B>, Path(name): Path<String>) -> Response {
    set_disabled(&app, &name, true).await
}

/// `POST /keys/{name}/enable`.
pub async fn enable<B: KeyBackend>(State(app): AppState<B>, Path(name): Path<String>) -> Response {
    set_disabled(&app, &name, false).await
}

async fn set_disabled<B: KeyBackend>(app: &App<B>, name: &str, disabled: bool) -> Response {
    let patch = KeyPatch {
        disabled: Some(disabled),
        ..KeyPatch::default()
    };
    match app.backend.patch(name, patch).await {
        Ok(k) => done(if disabled { "disabled" } else { "enabled" }, &k),
        Err(e) => failed(app, name, &e).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(rights: &str, namespaces: &str, expires: &str) -> CreateForm {
        CreateForm {
            name: " ci ".into(),
            rights: rights.into(),
            namespaces: namespaces.into(),
            expires: expires.into(),
            ..CreateForm::default()
        }
    }

    #[test]
    fn the_create_form_becomes_an_accesskey_spec() {
        let now: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        let s = spec_of(&form("edit", "apps, web  batch", "1d"), now).unwrap();
        assert_eq!(s.display_name, "ci");
        assert_eq!(s.role.as_deref(), Some("edit"));
        assert_eq!(s.scope.namespaces, vec!["apps", "web", "batch"]);
        assert_eq!(s.expiration.as_deref(), Some("2030-01-02T00:00:00Z"));
        let s = spec_of(&form("inherit", "", ""), now).unwrap();
        assert!(s.inherit_creator && s.role.is_none() && s.scope.is_empty());
        // A past time is the store's to refuse (with the API's message), not the form's.
        let s = spec_of(&form("view", "", "2020-01-01T00:00:00Z"), now).unwrap();
        assert!(s.expiration.is_some());
        let e = spec_of(&form("view", "", "next week"), now).unwrap_err();
        assert!(e.get("expires").unwrap().contains("duration"));
        let e = spec_of(&form("root", "", ""), now).unwrap_err();
        assert!(e.get("rights").is_some());
    }
}
