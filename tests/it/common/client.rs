//! The TLS client of the tests (and of examples/soak.rs, which includes this file): trusts a
//! CA, optionally presents a certificate, speaks HTTP/1.1 or HTTP/2 by ALPN. Everything here
//! is used by both; helpers only the tests need are in `common`.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

pub const FIXTURE_V1: &str = include_str!("../../fixtures/tokenreview/request-v1.json");
pub const FIXTURE_V1BETA1: &str = include_str!("../../fixtures/tokenreview/request-v1beta1.json");

/// A TokenReview body: the captured fixture with its token replaced.
pub fn review_body(fixture: &str, token: &str) -> String {
    let token = serde_json::to_string(token).unwrap();
    fixture.replace("\"good.token\"", &token)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Http1,
    Http2,
}

/// How a test client connects: which CA it trusts and which certificate it presents.
#[derive(Clone)]
pub struct ClientConfig {
    pub(crate) roots: Arc<rustls::RootCertStore>,
    pub(crate) identity: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
}

impl ClientConfig {
    pub fn trusting(ca_pem: &str) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        ClientConfig {
            roots: Arc::new(roots),
            identity: None,
        }
    }

    /// Presents this client certificate (the embedded mode, or a server with --client-ca).
    pub fn with_identity(mut self, pem: &keygate::pki::Pem) -> Self {
        let chain = CertificateDer::pem_slice_iter(pem.cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(pem.key.as_bytes()).unwrap();
        self.identity = Some((chain, Arc::new(key)));
        self
    }

    pub(crate) fn rustls(&self, proto: Proto) -> rustls::ClientConfig {
        let b = rustls::ClientConfig::builder_with_provider(keygate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(self.roots.clone());
        let mut cfg = match &self.identity {
            Some((chain, key)) => b
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .unwrap(),
            None => b.with_no_client_auth(),
        };
        cfg.alpn_protocols = vec![match proto {
            Proto::Http1 => b"http/1.1".to_vec(),
            Proto::Http2 => b"h2".to_vec(),
        }];
        cfg
    }

    /// Opens a bare TLS stream offering the ALPN of `proto`, for tests that drive their own
    /// HTTP client (or none) over it.
    pub async fn connect_tls(
        &self,
        addr: SocketAddr,
        proto: Proto,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        // As kube-apiserver's Go client does: without it, Nagle holds a request's body back.
        tcp.set_nodelay(true)?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(self.rustls(proto)));
        connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
    }

    /// Opens a TLS connection and returns a request sender for it.
    pub async fn connect(&self, addr: SocketAddr, proto: Proto) -> std::io::Result<Conn> {
        let tls = self.connect_tls(addr, proto).await?;
        let peer_cert = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first().cloned());
        let alpn = tls.get_ref().1.alpn_protocol().map(|p| p.to_vec());
        let io = TokioIo::new(tls);
        let sender = match proto {
            Proto::Http1 => {
                let (s, conn) = http1::handshake(io).await.map_err(std::io::Error::other)?;
                tokio::spawn(conn);
                Sender::H1(s)
            }
            Proto::Http2 => {
                let (s, conn) = http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(std::io::Error::other)?;
                tokio::spawn(conn);
                Sender::H2(s)
            }
        };
        Ok(Conn {
            sender,
            peer_cert,
            alpn,
        })
    }
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

pub struct Conn {
    sender: Sender,
    pub peer_cert: Option<CertificateDer<'static>>,
    pub alpn: Option<Vec<u8>>,
}

pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Conn {
    pub async fn send(&mut self, req: http::Request<Full<Bytes>>) -> hyper::Result<Reply> {
        let resp = match &mut self.sender {
            Sender::H1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    pub async fn post(&mut self, path: &str, body: impl Into<Bytes>) -> Reply {
        let req = http::Request::post(format!("https://localhost{path}"))
            .header("content-type", "application/json")
            .body(Full::new(body.into()))
            .unwrap();
        self.send(req).await.unwrap()
    }

    /// Sends a TokenReview for `token` (v1 fixture) and returns the reply.
    pub async fn review(&mut self, token: &str) -> Reply {
        self.post("/authenticate?timeout=30s", review_body(FIXTURE_V1, token))
            .await
    }
}
