//! `keygate console`: the key page, in the browser of the person at the keyboard.
//!
//! A small server-rendered app: axum routes ([`pages`]), askama templates compiled into the
//! binary ([`views`]), a stylesheet and a little script embedded too ([`assets`]). It works on
//! any [`KeyBackend`]: the embedded dir store ([`dir`]) or the AccessKey API with the user's
//! own credentials ([`api`]), both speaking the API's own object
//! ([`crate::api::types::AccessKey`]), so the page has one model whichever store is behind it.
//!
//! It listens on loopback only, and [`security`] makes sure only the person who started it,
//! through their browser, can drive it. A token is shown in the answer to the request that
//! minted it and is kept nowhere else.

pub mod api;
mod assets;
pub mod backend;
pub mod browser;
pub mod dir;
mod pages;
pub mod security;
mod views;

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use tokio::net::TcpListener;

pub use self::backend::{About, BackendError, KeyBackend, KeyPatch};
use self::security::Session;

/// The cluster a downloaded kubeconfig points kubectl at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTarget {
    /// The kubeconfig's cluster and context name.
    pub name: String,
    /// The Kubernetes API server's URL.
    pub server: String,
    /// Its CA certificate (PEM), inline in the kubeconfig.
    pub ca_pem: Option<Vec<u8>>,
}

/// What the console needs to run.
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    /// A loopback address (`--listen`); port 0 picks a free one.
    pub listen: SocketAddr,
    /// For the kubeconfig offered with a new token; without it the page says how to make one.
    pub cluster: Option<ClusterTarget>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(
        "--listen {0}: the console listens on loopback only (127.0.0.1 or [::1]), since whoever \
         reaches it could manage your keys; to use it from another machine, forward the port \
         over SSH (ssh -L 8080:127.0.0.1:8080 ...)"
    )]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {addr}: {error} (pick another --listen address or port)")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("the console stopped serving: {error}")]
    Serve { error: std::io::Error },
}

/// Form submission IDs above which the set of used ones is forgotten (a form older than that
/// many submissions may then be sent again: it only guards against a reload).
const NONCES_KEPT: usize = 10_000;

/// What every route shares.
pub struct App<B> {
    backend: B,
    session: Arc<Session>,
    cluster: Option<ClusterTarget>,
    /// Submission IDs of the forms that mint a token, taken while in flight or once they
    /// succeeded: reloading the page that showed a token must not mint another.
    nonces: Mutex<HashSet<String>>,
}

impl<B> App<B> {
    /// Takes a submission ID; false if it is empty or was taken already.
    fn reserve(&self, nonce: &str) -> bool {
        let mut used = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
        if used.len() >= NONCES_KEPT {
            used.clear();
        }
        !nonce.is_empty() && used.insert(nonce.to_owned())
    }

    /// Gives a submission ID back after a refusal, so the corrected form can be sent.
    fn release(&self, nonce: &str) {
        let mut used = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
        used.remove(nonce);
    }
}

fn router<B: KeyBackend>(app: Arc<App<B>>) -> Router {
    let session = app.session.clone();
    Router::new()
        .route("/", get(pages::list::<B>))
        .route("/keys/new", get(pages::new_form::<B>))
        .route("/keys", post(pages::create::<B>))
        .route(
            "/keys/{name}/edit",
            get(pages::edit_form::<B>).post(pages::edit::<B>),
        )
        .route(
            "/keys/{name}/regenerate",
            get(pages::regenerate_form::<B>).post(pages::regenerate::<B>),
        )
        .route(
            "/keys/{name}/delete",
            get(pages::delete_form::<B>).post(pages::delete::<B>),
        )
        .route("/keys/{name}/disable", post(pages::disable::<B>))
        .route("/keys/{name}/enable", post(pages::enable::<B>))
        .route("/assets/{file}", get(assets::asset))
        .with_state(app)
        .layer(from_fn_with_state(session, security::guard))
        .layer(from_fn(security::headers))
}

/// A console bound to its address, not yet serving.
pub struct Bound {
    listener: TcpListener,
    router: Router,
    session: Arc<Session>,
    addr: SocketAddr,
}

/// Binds `settings.listen` (loopback only) for `backend`.
pub async fn bind<B: KeyBackend>(
    settings: ConsoleSettings,
    backend: B,
) -> Result<Bound, ConsoleError> {
    let want = settings.listen;
    if !want.ip().is_loopback() {
        return Err(ConsoleError::NotLoopback(want));
    }
    let listener = TcpListener::bind(want)
        .await
        .map_err(|error| ConsoleError::Bind { addr: want, error })?;
    let addr = listener
        .local_addr()
        .map_err(|error| ConsoleError::Bind { addr: want, error })?;
    let session = Arc::new(Session::new(addr));
    let app = Arc::new(App {
        backend,
        session: session.clone(),
        cluster: settings.cluster,
        nonces: Mutex::default(),
    });
    Ok(Bound {
        listener,
        router: router(app),
        session,
        addr,
    })
}

impl Bound {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to open, with this session's secret.
    pub fn url(&self) -> String {
        self.session.url()
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ConsoleError> {
        tracing::info!(addr = %self.addr, "console listening");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|error| ConsoleError::Serve { error })
    }
}
