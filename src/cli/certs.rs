//! Arguments of `keygate certs` and `keygate webhook-config`.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Directory to write ca.crt, ca.key, server.crt, server.key, client.crt, client.key.
    #[arg(long, env = "KEYGATE_CERTS_DIR", value_name = "DIR")]
    pub out_dir: PathBuf,

    /// Subject alternative name of the server certificate (DNS name or IP). Repeatable. For the
    /// AccessKey API behind kube-apiserver's aggregation layer, include
    /// <service>.<namespace>.svc: kube-apiserver checks that name whatever address it dials.
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
#[command(after_help = "Examples:\n  \
    keygate webhook-config --certificate-authority ca.crt --client-certificate client.crt --client-key client.key -o webhook.kubeconfig\n  \
    keygate webhook-config --authorizer --certificate-authority ca.crt --client-certificate client.crt --client-key client.key -o authz.kubeconfig\n  \
    keygate webhook-config --apiservice --service-name keygate-api --service-namespace keygate --port 8443 --certificate-authority ca.crt | kubectl apply -f -")]
pub struct WebhookConfigArgs {
    /// URL of keygate's webhook as kube-apiserver reaches it. Default
    /// https://127.0.0.1:8443/authenticate, or .../authorize with --authorizer.
    #[arg(long, value_name = "URL", conflicts_with = "apiservice")]
    pub server: Option<String>,

    /// Print the file for kube-apiserver's --authorization-webhook-config-file (POST
    /// /authorize) instead of --authentication-token-webhook-config-file.
    #[arg(long, conflicts_with_all = ["apiservice", "admission"])]
    pub authorizer: bool,

    /// CA that signed keygate's server certificate (embedded in the output).
    #[arg(long, value_name = "FILE")]
    pub certificate_authority: PathBuf,

    /// Client certificate kube-apiserver presents (embedded; pair with keygate serve --client-ca).
    #[arg(
        long,
        value_name = "FILE",
        requires = "client_key",
        conflicts_with = "apiservice"
    )]
    pub client_certificate: Option<PathBuf>,

    /// Key of the client certificate (embedded).
    #[arg(long, value_name = "FILE", requires = "client_certificate")]
    pub client_key: Option<PathBuf>,

    /// Write to this file (atomically, mode 0600) instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Print, instead of the webhook kubeconfig, what the aggregation layer needs for
    /// `keygate serve --api`: the APIService v1alpha1.keygate.dev (its caBundle from
    /// --certificate-authority) and a Service of type ExternalName in front of keygate.
    #[arg(long, help_heading = "AccessKey API (--apiservice)")]
    pub apiservice: bool,

    /// The Service the APIService points at.
    #[arg(
        long,
        default_value = "keygate-api",
        requires = "apiservice",
        help_heading = "AccessKey API (--apiservice)"
    )]
    pub service_name: String,

    /// The Service's namespace.
    #[arg(
        long,
        default_value = "keygate",
        requires = "apiservice",
        help_heading = "AccessKey API (--apiservice)"
    )]
    pub service_namespace: String,

    /// keygate's TLS port (the Service port and the APIService's).
    #[arg(
        long,
        default_value_t = 8443,
        requires = "apiservice",
        help_heading = "AccessKey API (--apiservice)"
    )]
    pub port: u16,

    /// Host the ExternalName Service resolves to: localhost when keygate runs next to
    /// kube-apiserver (kube-apiserver then dials https://localhost:<port>).
    #[arg(
        long,
        value_name = "HOST",
        default_value = "localhost",
        requires = "apiservice",
        help_heading = "AccessKey API (--apiservice)"
    )]
    pub external_name: String,

    /// Leave the Service out (it exists already, e.g. in front of keygate's pods).
    #[arg(
        long,
        requires = "apiservice",
        help_heading = "AccessKey API (--apiservice)"
    )]
    pub no_service: bool,
    /// Print the ValidatingWebhookConfiguration of the record guard instead (serve with
    /// --record-writer), for the key namespace (--namespace). Reached at --server with its path
    /// /authenticate replaced by /validate-records, or at --service.
    #[arg(long)]
    pub admission: bool,

    /// With --admission: reach keygate through this Service, NAMESPACE/NAME[:PORT] (port 443).
    #[arg(long, requires = "admission", value_name = "NAMESPACE/NAME[:PORT]")]
    pub service: Option<String>,
}

#[derive(Debug, Args)]
pub struct SealKeyArgs {
    /// Where to write the Ed25519 signing key (PEM PKCS#8, mode 0600). It belongs with the
    /// AccessKey API only: never in the key namespace, never with the webhook.
    #[arg(long, value_name = "FILE")]
    pub private_key: PathBuf,

    /// Where to write the public key, for `keygate serve --record-verify-key`.
    #[arg(long, value_name = "FILE")]
    pub public_key: PathBuf,

    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}
