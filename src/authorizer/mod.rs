//! keygate as kube-apiserver's authorization webhook (`POST /authorize`): the rights of keys
//! that inherit their creator's, reduced by their scope.
//!
//! - A user who is not a keygate key (no `keygate.dev/key-id` in `extra`, and a username that
//!   is not `<user prefix><key ID>`) gets no opinion at once, without any lookup; so does
//!   everyone before the index has loaded. The authorizer never answers an error that
//!   kube-apiserver would retry.
//! - A live key without `inheritCreator` gets no opinion: RBAC decides, as for anyone.
//! - An `inheritCreator` key is allowed a request exactly when the request is inside its scope
//!   and inside the scope of every key above it ([`scope`]), and when the creator of each
//!   `inheritCreator` key in that chain may do it now: keygate asks kube-apiserver with a
//!   SubjectAccessReview as that creator ([`creator`], cached briefly). Anything else, including
//!   a SubjectAccessReview that failed, is no grant (fail closed), with a reason saying why.
//! - A disabled, expired, deleted or unknown key, one with a broken chain above it, or a claim
//!   whose ID and username disagree, gets no opinion; in the instant-revocation mode
//!   ([`AuthorizerSettings::deny_revoked`]) it is denied, which no later authorizer can undo.
//!
//! Without a cluster (the dir store) there is no one to ask about creators: inheriting keys
//! get no opinion, with a reason saying so.

pub mod creator;
pub mod metrics;
pub mod scope;
pub mod wire;

use smallvec::SmallVec;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::index::{ChainBreak, Entry, Index, LoadedKey};
use crate::token::IdKey;
use creator::{Answer, CreatorError, Creators};
use metrics::AuthzMetrics;
use scope::{Attributes, Outside};
use wire::{KeyIdClaim, Review, Screen, Verdict, WireError};

/// How the authorizer behaves; flags of `keygate serve` fill it.
#[derive(Debug, Clone)]
pub struct AuthorizerSettings {
    /// How long a creator's answer is reused.
    pub cache_ttl: Duration,
    /// At most this many creator answers are kept.
    pub cache_size: u64,
    /// Time allowed for one SubjectAccessReview to kube-apiserver.
    pub sar_timeout: Duration,
    /// Instant revocation: deny (not only leave to RBAC) requests of keys that are disabled,
    /// expired, deleted, unknown or cut off by a key above them.
    pub deny_revoked: bool,
}

impl Default for AuthorizerSettings {
    fn default() -> Self {
        AuthorizerSettings {
            cache_ttl: Duration::from_secs(5),
            cache_size: 10_000,
            sar_timeout: Duration::from_secs(2),
            deny_revoked: false,
        }
    }
}

/// Why the authorizer answered as it did; the `reason` label of its metrics and log events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The index has not loaded yet (or its store stopped).
    NotReady,
    /// The user is not a keygate key.
    NotAKey,
    /// `keygate.dev/key-id` and the username name different keys, or the claim is malformed.
    IdentityMismatch,
    /// The username is a key's, but `extra` carries no `keygate.dev/key-id`.
    KeyIdMissing,
    UnknownKey,
    InvalidRecord,
    Disabled,
    Expired,
    Chain(ChainBreak),
    /// A live key that does not inherit its creator's rights: RBAC decides.
    NotInheriting,
    /// An `inheritCreator` key (or one above it) with no creator recorded.
    NoCreator,
    /// The review names neither a resource nor a non-resource URL.
    NoAttributes,
    Outside(Outside),
    /// No cluster to ask (dir store).
    NoCluster,
    CreatorNotAllowed,
    /// A SubjectAccessReview for a creator failed or timed out.
    CreatorReviewFailed,
    CreatorAllowed,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotReady => "not_ready",
            Reason::NotAKey => "not_a_key",
            Reason::IdentityMismatch => "identity_mismatch",
            Reason::KeyIdMissing => "key_id_missing",
            Reason::UnknownKey => "unknown_key",
            Reason::InvalidRecord => "invalid_record",
            Reason::Disabled => "disabled",
            Reason::Expired => "expired",
            Reason::Chain(b) => b.as_str(),
            Reason::NotInheriting => "not_inheriting",
            Reason::NoCreator => "no_creator",
            Reason::NoAttributes => "no_attributes",
            Reason::Outside(o) => o.as_str(),
            Reason::NoCluster => "no_cluster",
            Reason::CreatorNotAllowed => "creator_not_allowed",
            Reason::CreatorReviewFailed => "creator_review_failed",
            Reason::CreatorAllowed => "creator_allowed",
        }
    }

    /// The reasons for which the instant-revocation mode denies.
    fn revoked(self) -> bool {
        matches!(
            self,
            Reason::IdentityMismatch
                | Reason::UnknownKey
                | Reason::InvalidRecord
                | Reason::Disabled
                | Reason::Expired
                | Reason::Chain(_)
        )
    }
}

/// One answer.
#[derive(Debug, Clone)]
pub struct Decision {
    pub verdict: Verdict,
    pub reason: Reason,
    /// `status.reason`: empty for users who are not keys.
    pub message: Cow<'static, str>,
    /// The key the user claimed to be, if any (public, safe to log).
    pub key_id: Option<IdKey>,
}

/// Who the user claims to be.
enum Claim {
    /// `keygate.dev/key-id` and a username that agree.
    Key(IdKey),
    /// A key's username without `keygate.dev/key-id`.
    UsernameOnly(IdKey),
    /// A key ID claim that is malformed or disagrees with the username.
    Mismatch(Option<IdKey>),
}

/// A key and the keys above it.
type Chain = SmallVec<[Arc<LoadedKey>; 4]>;

/// A decision that waits for creators' answers not in the cache.
struct Ask<'a> {
    id: IdKey,
    chain: Chain,
    attrs: &'a Attributes<'a>,
}

/// The authorization webhook's decisions. Shared by all connections.
pub struct Authorizer {
    index: Index,
    screen: Screen,
    creators: Creators,
    deny_revoked: bool,
    metrics: Arc<AuthzMetrics>,
}

impl Authorizer {
    /// `client` is keygate's own Kubernetes client, used for creators' SubjectAccessReviews;
    /// `None` with the dir store.
    pub fn new(
        index: Index,
        client: Option<kube::Client>,
        settings: &AuthorizerSettings,
        metrics: Arc<AuthzMetrics>,
    ) -> Self {
        Authorizer {
            screen: Screen::new(index.policy().user_prefix()),
            index,
            creators: Creators::new(
                client,
                settings.cache_ttl,
                settings.cache_size,
                settings.sar_timeout,
                metrics.clone(),
            ),
            deny_revoked: settings.deny_revoked,
            metrics,
        }
    }

    /// Reads a SubjectAccessReview body: only its envelope when its user cannot be a key.
    pub fn read<'a>(&self, body: &'a [u8]) -> Result<Review<'a>, WireError> {
        wire::decode_screened(body, &self.screen)
    }

    pub fn metrics(&self) -> &AuthzMetrics {
        &self.metrics
    }

    pub fn creators(&self) -> &Creators {
        &self.creators
    }

    /// Decides one review, records its metrics, and logs it when the user is a key.
    pub async fn decide(&self, review: &Review<'_>) -> Decision {
        let start = Instant::now();
        let attrs = review.attributes();
        let decision = match self.claim(review) {
            None => self.plain(Reason::NotAKey),
            Some(claim) => match self.decide_key(claim, review, attrs.as_ref()) {
                Ok(decision) => decision,
                // Boxed: asking kube-apiserver is a large future that would otherwise be
                // carried (and moved) by every request, most of which are no key's or are
                // answered from the cache.
                Err(ask) => Box::pin(self.ask_creators(ask)).await,
            },
        };
        let elapsed = start.elapsed();
        self.metrics.decision(
            decision.verdict.as_str(),
            decision.reason,
            elapsed.as_secs_f64(),
        );
        if let Some(id) = decision.key_id {
            log_decision(&id, &decision, attrs.as_ref(), elapsed);
        }
        decision
    }

    /// Who the user claims to be, or `None` for a user who is no key (and every user before the
    /// index has loaded).
    fn claim(&self, review: &Review<'_>) -> Option<Claim> {
        let subject = review.subject.as_ref()?;
        let policy = self.index.policy();
        let by_name = policy.key_of_username(&subject.user);
        match &subject.key_id {
            KeyIdClaim::Absent => by_name.map(Claim::UsernameOnly),
            KeyIdClaim::Malformed => Some(Claim::Mismatch(by_name)),
            KeyIdClaim::One(id) => match IdKey::new(id) {
                Some(k) if by_name == Some(k) => Some(Claim::Key(k)),
                Some(k) => Some(Claim::Mismatch(Some(k))),
                None => Some(Claim::Mismatch(by_name)),
            },
        }
    }

    /// No opinion, for a user who is no key: no text, nothing logged.
    fn plain(&self, reason: Reason) -> Decision {
        Decision {
            verdict: Verdict::NoOpinion,
            reason,
            message: Cow::Borrowed(""),
            key_id: None,
        }
    }

    /// The decision on a key, or (`Err`) the creators to ask kube-apiserver about first.
    fn decide_key<'a>(
        &self,
        claim: Claim,
        review: &Review<'_>,
        attrs: Option<&'a Attributes<'a>>,
    ) -> Result<Decision, Ask<'a>> {
        if !self.index.is_ready() {
            return Ok(self.plain(Reason::NotReady));
        }
        let (id, exact) = match claim {
            Claim::Mismatch(id) => {
                return Ok(self.refuse(
                    id,
                    Reason::IdentityMismatch,
                    "the user's keygate.dev/key-id and username do not name the same key".into(),
                ));
            }
            Claim::UsernameOnly(id) => (id, None),
            Claim::Key(id) => (id, review_key_id(review)),
        };
        // One clock read for the key and every key above it.
        let now = Timestamp::now();
        let key = match self.live_key(id, exact.as_deref(), now) {
            Ok(k) => k,
            Err((reason, message)) => return Ok(self.refuse(Some(id), reason, message)),
        };
        if exact.is_none() {
            let message =
                "the user has a key's username but no keygate.dev/key-id: keygate grants nothing"
                    .into();
            return Ok(self.no_opinion(id, Reason::KeyIdMissing, message));
        }
        let inherits = key.grant().is_some_and(|g| g.inherit_creator);
        if !inherits && !self.deny_revoked {
            return Ok(self.no_opinion(id, Reason::NotInheriting, "".into()));
        }
        // The key and the keys above it (rarely more than a few: no allocation for those).
        let mut chain: Chain = SmallVec::new();
        chain.push(key.clone());
        let walked = self.index.check_chain(&key, now, |a| chain.push(a.clone()));
        if let Err(b) = walked {
            let message = format!("key {} above this one {}", b.at, b.why.explain());
            return Ok(self.refuse(Some(id), Reason::Chain(b.why), message.into()));
        }
        if !inherits {
            return Ok(self.no_opinion(id, Reason::NotInheriting, "".into()));
        }
        let Some(attrs) = attrs else {
            let message = "the review names neither a resource nor a non-resource URL".into();
            return Ok(self.no_opinion(id, Reason::NoAttributes, message));
        };
        self.inherited(id, chain, attrs)
    }

    /// The key `id` from the index, if it is live; else why not.
    fn live_key(
        &self,
        id: IdKey,
        exact: Option<&str>,
        now: Timestamp,
    ) -> Result<Arc<LoadedKey>, (Reason, Cow<'static, str>)> {
        let key = match self.index.get(&id) {
            None => return Err((Reason::UnknownKey, "no such key".into())),
            Some(Entry::Invalid(_)) => {
                return Err((Reason::InvalidRecord, "the key's record was refused".into()));
            }
            Some(Entry::Key(k)) if exact.is_some_and(|e| e != k.id()) => {
                return Err((Reason::UnknownKey, "no such key".into()));
            }
            Some(Entry::Key(k)) => k,
        };
        if key.disabled {
            return Err((Reason::Disabled, "the key is disabled".into()));
        }
        if key.is_expired(now) {
            return Err((Reason::Expired, "the key has expired".into()));
        }
        Ok(key)
    }

    /// The decision for an `inheritCreator` key whose chain (`chain[0]` the key, then each key
    /// above it) is live: from the cached creators' answers, or `Err` to ask for them.
    fn inherited<'a>(
        &self,
        id: IdKey,
        chain: Chain,
        attrs: &'a Attributes<'a>,
    ) -> Result<Decision, Ask<'a>> {
        for (i, k) in chain.iter().enumerate() {
            let Some(g) = k.grant() else { continue };
            if let Err(outside) = scope::check(&g.namespaces, &g.rules, attrs) {
                let whose = whose(i, k);
                let message = format!("{whose} scope {}", outside.explain());
                return Ok(self.no_opinion(id, Reason::Outside(outside), message.into()));
            }
        }
        let mut answers: SmallVec<[Answer; 4]> = SmallVec::new();
        for (i, k) in chain.iter().enumerate() {
            let Some(g) = k.grant().filter(|g| g.inherit_creator) else {
                continue;
            };
            if g.creator.is_none() {
                let message = format!(
                    "{} inherits its creator's rights but has no creator recorded",
                    whose(i, k)
                );
                return Ok(self.no_opinion(id, Reason::NoCreator, message.into()));
            }
            match self.creators.peek(g.generation, attrs) {
                Some(a) => answers.push(a),
                None => return Err(Ask { id, chain, attrs }),
            }
        }
        self.creators.count_hits(answers.len());
        Ok(self.conclude(id, &chain, answers.into_iter().map(Ok)))
    }

    /// Asks kube-apiserver (or the cache) about each creator in the chain, in order, up to the
    /// first that is not allowed.
    async fn ask_creators(&self, ask: Ask<'_>) -> Decision {
        let mut answers: SmallVec<[Result<Answer, CreatorError>; 4]> = SmallVec::new();
        for k in &ask.chain {
            let Some(g) = k.grant().filter(|g| g.inherit_creator) else {
                continue;
            };
            // None is refused by `inherited` before any creator is asked.
            let Some(creator) = &g.creator else { continue };
            let answer = self
                .creators
                .allowed(g.generation, ask.attrs, creator)
                .await;
            let stop = !matches!(answer, Ok(Answer { allowed: true, .. }));
            answers.push(answer);
            if stop {
                break;
            }
        }
        self.conclude(ask.id, &ask.chain, answers.into_iter())
    }

    /// The decision once the creators' answers are known: `answers` holds one per
    /// `inheritCreator` key of `chain`, in order, up to the first that is not an allow.
    fn conclude(
        &self,
        id: IdKey,
        chain: &[Arc<LoadedKey>],
        answers: impl Iterator<Item = Result<Answer, CreatorError>>,
    ) -> Decision {
        let inheriting = chain.iter().enumerate().filter_map(|(i, k)| {
            let g = k.grant().filter(|g| g.inherit_creator)?;
            Some((i, k, g.creator.as_ref()?))
        });
        // "keygate: inherited from alice, bob": built as it goes, one allocation.
        let mut message = String::from("keygate: inherited from ");
        let mut first = true;
        for ((i, k, creator), answer) in inheriting.zip(answers) {
            match answer {
                Ok(a) if a.allowed => {
                    if !std::mem::take(&mut first) {
                        message.push_str(", ");
                    }
                    message.push_str(&creator.username);
                }
                Ok(a) => {
                    let mut message = format!(
                        "{} creator {:?} may not do this now",
                        whose(i, k),
                        creator.username
                    );
                    if !a.reason.is_empty() {
                        message.push_str(": ");
                        message.push_str(&a.reason);
                    }
                    return self.no_opinion(id, Reason::CreatorNotAllowed, message.into());
                }
                Err(CreatorError::NoCluster) => {
                    let message = CreatorError::NoCluster.to_string();
                    return self.no_opinion(id, Reason::NoCluster, message.into());
                }
                Err(e) => {
                    tracing::warn!(key_id = %id, error = %e, "cannot learn a key creator's rights; no grant");
                    let message = format!("keygate could not check the creator's rights: {e}");
                    let verdict = if self.deny_revoked {
                        Verdict::Deny
                    } else {
                        Verdict::NoOpinion
                    };
                    return Decision {
                        verdict,
                        reason: Reason::CreatorReviewFailed,
                        message: message.into(),
                        key_id: Some(id),
                    };
                }
            }
        }
        Decision {
            verdict: Verdict::Allow,
            reason: Reason::CreatorAllowed,
            message: message.into(),
            key_id: Some(id),
        }
    }

    fn no_opinion(&self, id: IdKey, reason: Reason, message: Cow<'static, str>) -> Decision {
        Decision {
            verdict: Verdict::NoOpinion,
            reason,
            message,
            key_id: Some(id),
        }
    }

    /// A key that is not live: denied in the instant-revocation mode, else no opinion.
    fn refuse(&self, id: Option<IdKey>, reason: Reason, message: Cow<'static, str>) -> Decision {
        debug_assert!(reason.revoked());
        Decision {
            verdict: if self.deny_revoked {
                Verdict::Deny
            } else {
                Verdict::NoOpinion
            },
            reason,
            message: format!("keygate: {message}").into(),
            key_id: id,
        }
    }
}

/// The ID as the review wrote it (case kept), for the case-sensitive match.
fn review_key_id<'a>(review: &'a Review<'_>) -> Option<Cow<'a, str>> {
    match review.subject.as_ref().map(|s| &s.key_id) {
        Some(KeyIdClaim::One(id)) => Some(Cow::Borrowed(&**id)),
        _ => None,
    }
}

/// "the key's" or "key X above this one's", for messages about the chain.
fn whose(i: usize, k: &LoadedKey) -> String {
    if i == 0 {
        "the key's".to_owned()
    } else {
        format!("key {} above this one: its", k.id())
    }
}

/// One structured event per decision on a key: key ID, verb, resource, namespace, result,
/// reason. Never a token; the user's identity is the key ID.
fn log_decision(id: &IdKey, d: &Decision, attrs: Option<&Attributes<'_>>, elapsed: Duration) {
    let (verb, namespace) = match attrs {
        Some(Attributes::Resource { verb, res }) => (*verb, res.namespace),
        Some(Attributes::NonResource { verb, .. }) => (*verb, ""),
        None => ("", ""),
    };
    tracing::info!(
        key_id = %id,
        %verb,
        resource = %ResourceName(attrs),
        %namespace,
        result = %d.verdict.as_str(),
        reason = %d.reason.as_str(),
        duration_us = elapsed.as_micros() as u64,
        "subjectaccessreview"
    );
}

/// `resource[.group][/subresource]`, or the non-resource path, written only when the event is
/// (no string is built for a filtered-out event).
struct ResourceName<'a>(Option<&'a Attributes<'a>>);

impl std::fmt::Display for ResourceName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(Attributes::Resource { res, .. }) => {
                f.write_str(res.resource)?;
                if !res.group.is_empty() {
                    write!(f, ".{}", res.group)?;
                }
                if !res.subresource.is_empty() {
                    write!(f, "/{}", res.subresource)?;
                }
                Ok(())
            }
            Some(Attributes::NonResource { path, .. }) => f.write_str(path),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
