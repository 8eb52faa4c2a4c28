//! A Kubernetes client from the usual sources: --kubeconfig, $KUBECONFIG, ~/.kube/config,
//! --context, or the in-cluster service account.

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::cli::Global;

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
    #[error("cannot create a Kubernetes client: {0}")]
    Client(kube::Error),
}

pub async fn config(global: &Global) -> Result<Config, KubeClientError> {
    let options = KubeConfigOptions {
        context: global.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match &global.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|error| KubeClientError::File {
                path: path.display().to_string(),
                error,
            })?;
            Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(KubeClientError::Kubeconfig)?
        }
        None if global.context.is_some() => Config::from_kubeconfig(&options)
            .await
            .map_err(KubeClientError::Kubeconfig)?,
        None => Config::infer().await.map_err(KubeClientError::Infer)?,
    };
    Ok(config)
}

pub async fn client(global: &Global) -> Result<Client, KubeClientError> {
    Client::try_from(config(global).await?).map_err(KubeClientError::Client)
}
