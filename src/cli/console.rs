//! Arguments of `keygate console`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
#[command(
    long_about = "Open the key page in your browser: list and search keys, create one and copy \
        its token (shown once, with a kubeconfig to download), regenerate, deactivate, activate, \
        rename and delete keys.\n\n\
        The console listens on loopback only and prints a URL holding a secret for this session; \
        only a browser that opened that URL can use it. It keeps no token after showing it.\n\n\
        It works on the store --store names (the default rule of `keygate keys`). With --store \
        kube it acts through the AccessKey API with your own kubeconfig (--kubeconfig, \
        --context, $KUBECONFIG), whatever credential that holds: the page can do exactly what \
        the cluster lets you do, and shows its refusals in its own words. With no cluster, it \
        works on the embedded dir store.",
    after_help = "Examples:\n  \
    keygate console\n  \
    keygate console --store kube --kubeconfig ~/.kube/config --context prod\n  \
    keygate console --no-open --listen 127.0.0.1:8080\n  \
    keygate --store dir:./keygate-data/keys console --server https://my-cluster:6443 \\\n      \
    --certificate-authority ca.crt"
)]
pub struct ConsoleArgs {
    /// Where the console listens: a loopback address (127.0.0.1 or [::1]); port 0 picks a free
    /// one. To reach it from another machine, forward the port over SSH.
    #[arg(
        long,
        env = "KEYGATE_CONSOLE_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:0"
    )]
    pub listen: SocketAddr,

    /// Only print the URL; do not open a browser.
    #[arg(long)]
    pub no_open: bool,

    /// Kubernetes API server URL for the kubeconfig the page offers with each new token
    /// (e.g. https://my-cluster:6443). With --store kube it defaults to your kubeconfig's
    /// server and CA; on a dir store, without it the page says how to make one.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,

    /// CA certificate (PEM) of that API server, embedded in those kubeconfigs.
    #[arg(long, value_name = "FILE", requires = "server")]
    pub certificate_authority: Option<PathBuf>,

    /// Username prefix of keys; must match `keygate serve --user-prefix`.
    #[arg(
        long,
        env = "KEYGATE_USER_PREFIX",
        default_value = crate::identity::DEFAULT_USER_PREFIX
    )]
    pub user_prefix: String,
}
