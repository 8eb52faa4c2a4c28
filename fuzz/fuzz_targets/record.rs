//! Record parsing: any JSON or YAML document read as a Secret never panics `from_secret`, and
//! what it accepts round-trips through `to_secret` unchanged and never carries a system: group.
#![no_main]

use k8s_openapi::api::core::v1::Secret;
use keygate::record::KeyRecord;
use libfuzzer_sys::fuzz_target;

fn check(secret: &Secret) {
    if let Ok(r) = KeyRecord::from_secret(secret) {
        assert!(r.groups.iter().all(|g| !g.starts_with("system:")));
        let again = KeyRecord::from_secret(&r.to_secret("ns")).expect("own output refused");
        assert_eq!(again, r);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = serde_json::from_slice::<Secret>(data) {
        check(&s);
    }
    if let Ok(s) = serde_saphyr::from_slice::<Secret>(data) {
        check(&s);
    }
});
