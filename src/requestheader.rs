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
mod tests {
    use super::*;
    use crate::fixtures::fake_kube;
    use crate::pki;
    use serde_json::json;

    fn ca_pem() -> String {
        pki::generate_ca("front-proxy-ca", 30).unwrap().cert
    }

    fn config() -> RequestHeaderConfig {
        let s = RequestHeaderSettings {
            allowed_names: vec!["front-proxy-client".into()],
            ..RequestHeaderSettings::default()
        };
        s.from_flags(ca_pem().as_bytes()).unwrap()
    }

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::try_from(*k).unwrap(),
                http::HeaderValue::from_bytes(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn caller_follows_kube_apiserver_rules() {
        let h = headers(&[
            ("x-remote-user", b"alice"),
            ("x-remote-user", b"mallory"),
            ("X-Remote-Group", b"dev"),
            ("x-remote-group", b""),
            ("x-remote-group", b"system:authenticated"),
            ("X-Remote-Extra-Scopes", b"a"),
            ("x-remote-extra-scopes", b"b"),
            ("x-remote-extra-keygate.dev%2Fkey-id", b"ABC"),
            ("x-remote-extra-bad%zz", b"kept"),
            ("x-remote-extra-", b"empty key"),
            ("x-remote-uid", b"ignored"),
            ("authorization", b"Bearer ignored"),
        ]);
        let c = config().caller(&h).unwrap();
        assert_eq!(c.username, "alice", "the first value of the first header");
        assert_eq!(
            c.groups,
            ["dev", "system:authenticated"],
            "empty values skipped"
        );
        let extra: Vec<(&str, Vec<&str>)> = c
            .extra
            .iter()
            .map(|(k, v)| (k.as_str(), v.iter().map(String::as_str).collect()))
            .collect();
        assert_eq!(
            extra,
            [
                ("", vec!["empty key"]),
                ("bad%zz", vec!["kept"]),
                ("keygate.dev/key-id", vec!["ABC"]),
                ("scopes", vec!["a", "b"]),
            ]
        );
    }

    #[test]
    fn username_headers_are_tried_in_order_and_one_is_needed() {
        let mut cfg = config();
        cfg.username_headers = vec![
            HeaderName::from_static("x-first"),
            HeaderName::from_static("x-remote-user"),
        ];
        let h = headers(&[("x-first", b""), ("x-remote-user", b"bob")]);
        assert_eq!(cfg.caller(&h).unwrap().username, "bob");
        let err = cfg
            .caller(&headers(&[("x-remote-group", b"g")]))
            .unwrap_err();
        assert_eq!(err, NoCaller::NoUser("x-first, x-remote-user".into()));
        let err = cfg
            .caller(&headers(&[("x-remote-user", b"\xc3(")]))
            .unwrap_err();
        assert!(matches!(err, NoCaller::NotUtf8(_)), "{err}");
        // UTF-8 is kept as sent.
        let h = headers(&[("x-remote-user", "zoë".as_bytes())]);
        assert_eq!(cfg.caller(&h).unwrap().username, "zoë");
    }

    #[test]
    fn percent_decoding_is_go_path_unescape() {
        assert_eq!(path_unescape("a%2Fb%20c").as_deref(), Some("a/b c"));
        assert_eq!(path_unescape("a+b").as_deref(), Some("a+b"));
        assert_eq!(path_unescape("%C3%A9").as_deref(), Some("é"));
        assert_eq!(path_unescape("50%"), None);
        assert_eq!(path_unescape("%4"), None);
        assert_eq!(path_unescape("%zz"), None);
        assert_eq!(path_unescape("%ff"), None, "not UTF-8");
    }

    #[test]
    fn allowed_names_are_required_unless_any_name_is_accepted() {
        let s = RequestHeaderSettings::default();
        let err = s.from_flags(ca_pem().as_bytes()).unwrap_err().to_string();
        assert!(
            err.contains("--requestheader-allowed-names is empty"),
            "{err}"
        );
        assert!(err.contains("--requestheader-allow-any-name"), "{err}");
        let s = RequestHeaderSettings {
            allow_any_name: true,
            ..s
        };
        let cfg = s.from_flags(ca_pem().as_bytes()).unwrap();
        assert!(cfg.name_allowed("anyone"));
        let cfg = config();
        assert!(cfg.name_allowed("front-proxy-client"));
        assert!(!cfg.name_allowed("kube-apiserver"));
    }

    #[test]
    fn flags_are_checked_naming_the_flag() {
        let s = RequestHeaderSettings {
            allowed_names: vec!["p".into()],
            ..RequestHeaderSettings::default()
        };
        let err = s.from_flags(b"not pem").unwrap_err().to_string();
        assert!(
            err.contains("--requestheader-client-ca holds no PEM"),
            "{err}"
        );
        let bad = RequestHeaderSettings {
            group_headers: vec!["X Remote".into()],
            ..s.clone()
        };
        let err = bad.from_flags(ca_pem().as_bytes()).unwrap_err().to_string();
        assert!(err.contains("--requestheader-group-headers"), "{err}");
        let none = RequestHeaderSettings {
            username_headers: vec![],
            ..s
        };
        let err = none
            .from_flags(ca_pem().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--requestheader-username-headers names no header"),
            "{err}"
        );
    }

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn configmap_lists_are_json_arrays() {
        let ca = ca_pem();
        let d = data(&[
            ("requestheader-client-ca-file", &ca),
            ("requestheader-allowed-names", r#"["front-proxy-client"]"#),
            ("requestheader-username-headers", r#"["X-Remote-User"]"#),
            ("requestheader-group-headers", r#"["X-Remote-Group"]"#),
            (
                "requestheader-extra-headers-prefix",
                r#"["X-Remote-Extra-"]"#,
            ),
            ("client-ca-file", "not ours"),
        ]);
        let cfg = from_configmap(&d, false).unwrap();
        assert_eq!(cfg.allowed_names, ["front-proxy-client"]);
        assert_eq!(cfg.username_headers, ["x-remote-user"]);
        assert_eq!(cfg.group_headers, ["x-remote-group"]);
        assert_eq!(cfg.extra_prefixes, ["x-remote-extra-"]);
        assert_eq!(cfg.client_ca.len(), 1);

        let mut d2 = d.clone();
        d2.insert("requestheader-allowed-names".into(), "[]".into());
        let err = from_configmap(&d2, false).unwrap_err().to_string();
        assert!(
            err.contains("requestheader-allowed-names in ConfigMap"),
            "{err}"
        );
        assert!(from_configmap(&d2, true).is_ok());

        d2.insert(
            "requestheader-allowed-names".into(),
            "front-proxy-client".into(),
        );
        let err = from_configmap(&d2, false).unwrap_err().to_string();
        assert!(err.contains("is not a JSON array of strings"), "{err}");

        let mut d3 = d.clone();
        d3.remove("requestheader-client-ca-file");
        let err = from_configmap(&d3, false).unwrap_err().to_string();
        assert!(err.contains("without a front proxy"), "{err}");
    }

    #[tokio::test]
    async fn load_reads_the_configmap_in_kube_system() {
        let ca = ca_pem();
        let cm = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": CONFIGMAP, "namespace": CONFIGMAP_NAMESPACE},
            "data": {
                "requestheader-client-ca-file": ca,
                "requestheader-allowed-names": "[\"front-proxy-client\"]",
                "requestheader-username-headers": "[\"X-Remote-User\"]",
                "requestheader-group-headers": "[\"X-Remote-Group\"]",
                "requestheader-extra-headers-prefix": "[\"X-Remote-Extra-\"]",
            }
        });
        let (client, seen) = fake_kube(move |_, _| (200, cm.clone()));
        let cfg = RequestHeaderSettings::default()
            .load(&client)
            .await
            .unwrap();
        assert_eq!(cfg.allowed_names, ["front-proxy-client"]);
        assert_eq!(
            seen.lock().unwrap().as_slice(),
            [(
                "GET".to_owned(),
                "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"
                    .to_owned()
            )]
        );
    }

    #[tokio::test]
    async fn a_configmap_keygate_may_not_read_says_how_to_fix_it() {
        let (client, _) = fake_kube(|_, _| {
            (
                403,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "reason": "Forbidden", "code": 403,
                       "message": "configmaps \"extension-apiserver-authentication\" is forbidden"}),
            )
        });
        let err = RequestHeaderSettings::default()
            .load(&client)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("forbidden"), "{err}");
        assert!(
            err.contains("extension-apiserver-authentication-reader"),
            "{err}"
        );
        assert!(err.contains("--requestheader-client-ca"), "{err}");
    }
}
