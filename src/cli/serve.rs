//! Arguments of `keygate serve`, converted into the library's [`ServeSettings`].

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use super::{ApiPolicyArgs, ByteSize, Global, HumanDuration};
use crate::authorizer::AuthorizerSettings;
use crate::http::Limits;
use crate::identity::GroupPattern;
use crate::requestheader::{self, RequestHeaderSettings};
use crate::serve::{ApiServe, ServeSettings, TlsSource};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TLS listener for POST /authenticate, POST /authorize (and the API with --api). Default
    /// 127.0.0.1:8443, or 0.0.0.0:8443 in a cluster.
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
    /// Needed on a non-loopback --listen with --tls-cert. Absent in the embedded mode: the
    /// generated client certificate (in <data-dir>/webhook.kubeconfig) is required.
    #[arg(long, env = "KEYGATE_CLIENT_CA", value_name = "FILE")]
    pub client_ca: Option<PathBuf>,

    /// Answer clients that present no certificate: allows a non-loopback --listen without
    /// --client-ca, and turns off the embedded mode's client certificate. Anyone who reaches
    /// the port can then test tokens.
    #[arg(long, env = "KEYGATE_ALLOW_UNAUTHENTICATED_CLIENTS")]
    pub allow_unauthenticated_clients: bool,

    /// How often to check the certificate files for changes.
    #[arg(
        long,
        env = "KEYGATE_TLS_RELOAD_INTERVAL",
        default_value = "2s",
        value_name = "DURATION"
    )]
    pub tls_reload_interval: HumanDuration,

    /// Username prefix; the username is this followed by the key ID lowercased.
    #[arg(long, env = "KEYGATE_USER_PREFIX", default_value = crate::identity::DEFAULT_USER_PREFIX)]
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

    /// Maximum webhook connections past their TLS handshake (with --client-ca: clients with a
    /// valid certificate); more are closed at once.
    #[arg(long, env = "KEYGATE_MAX_CONNECTIONS", default_value_t = 250)]
    pub max_connections: usize,

    /// Maximum TLS handshakes in progress. Past it, a new connection cuts the oldest handshake
    /// of the source address with the most handshakes in progress.
    #[arg(long, env = "KEYGATE_MAX_HANDSHAKES", default_value_t = 256)]
    pub max_handshakes: usize,

    /// Time allowed for the TLS handshake.
    #[arg(
        long,
        env = "KEYGATE_HANDSHAKE_TIMEOUT",
        default_value = "5s",
        value_name = "DURATION"
    )]
    pub handshake_timeout: HumanDuration,

    /// HTTP/1 keep-alive idle timeout, also the time allowed to send request headers.
    #[arg(
        long,
        env = "KEYGATE_IDLE_TIMEOUT",
        default_value = "30s",
        value_name = "DURATION"
    )]
    pub idle_timeout: HumanDuration,

    /// HTTP/2 connections with no open stream for this long are shut down gracefully.
    #[arg(
        long,
        env = "KEYGATE_HTTP2_IDLE_TIMEOUT",
        default_value = "2m",
        value_name = "DURATION"
    )]
    pub http2_idle_timeout: HumanDuration,

    /// Time allowed for sending a request body.
    #[arg(
        long,
        env = "KEYGATE_REQUEST_TIMEOUT",
        default_value = "10s",
        value_name = "DURATION"
    )]
    pub request_timeout: HumanDuration,

    /// Maximum concurrent HTTP/2 streams per connection (kube-apiserver's Go client assumes
    /// 100 until told otherwise and uses more connections past the cap; keep it at least 100).
    #[arg(long, env = "KEYGATE_MAX_STREAMS", default_value_t = 250)]
    pub max_concurrent_streams: u32,

    /// Memory for requests being received, all connections together (headers, body and a fixed
    /// 4 KiB each); a request that finds it spent gets 503 with Retry-After: 1.
    #[arg(
        long,
        env = "KEYGATE_MAX_REQUEST_MEMORY",
        default_value = "32Mi",
        value_name = "SIZE"
    )]
    pub max_request_memory: ByteSize,

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

    /// Refuse key records whose seal does not verify with this Ed25519 public key (PEM; several
    /// PUBLIC KEY blocks trust several keys, for rotation). Set it wherever the AccessKey API
    /// is installed: a record it did not write then never authenticates.
    #[arg(long, env = "KEYGATE_RECORD_VERIFY_KEY", value_name = "FILE")]
    pub record_verify_key: Option<PathBuf>,

    /// Serve the record guard (a ValidatingAdmissionWebhook at /validate-records): only these
    /// usernames may create, change or delete key records in the key namespace (the AccessKey
    /// API's ServiceAccount, e.g. system:serviceaccount:keygate:keygate-api). Repeatable.
    #[arg(
        long = "record-writer",
        env = "KEYGATE_RECORD_WRITERS",
        value_delimiter = ',',
        value_name = "USERNAME"
    )]
    pub record_writers: Vec<String>,

    /// Kube store: reads of a record the index does not know yet (a key used just after it
    /// was created or regenerated), at most this many per second (bursts of as many). 0 turns
    /// them off: such a key is then refused until the watch delivers it.
    #[arg(long, env = "KEYGATE_READ_THROUGH_PER_SECOND", default_value_t = 20)]
    pub read_through_per_second: u32,
    /// POST /authorize: how long kube-apiserver's answer about a key creator's rights is
    /// reused. Longer saves SubjectAccessReviews; a right taken from the creator reaches the key
    /// only after it (plus kube-apiserver's own authorization cache).
    #[arg(
        long,
        env = "KEYGATE_AUTHORIZE_CACHE_TTL",
        default_value = "5s",
        value_name = "DURATION"
    )]
    pub authorize_cache_ttl: HumanDuration,

    /// POST /authorize: at most this many creator answers are cached.
    #[arg(long, env = "KEYGATE_AUTHORIZE_CACHE_SIZE", default_value_t = 10_000)]
    pub authorize_cache_size: u64,

    /// POST /authorize: time allowed for one SubjectAccessReview about a key creator. Past it,
    /// the key is granted nothing (fail closed). Keep it well under kube-apiserver's webhook
    /// timeout.
    #[arg(
        long,
        env = "KEYGATE_AUTHORIZE_SAR_TIMEOUT",
        default_value = "2s",
        value_name = "DURATION"
    )]
    pub authorize_sar_timeout: HumanDuration,

    /// POST /authorize: instant revocation. Deny every request of a disabled, expired, deleted
    /// or unknown key (or one cut off by a key above it) instead of leaving it to the next
    /// authorizer. For --authorization-mode=Node,Webhook,RBAC with short webhook cache TTLs:
    /// kube-apiserver then refuses a revoked key within a second, even while it still holds
    /// the key's authentication in its 10 s cache. Everyone else still gets no opinion.
    #[arg(long, env = "KEYGATE_AUTHORIZE_DENY_REVOKED")]
    pub authorize_deny_revoked: bool,

    #[command(flatten)]
    pub api: ApiArgs,
}

/// `--api` and whom it trusts as kube-apiserver's front proxy.
#[derive(Debug, Args)]
#[command(next_help_heading = "AccessKey API (--api)")]
pub struct ApiArgs {
    /// Also serve the AccessKey API (keygate.dev/v1alpha1) on the TLS listener, for
    /// kube-apiserver's aggregation layer (needs --store kube). Only kube-apiserver's front
    /// proxy is answered there; the webhooks keep --client-ca.
    #[arg(long, env = "KEYGATE_API")]
    pub api: bool,

    /// CA (PEM) of kube-apiserver's front-proxy client certificate (its
    /// --requestheader-client-ca-file). Absent: the front-proxy settings are read from the
    /// ConfigMap kube-system/extension-apiserver-authentication with keygate's kubeconfig, and
    /// read again every minute.
    #[arg(
        long,
        env = "KEYGATE_REQUESTHEADER_CLIENT_CA",
        value_name = "FILE",
        requires = "api"
    )]
    pub requestheader_client_ca: Option<PathBuf>,

    /// Common names the front-proxy certificate may have (kube-apiserver's
    /// --requestheader-allowed-names). Repeatable or comma-separated.
    #[arg(
        long,
        env = "KEYGATE_REQUESTHEADER_ALLOWED_NAMES",
        value_delimiter = ',',
        value_name = "NAME",
        requires = "requestheader_client_ca"
    )]
    pub requestheader_allowed_names: Vec<String>,

    /// Headers naming the user; the first with a value wins.
    #[arg(
        long,
        env = "KEYGATE_REQUESTHEADER_USERNAME_HEADERS",
        value_delimiter = ',',
        value_name = "HEADER",
        default_value = requestheader::DEFAULT_USERNAME_HEADER,
        requires = "requestheader_client_ca"
    )]
    pub requestheader_username_headers: Vec<String>,

    /// Headers naming the user's groups (every value of each).
    #[arg(
        long,
        env = "KEYGATE_REQUESTHEADER_GROUP_HEADERS",
        value_delimiter = ',',
        value_name = "HEADER",
        default_value = requestheader::DEFAULT_GROUP_HEADER,
        requires = "requestheader_client_ca"
    )]
    pub requestheader_group_headers: Vec<String>,

    /// Prefixes of the headers carrying the user's extra (the rest of the name, percent-decoded,
    /// is the key).
    #[arg(
        long,
        env = "KEYGATE_REQUESTHEADER_EXTRA_HEADERS_PREFIX",
        value_delimiter = ',',
        value_name = "PREFIX",
        default_value = requestheader::DEFAULT_EXTRA_PREFIX,
        requires = "requestheader_client_ca"
    )]
    pub requestheader_extra_headers_prefix: Vec<String>,

    /// Accept an empty list of allowed names (from the flag or the ConfigMap): then any
    /// certificate signed by the request-header CA may act as any user on the API.
    #[arg(long, env = "KEYGATE_REQUESTHEADER_ALLOW_ANY_NAME", requires = "api")]
    pub requestheader_allow_any_name: bool,

    /// Let members of system:masters create inheritCreator keys. RBAC cannot take their rights
    /// away, so such a key could never be reduced by removing a binding; off by default.
    #[arg(long, env = "KEYGATE_ALLOW_INHERIT_FOR_MASTERS", requires = "api")]
    pub allow_inherit_for_masters: bool,

    /// Let ServiceAccounts create inheritCreator keys. The key would outlive the pod whose token
    /// created it; off by default.
    #[arg(
        long,
        env = "KEYGATE_ALLOW_INHERIT_FOR_SERVICE_ACCOUNTS",
        requires = "api"
    )]
    pub allow_inherit_for_service_accounts: bool,

    /// Seal every record the API writes with this Ed25519 private key (PEM, from `keygate
    /// seal-key`), so that webhooks started with the matching --record-verify-key refuse
    /// records written any other way. Keep it out of the key namespace.
    #[arg(
        long,
        env = "KEYGATE_RECORD_SIGNING_KEY",
        value_name = "FILE",
        requires = "api"
    )]
    pub record_signing_key: Option<PathBuf>,

    /// The AccessKey API's key policy (`--max-key-lifetime`).
    #[command(flatten)]
    pub api_policy: ApiPolicyArgs,
}

impl ApiArgs {
    /// The API's settings, when `--api` is given.
    pub fn settings(self) -> Option<ApiServe> {
        self.api.then_some(ApiServe {
            request_header: RequestHeaderSettings {
                client_ca: self.requestheader_client_ca,
                allowed_names: self.requestheader_allowed_names,
                username_headers: self.requestheader_username_headers,
                group_headers: self.requestheader_group_headers,
                extra_prefixes: self.requestheader_extra_headers_prefix,
                allow_any_name: self.requestheader_allow_any_name,
            },
            allow_inherit_for_masters: self.allow_inherit_for_masters,
            allow_inherit_for_service_accounts: self.allow_inherit_for_service_accounts,
            max_key_lifetime: self.api_policy.max_key_lifetime.map(|d| d.0),
            signing_key: self.record_signing_key,
        })
    }
}

impl ServeArgs {
    /// The settings these flags (and the global ones) describe.
    pub fn settings(self, global: &Global) -> ServeSettings {
        let tls = match (self.tls_cert, self.tls_key) {
            // clap requires both or neither.
            (Some(cert), Some(key)) => TlsSource::Files { cert, key },
            _ => TlsSource::Generated,
        };
        ServeSettings {
            listen: self.listen,
            admin_listen: self.admin_listen,
            tls,
            client_ca: self.client_ca,
            allow_unauthenticated_clients: self.allow_unauthenticated_clients,
            tls_reload_interval: self.tls_reload_interval.0,
            user_prefix: self.user_prefix,
            allowed_groups: self.allowed_groups,
            limits: Limits {
                handshake_timeout: self.handshake_timeout.0,
                max_handshakes: self.max_handshakes,
                idle_timeout: self.idle_timeout.0,
                http2_idle_timeout: self.http2_idle_timeout.0,
                max_connections: self.max_connections,
                max_concurrent_streams: self.max_concurrent_streams,
                shutdown_grace: self.shutdown_grace.0,
            },
            request_timeout: self.request_timeout.0,
            max_request_memory: self.max_request_memory.0,
            shutdown_delay: self.shutdown_delay.0,
            last_used_interval: self.last_used_interval.0,
            store: global.store(),
            namespace: global.namespace.clone(),
            data_dir: global.data_dir.clone(),
            client: global.client(),
            record_verify_key: self.record_verify_key,
            record_guard: (!self.record_writers.is_empty()).then(|| crate::admission::Guard {
                namespace: global.namespace.clone(),
                writers: self.record_writers,
            }),
            read_through_per_second: self.read_through_per_second,
            api: self.api.settings(),
            authorizer: AuthorizerSettings {
                cache_ttl: self.authorize_cache_ttl.0,
                cache_size: self.authorize_cache_size,
                sar_timeout: self.authorize_sar_timeout.0,
                deny_revoked: self.authorize_deny_revoked,
            },
        }
    }
}
