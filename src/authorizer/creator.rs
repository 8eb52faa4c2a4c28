//! Asking kube-apiserver whether a key's creator may do something now: a SubjectAccessReview
//! as the creator, sent with keygate's own client, with a timeout, its answers cached briefly.
//!
//! The cache is keyed by the generation of the record that names the creator (a number every
//! load of such a record gets anew, see [`crate::index::Grant`]) and the request's attributes:
//! the generation stands for the creator's identity, and a changed, re-created or reloaded
//! record starts from an empty slate while its old entries age out. Only answers are cached;
//! an error is not, so the next request asks again. Nothing here runs for a TokenReview.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use equivalent::Equivalent;

use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;

use super::metrics::AuthzMetrics;
use super::scope::{Attributes, ResourceRequest};
use crate::record::Creator;

/// Why the creator's rights could not be learnt. Never an allow.
#[derive(Debug, thiserror::Error)]
pub enum CreatorError {
    #[error(
        "the key store is a directory, so there is no cluster to ask about the creator's rights; \
         inherited rights need the kube store"
    )]
    NoCluster,
    #[error(
        "kube-apiserver did not answer a SubjectAccessReview within {0:?} (--authorize-sar-timeout)"
    )]
    Timeout(Duration),
    #[error("kube-apiserver refused a SubjectAccessReview: {}", crate::causes::Chain(.error))]
    Api { error: kube::Error },
}

/// The creator's answer, as kube-apiserver gave it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub allowed: bool,
    /// kube-apiserver's reason, when it gave one (shown when the creator is not allowed).
    pub reason: Arc<str>,
}

/// A cache key: the generation of the record naming the creator, and an owned copy of the
/// request's attributes (`parts` in the order [`Attributes`] lists them).
#[derive(PartialEq, Eq)]
pub struct CacheKey {
    generation: u64,
    resource: bool,
    parts: Box<[Box<str>]>,
}

impl CacheKey {
    fn new(generation: u64, attrs: &Attributes<'_>) -> Self {
        let (resource, parts): (bool, &[&str]) = match *attrs {
            Attributes::Resource { verb, res } => (
                true,
                &[
                    verb,
                    res.namespace,
                    res.group,
                    res.version,
                    res.resource,
                    res.subresource,
                    res.name,
                ],
            ),
            Attributes::NonResource { verb, path } => (false, &[verb, path]),
        };
        CacheKey {
            generation,
            resource,
            parts: parts.iter().map(|&p| p.into()).collect(),
        }
    }

    fn attributes(&self) -> Attributes<'_> {
        let p = |i: usize| &*self.parts[i];
        if self.resource {
            Attributes::Resource {
                verb: p(0),
                res: ResourceRequest {
                    namespace: p(1),
                    group: p(2),
                    version: p(3),
                    resource: p(4),
                    subresource: p(5),
                    name: p(6),
                },
            }
        } else {
            Attributes::NonResource {
                verb: p(0),
                path: p(1),
            }
        }
    }
}

/// Hashed as its [`Lookup`] is, so the cache is searched without an owned copy.
impl Hash for CacheKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        Lookup(self.generation, self.attributes()).hash(h);
    }
}

/// What the cache is searched by: a generation and borrowed attributes.
#[derive(Hash)]
struct Lookup<'a>(u64, Attributes<'a>);

impl Equivalent<CacheKey> for Lookup<'_> {
    fn equivalent(&self, key: &CacheKey) -> bool {
        self.0 == key.generation && self.1 == key.attributes()
    }
}

/// The client and cache for creators' SubjectAccessReviews.
///
/// The cache hashes with aHash, randomly keyed per process, rather than the standard SipHash:
/// the attributes are chosen by key holders, so a keyed hash is needed, and SipHash of seven
/// strings was ~1 700 of the ~15 000 instructions of a cached allow (callgrind,
/// `benches/authorize.rs`).
pub struct Creators {
    client: Option<kube::Client>,
    cache: moka::sync::Cache<CacheKey, Answer, ahash::RandomState>,
    timeout: Duration,
    metrics: Arc<AuthzMetrics>,
}

impl Creators {
    pub fn new(
        client: Option<kube::Client>,
        ttl: Duration,
        size: u64,
        timeout: Duration,
        metrics: Arc<AuthzMetrics>,
    ) -> Self {
        Creators {
            client,
            cache: moka::sync::Cache::builder()
                .max_capacity(size)
                .time_to_live(ttl)
                .build_with_hasher(ahash::RandomState::new()),
            timeout,
            metrics,
        }
    }

    /// Whether a cluster is there to ask.
    pub fn has_cluster(&self) -> bool {
        self.client.is_some()
    }

    /// The cached answer for the creator of the record of `generation` on `attrs`, if any,
    /// counted as a hit or a miss.
    pub fn cached(&self, generation: u64, attrs: &Attributes<'_>) -> Option<Answer> {
        let hit = self.peek(generation, attrs);
        self.metrics.cache(hit.is_some());
        hit
    }

    /// The cached answer, not counted: the caller counts with [`Creators::count_hits`] once it
    /// knows it will not ask again.
    pub fn peek(&self, generation: u64, attrs: &Attributes<'_>) -> Option<Answer> {
        self.cache.get(&Lookup(generation, *attrs))
    }

    /// Counts `n` answers taken from the cache.
    pub fn count_hits(&self, n: usize) {
        self.metrics.cache_hits(n as u64);
    }

    /// Whether `creator` (of the record of `generation`) may do `attrs`: from the cache, or
    /// by asking kube-apiserver.
    pub async fn allowed(
        &self,
        generation: u64,
        attrs: &Attributes<'_>,
        creator: &Creator,
    ) -> Result<Answer, CreatorError> {
        if let Some(hit) = self.cached(generation, attrs) {
            return Ok(hit);
        }
        let client = self.client.clone().ok_or(CreatorError::NoCluster)?;
        let sar = review_for(creator, attrs);
        let api: kube::Api<SubjectAccessReview> = kube::Api::all(client);
        let start = Instant::now();
        let params = PostParams::default();
        let sent = tokio::time::timeout(self.timeout, api.create(&params, &sar));
        let result = match sent.await {
            Err(_) => Err(CreatorError::Timeout(self.timeout)),
            Ok(Err(error)) => Err(CreatorError::Api { error }),
            Ok(Ok(done)) => Ok(done.status.unwrap_or_default()),
        };
        self.metrics
            .sar(result.is_ok(), start.elapsed().as_secs_f64());
        let status = result?;
        let answer = Answer {
            allowed: status.allowed && status.denied != Some(true),
            reason: status.reason.unwrap_or_default().into(),
        };
        self.cache
            .insert(CacheKey::new(generation, attrs), answer.clone());
        Ok(answer)
    }

    /// Entries in the cache (approximate: moka counts lazily).
    pub fn cached_len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }
}

/// The SubjectAccessReview that asks whether `creator` may do `attrs`.
pub fn review_for(creator: &Creator, attrs: &Attributes<'_>) -> SubjectAccessReview {
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let (resource_attributes, non_resource_attributes) = match attrs {
        Attributes::Resource { verb, res } => (
            Some(ResourceAttributes {
                namespace: some(res.namespace),
                verb: some(verb),
                group: some(res.group),
                version: some(res.version),
                resource: some(res.resource),
                subresource: some(res.subresource),
                name: some(res.name),
                ..ResourceAttributes::default()
            }),
            None,
        ),
        Attributes::NonResource { verb, path } => (
            None,
            Some(NonResourceAttributes {
                path: some(path),
                verb: some(verb),
            }),
        ),
    };
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(creator.username.clone()),
            groups: (!creator.groups.is_empty()).then(|| creator.groups.clone()),
            extra: (!creator.extra.is_empty()).then(|| creator.extra.clone()),
            resource_attributes,
            non_resource_attributes,
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    }
}
