//! Arguments of `keygate serve`, converted into the library's [`ServeSettings`].

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use super::{ByteSize, Global, HumanDuration};
use crate::authorizer::AuthorizerSettings;
use crate::http::Limits;
use crate::identity::GroupPattern;
use crate::serve::{ServeSettings, TlsSource};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TLS listener for POST /authenticate and POST /authorize. Default 127.0.0.1:8443, or 0.0.0.0:8443 in a cluster.
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
            authorizer: AuthorizerSettings {
                cache_ttl: self.authorize_cache_ttl.0,
                cache_size: self.authorize_cache_size,
                sar_timeout: self.authorize_sar_timeout.0,
                deny_revoked: self.authorize_deny_revoked,
            },
        }
    }
}
