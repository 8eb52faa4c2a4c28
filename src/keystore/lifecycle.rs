//! The key lifecycle shared by `keygate keys` and `keygate console`: minting a record (with the
//! checks every new key passes), regenerating its secret with an optional grace period,
//! enabling, disabling and renaming. Writing a new record stays with the caller, because the
//! kube store also makes RoleBindings for it (see [`super::provision`]).
//!
//! Messages name the input in plain words; [`LifecycleError::field`] says which input it was,
//! so the command line can name its flag and the console can show the message next to the
//! control.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::{KeyStore, KeyStoreError, Stored};
use crate::record::{Expiry, KeyRecord, PreviousSecret, RecordError, Role, check_group};
use crate::token::{IdKey, KeyId, Token};

/// The input a [`LifecycleError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Name,
    Namespaces,
    Groups,
    Expiration,
    Grace,
}

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("the name must not be empty")]
    EmptyName,
    #[error(
        "a namespace scope needs a role: each namespace gets a RoleBinding to the ClusterRole of \
         that role (e.g. role view in namespace {0})"
    )]
    ScopeNeedsRole(String),
    #[error("{error}; pick another group")]
    Group { error: RecordError },
    #[error("the expiry {0} is in the past; give a future RFC 3339 time or a duration such as 90d")]
    ExpiresInPast(Timestamp),
    #[error("the {0} is too far in the future; give a shorter duration")]
    TooFar(&'static str),
    #[error(transparent)]
    Store(#[from] KeyStoreError),
}

impl LifecycleError {
    /// Which input caused the error (none for the store's own errors).
    pub fn field(&self) -> Option<Field> {
        match self {
            LifecycleError::EmptyName => Some(Field::Name),
            LifecycleError::ScopeNeedsRole(_) => Some(Field::Namespaces),
            LifecycleError::Group { .. } => Some(Field::Groups),
            LifecycleError::ExpiresInPast(_) | LifecycleError::TooFar("expiry") => {
                Some(Field::Expiration)
            }
            LifecycleError::TooFar(_) => Some(Field::Grace),
            LifecycleError::Store(_) => None,
        }
    }
}

/// Parses a duration such as `90d`, `12h`, `30s` or `1h30m` (days are 24 hours).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let span: jiff::Span = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration; use e.g. 30s, 5m, 12h, 90d"))?;
    span.to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .ok()
        .and_then(|d| Duration::try_from(d).ok())
        .ok_or_else(|| format!("{s:?} is not a positive duration"))
}

/// When a key expires, as people write it: a duration from now (`90d`, `12h`) or an RFC 3339
/// time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expires {
    In(Duration),
    At(Timestamp),
}

impl std::str::FromStr for Expires {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(t) = s.trim().parse::<Timestamp>() {
            return Ok(Expires::At(t));
        }
        parse_duration(s).map(Expires::In).map_err(|_| {
            format!(
                "{s:?} is neither a duration (90d, 12h, 30m) nor an RFC 3339 time \
                 (2030-01-01T00:00:00Z)"
            )
        })
    }
}

/// `now + d`, rounded up to the whole second.
fn after(now: Timestamp, d: Duration, what: &'static str) -> Result<Timestamp, LifecycleError> {
    let t = SignedDuration::try_from(d)
        .ok()
        .and_then(|d| now.checked_add(d).ok())
        .ok_or(LifecycleError::TooFar(what))?;
    whole_second(t).ok_or(LifecycleError::TooFar(what))
}

fn whole_second(t: Timestamp) -> Option<Timestamp> {
    Timestamp::from_second(t.as_second() + i64::from(t.subsec_nanosecond() > 0)).ok()
}

impl Expires {
    /// The instant this means at `now`, in whole seconds (rounded up).
    pub fn resolve(self, now: Timestamp) -> Result<Timestamp, LifecycleError> {
        match self {
            Expires::At(t) => whole_second(t).ok_or(LifecycleError::TooFar("expiry")),
            Expires::In(d) => after(now, d, "expiry"),
        }
    }

    /// [`Expires::resolve`], refused when it is not in the future.
    pub fn at(self, now: Timestamp) -> Result<Timestamp, LifecycleError> {
        let at = self.resolve(now)?;
        if at <= now {
            return Err(LifecycleError::ExpiresInPast(at));
        }
        Ok(at)
    }
}

/// What a new key should be.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    pub name: String,
    pub description: String,
    pub role: Option<Role>,
    pub namespaces: Vec<String>,
    pub groups: Vec<String>,
    pub expiration: Option<Timestamp>,
    /// The person minting it: `created-by`, and so the key's owner.
    pub created_by: String,
}

/// Checks `new` and makes its record and token (a fresh ID and secret). Nothing is written.
pub fn mint(new: &NewKey, now: Timestamp) -> Result<(KeyRecord, Token), LifecycleError> {
    let name = new.name.trim();
    if name.is_empty() {
        return Err(LifecycleError::EmptyName);
    }
    let mut namespaces = new.namespaces.clone();
    namespaces.sort();
    namespaces.dedup();
    if let (Some(ns), None) = (namespaces.first(), new.role) {
        return Err(LifecycleError::ScopeNeedsRole(ns.clone()));
    }
    for g in &new.groups {
        check_group(g).map_err(|error| LifecycleError::Group { error })?;
    }
    if let Some(t) = new.expiration.filter(|t| *t <= now) {
        return Err(LifecycleError::ExpiresInPast(t));
    }
    let token = Token::generate(KeyId::generate());
    let mut record = KeyRecord::new(token.id.clone(), token.secret_hash(), name);
    record.description = new.description.clone();
    record.role = new.role;
    record.groups = new.groups.clone();
    record.namespaces = namespaces;
    record.expiration = new.expiration.map(Expiry::At);
    record.created_by = new.created_by.clone();
    Ok((record, token))
}

/// A key with a new secret, and until when its old secret still works.
#[derive(Debug)]
pub struct Regenerated {
    pub stored: Stored,
    pub token: Token,
    pub old_until: Option<Timestamp>,
}

/// Gives key `id` a new secret; the old one stops at once, or after `grace`.
pub async fn regenerate(
    store: &KeyStore,
    id: &IdKey,
    grace: Option<Duration>,
    now: Timestamp,
) -> Result<Regenerated, LifecycleError> {
    let current = store.get(id).await?;
    let token = Token::generate(current.record.id.clone());
    let old_until = grace.map(|g| after(now, g, "grace period")).transpose()?;
    let stored = store
        .modify(id, |r| {
            r.previous = old_until.map(|t| PreviousSecret {
                hash: r.secret_hash,
                expires: Expiry::At(t),
            });
            r.secret_hash = token.secret_hash();
        })
        .await?;
    Ok(Regenerated {
        stored,
        token,
        old_until,
    })
}

/// A change to a key's name, description or state (never its secret); `None` keeps a value.
#[derive(Debug, Clone, Copy, Default)]
pub struct Edit<'a> {
    pub name: Option<&'a str>,
    pub description: Option<&'a str>,
    /// `true` stops the key from authenticating; `false` lets it again.
    pub disabled: Option<bool>,
}

/// Applies `change` to key `id` in one write.
pub async fn edit(
    store: &KeyStore,
    id: &IdKey,
    change: Edit<'_>,
) -> Result<Stored, LifecycleError> {
    let name = change.name.map(str::trim);
    if name.is_some_and(str::is_empty) {
        return Err(LifecycleError::EmptyName);
    }
    Ok(store
        .modify(id, |r| {
            if let Some(n) = name {
                r.name = n.to_owned();
            }
            if let Some(d) = change.description {
                r.description = d.to_owned();
            }
            if let Some(d) = change.disabled {
                r.disabled = d;
            }
        })
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keystore::DirKeys;

    fn now() -> Timestamp {
        "2030-01-01T00:00:00Z".parse().unwrap()
    }

    fn new_key() -> NewKey {
        NewKey {
            name: " ci ".into(),
            created_by: "alice".into(),
            ..NewKey::default()
        }
    }

    #[test]
    fn mint_checks_every_input_and_names_it() {
        let (r, token) = mint(&new_key(), now()).unwrap();
        assert_eq!(r.name, "ci");
        assert_eq!(r.id, token.id);
        assert!(r.secret_hash.ct_eq(&token.secret_hash()));
        let bad = |f: fn(&mut NewKey)| {
            let mut n = new_key();
            f(&mut n);
            mint(&n, now()).unwrap_err().field()
        };
        assert_eq!(bad(|n| n.name = "  ".into()), Some(Field::Name));
        assert_eq!(
            bad(|n| n.namespaces = vec!["apps".into()]),
            Some(Field::Namespaces)
        );
        for g in ["system:masters", "keygate:admin", "a b", "a,b"] {
            let mut n = new_key();
            n.groups = vec![g.into()];
            let e = mint(&n, now()).unwrap_err();
            assert_eq!(e.field(), Some(Field::Groups), "{g}");
        }
        assert_eq!(
            bad(|n| n.expiration = Some("2029-01-01T00:00:00Z".parse().unwrap())),
            Some(Field::Expiration)
        );
    }

    #[test]
    fn expires_reads_durations_and_times_in_whole_seconds() {
        let e: Expires = "90d".parse().unwrap();
        assert_eq!(
            e.at(now()).unwrap(),
            "2030-04-01T00:00:00Z".parse::<Timestamp>().unwrap()
        );
        let e: Expires = "2030-01-01T00:00:00.5Z".parse().unwrap();
        assert_eq!(e.at(now()).unwrap().as_second(), now().as_second() + 1);
        let past: Expires = "2020-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(past.at(now()).unwrap_err().field(), Some(Field::Expiration));
        assert!("soon".parse::<Expires>().is_err());
        assert!(parse_duration("-5m").is_err());
        let e = Expires::In(Duration::from_secs(u64::MAX));
        assert!(matches!(e.at(now()), Err(LifecycleError::TooFar("expiry"))));
    }

    #[tokio::test]
    async fn regenerate_keeps_the_old_secret_for_the_grace_period_only() {
        let tmp = tempfile::tempdir().unwrap();
        let store = KeyStore::Dir(DirKeys::new(tmp.path().join("keys"), "ns"));
        let (record, old) = mint(&new_key(), now()).unwrap();
        store.create(&record).await.unwrap();
        let id = record.id.key();

        let r = regenerate(&store, &id, Some(Duration::from_secs(60)), now())
            .await
            .unwrap();
        assert_eq!(r.old_until.unwrap().as_second(), now().as_second() + 60);
        let prev = r.stored.record.previous.as_ref().unwrap();
        assert!(prev.hash.ct_eq(&old.secret_hash()));
        assert!(r.stored.record.secret_hash.ct_eq(&r.token.secret_hash()));

        let r = regenerate(&store, &id, None, now()).await.unwrap();
        assert!(r.stored.record.previous.is_none() && r.old_until.is_none());

        let off = Edit {
            disabled: Some(true),
            ..Edit::default()
        };
        assert!(edit(&store, &id, off).await.unwrap().record.disabled);
        let rename = Edit {
            name: Some("renamed"),
            ..Edit::default()
        };
        let s = edit(&store, &id, rename).await.unwrap();
        assert_eq!(
            (s.record.name.as_str(), s.record.disabled),
            ("renamed", true)
        );
        let blank = Edit {
            name: Some(" "),
            ..Edit::default()
        };
        let e = edit(&store, &id, blank).await.unwrap_err();
        assert_eq!(e.field(), Some(Field::Name));
    }
}
