//! Access-key tokens: `kg_<ID>_<SECRET>`, their parts, and the hash that is stored.
//!
//! The ID is public (usernames, logs, metrics); the SECRET never leaves this module except as
//! a [`SecretHash`] or inside a freshly minted [`Token`]. Neither `Secret` nor `Token` implements
//! `Display`, and their `Debug` output is redacted, so a stray `{:?}` cannot leak them.

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

const HASH_PREFIX: &str = "sha256:";

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum KeyError {
    #[error("not a keygate token (it does not start with `kg_`)")]
    Foreign,
    #[error("malformed keygate token: {0}")]
    Malformed(&'static str),
    #[error("invalid key ID {0:?}: expected {ID_LEN} characters of [0-9A-Za-z]")]
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

    /// The form used in usernames, Secret names and labels.
    pub fn lowercase(&self) -> String {
        self.0.to_ascii_lowercase()
    }

    /// `keygate-<id lowercased>`: the Secret (and file) name of this key's record.
    pub fn record_name(&self) -> String {
        record_name(&self.lowercase())
    }
}

/// The record name for a lowercased ID.
pub fn record_name(id_lower: &str) -> String {
    format!("keygate-{id_lower}")
}

impl FromStr for KeyId {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        if s.len() == ID_LEN && is_base62(s) {
            Ok(KeyId(s.to_owned()))
        } else {
            Err(KeyError::InvalidId(s.chars().take(64).collect()))
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

/// The SHA-256 of a key secret, as stored in the record (`sha256:<hex>`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    pub fn of(secret: &[u8]) -> Self {
        SecretHash(Sha256::digest(secret).into())
    }

    /// Constant-time comparison: the time taken does not depend on where the hashes differ.
    pub fn ct_eq(&self, other: &SecretHash) -> bool {
        #[cfg(test)]
        tests::CT_EQ_CALLS.with(|c| c.set(c.get() + 1));
        self.0.ct_eq(&other.0).into()
    }
}

impl FromStr for SecretHash {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let hex_part = s.strip_prefix(HASH_PREFIX).ok_or(KeyError::InvalidHash)?;
        if hex_part.len() != 64 || hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(KeyError::InvalidHash);
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| KeyError::InvalidHash)?;
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
    pub fn secret_hash(&self) -> SecretHash {
        SecretHash::of(self.secret.as_bytes())
    }
}

impl fmt::Debug for ParsedToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ParsedToken {{ id: {}, secret: <redacted> }}", self.id)
    }
}

/// Splits a bearer token. Anything without the `kg_` prefix is [`KeyError::Foreign`], so the
/// caller can answer it without a lookup.
pub fn parse_token(token: &str) -> Result<ParsedToken<'_>, KeyError> {
    let rest = token.strip_prefix(TOKEN_PREFIX).ok_or(KeyError::Foreign)?;
    if token.len() != TOKEN_LEN {
        return Err(KeyError::Malformed("wrong length"));
    }
    // Length is right and the prefix is ASCII, so byte offsets below are char boundaries
    // unless a multi-byte character hides inside; `get` refuses those instead of panicking.
    let (id, sep, secret) = match (
        rest.get(..ID_LEN),
        rest.get(ID_LEN..ID_LEN + 1),
        rest.get(ID_LEN + 1..),
    ) {
        (Some(id), Some(sep), Some(secret)) => (id, sep, secret),
        _ => return Err(KeyError::Malformed("not ASCII")),
    };
    if sep != "_" {
        return Err(KeyError::Malformed("missing `_` between ID and secret"));
    }
    if !is_base62(id) || !is_base62(secret) {
        return Err(KeyError::Malformed("characters outside [0-9A-Za-z]"));
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

    thread_local! {
        /// Calls of [`SecretHash::ct_eq`] on this thread (tests only): counts work done, not time.
        pub(super) static CT_EQ_CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

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
            assert_eq!(parse_token(t).unwrap_err(), KeyError::Foreign, "{t}");
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
            assert!(matches!(parse_token(t), Err(KeyError::Malformed(_))), "{t}");
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
        assert_eq!(id.lowercase(), "nfyyvdtg8k1adujwk3yfh1");
        assert_eq!(id.record_name(), "keygate-nfyyvdtg8k1adujwk3yfh1");
        assert!("short".parse::<KeyId>().is_err());
        assert!("nFYyVdtg8K1aDujwk3YF-1".parse::<KeyId>().is_err());
    }

    /// No early exit: a review of a known key always runs every hash comparison the record
    /// has (current, and previous when present), whichever matches, each through subtle's
    /// constant-time equality. Counts the work, not the time, so it cannot be flaky.
    #[test]
    fn decide_always_compares_current_and_previous_in_constant_time() {
        use crate::record::{Expiry, KeyRecord, PreviousSecret};
        use crate::review::{IdentityPolicy, Reason, decide};
        use crate::store::Index;
        use std::collections::HashMap;

        let calls = || CT_EQ_CALLS.with(|c| c.get());
        let now: jiff::Timestamp = "2026-06-01T00:00:00Z".parse().unwrap();
        let old = Token::generate(KeyId::generate());
        let new = Token {
            id: old.id.clone(),
            secret: random_base62(SECRET_LEN),
        };
        let wrong = format!("kg_{}_{}", old.id, "W".repeat(SECRET_LEN));
        for (previous, cases) in [
            (
                Some("2099-01-01T00:00:00Z"),
                vec![
                    (new.expose(), Reason::Ok),
                    (old.expose(), Reason::OkPreviousSecret),
                    (wrong.clone(), Reason::WrongSecret),
                ],
            ),
            (
                Some("2020-01-01T00:00:00Z"),
                vec![
                    (new.expose(), Reason::Ok),
                    (old.expose(), Reason::SecretRotated),
                    (wrong.clone(), Reason::WrongSecret),
                ],
            ),
            (
                None,
                vec![
                    (new.expose(), Reason::Ok),
                    (wrong.clone(), Reason::WrongSecret),
                ],
            ),
        ] {
            let mut rec = KeyRecord::new(new.id.clone(), new.secret_hash(), "k");
            rec.previous = previous.map(|t| PreviousSecret {
                hash: old.secret_hash(),
                expires: Expiry::At(t.parse().unwrap()),
            });
            let index = Index::new(IdentityPolicy::default());
            index.replace_all(HashMap::from([(new.id.lowercase(), Ok(rec))]));
            let want = if previous.is_some() { 2 } else { 1 };
            for (token, reason) in cases {
                let before = calls();
                assert_eq!(decide(&index, &token, now).reason, reason);
                assert_eq!(
                    calls() - before,
                    want,
                    "{reason:?} with previous {previous:?}"
                );
            }
        }
        // The comparison itself is subtle's, over the whole 32 bytes.
        let src = include_str!("keys.rs");
        assert!(src.contains("use subtle::ConstantTimeEq;"));
        assert!(src.contains("self.0.ct_eq(&other.0).into()"));
        // And the decision compares hashes only through it.
        let review = include_str!("review.rs");
        for needle in [
            "secret_hash ==",
            "hash ==",
            "== hash",
            "secret_hash.eq(",
            ".0 ==",
        ] {
            assert!(
                !review.contains(needle),
                "review.rs compares hashes with {needle:?}"
            );
        }
        assert_eq!(review.matches(".ct_eq(&hash)").count(), 2);
    }
}
