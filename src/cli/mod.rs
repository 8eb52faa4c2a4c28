//! The command line (clap derive). Every flag can also be set from a `KEYGATE_…` variable.
//!
//! One module per command, mirrored by `commands`. Library modules know nothing of clap: each
//! owns a plain settings struct, and the arguments here convert into it.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod api_policy;
mod certs;
mod console;
mod credential;
mod keys;
mod kubeconfig;
mod serve;

pub use api_policy::ApiPolicyArgs;
pub use certs::{CertsArgs, SealKeyArgs, WebhookConfigArgs};
pub use console::ConsoleArgs;
pub use credential::CredentialArgs;
pub use keys::*;
pub use kubeconfig::KubeconfigArgs;
pub use serve::ServeArgs;

use crate::keystore::StoreSpec;
use crate::kubeclient::ClientSettings;
use crate::telemetry;

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

    /// How to reach the cluster.
    pub fn client(&self) -> ClientSettings {
        ClientSettings {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl From<LogFormat> for telemetry::LogFormat {
    fn from(f: LogFormat) -> Self {
        match f {
            LogFormat::Text => telemetry::LogFormat::Text,
            LogFormat::Json => telemetry::LogFormat::Json,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the TokenReview webhook (TLS) and the admin endpoint (/healthz, /readyz, /metrics).
    Serve(Box<ServeArgs>),
    /// Generate a CA, a server certificate and a client certificate for kube-apiserver.
    Certs(CertsArgs),
    /// Print the kubeconfig kube-apiserver needs for --authentication-token-webhook-config-file
    /// (or, with --authorizer, for --authorization-webhook-config-file; with --apiservice, the
    /// APIService and Service of the AccessKey API).
    WebhookConfig(WebhookConfigArgs),
    /// Generate the key pair that seals key records (private: the AccessKey API; public: serve).
    SealKey(SealKeyArgs),
    /// Create, list, rotate, disable and delete access keys.
    Keys(KeysArgs),
    /// Open the key page in your browser (served on loopback, for you only).
    Console(ConsoleArgs),
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
        crate::keystore::lifecycle::parse_duration(s).map(HumanDuration)
    }
}

/// A size in bytes: a number with an optional Kubernetes-style binary suffix (`Ki`, `Mi`, `Gi`),
/// as in a Deployment's memory limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub usize);

impl std::str::FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
            Some(i) => s.split_at(i),
            None => (s, ""),
        };
        let shift = match unit {
            "" => 0,
            "Ki" => 10,
            "Mi" => 20,
            "Gi" => 30,
            _ => return Err(format!("{s:?} is not a size; use e.g. 32Mi, 512Ki, 1Gi")),
        };
        digits
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_mul(1 << shift))
            .map(ByteSize)
            .ok_or_else(|| format!("{s:?} is not a size; use e.g. 32Mi, 512Ki, 1Gi"))
    }
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    keygate completions bash > /etc/bash_completion.d/keygate\n  \
    keygate completions zsh > \"${fpath[1]}/_keygate\"\n  \
    keygate completions fish > ~/.config/fish/completions/keygate.fish")]
pub struct CompletionsArgs {
    /// The shell to write completions for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
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

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!("32Mi".parse::<ByteSize>().unwrap().0, 32 << 20);
        assert_eq!("4096".parse::<ByteSize>().unwrap().0, 4096);
        assert_eq!("1Gi".parse::<ByteSize>().unwrap().0, 1 << 30);
        for bad in ["", "Mi", "32MB", "-1", "1.5Mi"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad}");
        }
    }
}
