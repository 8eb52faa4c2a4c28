//! Property tests: token parsing, record parsing and the TokenReview decode/encode round trip.
//! The same three surfaces have cargo-fuzz targets in fuzz/.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::TokenReview;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keygate::identity::IdentityPolicy;
use keygate::index::{Index, LoadedKey};
use keygate::record::{Expiry, KeyRecord, PreviousSecret, Role, SECRET_TYPE};
use keygate::review::{self, ApiVersion, Decision, Reason};
use keygate::token::{
    self, ID_LEN, KeyId, SECRET_LEN, SecretHash, TOKEN_PREFIX, Token, TokenError,
};
use proptest::prelude::*;

const ID_RE: &str = "[0-9A-Za-z]{22}";
const SECRET_RE: &str = "[0-9A-Za-z]{43}";
const TOKEN_RE: &str = "kg_[0-9A-Za-z]{22}_[0-9A-Za-z]{43}";

/// The token grammar, written independently of the parser: `kg_` [0-9A-Za-z]{22} `_` [0-9A-Za-z]{43}.
fn grammar_accepts(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 3 + ID_LEN + 1 + SECRET_LEN
        && b.starts_with(b"kg_")
        && b[3..3 + ID_LEN].iter().all(u8::is_ascii_alphanumeric)
        && b[3 + ID_LEN] == b'_'
        && b[4 + ID_LEN..].iter().all(u8::is_ascii_alphanumeric)
}

/// Strings near the token grammar: right prefix and length, a few characters off.
fn near_tokens() -> impl Strategy<Value = String> {
    (
        TOKEN_RE,
        proptest::collection::vec((0usize..80, any::<char>()), 0..3),
    )
        .prop_map(|(t, edits)| {
            let mut chars: Vec<char> = t.chars().collect();
            for (pos, ch) in edits {
                if chars.is_empty() {
                    break;
                }
                let at = pos % chars.len();
                chars[at] = ch;
            }
            chars.into_iter().collect()
        })
}

fn any_token_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "kg_.{0,100}",
        "kg_[0-9A-Za-z]{0,30}_?[0-9A-Za-z]{0,50}",
        near_tokens(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parse_token_never_panics_and_accepts_exactly_the_grammar(s in any_token_like()) {
        let parsed = token::parse_token(&s);
        prop_assert_eq!(parsed.is_ok(), grammar_accepts(&s), "{:?}", s);
        match parsed {
            Err(TokenError::Foreign) => prop_assert!(!s.starts_with(TOKEN_PREFIX)),
            Err(TokenError::Malformed(_)) => prop_assert!(s.starts_with(TOKEN_PREFIX)),
            Err(e) => prop_assert!(false, "unexpected error {e:?}"),
            Ok(p) => prop_assert_eq!(p.id, &s[3..25]),
        }
    }

    #[test]
    fn generated_tokens_round_trip(
        id in ID_RE,
        secret in SECRET_RE,
    ) {
        let t = format!("kg_{id}_{secret}");
        let p = token::parse_token(&t).unwrap();
        prop_assert_eq!(p.id, id.as_str());
        prop_assert_eq!(p.secret_hash(), SecretHash::of(secret.as_bytes()));
        let key_id: KeyId = id.parse().unwrap();
        prop_assert_eq!(key_id.as_str(), id.as_str());
        prop_assert_eq!(key_id.record_name(), format!("keygate-{}", id.to_ascii_lowercase()));
    }

    #[test]
    fn key_ids_accept_exactly_22_base62(s in prop_oneof![any::<String>(), "[0-9A-Za-z]{20,24}", ".{22}"]) {
        let ok = s.len() == ID_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric());
        prop_assert_eq!(s.parse::<KeyId>().is_ok(), ok);
    }

    #[test]
    fn secret_hashes_round_trip_and_parse_strictly(
        bytes in proptest::collection::vec(any::<u8>(), 0..100),
        s in prop_oneof![any::<String>(), "sha256:[0-9a-fA-F]{60,68}", "sha256:.{64}"],
    ) {
        let h = SecretHash::of(&bytes);
        prop_assert_eq!(h.to_string().parse::<SecretHash>().unwrap(), h);
        let ok = s.strip_prefix("sha256:").is_some_and(|hex| {
            hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        prop_assert_eq!(s.parse::<SecretHash>().is_ok(), ok, "{:?}", s);
    }
}

#[test]
fn minted_tokens_parse_back() {
    for _ in 0..1000 {
        let t = Token::generate(KeyId::generate());
        let exposed = t.expose();
        assert!(grammar_accepts(&exposed));
        let p = token::parse_token(&exposed).unwrap();
        assert_eq!(p.id, t.id.as_str());
        assert_eq!(p.secret_hash(), t.secret_hash());
    }
}

// ---------------------------------------------------------------------------------------------
// Records.

const FIELDS: [&str; 14] = [
    "id",
    "secret-hash",
    "name",
    "description",
    "role",
    "groups",
    "namespaces",
    "expiration",
    "disabled",
    "created-by",
    "previous-secret-hash",
    "previous-secret-expiration",
    "other",
    "",
];

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(&FIELDS[..]).prop_map(str::to_owned),
        any::<String>(),
    ]
}

fn field_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        ID_RE,
        "sha256:[0-9a-f]{64}",
        "(admin|edit|view|none|root| admin )",
        "(true|false|yes|)",
        "[a-z:, -]{0,40}",
        "20[0-9]{2}-0[1-9]-1[0-9]T0[0-9]:00:00Z",
    ]
}

fn any_secret() -> impl Strategy<Value = Secret> {
    (
        prop_oneof![Just(Some(SECRET_TYPE.to_owned())), any::<Option<String>>()],
        prop_oneof![
            "keygate-[0-9a-z]{22}".prop_map(Some),
            any::<Option<String>>()
        ],
        proptest::collection::btree_map(field_name(), field_value(), 0..14),
        proptest::collection::btree_map(
            field_name(),
            proptest::collection::vec(any::<u8>(), 0..80),
            0..6,
        ),
        proptest::option::of(proptest::collection::btree_map(
            prop_oneof![Just("keygate.dev/last-used".to_owned()), any::<String>()],
            any::<String>(),
            0..3,
        )),
    )
        .prop_map(|(type_, name, string_data, data, annotations)| Secret {
            metadata: ObjectMeta {
                name,
                annotations,
                ..ObjectMeta::default()
            },
            type_,
            string_data: Some(string_data),
            data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
            ..Secret::default()
        })
}

/// A Secret that names a real ID and hash, plus arbitrary other fields: exercises every field
/// parser past the early checks.
fn mostly_valid_secret() -> impl Strategy<Value = Secret> {
    (
        ID_RE,
        any::<[u8; 8]>(),
        proptest::collection::btree_map(field_name(), field_value(), 0..14),
    )
        .prop_map(|(id, seed, extra)| {
            let id: KeyId = id.parse().unwrap();
            let mut s = KeyRecord::new(id, SecretHash::of(&seed), "n").to_secret("ns");
            let sd = s.string_data.as_mut().unwrap();
            for (k, v) in extra {
                if k != "id" {
                    sd.insert(k, v);
                }
            }
            s
        })
}

/// A trimmed, non-empty-or-empty text without commas (list fields split on them).
fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ._/-]{0,30}".prop_map(|s| s.trim().to_owned())
}

fn list_item() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9:._-]{0,20}".prop_filter("no system: groups", |g| !g.starts_with("system:"))
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (-2_000_000_000i64..4_000_000_000, 0i32..1_000_000_000)
        .prop_map(|(s, ns)| Timestamp::new(s, ns).unwrap())
}

fn expiry() -> impl Strategy<Value = Expiry> {
    prop_oneof![timestamp().prop_map(Expiry::At), Just(Expiry::Invalid)]
}

fn any_record() -> impl Strategy<Value = KeyRecord> {
    (
        ID_RE,
        any::<[u8; 16]>(),
        (text(), text(), text()),
        proptest::option::of(proptest::sample::select(vec![
            Role::Admin,
            Role::Edit,
            Role::View,
        ])),
        proptest::collection::vec(list_item(), 0..4),
        proptest::collection::vec(list_item(), 0..4),
        proptest::option::of(expiry()),
        any::<bool>(),
        proptest::option::of((any::<[u8; 16]>(), expiry())),
        proptest::option::of(timestamp()),
    )
        .prop_map(
            |(
                id,
                seed,
                (name, description, created_by),
                role,
                groups,
                namespaces,
                expiration,
                disabled,
                previous,
                last_used,
            )| {
                let mut r = KeyRecord::new(id.parse().unwrap(), SecretHash::of(&seed), name);
                r.description = description;
                r.created_by = created_by;
                r.role = role;
                r.groups = groups;
                r.namespaces = namespaces;
                r.expiration = expiration;
                r.disabled = disabled;
                r.previous = previous.map(|(s, expires)| PreviousSecret {
                    hash: SecretHash::of(&s),
                    expires,
                });
                r.last_used = last_used;
                r
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn from_secret_never_panics(s in prop_oneof![any_secret(), mostly_valid_secret()]) {
        if let Ok(r) = KeyRecord::from_secret(&s) {
            // Whatever it accepts is a usable record: a system: group is never let through.
            prop_assert!(r.groups.iter().all(|g| !g.starts_with("system:")));
            let name = s.metadata.name.as_deref().unwrap();
            prop_assert_eq!(r.id.record_name(), name);
            // And it survives a second trip unchanged.
            prop_assert_eq!(KeyRecord::from_secret(&r.to_secret("ns")).unwrap(), r);
        }
    }

    #[test]
    fn records_round_trip_through_a_secret(r in any_record()) {
        let s = r.to_secret("keygate-system");
        prop_assert_eq!(KeyRecord::from_secret(&s).unwrap(), r.clone());
        // And through the file form of the dir store (YAML and JSON).
        let yaml = serde_saphyr::to_string(&s).unwrap();
        let back: Secret = serde_saphyr::from_str(&yaml).unwrap();
        prop_assert_eq!(KeyRecord::from_secret(&back).unwrap(), r.clone());
        let json = serde_json::to_vec(&s).unwrap();
        let back: Secret = serde_json::from_slice(&json).unwrap();
        prop_assert_eq!(KeyRecord::from_secret(&back).unwrap(), r);
    }
}

// ---------------------------------------------------------------------------------------------
// The TokenReview exchange.

/// Decodes an answer as k8s-openapi's TokenReview. v1beta1 has the same schema as v1, but
/// k8s-openapi only knows v1, so a v1beta1 answer is read with its apiVersion swapped.
fn as_token_review(out: &[u8]) -> TokenReview {
    let mut v: serde_json::Value = serde_json::from_slice(out).unwrap();
    if v["apiVersion"] == "authentication.k8s.io/v1beta1" {
        v["apiVersion"] = "authentication.k8s.io/v1".into();
    }
    serde_json::from_value(v).unwrap()
}

fn reason() -> impl Strategy<Value = Reason> {
    proptest::sample::select(Reason::ALL.to_vec())
}

fn version() -> impl Strategy<Value = ApiVersion> {
    prop_oneof![Just(ApiVersion::V1), Just(ApiVersion::V1beta1)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn decode_never_panics(body in prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        any::<String>().prop_map(String::into_bytes),
        (any::<String>(), any::<String>(), any::<String>()).prop_map(|(v, k, t)| {
            serde_json::json!({"apiVersion": v, "kind": k, "spec": {"token": t}}).to_string().into_bytes()
        }),
    ]) {
        if let Ok(r) = review::decode(&body) {
            prop_assert!(!r.token().is_empty());
        }
    }

    #[test]
    fn requests_decode_with_their_token_and_version(
        token in any::<String>().prop_filter("non-empty", |t| !t.is_empty()),
        v in version(),
        audiences in proptest::option::of(proptest::collection::vec(any::<String>(), 0..3)),
    ) {
        let mut req = serde_json::json!({
            "apiVersion": v.as_str(),
            "kind": "TokenReview",
            "metadata": {"creationTimestamp": null},
            "spec": {"token": token},
            "status": {"user": {}},
        });
        if let Some(a) = audiences {
            req["spec"]["audiences"] = serde_json::json!(a);
        }
        let body = req.to_string();
        let r = review::decode(body.as_bytes()).unwrap();
        prop_assert_eq!(r.token(), token.as_str());
        prop_assert_eq!(r.api_version, v);
    }

    #[test]
    fn encoded_answers_always_decode_as_a_token_review(
        mut rec in any_record(),
        // Any characters at all (quotes, backslashes, controls, non-ASCII): the name is
        // written pre-escaped into every answer.
        name in "(?s).{0,24}",
        reason in reason(),
        v in version(),
        // Characters JSON must escape too: the prefix is written pre-escaped.
        user_prefix in "[a-z][a-z0-9\"\\\\é\t -]{0,15}",
    ) {
        rec.name = name;
        let policy = IdentityPolicy::new(user_prefix, vec!["*".parse().unwrap()]).unwrap();
        let user = policy.user_info(&rec);
        let key = reason
            .authenticated()
            .then(|| Arc::new(LoadedKey::new(rec.clone(), Arc::new(policy.shape(&rec)))));
        let d = Decision { reason, key_id: Some(rec.id.as_str()), key };
        let out = review::encode(v, &d);
        let raw: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let tr = as_token_review(&out);
        prop_assert_eq!(raw["apiVersion"].as_str(), Some(v.as_str()));
        prop_assert_eq!(raw["kind"].as_str(), Some("TokenReview"));
        let status = tr.status.unwrap();
        prop_assert_eq!(status.authenticated, Some(reason.authenticated()));
        prop_assert!(status.error.is_none());
        if reason.authenticated() {
            prop_assert_eq!(status.user.unwrap(), user);
        } else {
            prop_assert!(status.user.is_none());
        }
        // The answer never carries the record's hashes.
        let text = String::from_utf8(out).unwrap();
        prop_assert!(!text.contains(&rec.secret_hash.to_string()[7..]));
    }

    #[test]
    fn only_the_exact_token_authenticates(
        edits in proptest::collection::vec((0usize..69, any::<char>()), 1..3),
    ) {
        let t = Token::generate(KeyId::generate());
        let rec = KeyRecord::new(t.id.clone(), t.secret_hash(), "k");
        let index = Index::new(IdentityPolicy::default());
        index.replace_all([(t.id.key(), Ok(rec))]);
        let good = t.expose();
        let now = Timestamp::now();
        prop_assert_eq!(review::decide(&index, &good, now).reason, Reason::Ok);
        let mut chars: Vec<char> = good.chars().collect();
        for (pos, ch) in edits {
            chars[pos % 69] = ch;
        }
        let mutated: String = chars.into_iter().collect();
        let d = review::decide(&index, &mutated, now);
        prop_assert_eq!(d.reason.authenticated(), mutated == good, "{:?}", mutated);
    }
}

#[test]
fn the_fixtures_round_trip() {
    for f in [
        include_str!("../fixtures/tokenreview/request-v1.json"),
        include_str!("../fixtures/tokenreview/request-v1beta1.json"),
    ] {
        let r = review::decode(f.as_bytes()).unwrap();
        assert_eq!(r.token(), "good.token");
        let d = review::decide(
            &Index::new(IdentityPolicy::default()),
            r.token(),
            Timestamp::now(),
        );
        let out = review::encode(r.api_version, &d);
        let tr = as_token_review(&out);
        assert_eq!(tr.status.unwrap().authenticated, Some(false));
    }
}
