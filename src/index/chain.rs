//! Keys minted by keys: a key works only while every key above it does.
//!
//! A record names the key that minted it (`parent`). At review time the chain is walked up
//! through the index, one lookup per ancestor: the first ancestor that is missing, refused,
//! disabled or expired breaks the chain, and so does a chain longer than [`MAX_ANCESTORS`] (or a
//! loop, which never ends). A key without a parent costs one branch.

use std::sync::Arc;

use jiff::Timestamp;

use super::{Entry, Index, LoadedKey};
use crate::token::IdKey;

/// The most keys a key may have above it; a longer chain is refused.
pub const MAX_ANCESTORS: usize = 8;

/// Why a chain of keys does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChainBreak {
    /// An ancestor's record is gone (deleted), or its ID differs in case from the parent named.
    AncestorUnknown,
    /// An ancestor's record exists but was refused when loaded.
    AncestorInvalid,
    AncestorDisabled,
    AncestorExpired,
    /// More than [`MAX_ANCESTORS`] keys above, or a loop.
    TooDeep,
}

impl ChainBreak {
    pub fn as_str(self) -> &'static str {
        match self {
            ChainBreak::AncestorUnknown => "ancestor_unknown",
            ChainBreak::AncestorInvalid => "ancestor_invalid",
            ChainBreak::AncestorDisabled => "ancestor_disabled",
            ChainBreak::AncestorExpired => "ancestor_expired",
            ChainBreak::TooDeep => "chain_too_deep",
        }
    }

    /// What to tell a person, after "key <id> above this one".
    pub fn explain(self) -> &'static str {
        match self {
            ChainBreak::AncestorUnknown => "no longer exists",
            ChainBreak::AncestorInvalid => "has a record keygate refused",
            ChainBreak::AncestorDisabled => "is disabled",
            ChainBreak::AncestorExpired => "has expired",
            ChainBreak::TooDeep => "is one of more keys above it than keygate follows",
        }
    }
}

/// A broken chain: why, and at which key (the ancestor named by a parent field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Broken {
    pub why: ChainBreak,
    pub at: IdKey,
}

impl Index {
    /// Checks every key above `key` at `now`, calling `visit` with each live ancestor, nearest
    /// first. Keys without a parent return at once.
    #[inline]
    pub fn check_chain(
        &self,
        key: &LoadedKey,
        now: Timestamp,
        visit: impl FnMut(&Arc<LoadedKey>),
    ) -> Result<(), Broken> {
        match key.parent() {
            None => Ok(()),
            Some(parent) => self.walk_chain(parent.as_str(), now, visit),
        }
    }

    fn walk_chain(
        &self,
        first: &str,
        now: Timestamp,
        mut visit: impl FnMut(&Arc<LoadedKey>),
    ) -> Result<(), Broken> {
        let mut next: Option<Arc<LoadedKey>> = None;
        for depth in 0..=MAX_ANCESTORS {
            let id = match &next {
                None => first,
                Some(k) => match k.parent() {
                    None => return Ok(()),
                    Some(p) => p.as_str(),
                },
            };
            // A parent field is a parsed `KeyId`, so always a valid key ID.
            let at = IdKey::new(id).expect("a parent is a KeyId");
            if depth == MAX_ANCESTORS {
                return Err(Broken {
                    why: ChainBreak::TooDeep,
                    at,
                });
            }
            let broken = |why| Err(Broken { why, at });
            let key = match self.get(&at) {
                None => return broken(ChainBreak::AncestorUnknown),
                Some(Entry::Invalid(_)) => return broken(ChainBreak::AncestorInvalid),
                // IDs are case-sensitive: another key under the same lowercase ID is not it.
                Some(Entry::Key(k)) if k.id() != id => return broken(ChainBreak::AncestorUnknown),
                Some(Entry::Key(k)) => k,
            };
            if key.disabled {
                return broken(ChainBreak::AncestorDisabled);
            }
            if key.is_expired(now) {
                return broken(ChainBreak::AncestorExpired);
            }
            visit(&key);
            next = Some(key);
        }
        unreachable!("the loop returns by MAX_ANCESTORS")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentityPolicy;
    use crate::record::{Expiry, KeyRecord, RecordError};
    use crate::token::{KeyId, SecretHash};

    fn rec(id: &KeyId, parent: Option<&KeyId>) -> KeyRecord {
        let mut r = KeyRecord::new(id.clone(), SecretHash::of(b"s"), "n");
        r.parent = parent.cloned();
        r
    }

    /// An index holding a chain of `n` keys, root first; returns their IDs.
    fn chain(n: usize) -> (Index, Vec<KeyId>) {
        let idx = Index::new(IdentityPolicy::default());
        let ids: Vec<KeyId> = (0..n).map(|_| KeyId::generate()).collect();
        for (i, id) in ids.iter().enumerate() {
            let parent = i.checked_sub(1).map(|p| &ids[p]);
            idx.upsert(id.key(), Ok(rec(id, parent)));
        }
        idx.set_ready();
        (idx, ids)
    }

    fn check(idx: &Index, id: &KeyId) -> Result<Vec<String>, Broken> {
        let Some(Entry::Key(k)) = idx.get(&id.key()) else {
            panic!("key loaded")
        };
        let mut seen = Vec::new();
        idx.check_chain(&k, Timestamp::now(), |a| seen.push(a.id().to_owned()))?;
        Ok(seen)
    }

    #[test]
    fn a_live_chain_holds_and_is_visited_nearest_first() {
        let (idx, ids) = chain(4);
        let seen = check(&idx, &ids[3]).unwrap();
        let want: Vec<String> = ids[..3].iter().rev().map(|i| i.to_string()).collect();
        assert_eq!(seen, want);
        assert_eq!(check(&idx, &ids[0]).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn any_ancestor_that_stopped_breaks_the_chain() {
        let (idx, ids) = chain(4);
        let now = Timestamp::now();
        type Edit<'a> = &'a dyn Fn(&mut KeyRecord);
        let cases: [(Edit, Option<ChainBreak>); 3] = [
            (&|r| r.disabled = true, Some(ChainBreak::AncestorDisabled)),
            (
                &|r| r.expiration = Some(Expiry::At(now)),
                Some(ChainBreak::AncestorExpired),
            ),
            (&|_| {}, None),
        ];
        for (edit, want) in cases {
            let mut r = rec(&ids[1], Some(&ids[0]));
            edit(&mut r);
            idx.upsert(ids[1].key(), Ok(r));
            let got = check(&idx, &ids[3]).err();
            assert_eq!(got.map(|b| b.why), want);
            if let Some(b) = got {
                assert_eq!(b.at, ids[1].key());
            }
        }
        idx.upsert(ids[0].key(), Err(RecordError::Missing("id")));
        assert_eq!(
            check(&idx, &ids[3]).unwrap_err().why,
            ChainBreak::AncestorInvalid
        );
        idx.remove(&ids[0].key());
        let b = check(&idx, &ids[3]).unwrap_err();
        assert_eq!((b.why, b.at), (ChainBreak::AncestorUnknown, ids[0].key()));
        // The nearest key still works: only keys below the deleted one are cut off.
        assert!(matches!(
            check(&idx, &ids[1]).unwrap_err().why,
            ChainBreak::AncestorUnknown
        ));
    }

    #[test]
    fn chains_longer_than_the_limit_and_loops_are_refused() {
        let (idx, ids) = chain(MAX_ANCESTORS + 2);
        assert_eq!(
            check(&idx, &ids[MAX_ANCESTORS]).unwrap().len(),
            MAX_ANCESTORS
        );
        assert_eq!(
            check(&idx, &ids[MAX_ANCESTORS + 1]).unwrap_err().why,
            ChainBreak::TooDeep
        );
        let (a, b) = (KeyId::generate(), KeyId::generate());
        idx.upsert(a.key(), Ok(rec(&a, Some(&b))));
        idx.upsert(b.key(), Ok(rec(&b, Some(&a))));
        assert_eq!(check(&idx, &a).unwrap_err().why, ChainBreak::TooDeep);
        // A parent whose ID differs only in case is another key.
        let c = KeyId::generate();
        let upper: KeyId = ids[0].as_str().to_uppercase().parse().unwrap();
        if upper != ids[0] {
            idx.upsert(c.key(), Ok(rec(&c, Some(&upper))));
            assert_eq!(
                check(&idx, &c).unwrap_err().why,
                ChainBreak::AncestorUnknown
            );
        }
    }
}
