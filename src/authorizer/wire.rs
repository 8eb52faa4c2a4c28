//! The SubjectAccessReview exchange with kube-apiserver: decoding what it asks, encoding the
//! answer in the version it asked (`authorization.k8s.io/v1` or `v1beta1`).
//!
//! Only what keygate reads is decoded, borrowing from the body: the user's name, the
//! `keygate.dev/key-id` entry of `extra` (other entries are skipped unread), and the request's
//! attributes. The user's groups are never read (v1 calls them `groups`, v1beta1 `group`), nor
//! the uid: a key is known by its ID and username alone.
//!
//! Most reviews are about users who are no key, and for them only the envelope matters (the
//! version to answer in). [`Screen`] finds them without decoding the spec: a body with no
//! backslash holds every string as written, so a key's user would show as the literal
//! username prefix or the literal `keygate.dev/key-id`; when neither is in the body (a SIMD
//! substring search), the spec is skipped as JSON and the user is known to be no key. Any
//! backslash, or either string anywhere, and the whole review is decoded. Measured with
//! `benches/authorize.rs` (BENCHMARKS.md): the no-opinion answer went from about 8 500 to about
//! 7 300 instructions (skipping JSON costs nearly as much as decoding it), 1.02 to 0.78 µs.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{IgnoredAny, MapAccess, Visitor};

use memchr::memmem::Finder;

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
struct Envelope<'a, S> {
    #[serde(rename = "apiVersion", default, borrow)]
    api_version: Cow<'a, str>,
    #[serde(default, borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    spec: S,
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
    /// Who the review is about; `None` when [`Screen`] found the user is no key.
    pub subject: Option<Subject<'a>>,
    resource: Option<RawResource<'a>>,
    non_resource: Option<RawNonResource<'a>>,
}

/// The review's user, as far as keygate reads it.
pub struct Subject<'a> {
    pub user: Cow<'a, str>,
    pub key_id: KeyIdClaim<'a>,
}

/// What tells a review about a user who is no key from the rest (see the module doc).
pub struct Screen {
    key_id: Finder<'static>,
    user_prefix: Finder<'static>,
}

impl Screen {
    /// For keys whose usernames begin with `user_prefix`.
    pub fn new(user_prefix: &str) -> Self {
        Screen {
            key_id: Finder::new(EXTRA_KEY_ID).into_owned(),
            user_prefix: Finder::new(user_prefix).into_owned(),
        }
    }

    /// Whether `body` cannot be about a key: no escapes, and neither string anywhere.
    fn no_key(&self, body: &[u8]) -> bool {
        // The username first: in a key's review it comes early, so the search stops soon.
        self.user_prefix.find(body).is_none()
            && self.key_id.find(body).is_none()
            && memchr::memchr(b'\\', body).is_none()
    }
}

impl Review<'_> {
    /// The request's attributes, borrowed from the review. `None` when the review names
    /// neither a resource nor a non-resource URL.
    pub fn attributes(&self) -> Option<Attributes<'_>> {
        if let Some(r) = &self.resource {
            return Some(Attributes::Resource {
                verb: &r.verb,
                res: ResourceRequest {
                    namespace: &r.namespace,
                    group: &r.group,
                    version: &r.version,
                    resource: &r.resource,
                    subresource: &r.subresource,
                    name: &r.name,
                },
            });
        }
        self.non_resource.as_ref().map(|n| Attributes::NonResource {
            verb: &n.verb,
            path: &n.path,
        })
    }
}

/// The whole review.
pub fn decode(body: &[u8]) -> Result<Review<'_>, WireError> {
    let env: Envelope<'_, Spec<'_>> = crate::json::from_body(body)?;
    let api_version = version(&env.kind, &env.api_version)?;
    Ok(Review {
        api_version,
        subject: Some(Subject {
            user: env.spec.user,
            key_id: env.spec.extra,
        }),
        resource: env.spec.resource_attributes,
        non_resource: env.spec.non_resource_attributes,
    })
}

/// The review, or only its envelope when `screen` finds its user is no key.
pub fn decode_screened<'a>(body: &'a [u8], screen: &Screen) -> Result<Review<'a>, WireError> {
    if !screen.no_key(body) {
        return decode(body);
    }
    let env: Envelope<'_, IgnoredAny> = crate::json::from_body(body)?;
    Ok(Review {
        api_version: version(&env.kind, &env.api_version)?,
        subject: None,
        resource: None,
        non_resource: None,
    })
}

fn version(kind: &str, api_version: &str) -> Result<ApiVersion, WireError> {
    if kind != KIND {
        return Err(WireError::WrongKind);
    }
    match api_version {
        API_V1 => Ok(ApiVersion::V1),
        API_V1BETA1 => Ok(ApiVersion::V1beta1),
        _ => Err(WireError::WrongApiVersion),
    }
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
        let subject = r.subject.as_ref().unwrap();
        assert_eq!(subject.user, "alice");
        assert_eq!(subject.key_id, KeyIdClaim::One("AbC".into()));
        let Some(Attributes::Resource { verb, res }) = r.attributes() else {
            panic!("a resource request")
        };
        assert_eq!(verb, "get");
        assert_eq!(
            (res.namespace, res.resource, res.subresource, res.name),
            ("apps", "pods", "log", "web")
        );
        // v1beta1 names the groups `group`; keygate reads neither.
        let beta = br#"{"apiVersion":"authorization.k8s.io/v1beta1","kind":"SubjectAccessReview",
            "spec":{"nonResourceAttributes":{"path":"/healthz","verb":"get"},"user":"bob",
            "group":["system:authenticated"]}}"#;
        let r = decode(beta).unwrap();
        assert_eq!(r.api_version, ApiVersion::V1beta1);
        assert_eq!(r.subject.as_ref().unwrap().key_id, KeyIdClaim::Absent);
        assert_eq!(
            r.attributes(),
            Some(Attributes::NonResource {
                verb: "get",
                path: "/healthz"
            })
        );
    }

    #[test]
    fn the_screen_skips_the_spec_only_when_no_key_can_be_named() {
        let screen = Screen::new("service-account-");
        let review = |spec: &str, version: &str| {
            format!(
                r#"{{"apiVersion":"authorization.k8s.io/{version}","kind":"SubjectAccessReview","spec":{spec}}}"#
            )
        };
        let screened = |body: &str| {
            let r = decode_screened(body.as_bytes(), &screen).unwrap();
            (r.api_version, r.subject.is_none())
        };
        let plain = r#"{"resourceAttributes":{"namespace":"a","verb":"get","resource":"pods"},
            "user":"alice","groups":["dev"],"extra":{"other":["x"]}}"#;
        assert_eq!(screened(&review(plain, "v1")), (ApiVersion::V1, true));
        assert_eq!(
            screened(&review(plain, "v1beta1")),
            (ApiVersion::V1beta1, true)
        );
        assert_eq!(screened(&review("null", "v1")), (ApiVersion::V1, true));
        assert_eq!(
            screened(r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview"}"#),
            (ApiVersion::V1, true)
        );
        // Anything that could name a key is decoded whole.
        for spec in [
            r#"{"user":"service-account-abc"}"#,
            r#"{"user":"alice","extra":{"keygate.dev/key-id":["abc"]}}"#,
            r#"{"user":"alice","resourceAttributes":{"name":"service-account-x"}}"#,
            r#"{"user":"service\u002daccount-abc"}"#,
            r#"{"user":"alice","extra":{"keygate.dev\/key-id":["abc"]}}"#,
        ] {
            let body = review(spec, "v1");
            let r = decode_screened(body.as_bytes(), &screen).unwrap();
            let full = decode(body.as_bytes()).unwrap();
            let (a, b) = (r.subject.unwrap(), full.subject.unwrap());
            assert_eq!((a.user, a.key_id), (b.user, b.key_id), "{spec}");
        }
        // The escapes decode to a key's username and claim.
        let body = review(
            r#"{"user":"service\u002daccount-abc","extra":{"keygate.dev\/key-id":["abc"]}}"#,
            "v1",
        );
        let subject = decode_screened(body.as_bytes(), &screen)
            .unwrap()
            .subject
            .unwrap();
        assert_eq!(subject.user, "service-account-abc");
        assert_eq!(subject.key_id, KeyIdClaim::One("abc".into()));
        // A skipped spec is still read as JSON, and the envelope still checked.
        for bad in [
            r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{"user":"#,
            r#"{"apiVersion":"authorization.k8s.io/v1","kind":"TokenReview","spec":{}}"#,
            r#"{"apiVersion":"authorization.k8s.io/v2","kind":"SubjectAccessReview","spec":{}}"#,
            r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{"user":"a",}}"#,
        ] {
            assert!(decode_screened(bad.as_bytes(), &screen).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_key_id_claim_is_exactly_one_value() {
        let body = |extra: &str| {
            format!(
                r#"{{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{{"user":"u","extra":{extra}}}}}"#
            )
        };
        let claim = |extra: &str| match decode(body(extra).as_bytes())
            .unwrap()
            .subject
            .unwrap()
            .key_id
        {
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
