//! `keygate serve --api`: the AccessKey API on the TLS listener, and the front-proxy trust it
//! is served under, read at start and kept current while serving.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::task::JoinHandle;

use super::{ServeError, ServeSettings};
use crate::api::{AccessKeyApi, ApiSettings};
use crate::http::router::ApiHandler;
use crate::requestheader::{self, LiveConfig, RequestHeaderSettings};
use crate::seal::{Sealer, Verifier};

/// What serving the AccessKey API (`--api`) takes beyond the webhook's settings.
#[derive(Debug, Clone, Default)]
pub struct ApiServe {
    /// Whom to trust as kube-apiserver's front proxy.
    pub request_header: RequestHeaderSettings,
    /// See [`ApiSettings::allow_inherit_for_masters`].
    pub allow_inherit_for_masters: bool,
    /// See [`ApiSettings::allow_inherit_for_service_accounts`].
    pub allow_inherit_for_service_accounts: bool,
    /// See [`ApiSettings::max_key_lifetime`] (`--max-key-lifetime`).
    pub max_key_lifetime: Option<Duration>,
    /// The private key that seals every record the API writes (`--record-signing-key`).
    pub signing_key: Option<std::path::PathBuf>,
}

/// How often the front-proxy settings are read again from the ConfigMap (a CA file given by
/// flag is checked every `--tls-reload-interval`, like the other certificate files).
pub const FRONT_PROXY_REFRESH: Duration = Duration::from_secs(60);

/// The AccessKey API, ready to serve, and what keeps its front-proxy trust current.
pub(super) struct ApiParts {
    handler: Arc<AccessKeyApi>,
    client: kube::Client,
    request_header: RequestHeaderSettings,
    /// The trust in force, shared with the TLS configuration.
    pub front_proxy: LiveConfig,
}

/// Reads the front proxy's trust (with keygate's own kubeconfig: `client`) and builds the API.
pub(super) async fn prepare(
    settings: &ServeSettings,
    api: &ApiServe,
    client: &kube::Client,
) -> Result<ApiParts, ServeError> {
    let sealer = match &api.signing_key {
        Some(path) => Some(Arc::new(Sealer::load(path, "--record-signing-key")?)),
        None => None,
    };
    // A signing key the webhook does not trust would make every new key fail at once.
    if let (Some(sealer), Some(path)) = (&sealer, &settings.record_verify_key)
        && !Verifier::load(path, "--record-verify-key")?.trusts(sealer)
    {
        return Err(ServeError::SealKeysMismatch {
            signing: api.signing_key.clone().unwrap_or_default(),
            verify: path.clone(),
        });
    }
    let config = api.request_header.load(client).await?;
    let api_settings = ApiSettings {
        allow_inherit_for_masters: api.allow_inherit_for_masters,
        allow_inherit_for_service_accounts: api.allow_inherit_for_service_accounts,
        max_key_lifetime: api.max_key_lifetime,
        sealer,
        ..ApiSettings::new(settings.namespace.clone(), settings.user_prefix.clone())
    };
    Ok(ApiParts {
        handler: Arc::new(AccessKeyApi::new(client.clone(), api_settings)),
        client: client.clone(),
        request_header: api.request_header.clone(),
        front_proxy: Arc::new(ArcSwap::from_pointee(config)),
    })
}

impl ApiParts {
    /// Starts re-reading the front-proxy settings (a CA file every `file_interval`, the
    /// ConfigMap every [`FRONT_PROXY_REFRESH`]); returns the handler and that task.
    pub fn spawn(self, file_interval: Duration) -> (Arc<dyn ApiHandler>, JoinHandle<()>) {
        let interval = match self.request_header.client_ca {
            Some(_) => file_interval,
            None => FRONT_PROXY_REFRESH,
        };
        let task = requestheader::spawn_refresher(
            self.request_header,
            self.client,
            self.front_proxy,
            interval,
        );
        (self.handler, task)
    }

    /// The allowed names in force, for the start-up log line.
    pub fn allowed_names(&self) -> Vec<String> {
        self.front_proxy.load().allowed_names.clone()
    }
}
