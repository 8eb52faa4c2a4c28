//! The SubjectAccessReview exchange with kube-apiserver: decoding what it asks, encoding the
//! answer in the version it asked (`authorization.k8s.io/v1` or `v1beta1`).
//!
//! Only what keygate reads is decoded, borrowing from the body: the user's name, the
//! `keygate.dev/key-id` entry of `extra` (other entries are skipped unread), and the request's
//! attributes. The user's groups are never read (v1 calls them `groups`, v1beta1 `group`), nor
//! the uid: a key is known by its ID and username alone.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{IgnoredAny, MapAccess, Visitor};

use super::scope::{Attributes, ResourceRequest};
use crate::identity::EXTRA_KEY_ID;

pub const API_V1: &str = "authorization.k8s.io/v1";
pub const API_V1BETA1: &str = "authorization.k8s.io/v1beta1";
pub const KIND: &str = "SubjectAccessReview";

/// The SubjectAccessReview versions keygate answers.
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

/// Why a body is not a SubjectAccessReview keygate can answer (HTTP 400). Messages never quote
/// the body.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("request body is not a SubjectAccessReview: it {what} (line {line}, column {column})")]
    Json {
        what: &'static str,
        line: usize,
        column: usize,
    },
    #[error("kind is not \"SubjectAccessReview\"")]
    WrongKind,
    #[error("apiVersion is not authorization.k8s.io/v1 or authorization.k8s.io/v1beta1")]
    WrongApiVersion,
}

impl From<serde_json::Error> for WireError {
    fn from(e: serde_json::Error) -> Self {
        use serde_json::error::Category;
        WireError::Json {
            what: match e.classify() {
                Category::Io => "cannot be read",
                Category::Syntax => "is not valid JSON",
                Category::Data => "has a field of the wrong type, or is not an object",
                Category::Eof => "ends before the JSON does",
            },
            line: e.line(),
            column: e.column(),
        }
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "apiVersion", default, borrow)]
    api_version: Cow<'a, str>,
    #[serde(default, borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    spec: Spec<'a>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Spec<'a> {
    #[serde(default, borrow)]
    resource_attributes: Option<RawResource<'a>>,
    #[serde(default, borrow)]
    non_resource_attributes: Option<RawNonResource<'a>>,
    #[serde(default, borrow)]
    user: Cow<'a, str>,
    #[serde(default, borrow)]
    extra: KeyIdClaim<'a>,
}

#[derive(Deserialize, Default)]
struct RawResource<'a> {
    #[serde(default, borrow)]
    namespace: Cow<'a, str>,
    #[serde(default, borrow)]
    verb: Cow<'a, str>,
    #[serde(default, borrow)]
    group: Cow<'a, str>,
    #[serde(default, borrow)]
    version: Cow<'a, str>,
    #[serde(default, borrow)]
    resource: Cow<'a, str>,
    #[serde(default, borrow)]
    subresource: Cow<'a, str>,
    #[serde(default, borrow)]
    name: Cow<'a, str>,
}

#[derive(Deserialize, Default)]
struct RawNonResource<'a> {
    #[serde(default, borrow)]
    path: Cow<'a, str>,
    #[serde(default, borrow)]
    verb: Cow<'a, str>,
}

/// What `extra` says about `keygate.dev/key-id`: absent, one value, or something else (several
/// values, an empty one), which no key ever carries.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum KeyIdClaim<'a> {
    #[default]
    Absent,
    One(Cow<'a, str>),
    Malformed,
}

impl<'de: 'a, 'a> Deserialize<'de> for KeyIdClaim<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = KeyIdClaim<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of string lists")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(KeyIdClaim::Absent)
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Self::Value, M::Error> {
                let mut claim = KeyIdClaim::Absent;
                while let Some(Text(k)) = m.next_key::<Text<'de>>()? {
                    if k != EXTRA_KEY_ID {
                        m.next_value::<IgnoredAny>()?;
                        continue;
                    }
                    let values: Option<Vec<Text<'de>>> = m.next_value()?;
                    claim = match (claim, values) {
                        (KeyIdClaim::Absent, Some(mut v)) if v.len() == 1 && !v[0].0.is_empty() => {
                            KeyIdClaim::One(v.remove(0).0)
                        }
                        _ => KeyIdClaim::Malformed,
                    };
                }
                Ok(claim)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A string borrowed from the body when it holds no escapes (serde's own `Cow` always copies).
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// A decoded SubjectAccessReview request.
pub struct Review<'a> {
    pub api_version: ApiVersion,
    pub user: Cow<'a, str>,
    pub key_id: KeyIdClaim<'a>,
    resource: Option<RawResource<'a>>,
    non_resource: Option<RawNonResource<'a>>,
}

impl Review<'_> {
    /// The request's attributes, owned (built only for keys). `None` when the review names
    /// neither a resource nor a non-resource URL.
    pub fn attributes(&self) -> Option<Attributes> {
        if let Some(r) = &self.resource {
            return Some(Attributes::Resource {
                verb: r.verb.to_string(),
                res: ResourceRequest {
                    namespace: r.namespace.to_string(),
                    group: r.group.to_string(),
                    version: r.version.to_string(),
                    resource: r.resource.to_string(),
                    subresource: r.subresource.to_string(),
                    name: r.name.to_string(),
                },
            });
        }
        self.non_resource.as_ref().map(|n| Attributes::NonResource {
            verb: n.verb.to_string(),
            path: n.path.to_string(),
        })
    }
}

pub fn decode(body: &[u8]) -> Result<Review<'_>, WireError> {
    let env: Envelope<'_> = crate::json::from_body(body)?;
    if env.kind != KIND {
        return Err(WireError::WrongKind);
    }
    let api_version = match &*env.api_version {
        API_V1 => ApiVersion::V1,
        API_V1BETA1 => ApiVersion::V1beta1,
        _ => return Err(WireError::WrongApiVersion),
    };
    Ok(Review {
        api_version,
        user: env.spec.user,
        key_id: env.spec.extra,
        resource: env.spec.resource_attributes,
        non_resource: env.spec.non_resource_attributes,
    })
}

/// kube-apiserver's three outcomes: `allowed`, `denied` (no later authorizer is asked), or
/// neither (no opinion: the next authorizer decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    Allow,
    Deny,
    NoOpinion,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allowed",
            Verdict::Deny => "denied",
            Verdict::NoOpinion => "no_opinion",
        }
    }
}

/// The answer body: `status.allowed`, `status.denied` when set, and `status.reason` (shown by
/// kube-apiserver in its 403 message and audit annotations) when there is one.
pub fn encode(api_version: ApiVersion, verdict: Verdict, reason: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(112 + reason.len());
    buf.extend_from_slice(b"{\"apiVersion\":\"");
    buf.extend_from_slice(api_version.as_str().as_bytes());
    buf.extend_from_slice(b"\",\"kind\":\"SubjectAccessReview\",\"status\":{\"allowed\":");
    buf.extend_from_slice(match verdict {
        Verdict::Allow => b"true".as_slice(),
        Verdict::Deny => b"false,\"denied\":true",
        Verdict::NoOpinion => b"false",
    });
    if !reason.is_empty() {
        buf.extend_from_slice(b",\"reason\":");
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut buf, reason);
    }
    buf.extend_from_slice(b"}}");
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::authorization::v1::SubjectAccessReview;

    #[test]
    fn reads_what_kube_apiserver_sends_in_either_version() {
        let v1 = br#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview",
            "spec":{"resourceAttributes":{"namespace":"apps","verb":"get","version":"v1",
            "resource":"pods","subresource":"log","name":"web"},"user":"alice",
            "groups":["dev","system:authenticated"],
            "extra":{"other":["x"],"keygate.dev/key-id":["AbC"]},"uid":"1"}}"#;
        let r = decode(v1).unwrap();
        assert_eq!(r.api_version, ApiVersion::V1);
        assert_eq!(r.user, "alice");
        assert_eq!(r.key_id, KeyIdClaim::One("AbC".into()));
        let Some(Attributes::Resource { verb, res }) = r.attributes() else {
            panic!("a resource request")
        };
        assert_eq!(verb, "get");
        assert_eq!(
            (
                &*res.namespace,
                &*res.resource,
                &*res.subresource,
                &*res.name
            ),
            ("apps", "pods", "log", "web")
        );
        // v1beta1 names the groups `group`; keygate reads neither.
        let beta = br#"{"apiVersion":"authorization.k8s.io/v1beta1","kind":"SubjectAccessReview",
            "spec":{"nonResourceAttributes":{"path":"/healthz","verb":"get"},"user":"bob",
            "group":["system:authenticated"]}}"#;
        let r = decode(beta).unwrap();
        assert_eq!(r.api_version, ApiVersion::V1beta1);
        assert_eq!(r.key_id, KeyIdClaim::Absent);
        assert_eq!(
            r.attributes(),
            Some(Attributes::NonResource {
                verb: "get".into(),
                path: "/healthz".into()
            })
        );
    }

    #[test]
    fn a_key_id_claim_is_exactly_one_value() {
        let body = |extra: &str| {
            format!(
                r#"{{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{{"user":"u","extra":{extra}}}}}"#
            )
        };
        let claim = |extra: &str| match decode(body(extra).as_bytes()).unwrap().key_id {
            KeyIdClaim::One(id) => KeyIdClaim::One(Cow::Owned(id.into_owned())),
            KeyIdClaim::Absent => KeyIdClaim::Absent,
            KeyIdClaim::Malformed => KeyIdClaim::Malformed,
        };
        assert_eq!(claim("null"), KeyIdClaim::Absent);
        assert_eq!(claim("{}"), KeyIdClaim::Absent);
        assert_eq!(
            claim(r#"{"keygate.dev/key-id":["a","b"]}"#),
            KeyIdClaim::Malformed
        );
        assert_eq!(claim(r#"{"keygate.dev/key-id":[]}"#), KeyIdClaim::Malformed);
        assert_eq!(
            claim(r#"{"keygate.dev/key-id":[""]}"#),
            KeyIdClaim::Malformed
        );
        assert_eq!(
            claim(r#"{"keygate.dev/key-id":null}"#),
            KeyIdClaim::Malformed
        );
        assert!(decode(body(r#"{"keygate.dev/key-id":"x"}"#).as_bytes()).is_err());
    }

    #[test]
    fn refuses_what_is_not_a_subject_access_review() {
        assert!(matches!(decode(b"{not json"), Err(WireError::Json { .. })));
        assert!(decode(b"[]").is_err());
        assert!(matches!(
            decode(br#"{"apiVersion":"authorization.k8s.io/v1","kind":"TokenReview"}"#),
            Err(WireError::WrongKind)
        ));
        assert!(matches!(
            decode(br#"{"apiVersion":"authentication.k8s.io/v1","kind":"SubjectAccessReview"}"#),
            Err(WireError::WrongApiVersion)
        ));
        let secret = "kg_AAAAAAAAAAAAAAAAAAAAAA_SECRET";
        let e = decode(format!(r#"{{"kind":"{secret}"}}"#).as_bytes())
            .err()
            .unwrap();
        assert!(!e.to_string().contains("SECRET"), "{e}");
        let e = decode(format!(r#"{{"spec":{{"user":1,"x":"{secret}"}}}}"#).as_bytes())
            .err()
            .unwrap();
        assert!(!e.to_string().contains("SECRET"), "{e}");
    }

    #[test]
    fn answers_parse_as_the_typed_object() {
        for (verdict, allowed, denied) in [
            (Verdict::Allow, true, None),
            (Verdict::Deny, false, Some(true)),
            (Verdict::NoOpinion, false, None),
        ] {
            let out = encode(ApiVersion::V1, verdict, "why \"quoted\"");
            let sar: SubjectAccessReview = serde_json::from_slice(&out).unwrap();
            let status = sar.status.unwrap();
            assert_eq!(status.allowed, allowed);
            assert_eq!(status.denied, denied);
            assert_eq!(status.reason.as_deref(), Some("why \"quoted\""));
        }
        let out = encode(ApiVersion::V1beta1, Verdict::NoOpinion, "");
        assert_eq!(
            out,
            br#"{"apiVersion":"authorization.k8s.io/v1beta1","kind":"SubjectAccessReview","status":{"allowed":false}}"#
        );
    }
}
