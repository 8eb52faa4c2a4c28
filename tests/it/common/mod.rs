//! Shared helpers for integration tests: a real keygate webhook on an ephemeral loopback port,
//! rcgen certificates, a TLS client speaking HTTP/1.1 or HTTP/2, and key files.

pub mod cli;
pub mod client;
pub mod fake_api;

pub use client::*;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use keygate::authorizer::{Authorizer, AuthorizerSettings};
use keygate::http::router::ApiHandler;
use keygate::http::{Limits, listener};
use keygate::http::{MemoryBudget, Router, Webhook};
use keygate::identity::IdentityPolicy;
use keygate::index::Index;
use keygate::metrics::Metrics;
use keygate::pki::{self, Bundle, names};
use keygate::record::KeyRecord;
use keygate::requestheader::RequestHeaderConfig;
use keygate::tls::TlsFiles;
use keygate::token::{KeyId, Token};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Polls `check` until it returns true or `timeout` passes. Returns whether it became true.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(Default)]
pub struct ServerOptions {
    pub client_ca: bool,
    /// Start without a store: the index never becomes ready unless the test says so.
    pub no_store: bool,
    pub limits: Limits,
    /// How long a client may take to send a request body (default 5 s).
    pub body_timeout: Option<Duration>,
    /// Told about each successful authentication (last-used tracking); none by default.
    pub usage: Option<Arc<dyn keygate::usage::UsageSink>>,
    /// Serve this as the AccessKey API to the front proxy this trust describes (`--api`).
    pub api: Option<(Arc<dyn ApiHandler>, RequestHeaderConfig)>,
    /// The record guard at /validate-records; off by default.
    pub admission: Option<keygate::admission::Guard>,
    /// Direct reads of records the index lacks, from this (faked) API server at this rate;
    /// off by default.
    pub read_through: Option<(kube::Client, u32)>,
    /// `/authorize`'s settings, and the client it asks creators' rights with (none, as with
    /// the dir store, by default).
    pub authorizer: AuthorizerSettings,
    pub kube: Option<kube::Client>,
}

/// A running webhook with its own key directory and certificates.
pub struct TestServer {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// Holds the directories below; removed when the server is dropped.
    _tmp: tempfile::TempDir,
    pub keys_dir: PathBuf,
    pub certs_dir: PathBuf,
    pub bundle: Bundle,
    pub index: Index,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _store: Option<keygate::index::dir::DirFeed>,
}

impl TestServer {
    pub async fn start(opts: ServerOptions) -> TestServer {
        let tmp = tempfile::tempdir().unwrap();
        let keys_dir = tmp.path().join("keys");
        let certs_dir = tmp.path().join("certs");
        std::fs::create_dir_all(&keys_dir).unwrap();
        let bundle = pki::generate_bundle(
            &["localhost".into(), "127.0.0.1".into()],
            "kube-apiserver",
            30,
        )
        .unwrap();
        bundle.write(&certs_dir).unwrap();
        let files = TlsFiles {
            cert: certs_dir.join(names::SERVER_CERT),
            key: certs_dir.join(names::SERVER_KEY),
            client_ca: opts.client_ca.then(|| certs_dir.join(names::CA_CERT)),
            front_proxy: opts
                .api
                .as_ref()
                .map(|(_, trust)| Arc::new(ArcSwap::from_pointee(trust.clone()))),
        };
        let shared = Arc::new(ArcSwap::new(files.load().unwrap()));
        let index = Index::new(IdentityPolicy::default());
        let store = (!opts.no_store)
            .then(|| keygate::index::dir::spawn(keys_dir.clone(), index.clone()).unwrap());
        let metrics = Metrics::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, admin_addr) = (listener.local_addr().unwrap(), admin.local_addr().unwrap());
        let stop = CancellationToken::new();
        keygate::tls::spawn_reloader(files, shared.clone(), Duration::from_millis(50), {
            let m = metrics.clone();
            move |ok| m.tls_reload(ok)
        });
        tokio::spawn(listener::serve_admin(
            admin,
            index.clone(),
            metrics.clone(),
            CancellationToken::new(),
            stop.clone().cancelled_owned(),
        ));
        let webhook = Arc::new(Webhook {
            index: index.clone(),
            metrics: metrics.clone(),
            body_timeout: opts.body_timeout.unwrap_or(Duration::from_secs(5)),
            usage: opts.usage,
            // `serve`'s default.
            memory: MemoryBudget::new(32 << 20),
            admission: opts.admission.map(Arc::new),
            read_through: opts.read_through.map(|(client, rate)| {
                Arc::new(keygate::readthrough::ReadThrough::new(
                    kube::Api::namespaced(client, "keygate-system"),
                    index.clone(),
                    rate,
                ))
            }),
            authorizer: Some(Arc::new(Authorizer::new(
                index.clone(),
                opts.kube,
                &opts.authorizer,
                metrics.authz.clone(),
            ))),
        });
        metrics.track_memory(webhook.memory.clone());
        let task = tokio::spawn(listener::serve_webhook(
            listener,
            shared,
            Arc::new(match opts.api {
                Some((api, _)) => Router::new(webhook).with_api(api),
                None => Router::new(webhook),
            }),
            opts.limits,
            stop.clone().cancelled_owned(),
        ));
        if !opts.no_store {
            let ready = eventually(Duration::from_secs(10), || async { index.is_ready() });
            assert!(ready.await, "store ready");
        }
        TestServer {
            addr,
            admin: admin_addr,
            _tmp: tmp,
            keys_dir,
            certs_dir,
            bundle,
            index,
            stop,
            task,
            _store: store,
        }
    }

    /// Writes a key record file built by `edit` and returns its token.
    pub fn add_key(&self, edit: impl FnOnce(&mut KeyRecord)) -> (KeyId, String) {
        let token = Token::generate(KeyId::generate());
        let mut rec = KeyRecord::new(token.id.clone(), token.secret_hash(), "test key");
        edit(&mut rec);
        write_record(&self.keys_dir, &rec);
        (token.id.clone(), token.expose())
    }

    /// Reviews `token` over one connection until the answer's `authenticated` is `want`, for up
    /// to five seconds. Returns whether it got there.
    pub async fn until_authenticated(&self, token: &str, want: bool) -> bool {
        let mut c = self
            .client()
            .connect(self.addr, Proto::Http2)
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let r = c.review(token).await;
            if r.status == 200 && r.json()["status"]["authenticated"] == want {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn client(&self) -> ClientConfig {
        ClientConfig::trusting(&self.bundle.ca.cert)
    }

    /// Begins a graceful shutdown without waiting for it.
    pub fn begin_shutdown(&self) {
        self.stop.cancel();
    }

    /// Whether the listener task has finished (all connections drained).
    pub fn is_stopped(&self) -> bool {
        self.task.is_finished()
    }

    /// Begins a graceful shutdown and waits for the listener task to finish.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

pub fn record_path(dir: &Path, id: &KeyId) -> PathBuf {
    dir.join(format!("{}.yaml", id.record_name()))
}

/// Writes a record into a dir store, atomically, as the CLI does.
pub fn write_record(dir: &Path, rec: &KeyRecord) {
    let secret = rec.to_secret("keygate-system");
    let text = serde_saphyr::to_string(&secret).unwrap();
    keygate::fsutil::write_atomic(&record_path(dir, &rec.id), text.as_bytes(), false).unwrap();
}

/// Asserts that `client` gets no answer to a review from the server at `addr` (the TLS
/// handshake, or the first request, fails).
pub async fn assert_no_answer(client: &ClientConfig, addr: std::net::SocketAddr, token: &str) {
    if let Ok(mut c) = client.connect(addr, Proto::Http1).await {
        let req = http::Request::post("https://localhost/authenticate")
            .body(http_body_util::Full::new(bytes::Bytes::from(review_body(
                FIXTURE_V1, token,
            ))))
            .unwrap();
        assert!(
            c.send(req).await.is_err(),
            "answered a client the client CA did not sign"
        );
    }
}

/// A TCP connection to `to` from the loopback address `from` (any 127.0.0.0/8 address works on
/// Linux), so a test can play a second client host.
pub async fn connect_from(from: std::net::IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

impl ClientConfig {
    /// A raw HTTP/2 request sender over a fresh TLS connection, for tests that drive streams
    /// and bodies themselves; the connection task is returned so it can be kept or awaited.
    pub async fn h2_sender<B>(
        &self,
        addr: SocketAddr,
    ) -> (
        hyper::client::conn::http2::SendRequest<B>,
        tokio::task::JoinHandle<hyper::Result<()>>,
    )
    where
        B: hyper::body::Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let tls = self.connect_tls(addr, Proto::Http2).await.unwrap();
        let (sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(tls),
        )
        .await
        .unwrap();
        (sender, tokio::spawn(conn))
    }

    /// [`ClientConfig::connect_tls`] from the loopback address `from`.
    pub async fn connect_tls_from(
        &self,
        from: std::net::IpAddr,
        addr: SocketAddr,
        proto: Proto,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = connect_from(from, addr).await?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(self.rustls(proto)));
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        connector.connect(name, tcp).await
    }
}

/// A client for `keygate serve` in the embedded mode with `data_dir`: it trusts the generated
/// CA and presents the generated client certificate, which that mode requires.
pub fn embedded_client(data_dir: &Path) -> ClientConfig {
    let read = |f: &str| std::fs::read_to_string(data_dir.join("certs").join(f)).unwrap();
    ClientConfig::trusting(&read(names::CA_CERT)).with_identity(&pki::Pem {
        cert: read(names::CLIENT_CERT),
        key: read(names::CLIENT_KEY),
    })
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }
}

/// GET on the admin listener (plain HTTP/1.1).
pub async fn admin_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut s, conn) = http1::handshake::<_, Full<Bytes>>(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("http://localhost{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = s.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A client's TCP stream that counts the TLS records it reads, so a test can see how many
/// writes the server's answers took (each TLS write of the server is at least one record).
pub struct CountRecords {
    tcp: TcpStream,
    pub records: Arc<std::sync::atomic::AtomicUsize>,
    /// Bytes still to come of the record being read, or of its 5-byte header when `head` has
    /// some of it.
    rest: usize,
    head: smallvec::SmallVec<[u8; 5]>,
}

impl CountRecords {
    pub fn new(tcp: TcpStream) -> Self {
        CountRecords {
            tcp,
            records: Arc::default(),
            rest: 0,
            head: smallvec::SmallVec::new(),
        }
    }

    fn saw(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.rest > 0 {
                let n = self.rest.min(bytes.len());
                (self.rest, bytes) = (self.rest - n, &bytes[n..]);
                continue;
            }
            let n = (5 - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.head.len() == 5 {
                // Content type, version, then the record's length.
                self.rest = u16::from_be_bytes([self.head[3], self.head[4]]) as usize;
                self.head.clear();
                self.records
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

impl tokio::io::AsyncRead for CountRecords {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.tcp).poll_read(cx, buf);
        self.saw(&buf.filled()[before..]);
        polled
    }
}

impl tokio::io::AsyncWrite for CountRecords {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
