//! Who is on the other end of a connection: client certificates checked once, at the end of
//! the handshake, against each root set separately, so that routes can demand the one they
//! need (the webhooks: `--client-ca`; the AccessKey API: the front proxy).
//!
//! The handshake itself accepts a chain valid under either root set (one verifier over their
//! union: any valid path ends at one of the roots, and is then valid under that set alone);
//! this module then says which.

use std::sync::Arc;

use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::requestheader::RequestHeaderConfig;

/// The root sets a listener checks client certificates against.
#[derive(Clone, Default)]
pub struct ClientTrust {
    /// `--client-ca`, when set; without it the webhooks answer anyone who connects.
    pub(super) webhook: Option<Arc<dyn ClientCertVerifier>>,
    /// The request-header CA and its settings, with `--api`.
    pub(super) front_proxy: Option<(Arc<dyn ClientCertVerifier>, Arc<RequestHeaderConfig>)>,
}

/// What a connection's client certificate (or its absence) entitles it to.
#[derive(Clone, Debug, Default)]
pub struct Client {
    /// May call the webhooks: its certificate chains to `--client-ca`, or none is required.
    pub webhook: bool,
    /// Is kube-apiserver's front proxy: its certificate chains to the request-header CA and its
    /// common name is allowed. The settings to read its headers with.
    pub front_proxy: Option<Arc<RequestHeaderConfig>>,
}

impl ClientTrust {
    /// Whether a front proxy is trusted at all (`--api`).
    pub fn has_front_proxy(&self) -> bool {
        self.front_proxy.is_some()
    }

    /// Classifies the chain a client presented at its handshake (already verified against the
    /// union of the root sets). Without a front proxy there is nothing to tell apart: a
    /// connection that completed its handshake may call the webhooks, as before.
    pub fn classify(&self, chain: Option<&[CertificateDer<'_>]>) -> Client {
        let Some((fp_verifier, fp_config)) = &self.front_proxy else {
            return Client {
                webhook: true,
                front_proxy: None,
            };
        };
        let Some((end, intermediates)) = chain.and_then(|c| c.split_first()) else {
            return Client {
                webhook: self.webhook.is_none(),
                front_proxy: None,
            };
        };
        let now = UnixTime::now();
        let valid =
            |v: &Arc<dyn ClientCertVerifier>| v.verify_client_cert(end, intermediates, now).is_ok();
        let webhook = self.webhook.as_ref().is_none_or(valid);
        let front_proxy = valid(fp_verifier)
            .then(|| match common_name(end) {
                Some(cn) if fp_config.name_allowed(&cn) => Some(fp_config.clone()),
                cn => {
                    tracing::warn!(
                        common_name = cn.as_deref().unwrap_or("(none or several)"),
                        "client certificate signed by the request-header CA with a common name \
                         not in the allowed names: not trusted as the front proxy"
                    );
                    None
                }
            })
            .flatten();
        Client {
            webhook,
            front_proxy,
        }
    }
}

/// The subject's common name, when there is exactly one and it is a string. (Go's x509 keeps
/// the last of several; a certificate with several is not trusted here at all.)
fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let mut names = parsed.subject().iter_common_name();
    let cn = names.next()?.as_str().ok()?.to_owned();
    names.next().is_none().then_some(cn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki;
    use rustls_pki_types::pem::PemObject;

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    #[test]
    fn common_name_is_read_from_the_subject() {
        let ca = pki::generate_ca("ca", 30).unwrap();
        let leaf = pki::issue(&ca, "front-proxy-client", Some("org"), &[], false, 30).unwrap();
        assert_eq!(
            common_name(&der(&leaf.cert)).as_deref(),
            Some("front-proxy-client")
        );
        assert_eq!(common_name(&CertificateDer::from(vec![1, 2, 3])), None);
    }

    #[test]
    fn without_a_front_proxy_every_connection_may_call_the_webhooks() {
        let c = ClientTrust::default().classify(None);
        assert!(c.webhook && c.front_proxy.is_none());
    }
}
