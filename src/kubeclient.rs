//! A Kubernetes client from the usual sources: --kubeconfig, $KUBECONFIG, ~/.kube/config,
//! --context, or the in-cluster service account.

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::cli::Global;

#[derive(Debug, thiserror::Error)]
pub enum KubeClientError {
    #[error("cannot load kubeconfig {path}: {source} (check --kubeconfig)")]
    File {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("cannot use the kubeconfig: {0} (check --context and $KUBECONFIG)")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error(
        "no cluster configuration found: {0}. Set KUBECONFIG or pass --kubeconfig, run inside a cluster, \
         or use the local store with --store dir:PATH"
    )]
    Infer(#[from] kube::config::InferConfigError),
    #[error("cannot create a Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

pub async fn config(global: &Global) -> Result<Config, KubeClientError> {
    let options = KubeConfigOptions {
        context: global.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match &global.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|source| KubeClientError::File {
                path: path.display().to_string(),
                source,
            })?;
            Config::from_custom_kubeconfig(kc, &options).await?
        }
        None if global.context.is_some() => Config::from_kubeconfig(&options).await?,
        None => Config::infer().await?,
    };
    Ok(config)
}

pub async fn client(global: &Global) -> Result<Client, KubeClientError> {
    Ok(Client::try_from(config(global).await?)?)
}
