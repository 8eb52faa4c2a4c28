//! The AccessKey API (`keygate.dev/v1alpha1`, `accesskeys`), served behind kube-apiserver's
//! aggregation layer: any authenticated user mints and manages their own keys, bounded by the
//! cluster's RBAC, not by the client.
//!
//! The listener authenticates kube-apiserver's front proxy (see `requestheader`) and hands each
//! request here with the [`Caller`] it named. kube-apiserver has authorized the request with
//! RBAC before proxying it; who may see and do what on top of that is [`actor`] and [`access`].
//! Records are Secrets in the key namespace, read and written with keygate's own client.
//!
//! Served: discovery ([`discovery`]); `list`/`get` as JSON or kubectl's Table ([`table`]);
//! `create` ([`create`]); `patch` ([`patch`]); `delete` and the `regenerate` subresource
//! ([`ops`]). Not served: `watch`, `update` (PUT), `deletecollection`. A typed client for the
//! CLI and the console is [`client`].

pub mod access;
pub mod actor;
pub mod client;
mod create;
pub mod discovery;
mod ops;
mod patch;
pub mod request;
mod select;
pub mod served;
pub mod status;
pub mod table;
pub mod types;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode};
use jiff::Timestamp;

use self::access::Rights;
use self::actor::Actor;
use self::request::{Format, Query};
use self::status::{ApiError, json_response};
use self::types::{API_VERSION, GROUP, PLURAL};
use crate::http::HttpResponse;
use crate::keystore::{KeyStore, KubeKeys};

/// The user kube-apiserver authenticated, as its front proxy passed them on (`X-Remote-User`,
/// `X-Remote-Group`, `X-Remote-Extra-*`). kube-apiserver 1.20 sends no uid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    pub username: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// The `keygate serve` flag that sets [`ApiSettings::allow_inherit_for_masters`] (named in
/// refusals).
pub const FLAG_ALLOW_INHERIT_MASTERS: &str = "--allow-inherit-for-masters";
/// The flag that sets [`ApiSettings::allow_inherit_for_service_accounts`].
pub const FLAG_ALLOW_INHERIT_SA: &str = "--allow-inherit-for-service-accounts";

/// What the API needs to run (the library's settings; the CLI converts its flags into them).
/// [`ApiSettings::new`] gives the defaults noted on each field.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Where key records live (`--namespace`). Never a valid key scope.
    pub namespace: String,
    /// The username prefix of keys (`--user-prefix`).
    pub user_prefix: String,
    /// Let creators in `system:masters` mint `inheritCreator` keys (default false: RBAC cannot
    /// take their rights away, so such a key could never be reduced).
    pub allow_inherit_for_masters: bool,
    /// Let ServiceAccounts mint `inheritCreator` keys (default false: the key would outlive the
    /// pod whose token made it).
    pub allow_inherit_for_service_accounts: bool,
    /// `--max-key-lifetime`: a key without expiration gets now + this; a later one is `422`.
    /// Default none.
    pub max_key_lifetime: Option<Duration>,
    /// How long a SubjectAccessReview may take before the request fails with `503`
    /// (default 5 s).
    pub review_timeout: Duration,
    /// How long "is this caller a key admin" is remembered per caller (default 5 s).
    pub admin_cache_ttl: Duration,
    /// Seals every record the API writes (`--record-signing-key`); default none.
    pub sealer: Option<Arc<crate::seal::Sealer>>,
}

impl ApiSettings {
    pub fn new(namespace: impl Into<String>, user_prefix: impl Into<String>) -> Self {
        ApiSettings {
            namespace: namespace.into(),
            user_prefix: user_prefix.into(),
            allow_inherit_for_masters: false,
            allow_inherit_for_service_accounts: false,
            max_key_lifetime: None,
            review_timeout: Duration::from_secs(5),
            admin_cache_ttl: Duration::from_secs(5),
            sealer: None,
        }
    }
}

/// The API's request handler.
pub struct AccessKeyApi {
    keys: KubeKeys,
    store: KeyStore,
    rights: Rights,
    settings: ApiSettings,
}

/// A successful answer before it is written.
pub(crate) struct Answer {
    pub code: StatusCode,
    pub body: serde_json::Value,
    /// `Warning` headers (unknown fields under `fieldValidation=Warn`).
    pub warnings: Vec<String>,
}

impl Answer {
    pub fn ok(body: serde_json::Value) -> Self {
        Answer {
            code: StatusCode::OK,
            body,
            warnings: Vec::new(),
        }
    }
}

/// What one request is about, once routed.
enum Route<'p> {
    Groups,
    Group,
    Resources,
    Collection,
    Item(&'p str),
    Regenerate(&'p str),
}

fn route(path: &str) -> Option<Route<'_>> {
    let rest = path.trim_end_matches('/');
    if rest == "/apis" {
        return Some(Route::Groups);
    }
    let rest = rest.strip_prefix("/apis/")?.strip_prefix(GROUP)?;
    if rest.is_empty() {
        return Some(Route::Group);
    }
    let rest = rest.strip_prefix('/')?.strip_prefix(types::VERSION)?;
    if rest.is_empty() {
        return Some(Route::Resources);
    }
    let rest = rest.strip_prefix('/')?.strip_prefix(PLURAL)?;
    if rest.is_empty() {
        return Some(Route::Collection);
    }
    let rest = rest.strip_prefix('/')?;
    match rest.split_once('/') {
        None => Some(Route::Item(rest)),
        Some((name, "regenerate")) => Some(Route::Regenerate(name)),
        Some(_) => None,
    }
}

impl AccessKeyApi {
    pub fn new(client: kube::Client, settings: ApiSettings) -> Self {
        let keys = KubeKeys::new(client.clone(), settings.namespace.clone())
            .with_sealer(settings.sealer.clone());
        AccessKeyApi {
            store: KeyStore::Kube(keys.clone()),
            keys,
            rights: Rights::new(client, settings.review_timeout, settings.admin_cache_ttl),
            settings,
        }
    }

    /// Answers one request (body already read, within the listener's limits) for `caller`.
    pub async fn handle(&self, req: Request<Bytes>, caller: Caller) -> HttpResponse {
        let pretty = Query::parse(req.uri().query()).is_ok_and(|q| q.pretty);
        match self.answer(req, caller).await {
            Ok(a) => {
                let mut r = json_response(a.code, &a.body, pretty);
                for w in a.warnings {
                    // A warning is ASCII text we wrote; an unusable one is dropped, not sent.
                    let text = format!("299 - {}", serde_json::Value::String(w));
                    if let Ok(v) = HeaderValue::from_str(&text) {
                        r.headers_mut().append("warning", v);
                    }
                }
                r
            }
            Err(e) => {
                tracing::debug!(code = e.code.as_u16(), reason = e.reason, message = %e.message, "AccessKey API refused");
                e.response()
            }
        }
    }

    async fn answer(&self, req: Request<Bytes>, caller: Caller) -> Result<Answer, ApiError> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path();
        let query = Query::parse(parts.uri.query())?;
        let Some(route) = route(path) else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!(
                    "{path} is not served here: keygate serves /apis/{API_VERSION}/{PLURAL} \
                     (no OpenAPI document)"
                ),
            ));
        };
        let method = &parts.method;
        let read = matches!(*method, Method::GET | Method::HEAD);
        match route {
            Route::Groups if read => return Ok(Answer::ok(to_json(&discovery::group_list()))),
            Route::Group if read => return Ok(Answer::ok(to_json(&discovery::api_group()))),
            Route::Resources if read => {
                return Ok(Answer::ok(to_json(&discovery::resource_list())));
            }
            Route::Groups | Route::Group | Route::Resources => {
                return Err(not_allowed(method, "discovery documents are read with GET"));
            }
            _ => {}
        }
        if query.watch {
            return Err(not_allowed(
                method,
                "watch is not served for accesskeys; list them again instead",
            ));
        }
        let format = if read {
            request::negotiate(&parts.headers)?
        } else {
            Format::Json
        };
        let now = Timestamp::now();
        let key_admin = self.rights.is_key_admin(&caller).await?;
        let actor = Actor::resolve(
            caller,
            key_admin,
            &self.store,
            &self.settings.user_prefix,
            now,
        )
        .await?;
        let (verb, sub, name) = match (&route, method.clone()) {
            (Route::Collection, Method::POST) => ("create", "", ""),
            (Route::Collection, _) => ("list", "", ""),
            (Route::Item(n), Method::GET | Method::HEAD) => ("get", "", *n),
            (Route::Item(n), Method::DELETE) => ("delete", "", *n),
            (Route::Item(n), _) => ("patch", "", *n),
            (Route::Regenerate(n), _) => ("create", "regenerate", *n),
            _ => ("get", "", ""),
        };
        actor.check_scope(verb, sub, name, &self.store, now).await?;
        let ctx = ops::Ctx {
            api: self,
            actor: &actor,
            query: &query,
            format,
            now,
        };
        match (route, method.clone()) {
            (Route::Collection, Method::GET | Method::HEAD) => ctx.list().await,
            (Route::Collection, Method::POST) => ctx.create(&parts.headers, &body).await,
            (Route::Item(n), Method::GET | Method::HEAD) => ctx.get(n).await,
            (Route::Item(n), Method::PATCH) => ctx.patch(n, &parts.headers, &body).await,
            (Route::Item(n), Method::DELETE) => ctx.delete(n).await,
            (Route::Regenerate(n), Method::POST) => ctx.regenerate(n, &body).await,
            (Route::Collection, _) => Err(not_allowed(
                method,
                "accesskeys are listed with GET and created with POST",
            )),
            (Route::Item(_), Method::PUT) => Err(not_allowed(
                method,
                "update (PUT) is not served: change a key with PATCH (kubectl patch or edit)",
            )),
            (Route::Item(_), _) => Err(not_allowed(
                method,
                "an AccessKey is read with GET, changed with PATCH and removed with DELETE",
            )),
            (_, _) => Err(not_allowed(
                method,
                "regenerate is a POST to accesskeys/NAME/regenerate",
            )),
        }
    }
}

fn not_allowed(method: &Method, what: &str) -> ApiError {
    ApiError::method_not_allowed(format!("{method} is not allowed here: {what}"))
}

fn to_json(v: &impl serde::Serialize) -> serde_json::Value {
    // Our own types always serialize.
    serde_json::to_value(v).unwrap_or_default()
}
