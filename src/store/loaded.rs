//! What the index holds per key: only what a review reads, in as few bytes as possible.
//!
//! At a million keys every byte per key is a megabyte of resident memory, so the index keeps
//! neither the whole [`KeyRecord`] (display name, description, creator, lists: ~435 bytes) nor
//! heap-allocated IDs nor a serialized answer per key: an entry is the 22-byte ID inline, the
//! hashes, the expiry, the name as JSON, and a pointer to a [`Shape`] shared by keys alike.

use std::fmt;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::authentication::v1::UserInfo;

use crate::keys::{ID_LEN, SecretHash};
use crate::record::{Expiry, KeyRecord, PreviousSecret};

/// A lowercased key ID, the index's key: 22 ASCII bytes inline (no allocation, `Copy`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdKey([u8; ID_LEN]);

impl IdKey {
    /// The key for an ID, lowercased here. `None` unless `id` is 22 ASCII characters (record
    /// names are checked for the length only; anything else cannot be a key ID).
    pub fn new(id: &str) -> Option<Self> {
        let mut buf: [u8; ID_LEN] = id.as_bytes().try_into().ok()?;
        if !buf.is_ascii() {
            return None;
        }
        buf.make_ascii_lowercase();
        Some(IdKey(buf))
    }

    pub fn as_str(&self) -> &str {
        // Only ever built from ASCII, which is UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// A small, well-spread number for picking a shard (IDs are random base62).
    pub(super) fn spread(&self) -> usize {
        self.0.iter().fold(0usize, |h, &b| {
            h.wrapping_mul(31).wrapping_add(usize::from(b))
        })
    }
}

impl fmt::Debug for IdKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for IdKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The parts of `status.user` that many keys share: the username prefix and the group list,
/// each serialized once. The index interns them, so a million keys with a handful of roles
/// share a handful of these.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    /// `"<prefix>`: the username up to the ID, as JSON (opening quote, escaped).
    username_head: Box<str>,
    /// The groups as a JSON array.
    groups: Box<str>,
}

impl Shape {
    pub fn new(user_prefix: &str, groups: &[String]) -> Self {
        // Serializing strings cannot fail.
        let mut head = serde_json::to_string(user_prefix).unwrap_or_default();
        head.pop(); // the closing quote: the ID follows
        Shape {
            username_head: head.into_boxed_str(),
            groups: serde_json::to_string(groups)
                .unwrap_or_default()
                .into_boxed_str(),
        }
    }
}

/// A record the webhook can use. Only what a review reads; the answer's `status.user` is
/// written from the ID, the JSON-escaped name and the shared [`Shape`] with no escaping or
/// allocation per review (the same bytes serde would produce; see the `review` tests).
pub struct LoadedKey {
    /// The ID as minted (IDs are case-sensitive; the index is keyed by the lowercase form).
    id: [u8; ID_LEN],
    pub disabled: bool,
    pub secret_hash: SecretHash,
    /// Set only during a rotation grace window, so boxed: most keys pay 8 bytes for it.
    pub previous: Option<Box<PreviousSecret>>,
    /// When the key stops working: `Timestamp::MAX` for never, `Timestamp::MIN` for an
    /// unparsable expiration (fail closed). 8 bytes less than an `Option<Expiry>`, which at a
    /// million keys moves every entry into a smaller allocation class.
    expires: Timestamp,
    /// The display name as a JSON string (quoted, escaped).
    name_json: Box<str>,
    shape: Arc<Shape>,
}

impl LoadedKey {
    /// `shape` is `policy.shape(&record)`, interned by the caller when it holds many keys.
    pub fn new(record: KeyRecord, shape: Arc<Shape>) -> Self {
        let mut id = [0u8; ID_LEN];
        // A `KeyId` is always 22 base62 characters.
        id.copy_from_slice(&record.id.as_str().as_bytes()[..ID_LEN]);
        LoadedKey {
            id,
            disabled: record.disabled,
            secret_hash: record.secret_hash,
            previous: record.previous.map(Box::new),
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
    pub fn id_key(&self) -> IdKey {
        let mut k = self.id;
        k.make_ascii_lowercase();
        IdKey(k)
    }

    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires <= now
    }

    /// Appends `status.user` (k8s-openapi's `UserInfo`, fields in its order) as JSON. IDs
    /// are base62, so only the name and the shape needed escaping, and they were at load.
    pub fn write_user(&self, buf: &mut Vec<u8>) {
        let low = self.id_key();
        for part in [
            &b"{\"extra\":{\"keygate.dev/key-id\":[\""[..],
            &self.id,
            b"\"],\"keygate.dev/key-name\":[",
            self.name_json.as_bytes(),
            b"]},\"groups\":",
            self.shape.groups.as_bytes(),
            b",\"uid\":\"keygate:",
            &low.0,
            b"\",\"username\":",
            self.shape.username_head.as_bytes(),
            &low.0,
            b"\"}",
        ] {
            buf.extend_from_slice(part);
        }
    }

    /// How many bytes [`LoadedKey::write_user`] appends, to size the buffer once: the fixed
    /// parts (103 bytes), the ID three times, and the variable parts.
    pub fn user_len(&self) -> usize {
        103 + 3 * ID_LEN
            + self.name_json.len()
            + self.shape.groups.len()
            + self.shape.username_head.len()
    }

    /// The identity, decoded back (for tests and tools; the hot path uses `write_user`).
    pub fn user(&self) -> UserInfo {
        let mut buf = Vec::new();
        self.write_user(&mut buf);
        serde_json::from_slice(&buf).unwrap_or_default()
    }
}

impl fmt::Debug for LoadedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hashes are not secrets, but nothing needs them in a debug line either.
        f.debug_struct("LoadedKey")
            .field("id", &self.id())
            .field("disabled", &self.disabled)
            .field("expires", &self.expires)
            .field("rotating", &self.previous.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyId;
    use crate::review::IdentityPolicy;

    #[test]
    fn id_key_lowercases_and_refuses_what_cannot_be_an_id() {
        let k = IdKey::new("AbCdEfGhIjKlMnOpQrStUv").unwrap();
        assert_eq!(k.as_str(), "abcdefghijklmnopqrstuv");
        assert_eq!(IdKey::new("short"), None);
        assert_eq!(IdKey::new("abcdefghijklmnopqrstuvw"), None);
        assert_eq!(IdKey::new("abcdefghijklmnopqrstü"), None);
    }

    #[test]
    fn expiry_never_unparsable_and_at() {
        let now = Timestamp::now();
        let key = |e| {
            let mut r = KeyRecord::new(KeyId::generate(), SecretHash::of(b"s"), "n");
            r.expiration = e;
            LoadedKey::new(r, Arc::new(Shape::new("p-", &[])))
        };
        assert!(!key(None).is_expired(now));
        assert!(key(Some(Expiry::Invalid)).is_expired(now));
        assert!(key(Some(Expiry::At(now))).is_expired(now));
        let later = now + jiff::SignedDuration::from_secs(1);
        assert!(!key(Some(Expiry::At(later))).is_expired(now));
    }

    #[test]
    fn loaded_key_keeps_what_a_review_needs() {
        let id = KeyId::generate();
        let mut r = KeyRecord::new(id.clone(), SecretHash::of(b"s"), "name");
        r.disabled = true;
        let policy = IdentityPolicy::default();
        let user = policy.user_info(&r);
        let k = LoadedKey::new(r.clone(), Arc::new(policy.shape(&r)));
        assert_eq!(k.id(), id.as_str());
        assert_eq!(k.id_key().as_str(), id.lowercase());
        assert!(k.disabled);
        assert_eq!(k.user(), user);
        let mut buf = Vec::new();
        k.write_user(&mut buf);
        assert_eq!(buf.len(), k.user_len());
        assert_eq!(buf, serde_json::to_vec(&user).unwrap());
        // Small enough that the index stays near its per-key budget (BENCHMARKS.md).
        assert!(std::mem::size_of::<LoadedKey>() <= 104);
    }
}
