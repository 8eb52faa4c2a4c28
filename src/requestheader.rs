//! Front-proxy authentication, as Kubernetes extension API servers do it: kube-apiserver's
//! aggregation layer proxies a request with a client certificate signed by the request-header
//! CA and names the user it authenticated in headers (`X-Remote-User`, `X-Remote-Group`,
//! `X-Remote-Extra-<key>`). Those headers are believed only on a connection whose client
//! certificate chains to that CA and has an allowed common name; the TLS side of that check is
//! in `tls::clients`, this module holds the settings and reads the headers.
//!
//! The settings come from flags (`--requestheader-client-ca` and friends) or, by default, from
//! the ConfigMap `kube-system/extension-apiserver-authentication` that kube-apiserver publishes
//! (read with keygate's own kubeconfig). Either source is read at start, then again every
//! refresh interval by [`spawn_refresher`] (one GET of the ConfigMap, or one read of the CA
//! file): a changed CA or list of names is served to new connections, and a read that fails
//! keeps what was loaded before. Established connections keep the trust they were classified
//! with at their handshake.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{HeaderMap, HeaderName};
use k8s_openapi::api::core::v1::ConfigMap;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::api::Caller;

/// The ConfigMap kube-apiserver writes its front-proxy settings to, and its namespace.
pub const CONFIGMAP: &str = "extension-apiserver-authentication";
pub const CONFIGMAP_NAMESPACE: &str = "kube-system";

/// kube-apiserver's conventional header names (what `kubeadm` and most clusters configure).
pub const DEFAULT_USERNAME_HEADER: &str = "X-Remote-User";
pub const DEFAULT_GROUP_HEADER: &str = "X-Remote-Group";
pub const DEFAULT_EXTRA_PREFIX: &str = "X-Remote-Extra-";

/// How keygate learns whom to trust as the front proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeaderSettings {
    /// `--requestheader-client-ca`: the request-header CA (PEM). With it, the fields below are
    /// used; without it, everything comes from the ConfigMap and they are ignored.
    pub client_ca: Option<PathBuf>,
    /// `--requestheader-allowed-names`: common names a front-proxy certificate may have.
    pub allowed_names: Vec<String>,
    /// `--requestheader-username-headers`: the first of these with a value names the user.
    pub username_headers: Vec<String>,
    /// `--requestheader-group-headers`: every value of each names a group.
    pub group_headers: Vec<String>,
    /// `--requestheader-extra-headers-prefix`: headers starting with one of these carry extra.
    pub extra_prefixes: Vec<String>,
    /// `--requestheader-allow-any-name`: accept an empty list of allowed names, so that every
    /// certificate the request-header CA signed may name any user.
    pub allow_any_name: bool,
}

impl Default for RequestHeaderSettings {
    fn default() -> Self {
        RequestHeaderSettings {
            client_ca: None,
            allowed_names: Vec::new(),
            username_headers: vec![DEFAULT_USERNAME_HEADER.to_owned()],
            group_headers: vec![DEFAULT_GROUP_HEADER.to_owned()],
            extra_prefixes: vec![DEFAULT_EXTRA_PREFIX.to_owned()],
            allow_any_name: false,
        }
    }
}

/// The front-proxy trust in force: the request-header CA, the allowed names and the headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeaderConfig {
    pub client_ca: Vec<CertificateDer<'static>>,
    /// Empty only with `allow_any_name`: then any name is allowed.
    pub allowed_names: Vec<String>,
    pub username_headers: Vec<HeaderName>,
    pub group_headers: Vec<HeaderName>,
    /// Lowercased, as header names are.
    pub extra_prefixes: Vec<String>,
}

/// Messages name the flag or ConfigMap key to fix and carry their cause once.
#[derive(Debug, thiserror::Error)]
pub enum RequestHeaderError {
    #[error("cannot read --requestheader-client-ca {path}: {error}")]
    ReadCa {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "{from} holds no PEM certificate; it must be the CA that signs kube-apiserver's front-proxy client certificate"
    )]
    NoCa { from: String },
    #[error(
        "cannot read ConfigMap {CONFIGMAP_NAMESPACE}/{CONFIGMAP} (the front-proxy settings --api \
         trusts): {error}. Let keygate read it (bind the Role \
         extension-apiserver-authentication-reader in {CONFIGMAP_NAMESPACE} to it), or pass \
         --requestheader-client-ca and --requestheader-allowed-names"
    )]
    ConfigMap { error: String },
    #[error(
        "ConfigMap {CONFIGMAP_NAMESPACE}/{CONFIGMAP} has no requestheader-client-ca-file: \
         kube-apiserver runs without a front proxy. Start it with --requestheader-client-ca-file \
         and --proxy-client-cert-file (the aggregation layer), or pass --requestheader-client-ca"
    )]
    NoFrontProxy,
    #[error("{from} is not a JSON array of strings: {error}")]
    NotStrings {
        from: String,
        error: serde_json::Error,
    },
    #[error("{name:?} ({from}) is not an HTTP header name")]
    BadHeader { name: String, from: String },
    #[error("{from} names no header: no request could name its user")]
    NoUsernameHeader { from: String },
    #[error(
        "{from} is empty: every certificate the request-header CA signed could act as any user. \
         List the front proxy's common names (kube-apiserver's --requestheader-allowed-names, \
         e.g. front-proxy-client), or accept that with --requestheader-allow-any-name"
    )]
    AnyName { from: String },
}

/// Where a setting came from, for messages.
fn configmap_key(key: &str) -> String {
    format!("{key} in ConfigMap {CONFIGMAP_NAMESPACE}/{CONFIGMAP}")
}

/// Why a front-proxy request names no caller: answered 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoCaller {
    #[error("the front proxy named no user ({0})")]
    NoUser(String),
    #[error("header {0} is not UTF-8")]
    NotUtf8(HeaderName),
}

impl RequestHeaderSettings {
    /// Reads the settings' sources: the CA file (flags), or the ConfigMap through `client`.
    pub async fn load(
        &self,
        client: &kube::Client,
    ) -> Result<RequestHeaderConfig, RequestHeaderError> {
        match &self.client_ca {
            Some(path) => {
                let pem =
                    tokio::fs::read(path)
                        .await
                        .map_err(|error| RequestHeaderError::ReadCa {
                            path: path.clone(),
                            error,
                        })?;
                self.from_flags(&pem)
            }
            None => {
                let api = kube::Api::<ConfigMap>::namespaced(client.clone(), CONFIGMAP_NAMESPACE);
                let cm = api
                    .get(CONFIGMAP)
                    .await
                    .map_err(|e| RequestHeaderError::ConfigMap {
                        error: crate::causes::Chain(&e).to_string(),
                    })?;
                from_configmap(&cm.data.unwrap_or_default(), self.allow_any_name)
            }
        }
    }

    /// The configuration the flags describe, with the CA file's content `pem`.
    pub fn from_flags(&self, pem: &[u8]) -> Result<RequestHeaderConfig, RequestHeaderError> {
        let from = |flag: &str| flag.to_owned();
        build(
            pem,
            "--requestheader-client-ca",
            Named(
                self.allowed_names.clone(),
                from("--requestheader-allowed-names"),
            ),
            Named(
                self.username_headers.clone(),
                from("--requestheader-username-headers"),
            ),
            Named(
                self.group_headers.clone(),
                from("--requestheader-group-headers"),
            ),
            Named(
                self.extra_prefixes.clone(),
                from("--requestheader-extra-headers-prefix"),
            ),
            self.allow_any_name,
        )
    }
}

/// A list and where it came from.
struct Named(Vec<String>, String);

/// The configuration the ConfigMap's `data` describes (its lists are JSON arrays of strings,
/// as kube-apiserver writes them).
pub fn from_configmap(
    data: &BTreeMap<String, String>,
    allow_any_name: bool,
) -> Result<RequestHeaderConfig, RequestHeaderError> {
    let ca = data
        .get("requestheader-client-ca-file")
        .filter(|s| !s.trim().is_empty())
        .ok_or(RequestHeaderError::NoFrontProxy)?;
    let list = |key: &str| -> Result<Named, RequestHeaderError> {
        let from = configmap_key(key);
        let raw = data.get(key).map(String::as_str).unwrap_or_default();
        // An absent or empty value is an empty list, as kube-apiserver's reader has it.
        let items = if raw.trim().is_empty() {
            Vec::new()
        } else {
            serde_json::from_str(raw).map_err(|error| RequestHeaderError::NotStrings {
                from: from.clone(),
                error,
            })?
        };
        Ok(Named(items, from))
    };
    build(
        ca.as_bytes(),
        &configmap_key("requestheader-client-ca-file"),
        list("requestheader-allowed-names")?,
        list("requestheader-username-headers")?,
        list("requestheader-group-headers")?,
        list("requestheader-extra-headers-prefix")?,
        allow_any_name,
    )
}

fn build(
    ca_pem: &[u8],
    ca_from: &str,
    allowed: Named,
    username: Named,
    groups: Named,
    extra: Named,
    allow_any_name: bool,
) -> Result<RequestHeaderConfig, RequestHeaderError> {
    let no_ca = || RequestHeaderError::NoCa {
        from: ca_from.to_owned(),
    };
    let client_ca: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(ca_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| no_ca())?;
    if client_ca.is_empty() {
        return Err(no_ca());
    }
    let headers = |Named(names, from): Named| -> Result<Vec<HeaderName>, RequestHeaderError> {
        names
            .iter()
            .map(|n| {
                HeaderName::try_from(n.trim()).map_err(|_| RequestHeaderError::BadHeader {
                    name: n.clone(),
                    from: from.clone(),
                })
            })
            .collect()
    };
    let username_from = username.1.clone();
    let username_headers = headers(username)?;
    if username_headers.is_empty() {
        return Err(RequestHeaderError::NoUsernameHeader {
            from: username_from,
        });
    }
    let group_headers = headers(groups)?;
    // Prefixes are checked as header names (they are the start of one), then kept lowercased.
    let extra_prefixes = headers(Named(extra.0, extra.1))?
        .into_iter()
        .map(|h| h.as_str().to_owned())
        .collect();
    let Named(allowed_names, allowed_from) = allowed;
    let allowed_names: Vec<String> = allowed_names
        .into_iter()
        .filter(|n| !n.is_empty())
        .collect();
    if allowed_names.is_empty() && !allow_any_name {
        return Err(RequestHeaderError::AnyName { from: allowed_from });
    }
    Ok(RequestHeaderConfig {
        client_ca,
        allowed_names,
        username_headers,
        group_headers,
        extra_prefixes,
    })
}

impl RequestHeaderConfig {
    /// Whether a front-proxy certificate with this common name may name users.
    pub fn name_allowed(&self, common_name: &str) -> bool {
        self.allowed_names.is_empty() || self.allowed_names.iter().any(|n| n == common_name)
    }

    /// The user the front proxy named in `headers`, by kube-apiserver's rules: the first
    /// username header with a value; every non-empty value of every group header; for each
    /// header starting with an extra prefix, the rest of its name lowercased and
    /// percent-decoded (kept as it is when that fails) as the key, with all its values. Call
    /// it only for a connection whose certificate made it the front proxy.
    pub fn caller(&self, headers: &HeaderMap) -> Result<Caller, NoCaller> {
        let text = |name: &HeaderName, v: &http::HeaderValue| {
            std::str::from_utf8(v.as_bytes())
                .map(str::to_owned)
                .map_err(|_| NoCaller::NotUtf8(name.clone()))
        };
        let mut username = None;
        for h in &self.username_headers {
            if let Some(v) = headers.get(h).filter(|v| !v.is_empty()) {
                username = Some(text(h, v)?);
                break;
            }
        }
        let Some(username) = username else {
            let names: Vec<&str> = self.username_headers.iter().map(|h| h.as_str()).collect();
            return Err(NoCaller::NoUser(names.join(", ")));
        };
        let mut groups = Vec::new();
        for h in &self.group_headers {
            for v in headers.get_all(h).iter().filter(|v| !v.is_empty()) {
                groups.push(text(h, v)?);
            }
        }
        let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for prefix in &self.extra_prefixes {
            for (name, v) in headers {
                // Header names are lowercase already (hyper), and so are the prefixes.
                let Some(rest) = name.as_str().strip_prefix(prefix.as_str()) else {
                    continue;
                };
                let key = path_unescape(rest).unwrap_or_else(|| rest.to_owned());
                extra.entry(key).or_default().push(text(name, v)?);
            }
        }
        Ok(Caller {
            username,
            groups,
            extra,
        })
    }
}

/// Percent-decoding as Go's `url.PathUnescape` does it (no `+` rule); `None` when a `%` is
/// not followed by two hex digits or the result is not UTF-8.
fn path_unescape(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The front-proxy trust in force, replaced when its source changes.
pub type LiveConfig = Arc<ArcSwap<RequestHeaderConfig>>;

/// Reads the settings' source again every `interval` and publishes a changed configuration
/// into `live`; a failed read (or a configuration that no longer passes the checks) keeps the
/// one in force and is logged.
pub fn spawn_refresher(
    settings: RequestHeaderSettings,
    client: kube::Client,
    live: LiveConfig,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            ticker.tick().await;
            match settings.load(&client).await {
                Ok(config) => {
                    failing = false;
                    if **live.load() != config {
                        tracing::info!(
                            allowed_names = ?config.allowed_names,
                            "front-proxy settings changed; new connections use them"
                        );
                        live.store(Arc::new(config));
                    }
                }
                // Logged once per failing streak: the same error every interval says nothing new.
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "cannot re-read the front-proxy settings; keeping the current ones");
                }
                Err(_) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests;
