//! `keygate serve` as a library: [`bind`] does everything that can fail (identity policy,
//! cluster client, listeners, TLS material, the store's first steps) and writes nothing until
//! the checks before it have passed; [`Bound::spawn`] then starts serving and cannot fail.

mod api;
mod certs;

use api::ApiParts;
pub use api::{ApiServe, FRONT_PROXY_REFRESH};

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::authorizer::{Authorizer, AuthorizerSettings};
use crate::http::{Limits, MemoryBudget, Router, Webhook, listener};
use crate::identity::{GroupPattern, IdentityError, IdentityPolicy};
use crate::index::{self, Index, StoreStopped};
use crate::keystore::{DirKeys, StoreSpec, in_cluster};
use crate::kubeclient::{ClientSettings, KubeClientError};
use crate::kubeconfig::KubeconfigError;
use crate::metrics::Metrics;
use crate::pki::PkiError;
use crate::readthrough::ReadThrough;
use crate::requestheader::RequestHeaderError;
use crate::tls::{SharedConfig, TlsError, TlsFiles};
use crate::usage::{self, UsageSink, UsageWriter};
use crate::{fsutil, tls};

/// Where the server certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// `--tls-cert` and `--tls-key`.
    Files { cert: PathBuf, key: PathBuf },
    /// Generated once under `<data-dir>/certs`, with `<data-dir>/webhook.kubeconfig` written
    /// for kube-apiserver (the embedded mode).
    Generated,
}

/// Everything `keygate serve` is configured with.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// The TLS listener; `None`: 127.0.0.1:8443, or 0.0.0.0:8443 in a cluster.
    pub listen: Option<SocketAddr>,
    pub admin_listen: SocketAddr,
    pub tls: TlsSource,
    /// Require client certificates signed by this CA. Without it, the embedded mode requires
    /// the client certificate it generated.
    pub client_ca: Option<PathBuf>,
    /// Serve clients without a certificate: on a non-loopback listener without `client_ca`
    /// (refused otherwise), and in the embedded mode.
    pub allow_unauthenticated_clients: bool,
    pub tls_reload_interval: Duration,
    pub user_prefix: String,
    pub allowed_groups: Vec<GroupPattern>,
    /// Connection limits.
    pub limits: Limits,
    /// Time allowed for sending a request body.
    pub request_timeout: Duration,
    /// Bytes for requests being received, all connections together ([`MemoryBudget`]).
    pub max_request_memory: usize,
    pub shutdown_delay: Duration,
    /// Zero turns last-use recording off.
    pub last_used_interval: Duration,
    pub store: StoreSpec,
    /// The key namespace (kube store), also written into dir-store records.
    pub namespace: String,
    /// Where generated certificates and the webhook kubeconfig go.
    pub data_dir: PathBuf,
    pub client: ClientSettings,
    /// `--api`: also serve the AccessKey API (kube store only).
    pub api: Option<ApiServe>,
    /// Refuse records whose seal does not verify with this public key file.
    pub record_verify_key: Option<PathBuf>,
    /// Serve the record guard (admission webhook).
    pub record_guard: Option<crate::admission::Guard>,
    /// Kube store: direct reads of unknown records per second (0: none).
    pub read_through_per_second: u32,
    /// `POST /authorize`. Creators' rights are asked with the kube store's client; with the
    /// dir store there is none, and inheriting keys get no opinion.
    pub authorizer: AuthorizerSettings,
}

/// Why `keygate serve` could not start. Each message names the flag to change.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(
        "refusing to serve {addr} (--listen) without --client-ca: anyone who can reach it could \
         test tokens. Pass --client-ca with the CA of kube-apiserver's client certificate, \
         listen on loopback only (--listen 127.0.0.1:8443), or accept the risk with \
         --allow-unauthenticated-clients"
    )]
    Unauthenticated { addr: SocketAddr },
    #[error(
        "--api serves keys from the kube store, but --store is {store}: pass --store kube \
         (records in Secrets of --namespace)"
    )]
    ApiNeedsKube { store: String },
    #[error(transparent)]
    RequestHeader(#[from] RequestHeaderError),
    #[error(transparent)]
    Client(#[from] KubeClientError),
    #[error("cannot listen on {addr} ({flag}): {error}")]
    Listen {
        addr: SocketAddr,
        flag: &'static str,
        error: io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot generate certificates under --data-dir: {0}")]
    Pki(PkiError),
    #[error("cannot read {path} (generated under --data-dir): {error}")]
    Generated { path: PathBuf, error: io::Error },
    #[error(transparent)]
    Kubeconfig(#[from] KubeconfigError),
    #[error(transparent)]
    Write(#[from] fsutil::WriteError),
    #[error(transparent)]
    Trust(#[from] fsutil::TrustError),
    #[error(transparent)]
    Dir(#[from] index::dir::DirError),
    #[error(transparent)]
    Seal(#[from] crate::seal::SealError),
    #[error(
        "--record-signing-key {signing} is not one of the public keys in --record-verify-key \
         {verify}: every key the API mints would be refused; add its public key (keygate \
         seal-key wrote it next to the private key) to the verify file"
    )]
    SealKeysMismatch {
        signing: std::path::PathBuf,
        verify: std::path::PathBuf,
    },
    /// Not a start-up error: the store stopped while serving, and keygate shut down so that
    /// it is restarted (a supervisor, kubelet or systemd, sees the failure exit).
    #[error("{0}; keygate shut down so that it is restarted")]
    StoreStopped(StoreStopped),
}

fn default_listen() -> SocketAddr {
    let ip = if in_cluster() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    };
    SocketAddr::new(ip, 8443)
}

async fn listen(addr: SocketAddr, flag: &'static str) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| ServeError::Listen { addr, flag, error })
}

/// Where the index is fed from once serving starts.
enum Feed {
    /// The dir store, already running on its own thread; its watcher is kept alive while
    /// serving.
    Dir(index::dir::DirFeed),
    /// The kube store, started by [`Bound::spawn`]; with the API server's URL, for its logs.
    Kube(kube::Client, String),
}

/// A server that has passed every check and holds its listeners, ready to [`Bound::spawn`].
pub struct Bound {
    settings: ServeSettings,
    listener: TcpListener,
    admin: TcpListener,
    tls: TlsFiles,
    tls_config: SharedConfig,
    webhook_kubeconfig: Option<PathBuf>,
    index: Index,
    metrics: Arc<Metrics>,
    feed: Feed,
    usage_writer: UsageWriter,
    api: Option<ApiParts>,
    read_through: Option<Arc<ReadThrough>>,
}

/// Checks the settings, binds the listeners, prepares TLS and starts loading the store.
pub async fn bind(settings: ServeSettings) -> Result<Bound, ServeError> {
    let policy = IdentityPolicy::new(
        settings.user_prefix.clone(),
        settings.allowed_groups.clone(),
    )?;
    let addr = settings.listen.unwrap_or_else(default_listen);
    let given_files = matches!(settings.tls, TlsSource::Files { .. });
    if given_files
        && settings.client_ca.is_none()
        && !addr.ip().is_loopback()
        && !settings.allow_unauthenticated_clients
    {
        return Err(ServeError::Unauthenticated { addr });
    }
    if settings.api.is_some() && !matches!(settings.store, StoreSpec::Kube) {
        return Err(ServeError::ApiNeedsKube {
            store: settings.store.to_string(),
        });
    }
    // The cluster client before anything is written: without a cluster nothing is left behind.
    let client = match &settings.store {
        StoreSpec::Kube => Some(settings.client.client_and_server().await?),
        StoreSpec::Dir(_) => None,
    };
    let api = match (&settings.api, &client) {
        (Some(api), Some((client, _))) => Some(api::prepare(&settings, api, client).await?),
        _ => None,
    };
    let listener = listen(addr, "--listen").await?;
    let admin = listen(settings.admin_listen, "--admin-listen").await?;
    let local = listener.local_addr().map_err(|error| ServeError::Listen {
        addr,
        flag: "--listen",
        error,
    })?;
    // The data directory holds the generated CA key and, by default, the keys: it must be
    // ours alone, or whoever else controls it controls who gets in.
    let keys_inside =
        matches!(&settings.store, StoreSpec::Dir(p) if p.starts_with(&settings.data_dir));
    if keys_inside || matches!(settings.tls, TlsSource::Generated) {
        fsutil::check_private_dir(&settings.data_dir, "--data-dir")?;
    }
    let front_proxy = api.as_ref().map(|a| a.front_proxy.clone());
    let prepared = certs::prepare_tls(&settings, local, front_proxy)?;

    // The webhook answers 503 until the store's first full load.
    let index = Index::new(policy);
    if let Some(path) = &settings.record_verify_key {
        index.set_verifier(crate::seal::Verifier::load(path, "--record-verify-key")?);
    }
    let namespace = settings.namespace.clone();
    let (feed, usage_writer, read_through) = match (&settings.store, client) {
        (StoreSpec::Dir(path), _) => (
            Feed::Dir(index::dir::spawn(path.clone(), index.clone())?),
            UsageWriter::Dir(DirKeys::new(path.clone(), namespace)),
            None,
        ),
        (StoreSpec::Kube, client) => {
            // Made above for this store.
            let (client, server) = client.expect("a client is made for the kube store");
            let api = kube::Api::namespaced(client.clone(), &namespace);
            let read_through = (settings.read_through_per_second > 0).then(|| {
                Arc::new(ReadThrough::new(
                    api.clone(),
                    index.clone(),
                    settings.read_through_per_second,
                ))
            });
            let leases =
                UsageWriter::Kube(Box::new(kube::Api::namespaced(client.clone(), &namespace)));
            (Feed::Kube(client, server), leases, read_through)
        }
    };
    // Everything that can fail has passed: only now are generated files written.
    if let Some(g) = &prepared.generated {
        g.write()?;
    }
    let webhook_kubeconfig = prepared.generated.map(|g| g.kubeconfig);
    let (tls, tls_config) = (prepared.files, Arc::new(ArcSwap::new(prepared.config)));
    Ok(Bound {
        settings,
        listener,
        admin,
        tls,
        tls_config,
        webhook_kubeconfig,
        index,
        metrics: Metrics::new(),
        feed,
        usage_writer,
        api,
        read_through,
    })
}

/// A running server; [`Serving::wait`] resolves once it has shut down.
pub struct Serving {
    task: JoinHandle<Option<StoreStopped>>,
}

impl Serving {
    /// Waits for the shutdown. An error means the store stopped and the server shut itself
    /// down: the process should exit with a failure so that it is restarted.
    pub async fn wait(self) -> Result<(), ServeError> {
        match self.task.await {
            Ok(None) => Ok(()),
            Ok(Some(why)) => Err(ServeError::StoreStopped(why)),
            // The task only ends by finishing its shutdown; a panic in it is a bug to surface.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Ok(()),
        }
    }
}

/// Watches the store until shutdown. A store that stops no longer applies revocations, so the
/// index is failed at once (reviews get 503, which kube-apiserver does not cache, and /readyz
/// fails), then the server shuts down without the usual delay: there is nothing to drain
/// towards. Returns why the store stopped, if it did.
async fn supervise(
    stopped: impl Future<Output = StoreStopped>,
    index: Index,
    stop: CancellationToken,
) -> Option<StoreStopped> {
    tokio::select! {
        biased;
        _ = stop.cancelled() => None,
        why = stopped => {
            tracing::error!(error = %why, "key store stopped: failing /readyz and reviews, shutting down so that keygate is restarted");
            index.fail(why.to_string());
            stop.cancel();
            Some(why)
        }
    }
}

impl Bound {
    /// The webhook listener's address (the port is known here even when `--listen` said 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Starts serving. When `shutdown` resolves, `/readyz` fails at once, reviews are still
    /// answered for `shutdown_delay`, then the listener closes and in-flight requests finish
    /// (up to the grace period); pending last-use times are written before the task ends.
    pub fn spawn(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Serving {
        self.log_serving();
        let Bound {
            settings,
            listener,
            admin,
            tls,
            tls_config,
            index,
            metrics,
            feed,
            usage_writer,
            api,
            read_through,
            ..
        } = self;
        if let Some(rt) = &read_through {
            metrics.track_read_through(rt.stats.clone());
        }
        // The authorizer asks creators' rights with the kube store's client (none with dir).
        let kube_client = match &feed {
            Feed::Kube(client, _) => Some(client.clone()),
            Feed::Dir(_) => None,
        };
        let (dir_watcher, store_stopped) = match feed {
            Feed::Dir(feed) => {
                let stopped = feed.stopped;
                let stopped: futures::future::BoxFuture<'static, StoreStopped> =
                    Box::pin(async move {
                        // The thread always reports before it ends, short of an abort.
                        stopped.await.unwrap_or_else(|_| StoreStopped::Panicked {
                            store: "dir",
                            message: "its thread ended without a report".into(),
                        })
                    });
                (Some(feed.watcher), stopped)
            }
            Feed::Kube(client, server) => {
                let (index, metrics, ns) =
                    (index.clone(), metrics.clone(), settings.namespace.clone());
                let task = tokio::spawn(async move {
                    let errors = move || metrics.store_error();
                    index::kube::run(client, ns, server, index, errors).await;
                });
                let stopped: futures::future::BoxFuture<'static, StoreStopped> =
                    Box::pin(index::kube::ended(task));
                (None, stopped)
            }
        };
        // Last use is recorded off the request path, at most once per key per interval.
        let usage_stop = CancellationToken::new();
        let usage = (!settings.last_used_interval.is_zero()).then(|| {
            usage::spawn(
                usage_writer,
                settings.last_used_interval,
                usage_stop.clone(),
            )
        });
        if let Some((u, _)) = &usage {
            metrics.track_usage(u.stats.clone());
        }
        let reload_metrics = metrics.clone();
        let reloader = tls::spawn_reloader(
            tls,
            tls_config.clone(),
            settings.tls_reload_interval,
            move |ok| reload_metrics.tls_reload(ok),
        );
        let (api, refresher) = match api {
            Some(api) => {
                let (handler, refresher) = api.spawn(settings.tls_reload_interval);
                (Some(handler), Some(refresher))
            }
            None => (None, None),
        };
        let memory = MemoryBudget::new(settings.max_request_memory);
        metrics.track_memory(memory.clone());
        let authorizer = Arc::new(Authorizer::new(
            index.clone(),
            kube_client,
            &settings.authorizer,
            metrics.authz.clone(),
        ));
        let webhook = Arc::new(Webhook {
            index: index.clone(),
            metrics: metrics.clone(),
            body_timeout: settings.request_timeout,
            usage: usage.as_ref().map(|(u, _)| u.clone() as Arc<dyn UsageSink>),
            memory,
            admission: settings.record_guard.clone().map(Arc::new),
            read_through: read_through.clone(),
            authorizer: Some(authorizer),
        });
        let router = match api {
            Some(api) => Router::new(webhook).with_api(api),
            None => Router::new(webhook),
        };
        let (draining, stop) = (CancellationToken::new(), CancellationToken::new());
        let supervisor = tokio::spawn(supervise(store_stopped, index.clone(), stop.clone()));
        let admin_task = tokio::spawn(listener::serve_admin(
            admin,
            index,
            metrics,
            draining.clone(),
            stop.clone().cancelled_owned(),
        ));
        tokio::spawn(stop_after(
            shutdown,
            settings.shutdown_delay,
            draining,
            stop.clone(),
        ));
        let task = tokio::spawn(async move {
            listener::serve_webhook(
                listener,
                tls_config,
                Arc::new(router),
                settings.limits,
                stop.cancelled_owned(),
            )
            .await;
            reloader.abort();
            if let Some(r) = refresher {
                r.abort();
            }
            let _ = admin_task.await;
            if let Some((_, task)) = usage {
                usage_stop.cancel();
                let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
            }
            drop(dir_watcher);
            tracing::info!("keygate stopped");
            // Resolved by now: `stop` was cancelled, by the shutdown or by the supervisor.
            supervisor.await.ok().flatten()
        });
        Serving { task }
    }

    fn log_serving(&self) {
        let (settings, tls) = (&self.settings, &self.tls);
        tracing::info!(
            listen = %DisplayAddr(self.listener.local_addr().ok()),
            admin = %DisplayAddr(self.admin.local_addr().ok()),
            store = %settings.store,
            namespace = matches!(settings.store, StoreSpec::Kube).then_some(settings.namespace.as_str()),
            cert = %tls.cert.display(),
            client_ca = tls.client_ca.as_ref().map(|p| p.display().to_string()),
            api = self.api.is_some(),
            front_proxy_names = self.api.as_ref().map(|a| a.allowed_names().join(",")),
            webhook_kubeconfig = self.webhook_kubeconfig.as_ref().map(|p| p.display().to_string()),
            "keygate serving"
        );
        if let Some(kc) = &self.webhook_kubeconfig {
            tracing::info!(
                "for kube-apiserver: --authentication-token-webhook-config-file={} --authentication-token-webhook-version=v1",
                kc.display()
            );
        }
    }
}

/// After `shutdown`: fail readiness at once (`draining`), keep serving for `delay` so load
/// balancers stop routing here, then stop accepting (`stop`).
async fn stop_after(
    shutdown: impl Future<Output = ()>,
    delay: Duration,
    draining: CancellationToken,
    stop: CancellationToken,
) {
    shutdown.await;
    draining.cancel();
    if !delay.is_zero() {
        tracing::info!(delay = ?delay, "termination signal received; /readyz fails, still serving until the delay ends");
        tokio::time::sleep(delay).await;
    }
    tracing::info!("shutting down: no new connections; in-flight requests finish");
    stop.cancel();
}

/// An address for the log line, or `?` if the socket could not say.
struct DisplayAddr(Option<SocketAddr>);

impl std::fmt::Display for DisplayAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(a) => a.fmt(f),
            None => f.write_str("?"),
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn termination() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = ctrl_c => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentityPolicy;

    #[tokio::test]
    async fn a_stopped_store_fails_the_index_and_stops_the_server() {
        let index = Index::new(IdentityPolicy::default());
        index.replace_all([]);
        let stop = CancellationToken::new();
        let why = supervise(
            async { StoreStopped::KubeEnded },
            index.clone(),
            stop.clone(),
        )
        .await;
        assert!(matches!(why, Some(StoreStopped::KubeEnded)));
        assert!(stop.is_cancelled(), "shutdown begun");
        assert!(!index.is_ready());
        assert_eq!(
            index.failure(),
            Some("the kube store's watch of key Secrets ended")
        );
    }

    #[tokio::test]
    async fn a_normal_shutdown_is_not_a_store_failure() {
        let index = Index::new(IdentityPolicy::default());
        index.replace_all([]);
        let stop = CancellationToken::new();
        stop.cancel();
        let why = supervise(std::future::pending(), index.clone(), stop).await;
        assert!(why.is_none());
        assert!(index.is_ready());
    }
}
