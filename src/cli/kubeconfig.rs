//! Arguments of `keygate kubeconfig`.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    keygate keys create --name ci -o json | jq -r .token | keygate kubeconfig --server https://my-cluster:6443 --certificate-authority ca.crt --token-stdin -o ci.kubeconfig\n  \
    keygate kubeconfig --server https://my-cluster:6443 --exec --secret ci/keygate-token > ci.kubeconfig")]
pub struct KubeconfigArgs {
    /// URL of the Kubernetes API server (e.g. https://my-cluster:6443).
    #[arg(long, value_name = "URL")]
    pub server: String,

    /// CA certificate (PEM) of the API server, embedded in the kubeconfig.
    #[arg(long, value_name = "FILE")]
    pub certificate_authority: Option<PathBuf>,

    /// Read the token from standard input (else from $KEYGATE_TOKEN) and put it inline.
    #[arg(long, conflicts_with = "exec")]
    pub token_stdin: bool,

    /// Do not put the token in the file: kubectl runs `keygate credential` to get it
    /// (from $KEYGATE_TOKEN, --token-file or --secret at that time).
    #[arg(long)]
    pub exec: bool,

    /// With --exec: the file `keygate credential` reads the token from.
    #[arg(long, value_name = "FILE", requires = "exec")]
    pub token_file: Option<PathBuf>,

    /// With --exec: the Secret (NAMESPACE/NAME, key `token`) `keygate credential` reads.
    #[arg(long, value_name = "NS/NAME", requires = "exec")]
    pub secret: Option<String>,

    /// Name of the cluster and context in the kubeconfig.
    #[arg(long, default_value = "keygate")]
    pub context_name: String,

    /// Write to this file (atomically, mode 0600) instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}
