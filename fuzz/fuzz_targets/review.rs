//! The TokenReview exchange: `decode` never panics on any body; whatever it accepts is decided
//! and encoded, and the answer always decodes as k8s-openapi's TokenReview with the request's
//! apiVersion and no status.error.
#![no_main]

use k8s_openapi::api::authentication::v1::TokenReview;
use keygate::identity::IdentityPolicy;
use keygate::index::Index;
use keygate::review;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = review::decode(data) else {
        return;
    };
    assert!(!req.token().is_empty());
    let index = Index::new(IdentityPolicy::default());
    let d = review::decide(&index, req.token(), jiff::Timestamp::now());
    let out = review::encode(req.api_version, &d);
    let mut v: serde_json::Value = serde_json::from_slice(&out).expect("answer is JSON");
    assert_eq!(v["apiVersion"], req.api_version.as_str());
    assert!(v["status"].get("error").is_none());
    // v1beta1 has the v1 schema; k8s-openapi only knows v1.
    v["apiVersion"] = "authentication.k8s.io/v1".into();
    let tr: TokenReview = serde_json::from_value(v).expect("answer is a TokenReview");
    assert_eq!(tr.status.unwrap().authenticated, Some(false));
});
