use k8s_openapi::api::authentication::v1::TokenReview;

use super::*;
use crate::fixtures::{index_with_key, user_of};
use crate::identity::{EXTRA_KEY_ID, EXTRA_KEY_NAME, GroupPattern, IdentityPolicy};
use crate::record::{Expiry, KeyRecord, PreviousSecret, RecordError, Role};
use crate::token::{KeyId, SecretHash, Token};

const FIXTURE_V1: &[u8] = include_bytes!("../../tests/fixtures/tokenreview/request-v1.json");
const FIXTURE_V1BETA1: &[u8] =
    include_bytes!("../../tests/fixtures/tokenreview/request-v1beta1.json");

fn now() -> Timestamp {
    "2026-06-01T00:00:00Z".parse().unwrap()
}

/// An index holding one key built by `edit`, and that key's token.
fn setup(edit: impl FnOnce(&mut KeyRecord)) -> (Index, String) {
    setup_with(IdentityPolicy::default(), edit)
}

fn setup_with(policy: IdentityPolicy, edit: impl FnOnce(&mut KeyRecord)) -> (Index, String) {
    index_with_key(policy, edit)
}

fn reason(idx: &Index, token: &str) -> Reason {
    decide(idx, token, now()).reason
}

#[test]
fn valid_key_maps_to_the_contract_identity() {
    let (idx, token) = setup(|r| r.role = Some(Role::Admin));
    let d = decide(&idx, &token, now());
    assert_eq!(d.reason, Reason::Ok);
    let user = &user_of(d.key.as_ref().unwrap());
    let id = &token[3..25];
    let lower = id.to_lowercase();
    assert_eq!(
        user.username.as_deref(),
        Some(&*format!("service-account-{lower}"))
    );
    assert_eq!(user.uid.as_deref(), Some(&*format!("keygate:{lower}")));
    assert_eq!(
        user.groups.as_deref().unwrap(),
        ["keygate:keys", "keygate:admin"]
    );
    let extra = user.extra.as_ref().unwrap();
    assert_eq!(extra[EXTRA_KEY_ID], [id]);
    assert_eq!(extra[EXTRA_KEY_NAME], ["ci deploy"]);
    assert_eq!(d.key_id, Some(id));
}

#[test]
fn the_design_example_id_becomes_the_design_example_user() {
    let rec = KeyRecord::new(
        "nFYyVdtg8K1aDujwk3YFh1".parse().unwrap(),
        SecretHash::of(b"x"),
        "n",
    );
    let user = IdentityPolicy::default().user_info(&rec);
    assert_eq!(
        user.username.as_deref(),
        Some("service-account-nfyyvdtg8k1adujwk3yfh1")
    );
}

#[test]
fn namespace_scoped_key_gets_no_cluster_role_group() {
    let (idx, token) = setup(|r| {
        r.role = Some(Role::View);
        r.namespaces = vec!["a".into()];
    });
    let d = decide(&idx, &token, now());
    assert_eq!(
        user_of(&d.key.unwrap()).groups.as_deref().unwrap(),
        ["keygate:keys"]
    );
}

#[test]
fn record_groups_pass_the_allow_list() {
    let policy = IdentityPolicy::new(
        "svc-".into(),
        vec!["team-*".parse().unwrap(), "ops".parse().unwrap()],
    )
    .unwrap();
    let (idx, token) = setup_with(policy, |r| {
        r.groups = vec![
            "team-a".into(),
            "ops".into(),
            "other".into(),
            "team-a".into(),
        ];
    });
    let d = decide(&idx, &token, now());
    let user = &user_of(d.key.as_ref().unwrap());
    assert_eq!(
        user.groups.as_deref().unwrap(),
        ["keygate:keys", "team-a", "ops"]
    );
    assert!(user.username.as_deref().unwrap().starts_with("svc-"));
}

#[test]
fn system_groups_are_never_emitted_even_if_allowed() {
    let policy = IdentityPolicy::new("u-".into(), vec!["*".parse().unwrap()]).unwrap();
    let mut rec = KeyRecord::new(KeyId::generate(), SecretHash::of(b"x"), "n");
    rec.groups = vec!["system:masters".into()];
    let groups = policy.user_info(&rec).groups.unwrap();
    assert_eq!(groups, ["keygate:keys"]);
    assert!(IdentityPolicy::new("system:x".into(), vec![]).is_err());
}

#[test]
fn group_patterns_parse_strictly() {
    for ok in ["*", "team-*", "ops"] {
        assert!(ok.parse::<GroupPattern>().is_ok(), "{ok}");
    }
    for bad in ["", "a*b", "*x*", "a,b"] {
        assert!(bad.parse::<GroupPattern>().is_err(), "{bad}");
    }
}

#[test]
fn each_denial_has_its_reason() {
    let (idx, token) = setup(|_| {});
    let (id, secret) = (&token[3..25], &token[26..]);
    let other = Token::generate(KeyId::generate()).expose();
    assert_eq!(reason(&idx, &other), Reason::UnknownKey);
    let wrong = format!("kg_{id}_{}", &other[26..]);
    assert_eq!(reason(&idx, &wrong), Reason::WrongSecret);
    assert_eq!(reason(&idx, "eyJhbGciOi.x.y"), Reason::ForeignToken);
    assert_eq!(reason(&idx, "kg_short"), Reason::MalformedToken);
    // Same ID in another case: IDs are case-sensitive.
    let swapped: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    if swapped != id {
        assert_eq!(
            reason(&idx, &format!("kg_{swapped}_{secret}")),
            Reason::UnknownKey
        );
    }

    let (idx, token) = setup(|r| r.disabled = true);
    assert_eq!(reason(&idx, &token), Reason::Disabled);
    let (idx, token) =
        setup(|r| r.expiration = Some(Expiry::At("2026-05-31T23:59:59Z".parse().unwrap())));
    assert_eq!(reason(&idx, &token), Reason::Expired);
    let (idx, token) = setup(|r| r.expiration = Some(Expiry::Invalid));
    assert_eq!(reason(&idx, &token), Reason::Expired);
    let (idx, token) =
        setup(|r| r.expiration = Some(Expiry::At("2026-06-01T00:00:01Z".parse().unwrap())));
    assert_eq!(reason(&idx, &token), Reason::Ok);
}

#[test]
fn wrong_secret_wins_over_disabled_so_only_holders_learn_the_state() {
    let (idx, token) = setup(|r| r.disabled = true);
    let wrong = format!("{}{}", &token[..26], "A".repeat(43));
    assert_eq!(reason(&idx, &wrong), Reason::WrongSecret);
}

#[test]
fn refused_record_denies_with_invalid_record() {
    let idx = Index::new(IdentityPolicy::default());
    let token = Token::generate(KeyId::generate());
    idx.replace_all([(
        token.id.key(),
        Err(RecordError::SystemGroup("system:masters".into())),
    )]);
    assert_eq!(reason(&idx, &token.expose()), Reason::InvalidRecord);
}

#[test]
fn rotation_grace_accepts_previous_until_it_ends() {
    let old = Token::generate(KeyId::generate());
    let new_secret = Token::generate(old.id.clone());
    let make = |until: &str| {
        let mut rec = KeyRecord::new(old.id.clone(), new_secret.secret_hash(), "n");
        rec.previous = Some(PreviousSecret {
            hash: old.secret_hash(),
            expires: if until.is_empty() {
                Expiry::Invalid
            } else {
                Expiry::At(until.parse().unwrap())
            },
        });
        let idx = Index::new(IdentityPolicy::default());
        idx.replace_all([(old.id.key(), Ok(rec))]);
        idx
    };
    let idx = make("2026-06-01T01:00:00Z");
    assert_eq!(reason(&idx, &old.expose()), Reason::OkPreviousSecret);
    assert_eq!(reason(&idx, &new_secret.expose()), Reason::Ok);
    let idx = make("2026-05-31T00:00:00Z");
    assert_eq!(reason(&idx, &old.expose()), Reason::SecretRotated);
    assert_eq!(reason(&idx, &new_secret.expose()), Reason::Ok);
    let idx = make("");
    assert_eq!(reason(&idx, &old.expose()), Reason::SecretRotated);
}

#[test]
fn both_captured_fixtures_decode() {
    let r = decode(FIXTURE_V1).unwrap();
    assert_eq!(r.api_version, ApiVersion::V1);
    assert_eq!(r.token(), "good.token");
    let r = decode(FIXTURE_V1BETA1).unwrap();
    assert_eq!(r.api_version, ApiVersion::V1beta1);
    assert_eq!(r.token(), "good.token");
    // And k8s-openapi's full v1 type accepts the capture as is (creationTimestamp: null).
    let full: TokenReview = serde_json::from_slice(FIXTURE_V1).unwrap();
    assert_eq!(full.spec.token.as_deref(), Some("good.token"));
}

#[test]
fn bad_requests_are_refused_with_a_reason() {
    let cases: [(&[u8], &str); 6] = [
        (b"not json", "not a TokenReview"),
        (b"[]", "kind"),
        (br#"{"kind":"Pod","apiVersion":"authentication.k8s.io/v1","spec":{"token":"x"}}"#, "kind"),
        (br#"{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v2","spec":{"token":"x"}}"#, "apiVersion"),
        (br#"{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":{}}"#, "spec.token"),
        (br#"{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":{"token":""}}"#, "spec.token"),
    ];
    for (body, want) in cases {
        let err = decode(body).err().expect("must fail").to_string();
        assert!(err.contains(want), "{err} should mention {want}");
    }
}

#[test]
fn answers_keep_the_request_api_version_and_decode_as_k8s_types() {
    let (idx, token) = setup(|r| r.role = Some(Role::View));
    let d = decide(&idx, &token, now());
    let body = encode(ApiVersion::V1, &d);
    let tr: TokenReview = serde_json::from_slice(&body).unwrap();
    let status = tr.status.unwrap();
    assert_eq!(status.authenticated, Some(true));
    assert_eq!(status.error, None);
    assert!(
        !String::from_utf8_lossy(&body).contains(&token[26..]),
        "secret echoed"
    );

    let denied = decide(&idx, "foreign", now());
    let body = encode(ApiVersion::V1beta1, &denied);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["apiVersion"], API_V1BETA1);
    assert_eq!(v["kind"], "TokenReview");
    assert_eq!(v["status"], serde_json::json!({"authenticated": false}));
}

/// The spec is read borrowed (its audiences checked, not kept): what k8s-openapi's
/// `TokenReviewSpec` accepted and refused, this decoder accepts and refuses too.
#[test]
fn the_spec_is_checked_as_k8s_openapi_checks_it() {
    use k8s_openapi::api::authentication::v1::TokenReviewSpec;
    let specs = [
        r#"{"token":"kg_a"}"#,
        r#"{"token":"kg_\u0061","audiences":["x","\"y\""]}"#,
        r#"{"token":"kg_a","audiences":[]}"#,
        r#"{"token":"kg_a","audiences":null,"other":{"a":[1]}}"#,
        r#"{"token":"kg_a","audiences":"x"}"#,
        r#"{"token":"kg_a","audiences":[1]}"#,
        r#"{"token":"kg_a","audiences":{}}"#,
        r#"{"token":7}"#,
        r#"{"token":null}"#,
        r#"{"token":"kg_a","token":"kg_b"}"#,
        r#"{"token":"kg_a","token":null}"#,
        r#"{"token":"kg_a","audiences":["x"],"audiences":"y"}"#,
        r#"[]"#,
        r#""kg_a""#,
    ];
    for spec in specs {
        let body = format!(
            r#"{{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":{spec}}}"#
        );
        let theirs = serde_json::from_str::<TokenReviewSpec>(spec);
        let ours = decode(body.as_bytes());
        match (&theirs, &ours) {
            (Ok(t), Ok(o)) => assert_eq!(t.token.as_deref(), Some(o.token()), "{spec}"),
            (Ok(t), Err(ReviewError::MissingToken)) => assert!(t.token.is_none(), "{spec}"),
            (Err(_), Err(ReviewError::Json(_))) => {}
            _ => panic!(
                "{spec}: k8s-openapi {:?}, keygate {:?}",
                theirs.is_ok(),
                ours.is_ok()
            ),
        }
    }
    let r = decode(
        br#"{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":{"token":"kg_\u0061"}}"#,
    )
    .unwrap();
    assert_eq!(r.token(), "kg_a");
}
