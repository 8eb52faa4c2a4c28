//! `keygate serve`: wires the store, the index, TLS and the listeners together.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::certs::{self, TlsFiles, names};
use crate::cli::{Global, ServeArgs};
use crate::keystore::DirKeys;
use crate::metrics::Metrics;
use crate::review::IdentityPolicy;
use crate::server::{self, Limits};
use crate::service::Webhook;
use crate::store::{self, Index, StoreSpec};
use crate::usage::{self, UsageWriter};
use crate::{fsutil, kubeclient, kubeconfig};

/// Where the TLS material comes from, and the webhook kubeconfig written for the embedded mode.
struct TlsSetup {
    files: TlsFiles,
    webhook_kubeconfig: Option<PathBuf>,
}

fn default_listen() -> SocketAddr {
    let ip = if store::spec::in_cluster() {
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

/// Uses the given certificate files, or generates (once) a CA, server and client certificate
/// under `<data-dir>/certs` and writes `<data-dir>/webhook.kubeconfig` for kube-apiserver.
fn tls_setup(global: &Global, args: &ServeArgs, listen: SocketAddr) -> anyhow::Result<TlsSetup> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        return Ok(TlsSetup {
            files: TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: args.client_ca.clone(),
            },
            webhook_kubeconfig: None,
        });
    }
    let dir = global.data_dir.join("certs");
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
        let bundle = certs::generate_bundle(&sans, "kube-apiserver", 365)?;
        bundle.write(&dir)?;
        tracing::info!(dir = %dir.display(), "generated a self-signed CA and server certificate (ECDSA P-256)");
    }
    let ca = read(&dir.join(names::CA_CERT))?;
    let client = (
        read(&dir.join(names::CLIENT_CERT))?,
        read(&dir.join(names::CLIENT_KEY))?,
    );
    let url = format!("https://{}/authenticate", reachable(listen));
    let kc = kubeconfig::webhook(&url, &ca, Some((&client.0, &client.1)));
    // Absolute, since it is printed for use in kube-apiserver's flags.
    let kc_path = std::path::absolute(global.data_dir.join("webhook.kubeconfig"))?;
    fsutil::write_atomic(&kc_path, kubeconfig::to_yaml(&kc).as_bytes(), true)?;
    Ok(TlsSetup {
        files: TlsFiles {
            cert,
            key,
            client_ca: args.client_ca.clone(),
        },
        webhook_kubeconfig: Some(kc_path),
    })
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
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

pub async fn run(global: &Global, args: ServeArgs) -> anyhow::Result<()> {
    let listen = args.listen.unwrap_or_else(default_listen);
    let policy = IdentityPolicy::new(args.user_prefix.clone(), args.allowed_groups.clone())?;
    let index = Index::new(policy);
    let metrics = Metrics::new();

    let tls = tls_setup(global, &args, listen)?;
    let config = tls.files.load()?;
    let shared = Arc::new(ArcSwap::new(config));

    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (--listen)"))?;
    let admin = TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {} (--admin-listen)", args.admin_listen))?;

    // Start the store; the webhook answers 503 until its first full load.
    let store = global.store();
    let (_dir_watcher, usage_writer) = match &store {
        StoreSpec::Dir(path) => (
            Some(store::dir::spawn(path.clone(), index.clone())?),
            UsageWriter::Dir(DirKeys::new(path.clone(), global.namespace.clone())),
        ),
        StoreSpec::Kube => {
            let client = kubeclient::client(global).await?;
            let writer = UsageWriter::Kube(Box::new(kube::Api::namespaced(
                client.clone(),
                &global.namespace,
            )));
            let (index, metrics, ns) = (index.clone(), metrics.clone(), global.namespace.clone());
            tokio::spawn(async move {
                store::kube::run(client, ns, index, move || metrics.store_error()).await;
            });
            (None, writer)
        }
    };
    // Last use is recorded off the request path, at most once per key per interval.
    let usage_stop = CancellationToken::new();
    let usage = (!args.last_used_interval.0.is_zero())
        .then(|| usage::spawn(usage_writer, args.last_used_interval.0, usage_stop.clone()));
    if let Some((u, _)) = &usage {
        metrics.track_usage(u.stats.clone());
    }

    tracing::info!(
        listen = %listener.local_addr()?,
        admin = %admin.local_addr()?,
        store = %store,
        namespace = matches!(store, StoreSpec::Kube).then_some(global.namespace.as_str()),
        cert = %tls.files.cert.display(),
        client_ca = tls.files.client_ca.as_ref().map(|p| p.display().to_string()),
        webhook_kubeconfig = tls.webhook_kubeconfig.as_ref().map(|p| p.display().to_string()),
        "keygate serving"
    );
    if let Some(kc) = &tls.webhook_kubeconfig {
        tracing::info!(
            "for kube-apiserver: --authentication-token-webhook-config-file={} --authentication-token-webhook-version=v1",
            kc.display()
        );
    }

    let metrics2 = metrics.clone();
    let reloader = certs::spawn_reloader(
        tls.files.clone(),
        shared.clone(),
        args.tls_reload_interval.0,
        move |ok| metrics2.tls_reload(ok),
    );

    let webhook = Arc::new(Webhook {
        index: index.clone(),
        metrics: metrics.clone(),
        body_timeout: args.request_timeout.0,
        usage: usage
            .as_ref()
            .map(|(u, _)| u.clone() as Arc<dyn crate::service::UsageSink>),
    });
    let limits = Limits {
        handshake_timeout: args.request_timeout.0,
        idle_timeout: args.idle_timeout.0,
        max_connections: args.max_connections,
        max_concurrent_streams: args.max_concurrent_streams,
        shutdown_grace: args.shutdown_grace.0,
    };
    let (draining, stop) = (CancellationToken::new(), CancellationToken::new());
    let admin_task = tokio::spawn(server::serve_admin(
        admin,
        index,
        metrics,
        draining.clone(),
        stop.clone().cancelled_owned(),
    ));
    let (stop2, delay) = (stop.clone(), args.shutdown_delay.0);
    tokio::spawn(async move {
        termination().await;
        draining.cancel();
        if !delay.is_zero() {
            tracing::info!(delay = ?delay, "termination signal received; /readyz fails, still serving until the delay ends");
            tokio::time::sleep(delay).await;
        }
        tracing::info!("shutting down: no new connections; in-flight requests finish");
        stop2.cancel();
    });
    server::serve_webhook(
        listener,
        shared,
        webhook,
        limits,
        stop.clone().cancelled_owned(),
    )
    .await;
    reloader.abort();
    let _ = admin_task.await;
    if let Some((_, task)) = usage {
        usage_stop.cancel();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(15), task).await;
    }
    tracing::info!("keygate stopped");
    Ok(())
}
