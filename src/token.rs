//! Access-key tokens: `kg_<ID>_<SECRET>`, the forms of a key ID, the record-name rule, and the
//! hash that is stored.
//!
//! A key ID has two forms: [`KeyId`], case kept as minted (tokens, the record's `id`, logs), and
//! [`IdKey`], lowercased (usernames, record names, the index). Both are validated here and
//! nowhere else, and the record name `keygate-<id lowercased>` is made and read only here.
//!
//! The ID is public (usernames, logs, metrics); the SECRET never leaves this module except as
//! a [`SecretHash`] or inside a freshly minted [`Token`]. `Token` does not implement `Display`,
//! and its `Debug` output is redacted, so a stray `{:?}` cannot leak it.

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The prefix that marks a keygate token (and lets secret scanners find leaked ones).
pub const TOKEN_PREFIX: &str = "kg_";
/// Length of a key ID in base62 characters.
pub const ID_LEN: usize = 22;
/// Length of a key secret in base62 characters: 43 × log2(62) ≈ 256.04 bits.
pub const SECRET_LEN: usize = 43;
/// Full token length: `kg_` + ID + `_` + SECRET.
pub const TOKEN_LEN: usize = TOKEN_PREFIX.len() + ID_LEN + 1 + SECRET_LEN;

/// The prefix of a record's name (Secret or file): `keygate-<id lowercased>`.
pub const RECORD_PREFIX: &str = "keygate-";

const HASH_PREFIX: &str = "sha256:";

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TokenError {
    #[error("not a keygate token (it does not start with `kg_`)")]
    Foreign,
    #[error("malformed keygate token: {0}")]
    Malformed(&'static str),
    #[error("{0:?} is not a key ID: expected {ID_LEN} letters and digits")]
    InvalidId(String),
    #[error("invalid secret hash: expected `sha256:` followed by 64 lowercase hex digits")]
    InvalidHash,
}

fn is_base62(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A key ID: 22 base62 characters, case kept as minted.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// A fresh random ID from the thread-local CSPRNG.
    pub fn generate() -> Self {
        KeyId(random_base62(ID_LEN))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The lowercased form: the index's key, and the ID in usernames, Secret names and labels.
    pub fn key(&self) -> IdKey {
        let mut buf = [0u8; ID_LEN];
        // A `KeyId` is always ID_LEN base62 characters.
        buf.copy_from_slice(self.0.as_bytes());
        buf.make_ascii_lowercase();
        IdKey(buf)
    }

    /// `keygate-<id lowercased>`: the Secret (and file) name of this key's record.
    pub fn record_name(&self) -> String {
        self.key().record_name()
    }
}

impl FromStr for KeyId {
    type Err = TokenError;
    fn from_str(s: &str) -> Result<Self, TokenError> {
        if s.len() == ID_LEN && is_base62(s) {
            Ok(KeyId(s.to_owned()))
        } else {
            Err(TokenError::InvalidId(s.chars().take(64).collect()))
        }
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

/// A lowercased key ID: 22 base62 bytes inline (no allocation, `Copy`). The index's key, and
/// the form in usernames, record names, labels and command-line arguments.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdKey([u8; ID_LEN]);

impl IdKey {
    /// The key for an ID in any case. `None` unless `id` is 22 base62 characters.
    #[inline]
    pub fn new(id: &str) -> Option<Self> {
        let mut buf: [u8; ID_LEN] = id.as_bytes().try_into().ok()?;
        if !buf.iter().all(u8::is_ascii_alphanumeric) {
            return None;
        }
        buf.make_ascii_lowercase();
        Some(IdKey(buf))
    }

    /// An ID as a person types it: any case, surrounding space, or the record name
    /// (`keygate-<id>`) all name the same key.
    pub fn parse(s: &str) -> Result<Self, TokenError> {
        let s = s.trim();
        let id = s.strip_prefix(RECORD_PREFIX).unwrap_or(s);
        IdKey::new(id).ok_or_else(|| TokenError::InvalidId(id.chars().take(64).collect()))
    }

    /// The key whose record is called `name`, if the name has the form `keygate-<id
    /// lowercased>` (uppercase is refused: Kubernetes object names are lowercase).
    pub fn from_record_name(name: &str) -> Option<Self> {
        let id = name.strip_prefix(RECORD_PREFIX)?;
        IdKey::new(id).filter(|k| k.as_str() == id)
    }

    /// `keygate-<id lowercased>`: the Secret (and file) name of this key's record.
    pub fn record_name(&self) -> String {
        format!("{RECORD_PREFIX}{self}")
    }

    pub fn as_str(&self) -> &str {
        // Only ever built from ASCII, which is UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    pub fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// A small, well-spread number for picking a shard (IDs are random base62).
    pub fn spread(&self) -> usize {
        self.0.iter().fold(0usize, |h, &b| {
            h.wrapping_mul(31).wrapping_add(usize::from(b))
        })
    }
}

impl fmt::Debug for IdKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for IdKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The SHA-256 of a key secret, as stored in the record (`sha256:<hex>`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    pub fn of(secret: &[u8]) -> Self {
        SecretHash(Sha256::digest(secret).into())
    }

    /// Constant-time comparison: the time taken does not depend on where the hashes differ.
    pub fn ct_eq(&self, other: &SecretHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl FromStr for SecretHash {
    type Err = TokenError;
    fn from_str(s: &str) -> Result<Self, TokenError> {
        let hex_part = s.strip_prefix(HASH_PREFIX).ok_or(TokenError::InvalidHash)?;
        if hex_part.len() != 64 || hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(TokenError::InvalidHash);
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| TokenError::InvalidHash)?;
        Ok(SecretHash(out))
    }
}

impl fmt::Display for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{HASH_PREFIX}{}", hex::encode(self.0))
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretHash({self})")
    }
}

/// A token borrowed from a request, split into its parts. The secret part is only ever hashed.
pub struct ParsedToken<'a> {
    pub id: &'a str,
    secret: &'a str,
}

impl ParsedToken<'_> {
    /// The ID, lowercased: the index's key.
    #[inline]
    pub fn key(&self) -> IdKey {
        IdKey::new(self.id).expect("parse_token only accepts 22 base62 characters as the ID")
    }

    pub fn secret_hash(&self) -> SecretHash {
        SecretHash::of(self.secret.as_bytes())
    }
}

impl fmt::Debug for ParsedToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ParsedToken {{ id: {}, secret: <redacted> }}", self.id)
    }
}

/// Splits a bearer token. Anything without the `kg_` prefix is [`TokenError::Foreign`], so the
/// caller can answer it without a lookup.
pub fn parse_token(token: &str) -> Result<ParsedToken<'_>, TokenError> {
    let rest = token
        .strip_prefix(TOKEN_PREFIX)
        .ok_or(TokenError::Foreign)?;
    if token.len() != TOKEN_LEN {
        return Err(TokenError::Malformed("wrong length"));
    }
    // Length is right and the prefix is ASCII, so byte offsets below are char boundaries
    // unless a multi-byte character hides inside; `get` refuses those instead of panicking.
    let (id, sep, secret) = match (
        rest.get(..ID_LEN),
        rest.get(ID_LEN..ID_LEN + 1),
        rest.get(ID_LEN + 1..),
    ) {
        (Some(id), Some(sep), Some(secret)) => (id, sep, secret),
        _ => return Err(TokenError::Malformed("not ASCII")),
    };
    if sep != "_" {
        return Err(TokenError::Malformed("missing `_` between ID and secret"));
    }
    if !is_base62(id) || !is_base62(secret) {
        return Err(TokenError::Malformed("characters outside [0-9A-Za-z]"));
    }
    Ok(ParsedToken { id, secret })
}

/// A freshly minted token. Shown to the user once; only its hash is stored.
pub struct Token {
    pub id: KeyId,
    secret: String,
}

impl Token {
    pub fn generate(id: KeyId) -> Self {
        Token {
            id,
            secret: random_base62(SECRET_LEN),
        }
    }

    pub fn secret_hash(&self) -> SecretHash {
        SecretHash::of(self.secret.as_bytes())
    }

    /// The full bearer token, `kg_<ID>_<SECRET>`. Call only to show it to its owner.
    pub fn expose(&self) -> String {
        format!("{TOKEN_PREFIX}{}_{}", self.id, self.secret)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token {{ id: {}, secret: <redacted> }}", self.id)
    }
}

/// `len` characters drawn uniformly from [0-9A-Za-z] by a CSPRNG (rand's `ThreadRng` is a
/// ChaCha-based CSPRNG seeded and periodically reseeded from the OS).
fn random_base62(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "nFYyVdtg8K1aDujwk3YFh1";
    const SECRET: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ";

    fn token(id: &str, secret: &str) -> String {
        format!("kg_{id}_{secret}")
    }

    #[test]
    fn parses_a_well_formed_token() {
        let t = token(ID, SECRET);
        let p = parse_token(&t).unwrap();
        assert_eq!(p.id, ID);
        assert_eq!(p.secret_hash(), SecretHash::of(SECRET.as_bytes()));
    }

    #[test]
    fn foreign_tokens_are_recognised_without_parsing() {
        for t in [
            "eyJhbGciOiJSUzI1NiJ9.x.y",
            "",
            "KG_abc",
            "abcdef.0123456789abcdef",
        ] {
            assert_eq!(parse_token(t).unwrap_err(), TokenError::Foreign, "{t}");
        }
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let cases = [
            token(&ID[1..], SECRET),                  // short ID
            token(ID, &SECRET[1..]),                  // short secret
            format!("{}x", token(ID, SECRET)),        // too long
            token(ID, &format!("{}-", &SECRET[1..])), // bad char
            format!("kg_{ID}-{SECRET}"),              // wrong separator
            token(&format!("{}é", &ID[2..]), SECRET), // multi-byte char, same byte length
        ];
        for t in &cases {
            assert!(
                matches!(parse_token(t), Err(TokenError::Malformed(_))),
                "{t}"
            );
        }
    }

    #[test]
    fn hash_round_trips_and_is_strict() {
        let h = SecretHash::of(b"s");
        let text = h.to_string();
        assert!(text.starts_with("sha256:") && text.len() == 7 + 64);
        assert_eq!(text.parse::<SecretHash>().unwrap(), h);
        assert!(text.to_uppercase().parse::<SecretHash>().is_err());
        assert!("sha256:abc".parse::<SecretHash>().is_err());
        assert!(
            text.replace("sha256:", "md5:")
                .parse::<SecretHash>()
                .is_err()
        );
        // Known vector: SHA-256("abc").
        assert_eq!(
            SecretHash::of(b"abc").to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn constant_time_eq_compares_whole_hash() {
        let a = SecretHash::of(b"a");
        let mut b = a;
        b.0[31] ^= 1;
        assert!(a.ct_eq(&a));
        assert!(!a.ct_eq(&b));
    }

    #[test]
    fn generated_tokens_parse_back_and_differ() {
        let t1 = Token::generate(KeyId::generate());
        let t2 = Token::generate(KeyId::generate());
        let e1 = t1.expose();
        assert_eq!(e1.len(), TOKEN_LEN);
        let p = parse_token(&e1).unwrap();
        assert_eq!(p.id, t1.id.as_str());
        assert_eq!(p.secret_hash(), t1.secret_hash());
        assert_ne!(e1, t2.expose());
        assert!(!format!("{t1:?}").contains(&e1[TOKEN_LEN - SECRET_LEN..]));
    }

    #[test]
    fn key_id_validation_and_names() {
        let id: KeyId = ID.parse().unwrap();
        assert_eq!(id.key().as_str(), "nfyyvdtg8k1adujwk3yfh1");
        assert_eq!(id.record_name(), "keygate-nfyyvdtg8k1adujwk3yfh1");
        assert!("short".parse::<KeyId>().is_err());
        assert!("nFYyVdtg8K1aDujwk3YF-1".parse::<KeyId>().is_err());
    }

    #[test]
    fn id_key_lowercases_and_refuses_what_cannot_be_an_id() {
        let k = IdKey::new("AbCdEfGhIjKlMnOpQrStUv").unwrap();
        assert_eq!(k.as_str(), "abcdefghijklmnopqrstuv");
        assert_eq!(IdKey::new("short"), None);
        assert_eq!(IdKey::new("abcdefghijklmnopqrstuvw"), None);
        assert_eq!(IdKey::new("abcdefghijklmnopqrstü"), None);
        assert_eq!(IdKey::new("abcdefghijklmnopqrstu-"), None);
    }

    #[test]
    fn ids_as_typed_and_record_names() {
        let k = IdKey::new(ID).unwrap();
        for typed in [
            ID,
            " nfyyvdtg8k1adujwk3yfh1 ",
            "keygate-nfyyvdtg8k1adujwk3yfh1",
        ] {
            assert_eq!(IdKey::parse(typed).unwrap(), k, "{typed}");
        }
        let err = IdKey::parse("keygate-nope").unwrap_err().to_string();
        assert!(err.contains("\"nope\""), "{err}");
        assert_eq!(IdKey::from_record_name(&k.record_name()), Some(k));
        assert_eq!(IdKey::from_record_name(ID), None);
        assert_eq!(IdKey::from_record_name("keygate-short"), None);
        assert_eq!(
            IdKey::from_record_name("keygate-NFYYVDTG8K1ADUJWK3YFH1"),
            None
        );
    }
}
