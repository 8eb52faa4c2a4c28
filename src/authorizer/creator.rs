//! Asking kube-apiserver whether a key's creator may do something now: a SubjectAccessReview
//! as the creator, sent with keygate's own client, with a timeout, its answers cached briefly.
//!
//! The cache is keyed by the generation of the record that names the creator (a number every
//! load of such a record gets anew, see [`crate::index::Grant`]) and the request's attributes:
//! the generation stands for the creator's identity, and a changed, re-created or reloaded
//! record starts from an empty slate while its old entries age out. Only answers are cached;
//! an error is not, so the next request asks again. Nothing here runs for a TokenReview.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;

use super::metrics::AuthzMetrics;
use super::scope::Attributes;
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

/// The generation of the record naming the creator, and the request (shared, so a lookup
/// copies a pointer, not the strings).
pub type CacheKey = (u64, Arc<Attributes>);

/// The client and cache for creators' SubjectAccessReviews.
pub struct Creators {
    client: Option<kube::Client>,
    cache: moka::sync::Cache<CacheKey, Answer>,
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
                .build(),
            timeout,
            metrics,
        }
    }

    /// Whether a cluster is there to ask.
    pub fn has_cluster(&self) -> bool {
        self.client.is_some()
    }

    /// The cached answer for `key`, if any.
    pub fn cached(&self, key: &CacheKey) -> Option<Answer> {
        let hit = self.cache.get(key);
        self.metrics.cache(hit.is_some());
        hit
    }

    /// Whether `creator` (of the record whose generation is in `key`) may do what `key` says:
    /// from the cache, or by asking kube-apiserver.
    pub async fn allowed(&self, key: CacheKey, creator: &Creator) -> Result<Answer, CreatorError> {
        if let Some(hit) = self.cached(&key) {
            return Ok(hit);
        }
        let client = self.client.clone().ok_or(CreatorError::NoCluster)?;
        let sar = review_for(creator, &key.1);
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
        self.cache.insert(key, answer.clone());
        Ok(answer)
    }

    /// Entries in the cache (approximate: moka counts lazily).
    pub fn cached_len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }
}

/// The SubjectAccessReview that asks whether `creator` may do `attrs`.
pub fn review_for(creator: &Creator, attrs: &Attributes) -> SubjectAccessReview {
    let some = |s: &String| (!s.is_empty()).then(|| s.clone());
    let (resource_attributes, non_resource_attributes) = match attrs {
        Attributes::Resource { verb, res } => (
            Some(ResourceAttributes {
                namespace: some(&res.namespace),
                verb: some(verb),
                group: some(&res.group),
                version: some(&res.version),
                resource: some(&res.resource),
                subresource: some(&res.subresource),
                name: some(&res.name),
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
