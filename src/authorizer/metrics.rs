//! The authorizer's metrics, registered with keygate's others (prefix `keygate_authorize_`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    result: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug)]
pub struct AuthzMetrics {
    decisions: Family<DecisionLabels, Counter>,
    duration: Histogram,
    sars: Family<ResultLabels, Counter>,
    sar_duration: Histogram,
    cache_hits: Counter,
    cache_misses: Counter,
    /// The most frequent decisions, resolved once (the others are looked up).
    no_key: Counter,
    not_ready: Counter,
    allowed: Counter,
}

/// Buckets from 1 µs to about 4 s, doubling: a cached decision and a slow SAR both fit.
fn buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(1e-6, 2.0, 23)
}

impl AuthzMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "authorize_decisions",
            "SubjectAccessReview answers by result (allowed, denied, no_opinion) and reason",
            decisions.clone(),
        );
        let duration = Histogram::new(buckets());
        registry.register(
            "authorize_duration_seconds",
            "Time to decide one SubjectAccessReview, SubjectAccessReviews for creators included",
            duration.clone(),
        );
        let sars = Family::<ResultLabels, Counter>::default();
        registry.register(
            "authorize_creator_reviews",
            "SubjectAccessReviews sent to kube-apiserver for key creators, by result (ok, error)",
            sars.clone(),
        );
        let sar_duration = Histogram::new(buckets());
        registry.register(
            "authorize_creator_review_duration_seconds",
            "Time kube-apiserver took to answer a SubjectAccessReview for a key creator",
            sar_duration.clone(),
        );
        let cache_hits = Counter::default();
        registry.register(
            "authorize_cache_hits",
            "Creator answers found in the cache",
            cache_hits.clone(),
        );
        let cache_misses = Counter::default();
        registry.register(
            "authorize_cache_misses",
            "Creator answers not in the cache",
            cache_misses.clone(),
        );
        // The commonest answers get their counters once, not a labelled lookup each time.
        let resolve = |result, reason: super::Reason| {
            decisions
                .get_or_create(&DecisionLabels {
                    result,
                    reason: reason.as_str(),
                })
                .clone()
        };
        AuthzMetrics {
            no_key: resolve("no_opinion", super::Reason::NotAKey),
            not_ready: resolve("no_opinion", super::Reason::NotReady),
            allowed: resolve("allowed", super::Reason::CreatorAllowed),
            decisions,
            duration,
            sars,
            sar_duration,
            cache_hits,
            cache_misses,
        }
    }

    pub fn decision(&self, result: &'static str, reason: super::Reason, seconds: f64) {
        match (result, reason) {
            ("no_opinion", super::Reason::NotAKey) => self.no_key.inc(),
            ("no_opinion", super::Reason::NotReady) => self.not_ready.inc(),
            ("allowed", super::Reason::CreatorAllowed) => self.allowed.inc(),
            _ => self
                .decisions
                .get_or_create(&DecisionLabels {
                    result,
                    reason: reason.as_str(),
                })
                .inc(),
        };
        self.duration.observe(seconds);
    }

    pub fn sar(&self, ok: bool, seconds: f64) {
        let result = if ok { "ok" } else { "error" };
        self.sars.get_or_create(&ResultLabels { result }).inc();
        self.sar_duration.observe(seconds);
    }

    pub fn cache(&self, hit: bool) {
        if hit {
            self.cache_hits.inc();
        } else {
            self.cache_misses.inc();
        }
    }

    /// `n` answers taken from the cache at once (one add, not `n`).
    pub fn cache_hits(&self, n: u64) {
        self.cache_hits.inc_by(n);
    }

    /// Creators' answers found in the cache and not found, so far.
    pub fn cache_counts(&self) -> (u64, u64) {
        (self.cache_hits.get(), self.cache_misses.get())
    }

    /// SubjectAccessReviews sent so far (ok and error).
    pub fn sars_sent(&self) -> u64 {
        ["ok", "error"]
            .into_iter()
            .map(|result| self.sars.get_or_create(&ResultLabels { result }).get())
            .sum()
    }
}
