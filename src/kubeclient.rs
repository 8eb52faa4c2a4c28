//! A Kubernetes client from the usual sources: --kubeconfig, $KUBECONFIG, ~/.kube/config,
//! --context, or the in-cluster service account.

use std::path::PathBuf;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// Where the cluster's address and credentials come from.
#[derive(Debug, Clone, Default)]
pub struct ClientSettings {
    /// A kubeconfig file (`--kubeconfig`); else $KUBECONFIG, ~/.kube/config or in-cluster.
    pub kubeconfig: Option<PathBuf>,
    /// A context of the kubeconfig (`--context`); else its current context.
    pub context: Option<String>,
}

/// Messages carry their cause inline (not as `source`), so `{:#}` at the edge prints it once.
#[derive(Debug, thiserror::Error)]
pub enum KubeClientError {
    #[error("cannot load kubeconfig {path}: {error} (check --kubeconfig)")]
    File {
        path: String,
        error: kube::config::KubeconfigError,
    },
    #[error("cannot use the kubeconfig: {0} (check --context and $KUBECONFIG)")]
    Kubeconfig(kube::config::KubeconfigError),
    #[error(
        "no cluster configuration found: {0}. Set KUBECONFIG or pass --kubeconfig, run inside a cluster, \
         or use the local store with --store dir:PATH"
    )]
    Infer(kube::config::InferConfigError),
    #[error(
        "cannot create a Kubernetes client from the kubeconfig: {} ({})",
        crate::causes::Chain(.0),
        crate::causes::kube_fix(.0)
    )]
    Client(kube::Error),
}

impl ClientSettings {
    pub async fn config(&self) -> Result<Config, KubeClientError> {
        config(self).await
    }

    pub async fn client(&self) -> Result<Client, KubeClientError> {
        Ok(self.client_and_server().await?.0)
    }

    /// A client, and the API server URL it talks to (for messages about that server).
    pub async fn client_and_server(&self) -> Result<(Client, String), KubeClientError> {
        let (client, config) = self.client_and_config().await?;
        Ok((client, config.cluster_url.to_string()))
    }

    /// A client, and the configuration it was made from (server URL, CA certificates).
    pub async fn client_and_config(&self) -> Result<(Client, Config), KubeClientError> {
        let config = config(self).await?;
        let client = Client::try_from(config.clone()).map_err(KubeClientError::Client)?;
        Ok((client, config))
    }

    /// The user name of the kubeconfig's context, without contacting the cluster.
    pub fn kubeconfig_user(&self) -> Option<String> {
        let kc = match &self.kubeconfig {
            Some(p) => Kubeconfig::read_from(p).ok()?,
            None => Kubeconfig::read().ok()?,
        };
        let ctx_name = self.context.clone().or(kc.current_context.clone())?;
        kc.contexts
            .iter()
            .find(|c| c.name == ctx_name)
            .and_then(|c| c.context.as_ref())
            .and_then(|c| c.user.clone())
    }
}

/// The caller's username, from a SelfSubjectReview (kube-apiserver 1.28 and later; `None`
/// where it is not served or not allowed).
pub async fn whoami(client: &Client) -> Option<String> {
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .ok()?;
    review.status?.user_info?.username
}

async fn config(settings: &ClientSettings) -> Result<Config, KubeClientError> {
    let options = KubeConfigOptions {
        context: settings.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match &settings.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|error| KubeClientError::File {
                path: path.display().to_string(),
                error,
            })?;
            Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(KubeClientError::Kubeconfig)?
        }
        None if settings.context.is_some() => Config::from_kubeconfig(&options)
            .await
            .map_err(KubeClientError::Kubeconfig)?,
        None => Config::infer().await.map_err(KubeClientError::Infer)?,
    };
    // kube's default retry layer repeats 429/503/504 up to 15 times with a backoff growing to
    // 1000 s: a `keys` command facing an unavailable APIService would hang for many minutes
    // instead of saying so, and a retry inside the webhook's own timeouts only eats them. Every
    // caller here has its own policy (the watcher's backoff, the SAR and read-through timeouts,
    // last use retried on the next use), so requests are sent once.
    let mut config = config;
    config.default_retry = false;
    Ok(config)
}
