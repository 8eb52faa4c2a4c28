//! Kubeconfig documents keygate writes, built with kube's `Kubeconfig` types: the webhook
//! configuration kube-apiserver reads, and kubeconfigs for kubectl with a key.

use base64::Engine;
use kube::config::{
    AuthInfo, Cluster, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext,
};

/// The server side of a kubeconfig: address and the CA to trust, inline.
pub struct ClusterInfo<'a> {
    pub name: &'a str,
    pub server: &'a str,
    pub ca_pem: Option<&'a [u8]>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A kubeconfig with one cluster, one user and one context that joins them.
pub fn single(cluster: &ClusterInfo<'_>, user_name: &str, user: AuthInfo) -> Kubeconfig {
    Kubeconfig {
        clusters: vec![NamedCluster {
            name: cluster.name.to_owned(),
            cluster: Some(Cluster {
                server: Some(cluster.server.to_owned()),
                certificate_authority_data: cluster.ca_pem.map(b64),
                ..Cluster::default()
            }),
            other: Default::default(),
        }],
        auth_infos: vec![NamedAuthInfo {
            name: user_name.to_owned(),
            auth_info: Some(user),
            other: Default::default(),
        }],
        contexts: vec![NamedContext {
            name: cluster.name.to_owned(),
            context: Some(Context {
                cluster: cluster.name.to_owned(),
                user: Some(user_name.to_owned()),
                ..Context::default()
            }),
            other: Default::default(),
        }],
        current_context: Some(cluster.name.to_owned()),
        api_version: Some("v1".to_owned()),
        kind: Some("Config".to_owned()),
        ..Kubeconfig::default()
    }
}

/// The file for kube-apiserver's `--authentication-token-webhook-config-file` (and, with the
/// `/authorize` URL, `--authorization-webhook-config-file`): the cluster is keygate, the user
/// is kube-apiserver (with its client certificate when one is given).
pub fn webhook(server: &str, ca_pem: &[u8], client: Option<(&[u8], &[u8])>) -> Kubeconfig {
    let user = AuthInfo {
        client_certificate_data: client.map(|(cert, _)| b64(cert)),
        client_key_data: client.map(|(_, key)| b64(key).into()),
        ..AuthInfo::default()
    };
    single(
        &ClusterInfo {
            name: "keygate",
            server,
            ca_pem: Some(ca_pem),
        },
        "kube-apiserver",
        user,
    )
}

/// A kubeconfig that could not be serialized (never expected: every field is a string).
#[derive(Debug, thiserror::Error)]
#[error("cannot write the kubeconfig as YAML: {0}")]
pub struct KubeconfigError(String);

/// YAML text of a kubeconfig.
pub fn to_yaml(config: &Kubeconfig) -> Result<String, KubeconfigError> {
    serde_saphyr::to_string(config).map_err(|e| KubeconfigError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_config_round_trips_through_kube() {
        let cfg = webhook(
            "https://127.0.0.1:8443/authenticate",
            b"CA",
            Some((b"CERT", b"KEY")),
        );
        let text = to_yaml(&cfg).unwrap();
        let back = Kubeconfig::from_yaml(&text).unwrap();
        let cluster = back.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(
            cluster.server.as_deref(),
            Some("https://127.0.0.1:8443/authenticate")
        );
        assert_eq!(cluster.certificate_authority_data.as_deref(), Some("Q0E="));
        let user = back.auth_infos[0].auth_info.as_ref().unwrap();
        assert_eq!(user.client_certificate_data.as_deref(), Some("Q0VSVA=="));
        assert!(text.contains("client-key-data: S0VZ"), "{text}");
        assert_eq!(back.current_context.as_deref(), Some("keygate"));
    }
}
