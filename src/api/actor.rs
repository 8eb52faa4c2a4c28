//! Who is asking, and which keys they may see and act on.
//!
//! - A person (any caller that is not a key) sees the keys they own (`owner`, or `created-by`
//!   for Part 1 records); other keys do not exist for them (`404`).
//! - A key admin (see [`super::access`]) sees every key and may disable, enable and delete it;
//!   only its owner may regenerate it or change its name, description, labels or expiration.
//! - A key (username `<user prefix><id lowercased>` with that ID in extra
//!   `keygate.dev/key-id`) must exist, be enabled and unexpired. It sees and acts only on the
//!   keys it minted, directly or through keys it minted: never on its owner's other keys (a
//!   view key must not regenerate its owner's admin key). Keys it mints belong to its owner and
//!   name it as their parent. A key that is a key admin through RBAC administers as one.

use std::collections::HashMap;

use jiff::Timestamp;

use super::Caller;
use super::status::ApiError;
use crate::authorizer::scope::{self, Attributes, ResourceRequest};
use crate::identity::EXTRA_KEY_ID;
use crate::keystore::{KeyStore, KeyStoreError};
use crate::record::KeyRecord;
use crate::token::IdKey;

/// How deep a chain of keys minting keys is followed before giving up (a loop, or abuse).
const MAX_CHAIN: usize = 64;

/// The caller, resolved.
#[derive(Debug, Clone)]
pub struct Actor {
    pub caller: Caller,
    pub key_admin: bool,
    /// The caller's own record, when the caller is a key.
    pub key: Option<KeyRecord>,
}

/// The key ID a caller claims to be, if its username has the key form.
fn key_claim(caller: &Caller, user_prefix: &str) -> Result<Option<IdKey>, ApiError> {
    let by_name = caller
        .username
        .strip_prefix(user_prefix)
        .and_then(IdKey::new)
        .filter(|k| caller.username.ends_with(k.as_str()));
    let by_extra = caller.extra.get(EXTRA_KEY_ID);
    match (by_name, by_extra) {
        (None, None) => Ok(None),
        (Some(k), Some(ids)) if ids.len() == 1 && IdKey::new(&ids[0]) == Some(k) => Ok(Some(k)),
        // A key whose extra was lost, or a user whose extra claims a key: neither can be told
        // apart from the other safely.
        _ => Err(ApiError::forbidden(format!(
            "user {:?} looks like a keygate key but its identity is incomplete: a key's \
             username is {user_prefix}<id lowercased> and kube-apiserver passes the same ID in \
             extra {EXTRA_KEY_ID}. Check that the front proxy forwards X-Remote-Extra-* headers",
            caller.username
        ))),
    }
}

impl Actor {
    /// Resolves `caller`: a key must be a usable key.
    pub async fn resolve(
        caller: Caller,
        key_admin: bool,
        store: &KeyStore,
        user_prefix: &str,
        now: Timestamp,
    ) -> Result<Self, ApiError> {
        let key = match key_claim(&caller, user_prefix)? {
            None => None,
            Some(id) => {
                let refused = |why: &str| {
                    ApiError::forbidden(format!(
                        "key {id} {why}, so it cannot act on AccessKeys; use another credential"
                    ))
                };
                let rec = match store.get(&id).await {
                    Ok(s) => s.record,
                    Err(KeyStoreError::NotFound(_)) => return Err(refused("no longer exists")),
                    Err(e) => return Err(super::ops::store_error(e)),
                };
                if rec.disabled {
                    return Err(refused("is disabled"));
                }
                if rec.is_expired(now) {
                    return Err(refused("has expired"));
                }
                Some(rec)
            }
        };
        Ok(Actor {
            caller,
            key_admin,
            key,
        })
    }

    /// The owner of the keys this caller mints: the caller, or its key's owner.
    pub fn owner(&self) -> &str {
        match &self.key {
            Some(k) => k.owner(),
            None => &self.caller.username,
        }
    }

    /// Whether the caller owns `rec` as far as acting on it goes. `descends`: `rec` was
    /// minted by the caller's key, directly or not (only asked of keys).
    pub fn owns(&self, rec: &KeyRecord, descends: bool) -> bool {
        rec.owner() == self.owner() && (self.key.is_none() || descends)
    }

    /// Whether `rec` exists for this caller.
    pub fn sees(&self, rec: &KeyRecord, descends: bool) -> bool {
        self.key_admin || self.owns(rec, descends)
    }

    /// Whether `rec` descends from the caller's key, following parents in `all`.
    pub fn descends_in(&self, rec: &KeyRecord, all: &HashMap<IdKey, KeyRecord>) -> bool {
        let Some(me) = &self.key else { return false };
        let me = me.id.key();
        let mut parent = rec.parent.as_ref().map(|p| p.key());
        for _ in 0..MAX_CHAIN {
            match parent {
                None => return false,
                Some(p) if p == me => return true,
                Some(p) => parent = all.get(&p).and_then(|r| r.parent.as_ref().map(|x| x.key())),
            }
        }
        false
    }

    /// Whether `rec` descends from the caller's key, reading parents from the store.
    pub async fn descends(&self, rec: &KeyRecord, store: &KeyStore) -> Result<bool, ApiError> {
        let Some(me) = &self.key else {
            return Ok(false);
        };
        let me = me.id.key();
        let mut parent = rec.parent.as_ref().map(|p| p.key());
        for _ in 0..MAX_CHAIN {
            match parent {
                None => return Ok(false),
                Some(p) if p == me => return Ok(true),
                Some(p) => {
                    parent = match store.get(&p).await {
                        Ok(s) => s.record.parent.map(|x| x.key()),
                        Err(KeyStoreError::NotFound(_)) => None,
                        Err(e) => return Err(super::ops::store_error(e)),
                    }
                }
            }
        }
        Ok(false)
    }
}

impl Actor {
    /// Holds a key to its own scope on this API: when the caller is a key, `verb` on
    /// `accesskeys` (`subresource`, object `name`) must lie inside the scope of every
    /// `inheritCreator` key from the caller up its chain, and every key above it must still
    /// work. RBAC usually lets every authenticated user (keys included) use the API, and the
    /// authorizer is asked only after RBAC, so this check is the API's own.
    pub async fn check_scope(
        &self,
        verb: &str,
        subresource: &str,
        name: &str,
        store: &KeyStore,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        let Some(me) = &self.key else { return Ok(()) };
        let attrs = Attributes::Resource {
            verb,
            res: ResourceRequest {
                group: super::types::GROUP,
                version: "v1alpha1",
                resource: super::types::PLURAL,
                subresource,
                name,
                namespace: "",
            },
        };
        let mut rec = me.clone();
        for depth in 0..MAX_CHAIN {
            if rec.inherit_creator
                && let Err(outside) = scope::check(&rec.namespaces, &rec.rules, &attrs)
            {
                let whose = if depth == 0 {
                    format!("key {}", me.id)
                } else {
                    format!("key {} (above key {})", rec.id, me.id)
                };
                return Err(ApiError::forbidden(format!(
                    "the scope of {whose} {} ({verb} accesskeys.keygate.dev): a key acts on \
                     AccessKeys only inside its scope; use a key whose scope has a rule for \
                     accesskeys in keygate.dev, or your own credentials",
                    outside.explain()
                )));
            }
            let Some(parent) = rec.parent.clone() else {
                return Ok(());
            };
            rec = match store.get(&parent.key()).await {
                Ok(s) => s.record,
                Err(KeyStoreError::NotFound(_)) => {
                    return Err(ApiError::forbidden(format!(
                        "key {parent} above key {} no longer exists, so key {} cannot act on \
                         AccessKeys",
                        me.id, me.id
                    )));
                }
                Err(e) => return Err(super::ops::store_error(e)),
            };
            if rec.disabled || rec.is_expired(now) {
                let why = if rec.disabled { "disabled" } else { "expired" };
                return Err(ApiError::forbidden(format!(
                    "key {parent} above key {} is {why}, so key {} cannot act on AccessKeys",
                    me.id, me.id
                )));
            }
        }
        Err(ApiError::forbidden(format!(
            "key {} descends from more than {MAX_CHAIN} keys; it cannot act on AccessKeys",
            me.id
        )))
    }
}
