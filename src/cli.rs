//! The command line (clap derive). Every flag can also be set from a `KEYGATE_…` variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod keys;

pub use keys::*;

use crate::review::GroupPattern;
use crate::store::StoreSpec;

#[derive(Debug, Parser)]
#[command(
    name = "keygate",
    version,
    about = "Access keys for Kubernetes: mint a key, use it with kubectl, rotate or revoke it at once",
    long_about = "Access keys for Kubernetes.\n\n\
        `keygate serve` runs the TokenReview webhook kube-apiserver calls to check keys; \
        `keygate keys` mints, lists, rotates and revokes them. Keys are stored hashed, one \
        record each, in Secrets of the key namespace (--store kube) or in files (--store dir:PATH).\n\n\
        With no cluster at hand, `keygate serve` runs embedded: keys in ./keygate-data/keys, \
        a self-signed certificate in ./keygate-data/certs.",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command shares: where keys live and how to reach the cluster.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Where key records live: `kube` (Secrets in --namespace) or `dir:PATH` (YAML/JSON files).
    /// Default: kube inside a cluster, else dir:<data-dir>/keys.
    #[arg(
        long,
        global = true,
        env = "KEYGATE_STORE",
        value_name = "kube|dir:PATH"
    )]
    pub store: Option<StoreSpec>,

    /// The key namespace of the kube store.
    #[arg(
        long,
        short = 'n',
        global = true,
        env = "KEYGATE_NAMESPACE",
        default_value = "keygate-system"
    )]
    pub namespace: String,

    /// Where the embedded default keeps keys/, certs/ and webhook.kubeconfig.
    #[arg(
        long,
        global = true,
        env = "KEYGATE_DATA_DIR",
        default_value = "keygate-data"
    )]
    pub data_dir: PathBuf,

    /// Kubeconfig file for the kube store (default: $KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long, global = true, env = "KEYGATE_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// Kubeconfig context to use.
    #[arg(long, global = true, env = "KEYGATE_CONTEXT")]
    pub context: Option<String>,

    /// Log format.
    #[arg(long, global = true, env = "KEYGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter, e.g. `info`, `keygate=debug` (also RUST_LOG).
    #[arg(long, global = true, env = "KEYGATE_LOG", default_value = "info")]
    pub log: String,
}

impl Global {
    pub fn store(&self) -> StoreSpec {
        self.store
            .clone()
            .unwrap_or_else(|| StoreSpec::default_for(&self.data_dir))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the TokenReview webhook (TLS) and the admin endpoint (/healthz, /readyz, /metrics).
    Serve(Box<ServeArgs>),
    /// Generate a CA, a server certificate and a client certificate for kube-apiserver.
    Certs(CertsArgs),
    /// Print the kubeconfig kube-apiserver needs for --authentication-token-webhook-config-file.
    WebhookConfig(WebhookConfigArgs),
    /// Create, list, rotate, disable and delete access keys.
    Keys(KeysArgs),
    /// Write a kubeconfig for kubectl that uses a key (token inline, or via `keygate credential`).
    Kubeconfig(KubeconfigArgs),
    /// Exec credential plugin for kubectl: prints the key's token as an ExecCredential.
    Credential(CredentialArgs),
    /// Print shell completions (bash, zsh, fish, ...).
    Completions(CompletionsArgs),
}

/// A duration such as `90d`, `12h`, `30s` or `1h30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl std::str::FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let span: jiff::Span = s
            .parse()
            .map_err(|_| format!("{s:?} is not a duration; use e.g. 30s, 5m, 12h, 90d"))?;
        let d = span
            .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
            .ok()
            .and_then(|d| Duration::try_from(d).ok())
            .ok_or_else(|| format!("{s:?} is not a positive duration"))?;
        Ok(HumanDuration(d))
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TLS listener for POST /authenticate. Default 127.0.0.1:8443, or 0.0.0.0:8443 in a cluster.
    #[arg(long, env = "KEYGATE_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Plain-HTTP listener for /healthz, /readyz and /metrics.
    #[arg(
        long,
        env = "KEYGATE_ADMIN_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:9090"
    )]
    pub admin_listen: SocketAddr,

    /// Server certificate (PEM), reloaded when it changes. Absent: generated under <data-dir>/certs.
    #[arg(
        long,
        env = "KEYGATE_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// Server private key (PEM), reloaded when it changes.
    #[arg(
        long,
        env = "KEYGATE_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Require client certificates signed by this CA (PEM), so only kube-apiserver may ask.
    #[arg(long, env = "KEYGATE_CLIENT_CA", value_name = "FILE")]
    pub client_ca: Option<PathBuf>,

    /// How often to check the certificate files for changes.
    #[arg(
        long,
        env = "KEYGATE_TLS_RELOAD_INTERVAL",
        default_value = "2s",
        value_name = "DURATION"
    )]
    pub tls_reload_interval: HumanDuration,

    /// Username prefix; the username is this followed by the key ID lowercased.
    #[arg(long, env = "KEYGATE_USER_PREFIX", default_value = crate::review::DEFAULT_USER_PREFIX)]
    pub user_prefix: String,

    /// Groups from key records that may be emitted: a name, a prefix ending in `*`, or `*` for
    /// all. Repeatable or comma-separated. `system:` groups are never emitted.
    #[arg(
        long = "allowed-group",
        env = "KEYGATE_ALLOWED_GROUPS",
        value_delimiter = ',',
        default_value = "*"
    )]
    pub allowed_groups: Vec<GroupPattern>,

    /// Maximum open webhook connections; more are closed at once.
    #[arg(long, env = "KEYGATE_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// HTTP/1 keep-alive idle timeout, also the time allowed to send request headers.
    #[arg(
        long,
        env = "KEYGATE_IDLE_TIMEOUT",
        default_value = "30s",
        value_name = "DURATION"
    )]
    pub idle_timeout: HumanDuration,

    /// Time allowed for the TLS handshake and for sending a request body.
    #[arg(
        long,
        env = "KEYGATE_REQUEST_TIMEOUT",
        default_value = "10s",
        value_name = "DURATION"
    )]
    pub request_timeout: HumanDuration,

    /// Maximum concurrent HTTP/2 streams per connection.
    #[arg(long, env = "KEYGATE_MAX_STREAMS", default_value_t = 1000)]
    pub max_concurrent_streams: u32,

    /// After SIGTERM, keep accepting reviews this long with /readyz failing, so a Service or
    /// load balancer stops routing here before the listener closes (e.g. 5s in a Deployment).
    #[arg(
        long,
        env = "KEYGATE_SHUTDOWN_DELAY",
        default_value = "0s",
        value_name = "DURATION"
    )]
    pub shutdown_delay: HumanDuration,

    /// After SIGTERM (and --shutdown-delay), how long in-flight requests may take to finish.
    #[arg(
        long,
        env = "KEYGATE_SHUTDOWN_GRACE",
        default_value = "25s",
        value_name = "DURATION"
    )]
    pub shutdown_grace: HumanDuration,

    /// How often at most the last use of each key is written to its record (the
    /// keygate.dev/last-used annotation), off the request path. 0s turns recording off.
    #[arg(
        long,
        env = "KEYGATE_LAST_USED_INTERVAL",
        default_value = "5m",
        value_name = "DURATION"
    )]
    pub last_used_interval: HumanDuration,
}

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
    /// URL of keygate's webhook as kube-apiserver reaches it.
    #[arg(long, default_value = "https://127.0.0.1:8443/authenticate")]
    pub server: String,

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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_accept_days_and_refuse_garbage() {
        assert_eq!(
            "90d".parse::<HumanDuration>().unwrap().0,
            Duration::from_secs(90 * 86400)
        );
        assert_eq!(
            "1h30m".parse::<HumanDuration>().unwrap().0,
            Duration::from_secs(5400)
        );
        assert!("soon".parse::<HumanDuration>().is_err());
        assert!("-5m".parse::<HumanDuration>().is_err());
    }
}
