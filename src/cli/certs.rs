//! Arguments of `keygate certs` and `keygate webhook-config`.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Directory to write ca.crt, ca.key, server.crt, server.key, client.crt, client.key.
    #[arg(long, env = "KEYGATE_CERTS_DIR", value_name = "DIR")]
    pub out_dir: PathBuf,

    /// Subject alternative name of the server certificate (DNS name or IP). Repeatable.
    #[arg(long = "san", value_name = "NAME", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
    pub sans: Vec<String>,

    /// Common name of the client certificate kube-apiserver presents to keygate.
    #[arg(long, default_value = "kube-apiserver")]
    pub client_cn: String,

    /// Validity of the server and client certificates, in days.
    #[arg(long, default_value_t = 365)]
    pub days: u32,

    /// Reuse ca.crt and ca.key already in --out-dir (rotate leaf certificates only).
    #[arg(long)]
    pub reuse_ca: bool,

    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct WebhookConfigArgs {
    /// URL of keygate's webhook as kube-apiserver reaches it. Default
    /// https://127.0.0.1:8443/authenticate, or .../authorize with --authorizer.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,

    /// Print the file for kube-apiserver's --authorization-webhook-config-file (POST
    /// /authorize) instead of --authentication-token-webhook-config-file.
    #[arg(long)]
    pub authorizer: bool,

    /// CA that signed keygate's server certificate (embedded in the output).
    #[arg(long, value_name = "FILE")]
    pub certificate_authority: PathBuf,

    /// Client certificate kube-apiserver presents (embedded; pair with keygate serve --client-ca).
    #[arg(long, value_name = "FILE", requires = "client_key")]
    pub client_certificate: Option<PathBuf>,

    /// Key of the client certificate (embedded).
    #[arg(long, value_name = "FILE", requires = "client_certificate")]
    pub client_key: Option<PathBuf>,

    /// Write to this file (atomically, mode 0600) instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}
