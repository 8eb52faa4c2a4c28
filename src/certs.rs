//! Certificates: generating a CA, a server certificate and a kube-apiserver client certificate
//! (rcgen, ECDSA P-256), building the rustls server configuration, and reloading it from disk.
//!
//! Reload publishes a new `Arc<ServerConfig>` only after it has been built and validated; on
//! any error the previous configuration keeps serving. New connections use the new config,
//! established ones are untouched.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::fsutil;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {path} holds no PEM {expected}; check the file or pass another with {flag}")]
    NoPem {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
        flag: &'static str,
    },
    #[error("invalid TLS setup ({flags}): {source}")]
    Tls {
        flags: &'static str,
        source: rustls::Error,
    },
    #[error("invalid client CA (--client-ca): {0}")]
    ClientCa(String),
    #[error("cannot generate certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error(transparent)]
    Write(#[from] fsutil::WriteError),
}

/// The files the TLS listener serves from.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// The crypto provider for everything TLS in keygate (ring: no C toolchain beyond `cc` needed).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The raw bytes a configuration was built from; a reload happens when they change.
#[derive(PartialEq, Eq)]
struct Snapshot(Vec<u8>, Vec<u8>, Option<Vec<u8>>);

impl TlsFiles {
    fn snapshot(&self) -> Result<Snapshot, CertError> {
        Ok(Snapshot(
            read("certificate (--tls-cert)", &self.cert)?,
            read("key (--tls-key)", &self.key)?,
            self.client_ca
                .as_deref()
                .map(|p| read("client CA (--client-ca)", p))
                .transpose()?,
        ))
    }

    /// Reads and validates the files into a server configuration (TLS 1.2 and 1.3, ALPN h2 and
    /// http/1.1, client certificates required when a client CA is set).
    pub fn load(&self) -> Result<Arc<ServerConfig>, CertError> {
        self.build(&self.snapshot()?)
    }

    fn build(&self, snap: &Snapshot) -> Result<Arc<ServerConfig>, CertError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&snap.0)
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        if chain.is_empty() {
            return Err(CertError::NoPem {
                what: "certificate",
                path: self.cert.clone(),
                expected: "CERTIFICATE",
                flag: "--tls-cert",
            });
        }
        let key = PrivateKeyDer::from_pem_slice(&snap.1).map_err(|_| CertError::NoPem {
            what: "key",
            path: self.key.clone(),
            expected: "PRIVATE KEY",
            flag: "--tls-key",
        })?;
        let provider = provider();
        let tls = |source| CertError::Tls {
            flags: "--tls-cert, --tls-key",
            source,
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(tls)?;
        let builder = match (&snap.2, &self.client_ca) {
            (Some(ca), Some(path)) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(ca) {
                    let cert = cert.map_err(|e| CertError::ClientCa(e.to_string()))?;
                    roots
                        .add(cert)
                        .map_err(|e| CertError::ClientCa(e.to_string()))?;
                }
                if roots.is_empty() {
                    return Err(CertError::NoPem {
                        what: "client CA",
                        path: path.clone(),
                        expected: "CERTIFICATE",
                        flag: "--client-ca",
                    });
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| CertError::ClientCa(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        // `with_single_cert` checks that the key belongs to the certificate.
        let mut config = builder.with_single_cert(chain, key).map_err(tls)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The live server configuration, swapped atomically on reload.
pub type SharedConfig = Arc<ArcSwap<ServerConfig>>;

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
                Ok::<_, CertError>(snap)
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

/// A generated certificate and its private key, PEM encoded.
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// A CA and what it issued: the server certificate keygate serves, and the client certificate
/// kube-apiserver presents to keygate (checked with `--client-ca`).
pub struct Bundle {
    pub ca: Pem,
    pub server: Pem,
    pub client: Pem,
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    // Back-date a little for clock skew between nodes.
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(i64::from(days));
}

/// Generates a CA valid for `days`.
pub fn generate_ca(common_name: &str, days: u32) -> Result<Pem, CertError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params, days);
    let cert = params.self_signed(&key)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Issues a leaf certificate from a CA: a server certificate for `sans`, or a client
/// certificate with `common_name` (and `organization`, which Kubernetes reads as a group).
pub fn issue(
    ca: &Pem,
    common_name: &str,
    organization: Option<&str>,
    sans: &[String],
    server: bool,
    days: u32,
) -> Result<Pem, CertError> {
    let ca_key = KeyPair::from_pem(&ca.key)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(sans.to_vec())?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    if let Some(o) = organization {
        params.distinguished_name.push(DnType::OrganizationName, o);
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, days);
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A fresh CA with a server certificate for `sans` and a client certificate for kube-apiserver.
pub fn generate_bundle(sans: &[String], client_cn: &str, days: u32) -> Result<Bundle, CertError> {
    let ca = generate_ca("keygate CA", days.max(365) * 2)?;
    let server = issue(&ca, "keygate", None, sans, true, days)?;
    let client = issue(&ca, client_cn, None, &[], false, days)?;
    Ok(Bundle { ca, server, client })
}

/// File names inside a certificate directory (`keygate certs --out-dir`, `<data-dir>/certs`).
pub mod names {
    pub const CA_CERT: &str = "ca.crt";
    pub const CA_KEY: &str = "ca.key";
    pub const SERVER_CERT: &str = "server.crt";
    pub const SERVER_KEY: &str = "server.key";
    pub const CLIENT_CERT: &str = "client.crt";
    pub const CLIENT_KEY: &str = "client.key";
}

impl Bundle {
    /// Writes the six PEM files atomically (keys mode 0600).
    pub fn write(&self, dir: &Path) -> Result<(), CertError> {
        use names::*;
        fsutil::create_dir_all(dir)?;
        let files = [
            (CA_CERT, &self.ca.cert, false),
            (CA_KEY, &self.ca.key, true),
            (SERVER_CERT, &self.server.cert, false),
            (SERVER_KEY, &self.server.key, true),
            (CLIENT_CERT, &self.client.cert, false),
            (CLIENT_KEY, &self.client.key, true),
        ];
        for (name, content, private) in files {
            fsutil::write_atomic(&dir.join(name), content.as_bytes(), private)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_files(dir: &Path, b: &Bundle, client_ca: bool) -> TlsFiles {
        b.write(dir).unwrap();
        TlsFiles {
            cert: dir.join(names::SERVER_CERT),
            key: dir.join(names::SERVER_KEY),
            client_ca: client_ca.then(|| dir.join(names::CA_CERT)),
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
            config.alpn_protocols,
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
