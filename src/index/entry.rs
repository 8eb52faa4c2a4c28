//! What the index holds per key: only what a review reads, in as few bytes as possible.
//!
//! At a million keys every byte per key is a megabyte of resident memory, so the index keeps
//! neither the whole [`KeyRecord`] (display name, description, creator, lists: ~435 bytes) nor
//! heap-allocated IDs nor a serialized answer per key: an entry is the 22-byte ID inline, the
//! hashes, the expiry, the name as JSON, and a pointer to a [`Shape`] shared by keys alike.
//! What few keys have (a rotation in progress, a parent key, a scope or inherited rights) is
//! in one box, so most keys pay one pointer for all of it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use jiff::Timestamp;

use crate::identity::{self, Shape};
use crate::record::{Creator, Expiry, KeyRecord, PreviousSecret, ScopeRule};
use crate::token::{ID_LEN, IdKey, KeyId, SecretHash};

/// A record the webhook can use. Only what a review reads; the answer's `status.user` is
/// written from the ID, the JSON-escaped name and the shared [`Shape`] with no escaping or
/// allocation per review (the same bytes serde would produce; see the tests below).
pub struct LoadedKey {
    /// The ID as minted (IDs are case-sensitive; the index is keyed by the lowercase form).
    id: [u8; ID_LEN],
    pub disabled: bool,
    pub secret_hash: SecretHash,
    /// Set only for keys with a rotation, a parent or a scope: most keys pay 8 bytes for it.
    rare: Option<Box<Rare>>,
    /// When the key stops working: `Timestamp::MAX` for never, `Timestamp::MIN` for an
    /// unparsable expiration (fail closed). 8 bytes less than an `Option<Expiry>`, which at a
    /// million keys moves every entry into a smaller allocation class.
    expires: Timestamp,
    /// The display name as a JSON string (quoted, escaped).
    name_json: Box<str>,
    shape: Arc<Shape>,
}

/// The parts of a record few keys have.
struct Rare {
    /// Set only during a rotation grace window.
    previous: Option<PreviousSecret>,
    /// The key that minted this one (see [`super::chain`]).
    parent: Option<KeyId>,
    grant: Option<Box<Grant>>,
}

/// What the authorizer reads of a key with a scope or inherited rights.
#[derive(Debug)]
pub struct Grant {
    /// Unique to this load of the record: answers about its creator are cached under it, so a
    /// changed (or deleted and re-created) record never meets an answer cached for another.
    pub generation: u64,
    pub inherit_creator: bool,
    pub creator: Option<Creator>,
    pub namespaces: Vec<String>,
    pub rules: Vec<ScopeRule>,
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

impl Rare {
    fn of(record: &mut KeyRecord) -> Option<Box<Rare>> {
        let scoped = record.inherit_creator || !record.rules.is_empty();
        let grant = (scoped || !record.namespaces.is_empty()).then(|| {
            Box::new(Grant {
                generation: GENERATION.fetch_add(1, Ordering::Relaxed),
                inherit_creator: record.inherit_creator,
                creator: record.creator.take(),
                namespaces: std::mem::take(&mut record.namespaces),
                rules: std::mem::take(&mut record.rules),
            })
        });
        let rare = Rare {
            previous: record.previous.take(),
            parent: record.parent.take(),
            grant,
        };
        let empty = rare.previous.is_none() && rare.parent.is_none() && rare.grant.is_none();
        (!empty).then(|| Box::new(rare))
    }
}

impl LoadedKey {
    /// `shape` is `policy.shape(&record)`, interned by the caller when it holds many keys.
    pub fn new(mut record: KeyRecord, shape: Arc<Shape>) -> Self {
        let mut id = [0u8; ID_LEN];
        // A `KeyId` is always 22 base62 characters.
        id.copy_from_slice(&record.id.as_str().as_bytes()[..ID_LEN]);
        LoadedKey {
            id,
            disabled: record.disabled,
            secret_hash: record.secret_hash,
            rare: Rare::of(&mut record),
            expires: match record.expiration {
                None => Timestamp::MAX,
                Some(Expiry::At(t)) => t,
                Some(Expiry::Invalid) => Timestamp::MIN,
            },
            name_json: serde_json::to_string(&record.name)
                .unwrap_or_default()
                .into_boxed_str(),
            shape,
        }
    }

    /// The key ID, case as minted.
    pub fn id(&self) -> &str {
        std::str::from_utf8(&self.id).unwrap_or_default()
    }

    /// The lowercased ID, the index key (and what last-use tracking records).
    #[inline]
    pub fn id_key(&self) -> IdKey {
        IdKey::new(self.id()).expect("built from a KeyId, so always a valid key ID")
    }

    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires <= now
    }

    /// The previous secret, during a rotation grace window.
    #[inline]
    pub fn previous(&self) -> Option<&PreviousSecret> {
        self.rare.as_ref()?.previous.as_ref()
    }

    /// The key that minted this one, if a key did.
    #[inline]
    pub fn parent(&self) -> Option<&KeyId> {
        self.rare.as_ref()?.parent.as_ref()
    }

    /// The scope and inherited rights, for keys that have either (or namespaces).
    pub fn grant(&self) -> Option<&Grant> {
        self.rare.as_ref()?.grant.as_deref()
    }

    /// Compares a presented secret's hash with the current secret and, during a rotation,
    /// the previous one. Both comparisons always run, each in constant time, so how long a
    /// review takes does not tell which secret (if any) matched; the result carries both.
    #[inline]
    pub fn match_secret(&self, hash: &SecretHash) -> SecretMatch {
        SecretMatch {
            current: self.secret_hash.ct_eq(hash),
            previous: self.previous().map(|p| p.hash.ct_eq(hash)),
        }
    }

    /// Appends `status.user` as JSON (see [`identity::write_user`]).
    #[inline]
    pub fn write_user(&self, buf: &mut Vec<u8>) {
        identity::write_user(buf, &self.id, &self.name_json, &self.shape);
    }

    /// How many bytes [`LoadedKey::write_user`] appends.
    #[inline]
    pub fn user_len(&self) -> usize {
        identity::user_len(&self.name_json, &self.shape)
    }
}

/// What [`LoadedKey::match_secret`] found: whether the current secret matched, and whether
/// the previous one did (`None` outside a rotation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretMatch {
    pub current: bool,
    pub previous: Option<bool>,
}

impl fmt::Debug for LoadedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hashes are not secrets, but nothing needs them in a debug line either.
        f.debug_struct("LoadedKey")
            .field("id", &self.id())
            .field("disabled", &self.disabled)
            .field("expires", &self.expires)
            .field("rotating", &self.previous().is_some())
            .field("parent", &self.parent())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentityPolicy;
    use crate::token::KeyId;
    use k8s_openapi::api::authentication::v1::UserInfo;

    fn key(edit: impl FnOnce(&mut KeyRecord)) -> LoadedKey {
        let mut r = KeyRecord::new(KeyId::generate(), SecretHash::of(b"s"), "n");
        edit(&mut r);
        LoadedKey::new(r, Arc::new(Shape::new("p-", &[])))
    }

    #[test]
    fn expiry_never_unparsable_and_at() {
        let now = Timestamp::now();
        assert!(!key(|_| {}).is_expired(now));
        assert!(key(|r| r.expiration = Some(Expiry::Invalid)).is_expired(now));
        assert!(key(|r| r.expiration = Some(Expiry::At(now))).is_expired(now));
        let later = now + jiff::SignedDuration::from_secs(1);
        assert!(!key(|r| r.expiration = Some(Expiry::At(later))).is_expired(now));
    }

    /// No early exit: whichever secret matches, every comparison the key has is made.
    #[test]
    fn both_secrets_are_always_compared() {
        let (new, old, wrong) = (
            SecretHash::of(b"s"),
            SecretHash::of(b"old"),
            SecretHash::of(b"w"),
        );
        let rotating = key(|r| {
            r.previous = Some(PreviousSecret {
                hash: old,
                expires: Expiry::Invalid,
            })
        });
        let m = |current, previous| SecretMatch { current, previous };
        assert_eq!(rotating.match_secret(&new), m(true, Some(false)));
        assert_eq!(rotating.match_secret(&old), m(false, Some(true)));
        assert_eq!(rotating.match_secret(&wrong), m(false, Some(false)));
        let plain = key(|_| {});
        assert_eq!(plain.match_secret(&new), m(true, None));
        assert_eq!(plain.match_secret(&wrong), m(false, None));
    }

    #[test]
    fn loaded_key_keeps_what_a_review_needs() {
        let id = KeyId::generate();
        let mut r = KeyRecord::new(id.clone(), SecretHash::of(b"s"), "name \"quoted\" é");
        r.disabled = true;
        let policy = IdentityPolicy::default();
        let user = policy.user_info(&r);
        let k = LoadedKey::new(r.clone(), Arc::new(policy.shape(&r)));
        assert_eq!(k.id(), id.as_str());
        assert_eq!(k.id_key(), id.key());
        assert!(k.disabled);
        let mut buf = Vec::new();
        k.write_user(&mut buf);
        assert_eq!(buf.len(), k.user_len());
        assert_eq!(buf, serde_json::to_vec(&user).unwrap());
        assert_eq!(serde_json::from_slice::<UserInfo>(&buf).unwrap(), user);
        // Small enough that the index stays near its per-key budget (BENCHMARKS.md).
        assert!(std::mem::size_of::<LoadedKey>() <= 104);
    }
}
