//! `keygate credential`: the client-go exec credential plugin. Prints an ExecCredential with
//! the token from $KEYGATE_TOKEN, else --token-file, else a Secret (key `token`).

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Secret;

use super::kubeconfig::EXEC_API_VERSION;
use crate::cli::{CredentialArgs, Global};

/// The ExecCredential document kubectl reads from the plugin's standard output.
pub fn exec_credential(token: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": EXEC_API_VERSION,
        "kind": "ExecCredential",
        "status": { "token": token },
    })
}

/// The `token` key of the Secret `spec` (NAMESPACE/NAME).
pub async fn token_from_secret(client: kube::Client, spec: &str) -> anyhow::Result<String> {
    let (ns, name) = spec
        .split_once('/')
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
        .with_context(|| format!("--secret {spec}: expected NAMESPACE/NAME"))?;
    let api: kube::Api<Secret> = kube::Api::namespaced(client, ns);
    let secret = api.get(name).await.map_err(|e| match &e {
        kube::Error::Api(s) if s.code == 404 => {
            anyhow::anyhow!(
                "Secret {name} not found in namespace {ns}; check --secret NAMESPACE/NAME"
            )
        }
        kube::Error::Api(s) if s.code == 403 => anyhow::anyhow!(
            "forbidden to get Secret {name} in namespace {ns}: {}. The credentials of the \
             kubeconfig (--kubeconfig, --context) need `get` on secrets there",
            s.message
        ),
        _ => anyhow::anyhow!(
            "cannot read Secret {ns}/{name}: {} ({})",
            crate::causes::Chain(&e),
            crate::causes::kube_fix(&e)
        ),
    })?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get("token"))
        .map(|b| b.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get("token"))
                .map(|s| s.clone().into_bytes())
        })
        .with_context(|| format!("Secret {ns}/{name} has no `token` key"))?;
    String::from_utf8(bytes).with_context(|| format!("the token in Secret {ns}/{name} is not text"))
}

pub async fn run(global: &Global, args: &CredentialArgs) -> anyhow::Result<()> {
    let env = std::env::var("KEYGATE_TOKEN").unwrap_or_default();
    let token = if !env.trim().is_empty() {
        env
    } else if let Some(f) = &args.token_file {
        std::fs::read_to_string(f)
            .with_context(|| format!("cannot read --token-file {}", f.display()))?
    } else if let Some(s) = &args.secret {
        token_from_secret(global.client().client().await?, s).await?
    } else {
        bail!(
            "no token: set KEYGATE_TOKEN, or pass --token-file FILE or --secret NAMESPACE/NAME \
             (in a kubeconfig, regenerate it with `keygate kubeconfig --exec --token-file FILE`)"
        );
    };
    let token = token.trim();
    if token.is_empty() {
        bail!("the token is empty; check KEYGATE_TOKEN, --token-file or --secret");
    }
    println!("{}", exec_credential(token));
    Ok(())
}
