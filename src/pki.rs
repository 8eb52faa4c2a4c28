//! Certificates for the embedded setup and `keygate certs`: a CA, the server certificate
//! keygate serves and the client certificate kube-apiserver presents (rcgen, ECDSA P-256).

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::fsutil;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot generate certificate: {0}")]
    Generate(rcgen::Error),
    #[error(transparent)]
    Write(#[from] fsutil::WriteError),
}

// By hand, not `#[from]`: the message holds the cause, so it must not be a `source` too.
impl From<rcgen::Error> for PkiError {
    fn from(e: rcgen::Error) -> Self {
        PkiError::Generate(e)
    }
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
pub fn generate_ca(common_name: &str, days: u32) -> Result<Pem, PkiError> {
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
) -> Result<Pem, PkiError> {
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
pub fn generate_bundle(sans: &[String], client_cn: &str, days: u32) -> Result<Bundle, PkiError> {
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
    pub fn write(&self, dir: &Path) -> Result<(), PkiError> {
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

/// One DER object as a PEM block (`-----BEGIN {label}-----`, base64 in lines of 64, LF line
/// ends), as kubeconfigs and key files hold them.
pub fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        // Base64 is ASCII: every chunk is a string.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
