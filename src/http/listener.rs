//! Listeners: the TLS webhook (HTTP/2 or HTTP/1.1 by ALPN) and the plain-HTTP admin endpoint.
//!
//! Each connection runs in its own task and span, its HTTP/2 streams included ([`super::streams`]).
//! Bounds keep a bad peer from hurting others:
//!
//! - **Handshakes have their own budget.** A TLS handshake in progress holds a handshake slot
//!   (`max_handshakes`), never a connection slot, and is cut after `handshake_timeout`. When
//!   every handshake slot is taken, a new connection cuts the oldest handshake of the source
//!   address with the most handshakes in progress (see [`Handshakes`]). An honest handshake
//!   takes milliseconds, so a flood of silent or slow handshakes cannot lock a client out, and a
//!   flood from one address cannot push out handshakes from another.
//! - **Connection slots are for finished handshakes.** A connection takes one of the
//!   `max_connections` slots only once its handshake has completed; with `--client-ca` that
//!   means only clients with a valid certificate ever hold one. When every slot is taken, new
//!   connections are closed at once, before TLS.
//! - HTTP/1.1: an idle timeout (a connection with no request in progress for `idle_timeout`
//!   is closed, which also cuts off a client sending its headers too slowly). HTTP/2: a cap on
//!   concurrent streams, a keep-alive ping, and an idle timeout (a connection with no open
//!   stream for `http2_idle_timeout` is shut down gracefully; hyper has none of its own).
//! - Small header limits and small HTTP/2 flow-control windows, so what one connection can make
//!   the server hold is small; request bodies in flight share one memory budget
//!   ([`super::MemoryBudget`]).
//! - What a client certificate allows is settled once, at the end of the handshake
//!   ([`crate::tls::Client`]); the [`Router`] checks it per path.
//!
//! On shutdown the listener stops accepting and in-flight requests finish (up to a grace period).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures::task::AtomicWaker;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::admin;
use super::coalesce::Coalesced;
use super::handshake::{HandshakeSlot, Handshakes};
use super::router::{Connection, Router};
use super::streams::{Queue, Running};
use crate::index::Index;
use crate::metrics::Metrics;
use crate::tls::{SharedConfig, TlsConfig};

/// Largest header section accepted: the HTTP/2 header list (as HPACK counts it) and the HTTP/1.1
/// read buffer. kube-apiserver's TokenReview requests carry a few hundred bytes of headers.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// HTTP/2 flow-control windows: how much request body a peer may send before the server has
/// read it, per stream (one body, at most 64 KiB) and per connection.
const H2_STREAM_WINDOW: u32 = 64 * 1024;
const H2_CONN_WINDOW: u32 = 128 * 1024;
/// Response bytes HTTP/2 buffers per stream for a peer that does not read (answers are < 2 KiB).
const H2_SEND_BUFFER: usize = 16 * 1024;

/// Connection limits and timeouts of the webhook listener.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// TLS handshakes in progress at once; more push out the oldest (see [`Handshakes`]).
    pub max_handshakes: usize,
    /// HTTP/1: time allowed to send request headers, also the keep-alive idle timeout.
    pub idle_timeout: Duration,
    /// HTTP/2: a connection with no open stream for this long is shut down gracefully.
    pub http2_idle_timeout: Duration,
    /// Connections past their handshake; more are closed at once.
    pub max_connections: usize,
    pub max_concurrent_streams: u32,
    /// How long in-flight requests may take to finish after shutdown begins.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            handshake_timeout: Duration::from_secs(5),
            max_handshakes: 256,
            idle_timeout: Duration::from_secs(30),
            http2_idle_timeout: Duration::from_secs(120),
            max_connections: 250,
            max_concurrent_streams: 250,
            shutdown_grace: Duration::from_secs(25),
        }
    }
}

/// Requests in progress on one connection (HTTP/2 streams, or the one HTTP/1.1 request) and
/// when one last started or ended, for the idle timeouts.
struct Streams {
    epoch: Instant,
    open: AtomicUsize,
    /// Milliseconds from `epoch` to the last start or end of a stream.
    last: AtomicU64,
}

/// One open stream; dropped when its handler finishes or is cancelled (stream reset).
struct StreamGuard(Arc<Streams>);

impl Streams {
    fn new() -> Arc<Self> {
        Arc::new(Streams {
            epoch: Instant::now(),
            open: AtomicUsize::new(0),
            last: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last.store(ms, Ordering::Relaxed);
    }

    fn start(self: &Arc<Self>) -> StreamGuard {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.touch();
        StreamGuard(self.clone())
    }

    /// Resolves once no stream has been open for `timeout`.
    async fn idle(&self, timeout: Duration) {
        loop {
            let last = self.last.load(Ordering::Relaxed);
            let at = if self.open.load(Ordering::Relaxed) > 0 {
                Instant::now() + timeout
            } else {
                self.epoch + Duration::from_millis(last) + timeout
            };
            tokio::time::sleep_until(at).await;
            if self.open.load(Ordering::Relaxed) == 0 && self.last.load(Ordering::Relaxed) == last {
                return;
            }
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.open.fetch_sub(1, Ordering::Relaxed);
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

/// The next connection, or `None` once `shutdown` has resolved.
async fn next_connection(
    listener: &TcpListener,
    mut shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            _ = shutdown.as_mut() => return None,
            accepted = accept(listener) => if accepted.is_some() { return accepted },
        }
    }
}

/// What every connection task shares.
struct Shared {
    router: Arc<Router>,
    limits: Limits,
    slots: Arc<Semaphore>,
    /// Cancelled when shutdown begins: handshakes stop, connections shut down gracefully.
    closing: CancellationToken,
}

/// Serves the [`Router`] (the webhook, and the API with `--api`) over TLS on `listener` until
/// `shutdown` resolves, then drains.
pub async fn serve_webhook(
    listener: TcpListener,
    tls: SharedConfig,
    router: Arc<Router>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let handshakes = Handshakes::new(limits.max_handshakes);
    let shared = Arc::new(Shared {
        router,
        slots: Arc::new(Semaphore::new(limits.max_connections)),
        limits,
        closing: CancellationToken::new(),
    });
    // Every connection task holds a sender; the receiver sees the end once all are gone.
    let (alive, mut all_gone) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    while let Some((stream, peer)) = next_connection(&listener, shutdown.as_mut()).await {
        let metrics = &shared.router.webhook.metrics;
        // Checked again after the handshake; refusing here spares the handshake's CPU.
        if shared.slots.available_permits() == 0 {
            metrics.connection_refused();
            tracing::warn!(peer = %peer, max = shared.limits.max_connections, "connection refused: --max-connections reached");
            drop(stream);
            continue;
        }
        let (slot, cut_one) = handshakes.enter(peer.ip());
        if cut_one {
            metrics.handshake_cut();
            tracing::debug!(peer = %peer, max = shared.limits.max_handshakes, "--max-handshakes reached: cut the oldest handshake of the busiest source");
        }
        let _ = stream.set_nodelay(true);
        let config = tls.load_full();
        let (shared, alive) = (shared.clone(), alive.clone());
        tokio::spawn(async move {
            serve_tls_connection(stream, peer, &config, slot, &shared).await;
            drop(alive);
        });
    }
    drop(listener);
    drop(alive);
    shared.closing.cancel();
    tracing::info!("webhook listener closed; waiting for in-flight requests");
    if tokio::time::timeout(shared.limits.shutdown_grace, all_gone.recv())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
}

/// One connection: its handshake and admission inside the `conn{peer}` span, then its requests.
///
/// The requests are served outside the span: entering it on every poll of an HTTP/1.1
/// connection cost ~1.25 µs of CPU per request under load (BENCHMARKS.md, "Session of
/// 2026-12-02, 06:10–09:00 UTC"), and the events of a request that need the peer name it
/// (the decision line's `peer`), as over HTTP/2, where each request is a task of its own.
async fn serve_tls_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls_config: &TlsConfig,
    slot: HandshakeSlot,
    shared: &Shared,
) {
    let span = tracing::info_span!("conn", peer = %peer);
    let opened = open_connection(stream, peer, tls_config, slot, shared)
        .instrument(span.clone())
        .await;
    let Some((tls, h2, conn, permit)) = opened else {
        return;
    };
    let result = serve_connection(tls, h2, conn, &shared.limits, &shared.closing).await;
    span.in_scope(|| {
        if let Err(e) = result {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    });
    shared.router.webhook.metrics.connection_closed();
    drop(permit);
}

/// The TLS handshake and the connection limit; `None` when the connection ends there.
async fn open_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls_config: &TlsConfig,
    slot: HandshakeSlot,
    shared: &Shared,
) -> Option<(
    tokio_rustls::server::TlsStream<TcpStream>,
    bool,
    Arc<Connection>,
    tokio::sync::OwnedSemaphorePermit,
)> {
    let (metrics, limits) = (&shared.router.webhook.metrics, &shared.limits);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config.server.clone());
    let handshake = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream));
    let tls = tokio::select! {
        r = handshake => match r {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                return None;
            }
            Err(_) => {
                tracing::debug!("TLS handshake timed out");
                return None;
            }
        },
        _ = slot.cut.cancelled() => {
            tracing::debug!("TLS handshake cut: newer handshakes needed the slot");
            return None;
        }
        _ = shared.closing.cancelled() => return None,
    };
    drop(slot);
    let Ok(permit) = shared.slots.clone().try_acquire_owned() else {
        metrics.connection_refused();
        tracing::warn!(
            max = limits.max_connections,
            "connection refused after its handshake: --max-connections reached"
        );
        return None;
    };
    metrics.connection_opened();
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let conn = Arc::new(Connection {
        router: shared.router.clone(),
        peer,
        client: tls_config
            .clients
            .classify(tls.get_ref().1.peer_certificates()),
    });
    Some((tls, h2, conn, permit))
}

/// Serves one connection past its TLS handshake (HTTP/2 when `h2`, else HTTP/1.1) until it
/// ends, or shuts it down gracefully once `closing` is cancelled. Public for the whole-request
/// profile (`examples/profile_review.rs`), which runs it over an in-memory pipe.
pub async fn serve_connection<I>(
    io: I,
    h2: bool,
    conn: Arc<Connection>,
    limits: &Limits,
    closing: &CancellationToken,
) -> Result<(), hyper::Error>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (metrics, peer) = (conn.router.webhook.metrics.clone(), conn.peer);
    // Answers ready together leave in one TLS write (see `coalesce`).
    let io = TokioIo::new(Coalesced(io));
    if h2 {
        let streams = Streams::new();
        let service = {
            let streams = streams.clone();
            service_fn(move |req| {
                let (conn, stream) = (conn.clone(), streams.start());
                async move {
                    let resp = conn.handle(req).await;
                    drop(stream);
                    Ok::<_, Infallible>(resp)
                }
            })
        };
        // The streams run inside this task (see `streams`); each is boxed once, whole.
        let queue = Queue::default();
        let conn = http2::Builder::new(queue.clone())
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_concurrent_streams)
            .max_header_list_size(MAX_HEADER_BYTES as u32)
            .initial_stream_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONN_WINDOW)
            .max_send_buf_size(H2_SEND_BUFFER)
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(10))
            .serve_connection(io, service);
        let idle = async {
            streams.idle(limits.http2_idle_timeout).await;
            tracing::debug!(%peer, idle = ?limits.http2_idle_timeout, "closing an idle HTTP/2 connection");
            metrics.idle_connection_closed();
            OnIdle::ShutDown
        };
        drive(conn, Some(&queue), closing, idle).await
    } else {
        // The idle timeout is keygate's stream count, as for HTTP/2, not hyper's header read
        // timeout: that one arms a timer for every request (a boxed tokio `Sleep`, put in the
        // timer wheel and taken out again), ~1 900 instructions per request over TLS
        // (callgrind, BENCHMARKS.md), where the count costs two clock reads. The bound is the
        // same: the clock starts when a request's handler is done (hyper's, when the next
        // head's first read waits), so headers sent too slowly are cut off after the timeout
        // as before, and so is a connection left idle.
        let streams = Streams::new();
        let service = {
            let streams = streams.clone();
            service_fn(move |req| {
                let (conn, stream) = (conn.clone(), streams.start());
                async move {
                    let resp = conn.handle(req).await;
                    drop(stream);
                    Ok::<_, Infallible>(resp)
                }
            })
        };
        let conn = http1::Builder::new()
            .max_buf_size(MAX_HEADER_BYTES)
            .serve_connection(io, service);
        let idle = async {
            streams.idle(limits.idle_timeout).await;
            tracing::debug!(%peer, idle = ?limits.idle_timeout, "closing an idle HTTP/1.1 connection");
            // Dropped, not shut down: hyper closes a connection gracefully only between
            // requests, and a client still sending its first request's headers is not.
            OnIdle::Close
        };
        drive(conn, None, closing, idle).await
    }
}

/// What [`drive`] does with a connection whose idle timeout fired.
enum OnIdle {
    /// Graceful shutdown (HTTP/2: GOAWAY, open streams finish).
    ShutDown,
    /// Closed at once (HTTP/1.1: no request is in progress).
    Close,
}

/// Runs `conn` to its end, shutting it down gracefully (in-flight requests finish, nothing new
/// is taken) once `closing` is cancelled, and as `idle` says once it resolves.
///
/// Written by hand rather than as a `tokio::select!` loop (issue 16, third round): `select!`
/// polls every branch each time the connection's task runs, and that task runs for every
/// request. Polling `closing.cancelled()` locks the cancellation token's mutex and its
/// `Notify`'s waiter list, both shared by *all* connections, so two worker threads serving
/// 64 connections contended on them once or twice per request; `select!` also draws a random
/// number to pick the first branch. Here `closing` and `idle` are polled with a waker of their
/// own ([`Signals`]) and only after that waker fired (and once at the start, to register it);
/// every other poll goes straight to the connection. What happens on shutdown or idleness is
/// the same as before. Measured with `profile_review 5000 --http1` under callgrind (one thread,
/// so without the contention): the `select!` and `closing.cancelled()` polls were ~430
/// instructions per request, now none; with the HTTP/1.1 stream clock gone too (~245) and the
/// memory budget as an atomic (~110), the server side of a request went from 33 059 to 32 327
/// instructions.
async fn drive<C>(
    conn: C,
    queue: Option<&Queue>,
    closing: &CancellationToken,
    idle: impl Future<Output = OnIdle>,
) -> Result<(), C::Error>
where
    C: GracefulConnection,
{
    let signals = Arc::new(Signals {
        // Set: the first poll registers `closing` and `idle` with the signals' waker.
        woken: AtomicBool::new(true),
        task: AtomicWaker::new(),
    });
    let signal_waker = Waker::from(signals.clone());
    let cancelled = closing.cancelled();
    tokio::pin!(conn, idle, cancelled);
    let mut shutting_down = false;
    let mut running = Running::default();
    std::future::poll_fn(|cx| {
        if !shutting_down {
            signals.task.register(cx.waker());
            if signals.woken.swap(false, Ordering::AcqRel) {
                let mut scx = Context::from_waker(&signal_waker);
                let shut_down = if cancelled.as_mut().poll(&mut scx).is_ready() {
                    true
                } else {
                    match idle.as_mut().poll(&mut scx) {
                        Poll::Ready(OnIdle::Close) => return Poll::Ready(Ok(())),
                        Poll::Ready(OnIdle::ShutDown) => true,
                        Poll::Pending => false,
                    }
                };
                if shut_down {
                    conn.as_mut().graceful_shutdown();
                    shutting_down = true;
                }
            }
        }
        // The connection, then the streams it queued; again while a stream finished (its
        // answer is written by the connection), a few times at most before yielding.
        for _ in 0..8 {
            if let Poll::Ready(ended) = conn.as_mut().poll(cx) {
                return Poll::Ready(ended);
            }
            let Some(queue) = queue else {
                return Poll::Pending;
            };
            if !running.poll(queue, cx) {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// The waker [`drive`] polls the shutdown and idle signals with: it notes that one of them
/// may be ready and wakes the connection's task.
struct Signals {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Signals {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// Serves `/healthz`, `/readyz` and `/metrics` over plain HTTP/1.1 until `shutdown` resolves;
/// `/readyz` fails once `draining` is cancelled.
/// Admin connections open at once; more are closed at once. The kubelet's probes and a
/// Prometheus scrape need a handful, and each connection is cut after 10 s without a request,
/// so the cap only bounds what one client with access to the admin port can make keygate hold.
pub const ADMIN_MAX_CONNECTIONS: usize = 256;

pub async fn serve_admin(
    listener: TcpListener,
    index: Index,
    metrics: Arc<Metrics>,
    draining: CancellationToken,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let slots = Arc::new(Semaphore::new(ADMIN_MAX_CONNECTIONS));
    while let Some((stream, peer)) = next_connection(&listener, shutdown.as_mut()).await {
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = ADMIN_MAX_CONNECTIONS, "admin connection refused: too many open");
            continue;
        };
        let (index, metrics, draining) = (index.clone(), metrics.clone(), draining.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req| {
                let resp = admin::handle(&req, &index, &metrics, draining.is_cancelled());
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .max_buf_size(MAX_HEADER_BYTES)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
