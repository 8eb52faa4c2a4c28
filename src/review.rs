//! The TokenReview exchange: decoding what kube-apiserver sends, deciding, encoding the answer.
//!
//! Decisions are pure functions of the token, the index and the clock, so they are tested here
//! without a server. The HTTP layer only maps a [`Decision`] to a status code.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use jiff::Timestamp;
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::index::{ChainBreak, Entry, Index, LoadedKey};
use crate::record::RecordError;
use crate::token::{self, TokenError};

pub const API_V1: &str = "authentication.k8s.io/v1";
pub const API_V1BETA1: &str = "authentication.k8s.io/v1beta1";
pub const KIND: &str = "TokenReview";

/// Why a token was accepted or refused; the `reason` label of metrics and log events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    Ok,
    /// Accepted with the previous secret inside its rotation grace window.
    OkPreviousSecret,
    /// Not a keygate token (no `kg_` prefix): answered without a lookup.
    ForeignToken,
    MalformedToken,
    UnknownKey,
    /// A record exists but was refused when loaded (see the log for why).
    InvalidRecord,
    /// Seals are checked and the record's does not hold: unsealed, forged, copied, restored
    /// from a backup, or an older copy than one already seen.
    UnsealedRecord,
    WrongSecret,
    /// The previous secret, after its grace window ended.
    SecretRotated,
    Expired,
    Disabled,
    /// A key above this one (see [`crate::index::chain`]) is gone, refused, disabled or
    /// expired, or the chain is too long.
    AncestorUnknown,
    AncestorInvalid,
    AncestorDisabled,
    AncestorExpired,
    ChainTooDeep,
}

impl From<ChainBreak> for Reason {
    fn from(b: ChainBreak) -> Self {
        match b {
            ChainBreak::AncestorUnknown => Reason::AncestorUnknown,
            ChainBreak::AncestorInvalid => Reason::AncestorInvalid,
            ChainBreak::AncestorDisabled => Reason::AncestorDisabled,
            ChainBreak::AncestorExpired => Reason::AncestorExpired,
            ChainBreak::TooDeep => Reason::ChainTooDeep,
        }
    }
}

impl Reason {
    pub const ALL: [Reason; 16] = [
        Reason::Ok,
        Reason::OkPreviousSecret,
        Reason::ForeignToken,
        Reason::MalformedToken,
        Reason::UnknownKey,
        Reason::InvalidRecord,
        Reason::UnsealedRecord,
        Reason::WrongSecret,
        Reason::SecretRotated,
        Reason::Expired,
        Reason::Disabled,
        Reason::AncestorUnknown,
        Reason::AncestorInvalid,
        Reason::AncestorDisabled,
        Reason::AncestorExpired,
        Reason::ChainTooDeep,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Ok => "ok",
            Reason::OkPreviousSecret => "ok_previous_secret",
            Reason::ForeignToken => "foreign_token",
            Reason::MalformedToken => "malformed_token",
            Reason::UnknownKey => "unknown_key",
            Reason::InvalidRecord => "invalid_record",
            Reason::UnsealedRecord => "unsealed_record",
            Reason::WrongSecret => "wrong_secret",
            Reason::SecretRotated => "secret_rotated",
            Reason::Expired => "expired",
            Reason::Disabled => "disabled",
            Reason::AncestorUnknown => ChainBreak::AncestorUnknown.as_str(),
            Reason::AncestorInvalid => ChainBreak::AncestorInvalid.as_str(),
            Reason::AncestorDisabled => ChainBreak::AncestorDisabled.as_str(),
            Reason::AncestorExpired => ChainBreak::AncestorExpired.as_str(),
            Reason::ChainTooDeep => ChainBreak::TooDeep.as_str(),
        }
    }

    pub fn authenticated(self) -> bool {
        matches!(self, Reason::Ok | Reason::OkPreviousSecret)
    }

    /// Position in [`Reason::ALL`], for per-reason metric handles.
    pub fn index(self) -> usize {
        Reason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// The outcome of checking one token.
pub struct Decision<'t> {
    pub reason: Reason,
    /// The key ID as written in the token, when the token had one (public, safe to log).
    pub key_id: Option<&'t str>,
    /// The matched key, when authenticated.
    pub key: Option<std::sync::Arc<LoadedKey>>,
}

/// Checks a bearer token against the index at time `now`.
pub fn decide<'t>(index: &Index, token: &'t str, now: Timestamp) -> Decision<'t> {
    let deny = |reason, key_id| Decision {
        reason,
        key_id,
        key: None,
    };
    let parsed = match token::parse_token(token) {
        Ok(p) => p,
        Err(TokenError::Foreign) => return deny(Reason::ForeignToken, None),
        Err(_) => return deny(Reason::MalformedToken, None),
    };
    let id = Some(parsed.id);
    // Lowercased on the stack: no allocation on the hot path.
    let id_key = parsed.key();

    let key = match index.get(&id_key) {
        None => return deny(Reason::UnknownKey, id),
        Some(Entry::Invalid(e)) => {
            tracing::warn!(key_id = parsed.id, error = %e, "token for a refused key record");
            let reason = match *e {
                RecordError::Seal(_) => Reason::UnsealedRecord,
                _ => Reason::InvalidRecord,
            };
            return deny(reason, id);
        }
        // IDs are case-sensitive; the lowercase lookup only finds the candidate.
        Some(Entry::Key(k)) if k.id() != parsed.id => {
            return deny(Reason::UnknownKey, id);
        }
        Some(Entry::Key(k)) => k,
    };

    let matched = key.match_secret(&parsed.secret_hash());
    let reason = match (matched.current, matched.previous, key.previous()) {
        (true, _, _) => Reason::Ok,
        (false, Some(true), Some(p)) if !p.expires.is_past(now) => Reason::OkPreviousSecret,
        (false, Some(true), _) => Reason::SecretRotated,
        _ => Reason::WrongSecret,
    };
    let reason = match reason {
        r if !r.authenticated() => r,
        _ if key.disabled => Reason::Disabled,
        _ if key.is_expired(now) => Reason::Expired,
        r => match index.check_chain(&key, now, |_| {}) {
            Ok(()) => r,
            Err(broken) => Reason::from(broken.why),
        },
    };
    Decision {
        reason,
        key_id: id,
        key: reason.authenticated().then_some(key),
    }
}

/// Why a request body is not a TokenReview we can answer (HTTP 400).
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The parser's message is the reason (not a `source`), so it is printed once.
    #[error("request body is not a TokenReview: {0}")]
    Json(serde_json::Error),
    #[error("kind is {0:?}, expected \"TokenReview\"")]
    WrongKind(String),
    #[error(
        "apiVersion is {0:?}, expected authentication.k8s.io/v1 or authentication.k8s.io/v1beta1"
    )]
    WrongApiVersion(String),
    #[error("spec.token is missing or empty")]
    MissingToken,
}

impl From<serde_json::Error> for ReviewError {
    fn from(e: serde_json::Error) -> Self {
        ReviewError::Json(e)
    }
}

/// The TokenReview versions keygate answers. v1beta1 has the same schema as v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    V1,
    V1beta1,
}

impl ApiVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V1 => API_V1,
            ApiVersion::V1beta1 => API_V1BETA1,
        }
    }
}

/// The parts of a TokenReview request keygate reads; `metadata` and `status` are ignored.
/// `apiVersion` and `kind` borrow from the body (no allocation unless they hold escapes).
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "apiVersion", default, borrow)]
    api_version: Cow<'a, str>,
    #[serde(default, borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    spec: Option<Spec<'a>>,
}

/// The request's `spec`, its token borrowed from the body. Decoded into k8s-openapi's
/// `TokenReviewSpec` it cost three allocations per review (the token and the audiences);
/// the audiences are still checked to be a list of strings, as that type required, but not
/// kept: a keygate key is not bound to audiences, and the answer names none. Written by hand
/// rather than derived to keep that type's reading of a repeated key: the last one counts
/// (as in Go's encoding/json, which wrote the request), where a derived one is an error.
#[derive(Default)]
struct Spec<'a> {
    token: Option<Cow<'a, str>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Spec<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields<'a>(PhantomData<&'a str>);
        impl<'de: 'a, 'a> Visitor<'de> for Fields<'a> {
            type Value = Spec<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a TokenReview spec")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Spec<'a>, A::Error> {
                let mut spec = Spec::default();
                while let Some(key) = map.next_key::<Text<'a>>()? {
                    match &*key.0 {
                        "token" => spec.token = map.next_value::<Option<Text<'a>>>()?.map(|t| t.0),
                        "audiences" => {
                            map.next_value::<Option<Strings>>()?;
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(spec)
            }
        }
        d.deserialize_map(Fields(PhantomData))
    }
}

/// A JSON string, borrowed from the body unless it holds escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Str<'a>(PhantomData<&'a str>);
        impl<'de: 'a, 'a> Visitor<'de> for Str<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, s: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(Str(PhantomData))
    }
}

/// A JSON list of strings, read and dropped.
struct Strings;

impl<'de> Deserialize<'de> for Strings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct List;
        impl<'de> Visitor<'de> for List {
            type Value = Strings;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strings, A::Error> {
                while seq.next_element::<Text<'de>>()?.is_some() {}
                Ok(Strings)
            }
        }
        d.deserialize_seq(List)
    }
}

/// A decoded request.
pub struct ReviewRequest<'a> {
    pub api_version: ApiVersion,
    token: Cow<'a, str>,
}

impl ReviewRequest<'_> {
    pub fn token(&self) -> &str {
        &self.token
    }
}

pub fn decode(body: &[u8]) -> Result<ReviewRequest<'_>, ReviewError> {
    let env: Envelope<'_> = crate::json::from_body(body)?;
    if env.kind != KIND {
        return Err(ReviewError::WrongKind(env.kind.into_owned()));
    }
    let api_version = match &*env.api_version {
        API_V1 => ApiVersion::V1,
        API_V1BETA1 => ApiVersion::V1beta1,
        _ => return Err(ReviewError::WrongApiVersion(env.api_version.into_owned())),
    };
    let spec = env.spec.unwrap_or_default();
    match spec.token {
        Some(token) if !token.is_empty() => Ok(ReviewRequest { api_version, token }),
        _ => Err(ReviewError::MissingToken),
    }
}

/// The answer body. Denials carry no `status.error`, so kube-apiserver caches them. The
/// identity part is the key's `status.user`, serialized once when the key was loaded; only the
/// constant framing is written here.
pub fn encode(api_version: ApiVersion, decision: &Decision<'_>) -> Vec<u8> {
    const HEAD: &[u8] = b"{\"apiVersion\":\"";
    const MID: &[u8] = b"\",\"kind\":\"TokenReview\",\"status\":{\"authenticated\":";
    let user = decision.key.as_deref();
    let mut buf = Vec::with_capacity(96 + user.map_or(0, LoadedKey::user_len));
    buf.extend_from_slice(HEAD);
    buf.extend_from_slice(api_version.as_str().as_bytes());
    buf.extend_from_slice(MID);
    match user {
        Some(user) if decision.reason.authenticated() => {
            buf.extend_from_slice(b"true,\"user\":");
            user.write_user(&mut buf);
        }
        _ => buf.extend_from_slice(b"false"),
    }
    buf.extend_from_slice(b"}}");
    buf
}

#[cfg(test)]
mod tests;
