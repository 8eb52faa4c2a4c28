//! The floor keygate is measured against (issue 5, part 2): the least a TokenReview webhook
//! can do over the same TLS. Same rustls configuration as keygate (`keygate::tls::TlsFiles::load`
//! on the same certificate files: ring provider, TLS 1.3 + 1.2, ALPN h2 + http/1.1), same hyper
//! builders and limits as `keygate::server`, TCP_NODELAY, one task per connection; the handler
//! reads the whole body and returns a fixed TokenReview answer (authenticated, with a user).
//!
//! With `--bare` it is the *bare* floor (issue 16): hyper 1 and tokio-rustls with their default
//! builders and nothing copied from keygate: `ServerConfig::builder()` (the ring provider's
//! safe defaults) with only the certificate and ALPN (without which no client would pick h2),
//! `http1::Builder::new()` / `http2::Builder::new()` with no setting changed (hyper's own
//! stream limit, 200, applies), no TCP_NODELAY, no handshake timeout, the body collected
//! without a limit. It shows what keygate's hardening itself costs.
//!
//! With `--authorize` either floor answers a fixed SubjectAccessReview instead (no opinion, as
//! keygate's `/authorize` answers a user who is not a key), for the `/authorize` comparison.
//!
//! `cargo run --release --example floor -- [--bare] [--authorize] --listen 127.0.0.1:18443 --tls-cert F --tls-key F`
//! It prints `floor listening on ADDR` when ready and stops on SIGINT/SIGTERM.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use keygate::tls::TlsFiles;
use tokio::net::TcpListener;

/// What keygate answers for a valid key with a view role (same shape and size).
const ANSWER: &str = r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","status":{"authenticated":true,"user":{"extra":{"keygate.dev/key-id":["AbCdEfGhIjKlMnOpQrStUv"],"keygate.dev/key-name":["bench key"]},"groups":["keygate:keys","keygate:view"],"uid":"keygate:abcdefghijklmnopqrstuv","username":"service-account-abcdefghijklmnopqrstuv"}}}"#;

/// What keygate's `/authorize` answers a user who is not a key (same shape and size).
const AUTHORIZE_ANSWER: &str = r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","status":{"allowed":false}}"#;

/// The answer both handlers send: set once in `main`, before serving.
static ANSWER_BODY: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

fn answer() -> Bytes {
    Bytes::from_static(ANSWER_BODY.get().copied().unwrap_or(ANSWER).as_bytes())
}

fn usage() -> ! {
    eprintln!("usage: floor [--bare] [--authorize] [--listen ADDR] --tls-cert FILE --tls-key FILE");
    std::process::exit(2)
}

/// The bare floor's handler: the whole body, no limit, then the same answer.
async fn handle_bare(
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    std::hint::black_box(req.into_body().collect().await?.to_bytes());
    let mut r = Response::new(Full::new(answer()));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// The bare floor: default builders everywhere (see the module doc).
async fn serve_bare(listener: TcpListener, cert: PathBuf, key: PathBuf) -> anyhow::Result<()> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let chain = CertificateDer::pem_file_iter(&cert)?.collect::<Result<Vec<_>, _>>()?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, PrivateKeyDer::from_pem_file(&key)?)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    loop {
        let (stream, _) = listener.accept().await?;
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let io = TokioIo::new(tls);
            let service = service_fn(handle_bare);
            let _ = if h2 {
                http2::Builder::new(TokioExecutor::new())
                    .serve_connection(io, service)
                    .await
            } else {
                http1::Builder::new().serve_connection(io, service).await
            };
        });
    }
}

async fn handle(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = Limited::new(req.into_body(), 64 * 1024).collect().await;
    let mut r = match body {
        Ok(b) => {
            // Touch the body so reading it cannot be optimised away.
            std::hint::black_box(b.to_bytes());
            Response::new(Full::new(answer()))
        }
        Err(_) => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"bad body\n")));
            *r.status_mut() = http::StatusCode::BAD_REQUEST;
            r
        }
    };
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut listen: SocketAddr = "127.0.0.1:18443".parse()?;
    let (mut cert, mut key, mut bare) = (None, None, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--listen" => listen = val().parse()?,
            "--tls-cert" => cert = Some(PathBuf::from(val())),
            "--tls-key" => key = Some(PathBuf::from(val())),
            "--bare" => bare = true,
            "--authorize" => {
                let _ = ANSWER_BODY.set(AUTHORIZE_ANSWER);
            }
            _ => usage(),
        }
    }
    let (Some(cert), Some(key)) = (cert, key) else {
        usage()
    };
    if bare {
        let listener = TcpListener::bind(listen).await?;
        println!("floor (bare) listening on {}", listener.local_addr()?);
        tokio::select! {
            r = serve_bare(listener, cert, key) => r?,
            _ = keygate::serve::termination() => {}
        }
        return Ok(());
    }
    let config = TlsFiles {
        cert,
        key,
        client_ca: None,
        front_proxy: None,
    }
    .load()?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&config.server));
    let listener = TcpListener::bind(listen).await?;
    println!("floor listening on {}", listener.local_addr()?);
    let serve = async {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(Ok(tls)) =
                    tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await
                else {
                    return;
                };
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                let io = TokioIo::new(tls);
                let service = service_fn(handle);
                if h2 {
                    let _ = http2::Builder::new(TokioExecutor::new())
                        .timer(TokioTimer::new())
                        .max_concurrent_streams(1000)
                        .max_header_list_size(64 * 1024)
                        .serve_connection(io, service)
                        .await;
                } else {
                    let _ = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(Duration::from_secs(30))
                        .max_buf_size(64 * 1024)
                        .serve_connection(io, service)
                        .await;
                }
            });
        }
    };
    tokio::select! {
        _ = serve => {}
        _ = keygate::serve::termination() => {}
    }
    Ok(())
}
