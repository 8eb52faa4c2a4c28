//! Record seals: an Ed25519 signature over each key record, made only by the component that
//! writes records (the AccessKey API) and checked by the webhook with the public key.
//!
//! A Secret-writer in the key namespace can read and copy records, but cannot sign: a record
//! written by hand, an edited one, a copy under another name and a record restored from a
//! backup (a new `metadata.uid`) all fail [`Verifier::verify`]. The sequence number `seq`
//! (higher on every write) lets the webhook refuse an older copy brought back while it runs
//! (see `Index::admit_seq`). The webhook holds only the public key, so it stays read-only.
//!
//! Stored in the record Secret as `seal` (base64 of the 64-byte signature) and `seal-seq`
//! (decimal). The key files are PEM: `PRIVATE KEY` (PKCS#8) and `PUBLIC KEY` (SPKI). keygate
//! also reads the keys `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout` write;
//! the private key keygate writes is PKCS#8 v2 (with the public key), which OpenSSL 3.0 does
//! not read.

mod canonical;
pub mod migrate;

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use rustls_pki_types::pem::{PemObject, SectionKind};

pub use canonical::{Binding, encode};

use crate::fsutil;
use crate::pki::pem_block;
use crate::record::{KeyRecord, RecordError};

/// The Secret fields a seal is kept in.
pub const FIELD_SEAL: &str = "seal";
pub const FIELD_SEQ: &str = "seal-seq";

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo; the 32-byte key follows.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Why a record's seal does not hold. Carried in [`RecordError::Seal`]; never names a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealFailure {
    #[error(
        "record is not sealed (no `seal`/`seal-seq`): only keygate's AccessKey API writes records"
    )]
    Unsealed,
    #[error(
        "record's seal does not verify: it was written or changed outside keygate's AccessKey API, copied, or restored from a backup"
    )]
    Invalid,
    #[error("record has no metadata.uid to check its seal against")]
    NoUid,
    #[error(
        "record's seal-seq {got} is lower than {seen}, already seen: an older copy was brought back"
    )]
    Rollback { seen: u64, got: u64 },
}

/// Errors with the seal's key files, or sealing a Secret.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("cannot read the record signing key {path} ({flag}): {error}")]
    Read {
        path: PathBuf,
        flag: &'static str,
        error: std::io::Error,
    },
    #[error(
        "{path} ({flag}) holds no usable Ed25519 {what} in PEM: generate one with `keygate seal-key`"
    )]
    BadKey {
        path: PathBuf,
        flag: &'static str,
        what: &'static str,
    },
    #[error(transparent)]
    Write(#[from] fsutil::WriteError),
    #[error("cannot seal the Secret: it is not a valid key record: {error}")]
    Record { error: RecordError },
    #[error(
        "cannot seal the Secret: it has no metadata.uid yet; create it first, then seal the stored object"
    )]
    NoUid,
    #[error("cannot generate a signing key: the system's random source failed")]
    Random,
}

fn read(path: &Path, flag: &'static str) -> Result<Vec<u8>, SealError> {
    std::fs::read(path).map_err(|error| SealError::Read {
        path: path.to_owned(),
        flag,
        error,
    })
}

/// A new key pair as PEM: (private PKCS#8, public SPKI).
pub fn generate() -> Result<(String, String), SealError> {
    let pkcs8 =
        Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| SealError::Random)?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| SealError::Random)?;
    let mut spki = SPKI_PREFIX.to_vec();
    spki.extend_from_slice(pair.public_key().as_ref());
    Ok((
        pem_block("PRIVATE KEY", pkcs8.as_ref()),
        pem_block("PUBLIC KEY", &spki),
    ))
}

/// Generates a key pair into `private` (mode 0600) and `public` (0644), each written
/// atomically. The private key belongs with the AccessKey API, never in the key namespace.
pub fn write_key_pair(private: &Path, public: &Path) -> Result<(), SealError> {
    let (key, public_pem) = generate()?;
    fsutil::write_atomic(private, key.as_bytes(), true)?;
    fsutil::write_atomic(public, public_pem.as_bytes(), false)?;
    Ok(())
}

/// A text field of a Secret, from `stringData` (which wins, as in the API server) or `data`.
fn field<'a>(secret: &'a Secret, name: &str) -> Option<&'a str> {
    let from_string = secret.string_data.as_ref().and_then(|d| d.get(name));
    let from_data = || {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(name))
            .and_then(|v| std::str::from_utf8(&v.0).ok())
    };
    from_string
        .map(String::as_str)
        .or_else(from_data)
        .map(str::trim)
}

/// The `seal-seq` a Secret carries, if any.
pub fn seq_of(secret: &Secret) -> Option<u64> {
    field(secret, FIELD_SEQ).and_then(|v| v.parse().ok())
}

/// Signs records: held by the AccessKey API (and `keygate keys seal`) only.
pub struct Sealer {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for Sealer {
    // Never the key; the public half is enough to tell two sealers apart.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").finish_non_exhaustive()
    }
}

impl Sealer {
    /// From a PEM `PRIVATE KEY` (PKCS#8, as keygate or openssl write it).
    pub fn from_pem(pem: &[u8], path: &Path, flag: &'static str) -> Result<Self, SealError> {
        let bad = || SealError::BadKey {
            path: path.to_owned(),
            flag,
            what: "private key (PKCS#8 `PRIVATE KEY`)",
        };
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(pem).map_err(|_| bad())?;
        // `maybe_unchecked` also takes PKCS#8 v1 (openssl's), which carries no public key.
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_pkcs8_der())
            .map_err(|_| bad())?;
        Ok(Sealer { pair })
    }

    pub fn load(path: &Path, flag: &'static str) -> Result<Self, SealError> {
        Self::from_pem(&read(path, flag)?, path, flag)
    }

    /// The matching verifier (for tests and for checking a freshly sealed record).
    pub fn verifier(&self) -> Verifier {
        Verifier {
            keys: vec![self.pair.public_key().as_ref().to_vec()],
        }
    }

    /// Seals the record in `secret`, writing `seal` and `seal-seq` into its `stringData`;
    /// then update the Secret with it (keeping its resourceVersion). `secret` needs the
    /// `metadata.uid` the API server gave it: on create, create the Secret first, then seal the
    /// object the create returned (the key works after that second write).
    ///
    /// `previous` is the stored version this write replaces (`None` on create). The sequence
    /// number is the current time in microseconds, or one more than the `seal-seq` of
    /// `previous` (or of `secret` itself) if that is higher: it grows on every write, even
    /// across API replicas whose clocks differ. Returns the seq.
    pub fn seal(&self, secret: &mut Secret, previous: Option<&Secret>) -> Result<u64, SealError> {
        let record = KeyRecord::from_secret(secret).map_err(|error| SealError::Record { error })?;
        let uid = secret.metadata.uid.clone().ok_or(SealError::NoUid)?;
        let name = secret.metadata.name.clone().unwrap_or_default();
        let now = u64::try_from(Timestamp::now().as_microsecond()).unwrap_or(0);
        let after = |s: Option<&Secret>| s.and_then(seq_of).map_or(0, |q| q.saturating_add(1));
        let seq = now.max(after(Some(&*secret))).max(after(previous));
        let msg = encode(
            Binding {
                name: &name,
                uid: &uid,
                seq,
            },
            &record,
        );
        let sig = STANDARD.encode(self.pair.sign(&msg));
        if let Some(data) = secret.data.as_mut() {
            data.remove(FIELD_SEAL);
            data.remove(FIELD_SEQ);
        }
        let sd = secret.string_data.get_or_insert_with(Default::default);
        sd.insert(FIELD_SEAL.to_owned(), sig);
        sd.insert(FIELD_SEQ.to_owned(), seq.to_string());
        Ok(seq)
    }
}

/// Checks seals: held by the webhook. Several public keys may be trusted at once, so the
/// signing key can be rotated (trust both, re-seal with the new one, drop the old).
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: Vec<Vec<u8>>,
}

impl Verifier {
    /// From one or more PEM `PUBLIC KEY` blocks (Ed25519 SubjectPublicKeyInfo).
    pub fn from_pem(pem: &[u8], path: &Path, flag: &'static str) -> Result<Self, SealError> {
        let mut keys = Vec::new();
        let bad = || SealError::BadKey {
            path: path.to_owned(),
            flag,
            what: "public key (`PUBLIC KEY`)",
        };
        for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
            let (kind, der) = item.map_err(|_| bad())?;
            if kind != SectionKind::PublicKey {
                continue;
            }
            let key = der.strip_prefix(&SPKI_PREFIX[..]).ok_or_else(bad)?;
            if key.len() != 32 {
                return Err(bad());
            }
            keys.push(key.to_vec());
        }
        if keys.is_empty() {
            return Err(bad());
        }
        Ok(Verifier { keys })
    }

    pub fn load(path: &Path, flag: &'static str) -> Result<Self, SealError> {
        Self::from_pem(&read(path, flag)?, path, flag)
    }

    /// Checks that `record`, parsed from `secret`, carries a seal made by a trusted key for
    /// this Secret (name and uid). Returns its `seal-seq`.
    pub fn verify(&self, secret: &Secret, record: &KeyRecord) -> Result<u64, SealFailure> {
        let (Some(sig), Some(seq)) = (field(secret, FIELD_SEAL), field(secret, FIELD_SEQ)) else {
            return Err(SealFailure::Unsealed);
        };
        let seq: u64 = seq.parse().map_err(|_| SealFailure::Invalid)?;
        let sig = STANDARD.decode(sig).map_err(|_| SealFailure::Invalid)?;
        let uid = secret.metadata.uid.as_deref().ok_or(SealFailure::NoUid)?;
        let name = secret.metadata.name.as_deref().unwrap_or_default();
        let msg = encode(Binding { name, uid, seq }, record);
        let ok = self.keys.iter().any(|k| {
            UnparsedPublicKey::new(&ED25519, k)
                .verify(&msg, &sig)
                .is_ok()
        });
        if ok {
            Ok(seq)
        } else {
            Err(SealFailure::Invalid)
        }
    }

    /// Whether this verifier trusts the seals `sealer` makes.
    pub fn trusts(&self, sealer: &Sealer) -> bool {
        let public = sealer.pair.public_key().as_ref();
        self.keys.iter().any(|k| k.as_slice() == public)
    }

    /// Parses and verifies in one step: the record, or why it is refused.
    pub fn check(&self, secret: &Secret) -> Result<(KeyRecord, u64), RecordError> {
        let record = KeyRecord::from_secret(secret)?;
        let seq = self.verify(secret, &record).map_err(RecordError::Seal)?;
        Ok((record, seq))
    }
}

#[cfg(test)]
mod tests;
