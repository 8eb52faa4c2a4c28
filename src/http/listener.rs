//! Listeners: the TLS webhook (HTTP/2 or HTTP/1.1 by ALPN) and the plain-HTTP admin endpoint.
//!
//! Each connection runs in its own task and span. Bounds keep a bad peer from hurting others:
//! a TLS handshake timeout, a header/idle timeout, a body timeout, a body size limit, a cap on
//! open connections, and a cap on concurrent HTTP/2 streams. On shutdown the listener stops
//! accepting and in-flight requests finish (up to a grace period).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Webhook, admin};
use crate::index::Index;
use crate::metrics::Metrics;
use crate::tls::SharedConfig;

/// Connection limits and timeouts of the webhook listener.
#[derive(Debug, Clone)]
pub struct Limits {
    pub handshake_timeout: Duration,
    /// HTTP/1: time allowed to send request headers, also the keep-alive idle timeout.
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_concurrent_streams: u32,
    /// How long in-flight requests may take to finish after shutdown begins.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_concurrent_streams: 1_000,
            shutdown_grace: Duration::from_secs(25),
        }
    }
}

/// Accepts one connection. On failure (out of file descriptors and the like) it logs and backs
/// off briefly instead of spinning, and returns `None`.
async fn accept(listener: &TcpListener) -> Option<(TcpStream, SocketAddr)> {
    match listener.accept().await {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::warn!(error = %e, "accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

/// Serves the webhook over TLS on `listener` until `shutdown` resolves, then drains.
pub async fn serve_webhook(
    listener: TcpListener,
    tls: SharedConfig,
    webhook: Arc<Webhook>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = accept(&listener) => match accepted {
                Some(a) => a,
                None => continue,
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            webhook.metrics.connection_refused();
            tracing::warn!(peer = %peer, max = limits.max_connections, "connection refused: --max-connections reached");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.load_full());
        let webhook = webhook.clone();
        let limits = limits.clone();
        let watcher = graceful.watcher();
        let span = tracing::info_span!("conn", peer = %peer);
        tokio::spawn(
            async move {
                webhook.metrics.connection_opened();
                serve_tls_connection(stream, peer, acceptor, webhook.clone(), &limits, watcher)
                    .await;
                webhook.metrics.connection_closed();
                drop(permit);
            }
            .instrument(span),
        );
    }
    drop(listener);
    tracing::info!("webhook listener closed; waiting for in-flight requests");
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
}

async fn serve_tls_connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    webhook: Arc<Webhook>,
    limits: &Limits,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            return;
        }
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let service = service_fn(move |req| {
        let webhook = webhook.clone();
        async move { Ok::<_, Infallible>(webhook.handle(req, peer).await) }
    });
    let io = TokioIo::new(tls);
    let result = if h2 {
        let conn = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_concurrent_streams)
            .max_header_list_size(64 * 1024)
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(10))
            .serve_connection(io, service);
        watcher.watch(conn).await
    } else {
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.idle_timeout)
            .max_buf_size(64 * 1024)
            .serve_connection(io, service);
        watcher.watch(conn).await
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Serves `/healthz`, `/readyz` and `/metrics` over plain HTTP/1.1 until `shutdown` resolves;
/// `/readyz` fails once `draining` is cancelled.
pub async fn serve_admin(
    listener: TcpListener,
    index: Index,
    metrics: Arc<Metrics>,
    draining: CancellationToken,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = accept(&listener) => match accepted {
                Some(a) => a,
                None => continue,
            },
        };
        let (index, metrics, draining) = (index.clone(), metrics.clone(), draining.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let resp = admin::handle(&req, &index, &metrics, draining.is_cancelled());
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
