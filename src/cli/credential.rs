//! Arguments of `keygate credential`, the exec credential plugin.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
#[command(
    long_about = "client-go exec credential plugin: prints an ExecCredential \
    (client.authentication.k8s.io/v1) with the token from $KEYGATE_TOKEN, else --token-file, \
    else --secret, in that order. kubectl runs it; see `keygate kubeconfig --exec`."
)]
pub struct CredentialArgs {
    /// File holding the token.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Secret holding the token under the key `token`, as NAMESPACE/NAME (read with the
    /// kubeconfig's credentials: --kubeconfig, --context).
    #[arg(long, value_name = "NS/NAME")]
    pub secret: Option<String>,
}
