//! TLS for the listener: building the rustls server configuration from PEM files (server
//! certificate and key, optional client CA) and, with `--api`, the request-header CA, and
//! reloading it when the files (or the front-proxy settings) change. Which client certificate
//! a connection presented is told apart per root set in [`clients`].
//!
//! Reload publishes a new configuration only after it has been built and validated; on
//! any error the previous configuration keeps serving. New connections use the new config,
//! established ones are untouched.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

mod clients;

pub use clients::{Client, ClientTrust};

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::requestheader::{LiveConfig, RequestHeaderConfig};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {error}")]
    Read {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{what} {path} holds no PEM {expected}; check the file or pass another with {flag}")]
    NoPem {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
        flag: &'static str,
    },
    #[error("invalid TLS setup ({flags}): {error}")]
    Tls {
        flags: &'static str,
        error: rustls::Error,
    },
    #[error("invalid client CA (--client-ca): {0}")]
    ClientCa(String),
    #[error("invalid request-header CA (--requestheader-client-ca or the ConfigMap): {0}")]
    RequestHeaderCa(String),
}

/// The files the TLS listener serves from.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    /// With `--api`: the front proxy's trust in force (its CA is also accepted at handshakes).
    pub front_proxy: Option<LiveConfig>,
}

/// What the listener serves with: the rustls configuration, and the root sets to classify a
/// connection's client certificate against once its handshake is done.
pub struct TlsConfig {
    pub server: Arc<ServerConfig>,
    pub clients: ClientTrust,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("server", &self.server)
            .field("front_proxy", &self.clients.has_front_proxy())
            .finish_non_exhaustive()
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        what,
        path: path.to_owned(),
        error,
    })
}

/// The crypto provider for everything TLS in keygate (ring: no C toolchain beyond `cc` needed).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The raw bytes (and front-proxy settings) a configuration was built from; a reload happens
/// when they change.
#[derive(PartialEq, Eq)]
struct Snapshot(
    Vec<u8>,
    Vec<u8>,
    Option<Vec<u8>>,
    Option<Arc<RequestHeaderConfig>>,
);

impl TlsFiles {
    fn snapshot(&self) -> Result<Snapshot, TlsError> {
        Ok(Snapshot(
            read("certificate (--tls-cert)", &self.cert)?,
            read("key (--tls-key)", &self.key)?,
            self.client_ca
                .as_deref()
                .map(|p| read("client CA (--client-ca)", p))
                .transpose()?,
            self.front_proxy.as_ref().map(|live| live.load_full()),
        ))
    }

    /// Reads and validates the files into a server configuration (TLS 1.2 and 1.3, ALPN h2 and
    /// http/1.1, client certificates required when a client CA is set).
    pub fn load(&self) -> Result<Arc<TlsConfig>, TlsError> {
        self.build(&self.snapshot()?)
    }

    /// Like [`TlsFiles::load`], but with the certificate, key and (when given) client CA from
    /// memory, for material that is checked before it is written.
    pub fn load_pem(
        &self,
        cert: &[u8],
        key: &[u8],
        client_ca: Option<&[u8]>,
    ) -> Result<Arc<TlsConfig>, TlsError> {
        let client_ca = match (client_ca, &self.client_ca) {
            (Some(ca), _) => Some(ca.to_vec()),
            (None, Some(path)) => Some(read("client CA (--client-ca)", path)?),
            (None, None) => None,
        };
        let front_proxy = self.front_proxy.as_ref().map(|live| live.load_full());
        self.build(&Snapshot(
            cert.to_vec(),
            key.to_vec(),
            client_ca,
            front_proxy,
        ))
    }

    fn build(&self, snap: &Snapshot) -> Result<Arc<TlsConfig>, TlsError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&snap.0)
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        if chain.is_empty() {
            return Err(TlsError::NoPem {
                what: "certificate",
                path: self.cert.clone(),
                expected: "CERTIFICATE",
                flag: "--tls-cert",
            });
        }
        let key = PrivateKeyDer::from_pem_slice(&snap.1).map_err(|_| TlsError::NoPem {
            what: "key",
            path: self.key.clone(),
            expected: "PRIVATE KEY",
            flag: "--tls-key",
        })?;
        let provider = provider();
        let tls = |error| TlsError::Tls {
            flags: "--tls-cert, --tls-key",
            error,
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(tls)?;
        let client_ca = match (&snap.2, &self.client_ca) {
            (Some(ca), Some(path)) => {
                let roots = client_roots(CertificateDer::pem_slice_iter(ca), TlsError::ClientCa)?;
                if roots.is_empty() {
                    return Err(TlsError::NoPem {
                        what: "client CA",
                        path: path.clone(),
                        expected: "CERTIFICATE",
                        flag: "--client-ca",
                    });
                }
                Some(roots)
            }
            _ => None,
        };
        let front_proxy = snap.3.as_ref().map(|fp| {
            let certs = fp.client_ca.iter().map(|c| Ok(c.clone()));
            let certs = certs.map(|c: Result<_, rustls_pki_types::pem::Error>| c);
            Ok::<_, TlsError>((client_roots(certs, TlsError::RequestHeaderCa)?, fp.clone()))
        });
        let front_proxy = front_proxy.transpose()?;
        let verifier = |roots: rustls::RootCertStore,
                        optional: bool,
                        err: fn(String) -> TlsError| {
            let b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let b = if optional {
                b.allow_unauthenticated()
            } else {
                b
            };
            b.build().map_err(|e| err(e.to_string()))
        };
        let mut clients = ClientTrust::default();
        let builder = match (&client_ca, &front_proxy) {
            (None, None) => builder.with_no_client_auth(),
            (Some(roots), None) => builder.with_client_cert_verifier(verifier(
                roots.clone(),
                false,
                TlsError::ClientCa,
            )?),
            (_, Some((fp_roots, fp))) => {
                // One verifier over both root sets for the handshake, a certificate optional:
                // the API answers a client without the front proxy's certificate with a 401
                // Status (as kube-apiserver's clients expect), and the router checks each
                // connection's class per path, so the webhooks still answer only --client-ca.
                let mut union = fp_roots.clone();
                if let Some(roots) = &client_ca {
                    union.roots.extend(roots.roots.iter().cloned());
                    clients.webhook = Some(verifier(roots.clone(), false, TlsError::ClientCa)?);
                }
                let fp_verifier = verifier(fp_roots.clone(), false, TlsError::RequestHeaderCa)?;
                clients.front_proxy = Some((fp_verifier, fp.clone()));
                let both: Arc<dyn ClientCertVerifier> =
                    verifier(union, true, TlsError::RequestHeaderCa)?;
                builder.with_client_cert_verifier(both)
            }
        };
        // `with_single_cert` checks that the key belongs to the certificate.
        let mut config = builder.with_single_cert(chain, key).map_err(tls)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(TlsConfig {
            server: Arc::new(config),
            clients,
        }))
    }
}

/// A root store of `certs`; `err` names the flag in a message.
fn client_roots<'a>(
    certs: impl Iterator<Item = Result<CertificateDer<'a>, rustls_pki_types::pem::Error>>,
    err: fn(String) -> TlsError,
) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        let cert = cert.map_err(|e| err(e.to_string()))?;
        roots.add(cert).map_err(|e| err(e.to_string()))?;
    }
    Ok(roots)
}

/// The live server configuration, swapped atomically on reload.
pub type SharedConfig = Arc<ArcSwap<TlsConfig>>;

/// Polls the files every `interval` and publishes a new configuration when their content
/// changes. Polling content (not inotify on the files) survives the symlink swaps of Secret
/// volumes and editors that replace files. `on_reload(ok)` is called after each attempt.
pub fn spawn_reloader(
    files: TlsFiles,
    shared: SharedConfig,
    interval: Duration,
    on_reload: impl Fn(bool) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = files.snapshot().ok();
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let files2 = files.clone();
            let result = tokio::task::spawn_blocking(move || {
                let snap = files2.snapshot()?;
                Ok::<_, TlsError>(snap)
            })
            .await;
            let snap = match result {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    if last.is_some() {
                        tracing::error!(error = %e, "TLS files unreadable; keeping the current certificate");
                        on_reload(false);
                        last = None;
                    }
                    continue;
                }
                Err(_) => continue,
            };
            if last.as_ref() == Some(&snap) {
                continue;
            }
            match files.build(&snap) {
                Ok(config) => {
                    shared.store(config);
                    tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded");
                    on_reload(true);
                }
                Err(e) => {
                    tracing::error!(error = %e, "new TLS files are invalid; keeping the current certificate");
                    on_reload(false);
                }
            }
            last = Some(snap);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Bundle, generate_bundle, names};

    fn write_files(dir: &Path, b: &Bundle, client_ca: bool) -> TlsFiles {
        b.write(dir).unwrap();
        TlsFiles {
            cert: dir.join(names::SERVER_CERT),
            key: dir.join(names::SERVER_KEY),
            client_ca: client_ca.then(|| dir.join(names::CA_CERT)),
            front_proxy: None,
        }
    }

    #[test]
    fn generated_bundle_builds_a_server_config_with_alpn() {
        let tmp = tempfile::tempdir().unwrap();
        let b = generate_bundle(
            &["localhost".into(), "127.0.0.1".into()],
            "kube-apiserver",
            30,
        )
        .unwrap();
        let files = write_files(tmp.path(), &b, true);
        let config = files.load().unwrap();
        assert_eq!(
            config.server.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert!(b.server.key.contains("PRIVATE KEY"));
    }

    #[test]
    fn mismatched_key_and_missing_pem_are_errors_naming_the_flag() {
        let tmp = tempfile::tempdir().unwrap();
        let b = generate_bundle(&["localhost".into()], "c", 30).unwrap();
        let files = write_files(tmp.path(), &b, false);
        // The client key does not belong to the server certificate.
        let wrong = TlsFiles {
            key: tmp.path().join(names::CLIENT_KEY),
            ..files.clone()
        };
        let err = wrong.load().unwrap_err().to_string();
        assert!(err.contains("--tls-key"), "{err}");
        std::fs::write(&files.cert, "garbage").unwrap();
        let err = files.load().unwrap_err().to_string();
        assert!(err.contains("--tls-cert"), "{err}");
    }
}
