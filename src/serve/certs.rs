//! The TLS material `keygate serve` starts with: the given files, or the embedded mode's
//! certificates (generated once under `--data-dir`) and the webhook kubeconfig for
//! kube-apiserver. Everything is built and checked in memory first; [`Generated::write`] runs
//! only once every other check of `bind` has passed, so a failing start leaves nothing behind.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{ServeError, ServeSettings, TlsSource};
use crate::pki::{self, Bundle, names};
use crate::requestheader::LiveConfig;
use crate::tls::{TlsConfig, TlsFiles};
use crate::{fsutil, kubeconfig};

/// The address kube-apiserver should use to reach a listener bound to `addr`.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        ip if ip.is_unspecified() => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port()),
        _ => addr,
    }
}

fn read_generated(path: &Path) -> Result<Vec<u8>, ServeError> {
    std::fs::read(path).map_err(|error| ServeError::Generated {
        path: path.to_owned(),
        error,
    })
}

/// The TLS configuration to serve, built and checked before anything is written.
pub(super) struct PreparedTls {
    pub files: TlsFiles,
    pub config: Arc<TlsConfig>,
    /// The embedded mode's files, written once every check has passed.
    pub generated: Option<Generated>,
}

/// What the embedded mode writes under `--data-dir`.
pub(super) struct Generated {
    /// The certificate directory and a fresh bundle for it (none if it already held one).
    bundle: Option<(PathBuf, Bundle)>,
    /// The webhook kubeconfig for kube-apiserver (absolute: it is printed for its flags).
    pub kubeconfig: PathBuf,
    kubeconfig_yaml: String,
}

impl Generated {
    pub fn write(&self) -> Result<(), ServeError> {
        if let Some((dir, bundle)) = &self.bundle {
            bundle.write(dir).map_err(ServeError::Pki)?;
            tracing::info!(dir = %dir.display(), "generated a self-signed CA and server certificate (ECDSA P-256)");
        }
        fsutil::write_atomic(&self.kubeconfig, self.kubeconfig_yaml.as_bytes(), true)?;
        Ok(())
    }
}

/// The TLS configuration for the listener at `listen`; for the embedded mode also the files
/// to write (certificates, when missing, and the webhook kubeconfig). Writes nothing.
pub(super) fn prepare_tls(
    settings: &ServeSettings,
    listen: SocketAddr,
    front_proxy: Option<LiveConfig>,
) -> Result<PreparedTls, ServeError> {
    let client_ca = settings.client_ca.clone();
    if let TlsSource::Files { cert, key } = &settings.tls {
        let files = TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca,
            front_proxy,
        };
        let config = files.load()?;
        return Ok(PreparedTls {
            files,
            config,
            generated: None,
        });
    }
    let dir = settings.data_dir.join("certs");
    // Certificates found here are served and handed to kube-apiserver: only if they are ours.
    fsutil::check_private_dir(&dir, "--data-dir")?;
    let (cert, key) = (dir.join(names::SERVER_CERT), dir.join(names::SERVER_KEY));
    // Only the client certificate of the webhook kubeconfig written below (or one from
    // --client-ca) gets an answer.
    let generated_ca = client_ca.is_none() && !settings.allow_unauthenticated_clients;
    let client_ca = client_ca.or_else(|| generated_ca.then(|| dir.join(names::CA_CERT)));
    let files = TlsFiles {
        cert: cert.clone(),
        key: key.clone(),
        client_ca,
        front_proxy,
    };
    let (config, ca, client_cert, client_key, bundle) = if cert.exists() && key.exists() {
        let ca = read_generated(&dir.join(names::CA_CERT))?;
        let client_cert = read_generated(&dir.join(names::CLIENT_CERT))?;
        let client_key = read_generated(&dir.join(names::CLIENT_KEY))?;
        (files.load()?, ca, client_cert, client_key, None)
    } else {
        let mut sans = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        let ip = listen.ip();
        if !ip.is_unspecified() && !ip.is_loopback() {
            sans.push(ip.to_string());
        }
        let b = pki::generate_bundle(&sans, "kube-apiserver", 365).map_err(ServeError::Pki)?;
        let ca = generated_ca.then_some(b.ca.cert.as_bytes());
        let config = files.load_pem(b.server.cert.as_bytes(), b.server.key.as_bytes(), ca)?;
        let (ca, client_cert, client_key) = (
            b.ca.cert.clone().into_bytes(),
            b.client.cert.clone().into_bytes(),
            b.client.key.clone().into_bytes(),
        );
        (config, ca, client_cert, client_key, Some((dir, b)))
    };
    let url = format!("https://{}/authenticate", reachable(listen));
    let kc = kubeconfig::webhook(&url, &ca, Some((&client_cert, &client_key)));
    let path = settings.data_dir.join("webhook.kubeconfig");
    let kubeconfig = std::path::absolute(&path).map_err(|error| ServeError::Generated {
        path: path.clone(),
        error,
    })?;
    Ok(PreparedTls {
        files,
        config,
        generated: Some(Generated {
            bundle,
            kubeconfig,
            kubeconfig_yaml: kubeconfig::to_yaml(&kc)?,
        }),
    })
}
