//! `keygate serve` as a library: [`bind`] does everything that can fail (identity policy,
//! cluster client, listeners, TLS material, the store's first steps) and writes nothing until
//! the checks before it have passed; [`Bound::spawn`] then starts serving and cannot fail.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::http::{Limits, MemoryBudget, Webhook, listener};
use crate::identity::{GroupPattern, IdentityError, IdentityPolicy};
use crate::index::{self, Index};
use crate::keystore::{DirKeys, StoreSpec, in_cluster};
use crate::kubeclient::{ClientSettings, KubeClientError};
use crate::kubeconfig::{self, KubeconfigError};
use crate::metrics::Metrics;
use crate::pki::{self, PkiError, names};
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
    /// Require client certificates signed by this CA.
    pub client_ca: Option<PathBuf>,
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
}

/// Why `keygate serve` could not start. Each message names the flag to change.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Client(#[from] KubeClientError),
    #[error("cannot listen on {addr} ({flag}): {source}")]
    Listen {
        addr: SocketAddr,
        flag: &'static str,
        source: io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot generate certificates under --data-dir: {0}")]
    Pki(#[from] PkiError),
    #[error("cannot read {path} (generated under --data-dir): {source}")]
    Generated { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Kubeconfig(#[from] KubeconfigError),
    #[error(transparent)]
    Write(#[from] fsutil::WriteError),
    #[error(transparent)]
    Dir(#[from] index::dir::DirError),
}

fn default_listen() -> SocketAddr {
    let ip = if in_cluster() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    };
    SocketAddr::new(ip, 8443)
}

/// The address kube-apiserver should use to reach a listener bound to `addr`.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        ip if ip.is_unspecified() => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port()),
        _ => addr,
    }
}

async fn listen(addr: SocketAddr, flag: &'static str) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Listen { addr, flag, source })
}

fn read_generated(path: &Path) -> Result<Vec<u8>, ServeError> {
    std::fs::read(path).map_err(|source| ServeError::Generated {
        path: path.to_owned(),
        source,
    })
}

/// The TLS files to serve, and the webhook kubeconfig written for the embedded mode.
fn tls_files(
    settings: &ServeSettings,
    listen: SocketAddr,
) -> Result<(TlsFiles, Option<PathBuf>), ServeError> {
    let client_ca = settings.client_ca.clone();
    if let TlsSource::Files { cert, key } = &settings.tls {
        let files = TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca,
        };
        return Ok((files, None));
    }
    let dir = settings.data_dir.join("certs");
    let (cert, key) = (dir.join(names::SERVER_CERT), dir.join(names::SERVER_KEY));
    if !cert.exists() || !key.exists() {
        let mut sans = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        let ip = listen.ip();
        if !ip.is_unspecified() && !ip.is_loopback() {
            sans.push(ip.to_string());
        }
        pki::generate_bundle(&sans, "kube-apiserver", 365)?.write(&dir)?;
        tracing::info!(dir = %dir.display(), "generated a self-signed CA and server certificate (ECDSA P-256)");
    }
    let ca = read_generated(&dir.join(names::CA_CERT))?;
    let client_cert = read_generated(&dir.join(names::CLIENT_CERT))?;
    let client_key = read_generated(&dir.join(names::CLIENT_KEY))?;
    let url = format!("https://{}/authenticate", reachable(listen));
    let kc = kubeconfig::webhook(&url, &ca, Some((&client_cert, &client_key)));
    // Absolute, since it is printed for use in kube-apiserver's flags.
    let path = settings.data_dir.join("webhook.kubeconfig");
    let path = std::path::absolute(&path).map_err(|source| ServeError::Generated {
        path: path.clone(),
        source,
    })?;
    fsutil::write_atomic(&path, kubeconfig::to_yaml(&kc)?.as_bytes(), true)?;
    let files = TlsFiles {
        cert,
        key,
        client_ca,
    };
    Ok((files, Some(path)))
}

/// Where the index is fed from once serving starts.
enum Feed {
    /// The dir store's watcher, already running on its own thread; kept alive while serving.
    Dir(notify::RecommendedWatcher),
    /// The kube store, started by [`Bound::spawn`].
    Kube(kube::Client),
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
}

/// Checks the settings, binds the listeners, prepares TLS and starts loading the store.
pub async fn bind(settings: ServeSettings) -> Result<Bound, ServeError> {
    let policy = IdentityPolicy::new(
        settings.user_prefix.clone(),
        settings.allowed_groups.clone(),
    )?;
    // The cluster client before anything is written: without a cluster nothing is left behind.
    let client = match &settings.store {
        StoreSpec::Kube => Some(settings.client.client().await?),
        StoreSpec::Dir(_) => None,
    };
    let addr = settings.listen.unwrap_or_else(default_listen);
    let listener = listen(addr, "--listen").await?;
    let admin = listen(settings.admin_listen, "--admin-listen").await?;
    let local = listener.local_addr().map_err(|source| ServeError::Listen {
        addr,
        flag: "--listen",
        source,
    })?;
    let (tls, webhook_kubeconfig) = tls_files(&settings, local)?;
    let tls_config = Arc::new(ArcSwap::new(tls.load()?));

    // The webhook answers 503 until the store's first full load.
    let index = Index::new(policy);
    let namespace = settings.namespace.clone();
    let (feed, usage_writer) = match (&settings.store, client) {
        (StoreSpec::Dir(path), _) => (
            Feed::Dir(index::dir::spawn(path.clone(), index.clone())?),
            UsageWriter::Dir(DirKeys::new(path.clone(), namespace)),
        ),
        (StoreSpec::Kube, client) => {
            // Made above for this store.
            let client = client.expect("a client is made for the kube store");
            let api = kube::Api::namespaced(client.clone(), &namespace);
            (Feed::Kube(client), UsageWriter::Kube(Box::new(api)))
        }
    };
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
    })
}

/// A running server; [`Serving::wait`] resolves once it has shut down.
pub struct Serving {
    task: JoinHandle<()>,
}

impl Serving {
    pub async fn wait(self) {
        // The task only ends by finishing its shutdown; a panic in it is a bug to surface.
        if let Err(e) = self.task.await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
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
            ..
        } = self;
        let dir_watcher = match feed {
            Feed::Dir(watcher) => Some(watcher),
            Feed::Kube(client) => {
                let (index, metrics, ns) =
                    (index.clone(), metrics.clone(), settings.namespace.clone());
                tokio::spawn(async move {
                    index::kube::run(client, ns, index, move || metrics.store_error()).await;
                });
                None
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
        let memory = MemoryBudget::new(settings.max_request_memory);
        metrics.track_memory(memory.clone());
        let webhook = Arc::new(Webhook {
            index: index.clone(),
            metrics: metrics.clone(),
            body_timeout: settings.request_timeout,
            usage: usage.as_ref().map(|(u, _)| u.clone() as Arc<dyn UsageSink>),
            memory,
        });
        let (draining, stop) = (CancellationToken::new(), CancellationToken::new());
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
                webhook,
                settings.limits,
                stop.cancelled_owned(),
            )
            .await;
            reloader.abort();
            let _ = admin_task.await;
            if let Some((_, task)) = usage {
                usage_stop.cancel();
                let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
            }
            drop(dir_watcher);
            tracing::info!("keygate stopped");
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
