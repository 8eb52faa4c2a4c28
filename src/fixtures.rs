//! Helpers shared by the unit tests: records, their Secrets, an index holding them, and the
//! identity a review answered with. (Integration tests have theirs in `tests/it/common`.)

use std::sync::Arc;

use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::api::core::v1::Secret;

use crate::identity::IdentityPolicy;
use crate::index::{Index, LoadedKey};
use crate::record::KeyRecord;
use crate::token::{KeyId, SecretHash, Token};

/// The key namespace the fixtures' Secrets are in.
pub const NAMESPACE: &str = "keygate-system";

/// An enabled record for `id` whose secret is `s`, named `n`.
pub fn record(id: &KeyId) -> KeyRecord {
    KeyRecord::new(id.clone(), SecretHash::of(b"s"), "n")
}

/// The Secret that stores [`record`]`(id)`.
pub fn secret(id: &KeyId) -> Secret {
    record(id).to_secret(NAMESPACE)
}

/// An index (with `policy`) holding one fresh key built by `edit`, and that key's token.
pub fn index_with_key(
    policy: IdentityPolicy,
    edit: impl FnOnce(&mut KeyRecord),
) -> (Index, String) {
    let token = Token::generate(KeyId::generate());
    let mut rec = KeyRecord::new(token.id.clone(), token.secret_hash(), "ci deploy");
    edit(&mut rec);
    let index = Index::new(policy);
    index.replace_all([(token.id.key(), Ok(rec))]);
    (index, token.expose())
}

/// The `status.user` a review answers for `key`, decoded.
pub fn user_of(key: &Arc<LoadedKey>) -> UserInfo {
    let mut buf = Vec::new();
    key.write_user(&mut buf);
    serde_json::from_slice(&buf).expect("status.user is valid JSON")
}
