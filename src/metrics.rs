//! Prometheus metrics (prometheus-client), served as text on the admin listener.
//!
//! Per-decision counters are resolved once at start (one handle per reason), so the hot path
//! increments an atomic instead of looking up a label set.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::authorizer::metrics::AuthzMetrics;
use crate::http::MemoryBudget;
use crate::index::Index;
use crate::readthrough::ReadStats;
use crate::review::Reason;
use crate::usage::UsageStats;

/// Encodes counters read at scrape time: (name, help, value).
fn encode_counters(
    encoder: &mut DescriptorEncoder,
    counters: &[(&str, &str, &AtomicU64)],
) -> Result<(), std::fmt::Error> {
    for (name, help, value) in counters {
        let counter = ConstCounter::new(value.load(Ordering::Relaxed));
        let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
        counter.encode(metric)?;
    }
    Ok(())
}

/// Reads the last-use writer's counters at scrape time, once `serve` has started that writer.
#[derive(Debug, Default)]
struct UsageCollector(Arc<OnceLock<Arc<UsageStats>>>);

impl Collector for UsageCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stats) = self.0.get() else {
            return Ok(());
        };
        let counters = [
            (
                "last_used_writes",
                "Last-use times written (the key's Lease, or the record file in the dir store)",
                &stats.written,
            ),
            (
                "last_used_write_failures",
                "Last-use writes that failed (authentication unaffected)",
                &stats.failed,
            ),
            (
                "last_used_dropped",
                "Last-use events dropped because the writer's queue was full",
                &stats.dropped,
            ),
        ];
        encode_counters(&mut encoder, &counters)
    }
}

/// Reads the read-through's counters at scrape time, once `serve` has made one (kube store).
#[derive(Debug, Default)]
struct ReadCollector(Arc<OnceLock<Arc<ReadStats>>>);

impl Collector for ReadCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stats) = self.0.get() else {
            return Ok(());
        };
        let counters = [
            (
                "read_through_hits",
                "Direct record reads that found a usable key",
                &stats.hits,
            ),
            (
                "read_through_misses",
                "Direct record reads that found no record, a refused one, or another secret",
                &stats.misses,
            ),
            (
                "read_through_limited",
                "Direct record reads not made: over --read-through-per-second or too many in flight",
                &stats.limited,
            ),
            (
                "read_through_negative_cache_hits",
                "Direct record reads not made: the negative cache knew the answer",
                &stats.cached,
            ),
            (
                "read_through_failures",
                "Direct record reads that failed or timed out",
                &stats.failed,
            ),
        ];
        encode_counters(&mut encoder, &counters)
    }
}

/// Reads the log writer's dropped-line count at scrape time (the writer is process-wide).
#[derive(Debug)]
struct LogCollector;

impl Collector for LogCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counter = ConstCounter::new(crate::telemetry::lines_dropped());
        let metric = encoder.encode_descriptor(
            "log_lines_dropped",
            "Log lines dropped because the log output (stderr) did not keep up",
            None,
            counter.metric_type(),
        )?;
        counter.encode(metric)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    result: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: u16,
}

pub struct Metrics {
    registry: Registry,
    decisions: Vec<Counter>,
    duration: Histogram,
    http: Family<CodeLabels, Counter>,
    /// `http`'s series for 200, the answer to nearly every request: counted without the
    /// family's lock and label hash.
    http_ok: Counter,
    tls_reloads: Family<ResultLabels, Counter>,
    store_errors: Counter,
    keys_loaded: Gauge,
    keys_invalid: Gauge,
    store_ready: Gauge,
    cache_entries: Gauge,
    last_sync: Gauge,
    stale: Gauge,
    connections: Gauge,
    connections_refused: Counter,
    handshakes_cut: Counter,
    idle_closed: Counter,
    memory_refused: Counter,
    memory_in_use: Gauge,
    memory: OnceLock<Arc<MemoryBudget>>,
    usage: Arc<OnceLock<Arc<UsageStats>>>,
    read_through: Arc<OnceLock<Arc<ReadStats>>>,
    /// The authorization webhook's (`/authorize`).
    pub authz: Arc<AuthzMetrics>,
}

/// Histogram buckets from 1 µs to about 1 s, doubling: fine enough to see a 2 µs review.
fn duration_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(1e-6, 2.0, 21)
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("keygate");
        let decisions_family = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "TokenReview decisions by result and reason",
            decisions_family.clone(),
        );
        let decisions = Reason::ALL
            .iter()
            .map(|r| {
                decisions_family
                    .get_or_create(&DecisionLabels {
                        result: if r.authenticated() {
                            "authenticated"
                        } else {
                            "denied"
                        },
                        reason: r.as_str(),
                    })
                    .clone()
            })
            .collect();
        let duration = Histogram::new(duration_buckets());
        registry.register(
            "review_duration_seconds",
            "Time to decide one TokenReview, from body received to answer encoded",
            duration.clone(),
        );
        let http = Family::<CodeLabels, Counter>::default();
        registry.register(
            "http_responses",
            "Webhook HTTP responses by status code",
            http.clone(),
        );
        let tls_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "tls_reloads",
            "TLS certificate reload attempts by result",
            tls_reloads.clone(),
        );
        let store_errors = Counter::default();
        registry.register(
            "store_errors",
            "Errors reading or watching the key store",
            store_errors.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let keys_loaded = gauge(&mut registry, "keys_loaded", "Usable keys in memory");
        let keys_invalid = gauge(
            &mut registry,
            "keys_invalid",
            "Key records refused when loaded",
        );
        let store_ready = gauge(
            &mut registry,
            "store_ready",
            "1 once the first full load of the store is done",
        );
        let cache_entries = gauge(
            &mut registry,
            "cache_entries",
            "Entries in the in-memory key cache",
        );
        let last_sync = gauge(
            &mut registry,
            "store_last_sync_timestamp_seconds",
            "Unix time of the last change or confirmed sync from the store (staleness)",
        );
        let stale = gauge(
            &mut registry,
            "store_stale_seconds",
            "Seconds since the store last changed or confirmed it is in sync (a healthy kube \
             watch confirms every 15 s; grows while the API server cannot be reached); 0 before \
             the first load",
        );
        let connections = gauge(
            &mut registry,
            "open_connections",
            "Open webhook connections",
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "Connections closed at once because --max-connections was reached",
            connections_refused.clone(),
        );
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let handshakes_cut = counter(
            &mut registry,
            "handshakes_cut",
            "TLS handshakes cut because --max-handshakes were in progress (the oldest of the \
             busiest source goes)",
        );
        let idle_closed = counter(
            &mut registry,
            "idle_connections_closed",
            "HTTP/2 connections shut down after --http2-idle-timeout without an open stream",
        );
        let memory_refused = counter(
            &mut registry,
            "request_memory_refused",
            "Requests answered 503 because the --max-request-memory budget was spent",
        );
        let memory_in_use = gauge(
            &mut registry,
            "request_memory_bytes",
            "Bytes of the --max-request-memory budget held by requests being received",
        );
        let authz = Arc::new(AuthzMetrics::register(&mut registry));
        let usage = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(UsageCollector(usage.clone())));
        let read_through = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(ReadCollector(read_through.clone())));
        registry.register_collector(Box::new(LogCollector));
        let http_ok = http.get_or_create(&CodeLabels { code: 200 }).clone();
        Arc::new(Metrics {
            authz,
            usage,
            read_through,
            registry,
            decisions,
            duration,
            http,
            http_ok,
            tls_reloads,
            store_errors,
            keys_loaded,
            keys_invalid,
            store_ready,
            cache_entries,
            last_sync,
            stale,
            connections,
            connections_refused,
            handshakes_cut,
            idle_closed,
            memory_refused,
            memory_in_use,
            memory: OnceLock::new(),
        })
    }

    /// Exposes the request memory budget's use (set once, by whoever makes the webhook).
    pub fn track_memory(&self, budget: Arc<MemoryBudget>) {
        let _ = self.memory.set(budget);
    }

    pub fn handshake_cut(&self) {
        self.handshakes_cut.inc();
    }

    pub fn idle_connection_closed(&self) {
        self.idle_closed.inc();
    }

    pub fn request_memory_refused(&self) {
        self.memory_refused.inc();
    }

    /// Exposes the last-use writer's counters (set once, by `serve`).
    pub fn track_read_through(&self, stats: Arc<ReadStats>) {
        let _ = self.read_through.set(stats);
    }

    pub fn track_usage(&self, stats: Arc<UsageStats>) {
        let _ = self.usage.set(stats);
    }

    pub fn decision(&self, reason: Reason, seconds: f64) {
        self.decisions[reason.index()].inc();
        self.duration.observe(seconds);
    }

    pub fn http_response(&self, code: u16) {
        if code == 200 {
            self.http_ok.inc();
            return;
        }
        self.http.get_or_create(&CodeLabels { code }).inc();
    }

    pub fn tls_reload(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.tls_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub fn store_error(&self) {
        self.store_errors.inc();
    }

    pub fn connection_opened(&self) {
        self.connections.inc();
    }

    pub fn connection_closed(&self) {
        self.connections.dec();
    }

    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// The text exposition, with store gauges read at scrape time.
    pub fn encode(&self, index: &Index) -> String {
        let entries = index.len();
        let invalid = index.invalid_len();
        self.cache_entries.set(entries as i64);
        self.keys_invalid.set(invalid as i64);
        self.keys_loaded.set(entries.saturating_sub(invalid) as i64);
        self.store_ready.set(i64::from(index.is_ready()));
        let last_sync = index.last_sync();
        self.last_sync.set(last_sync);
        let stale = match last_sync {
            0 => 0,
            t => (jiff::Timestamp::now().as_second() - t).max(0),
        };
        self.stale.set(stale);
        if let Some(m) = self.memory.get() {
            self.memory_in_use.set(m.in_use() as i64);
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentityPolicy;

    #[test]
    fn exposes_decisions_latency_and_store_state() {
        let m = Metrics::new();
        m.decision(Reason::Ok, 3e-6);
        m.decision(Reason::WrongSecret, 1e-5);
        let text = m.encode(&Index::new(IdentityPolicy::default()));
        assert!(
            text.contains(r#"keygate_decisions_total{result="authenticated",reason="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"keygate_decisions_total{result="denied",reason="wrong_secret"} 1"#)
        );
        assert!(
            text.contains("keygate_review_duration_seconds_bucket{le=\"0.000004\"} 1"),
            "{text}"
        );
        assert!(text.contains("keygate_store_ready 0"));
        assert!(text.contains("keygate_store_stale_seconds 0"), "{text}");
        assert!(text.contains("keygate_keys_loaded 0"));
        assert!(text.contains("keygate_log_lines_dropped_total 0"), "{text}");
        assert!(text.ends_with("# EOF\n"));
        assert!(
            !text.contains("last_used"),
            "no usage counters before the writer starts"
        );

        let stats = Arc::new(UsageStats::default());
        stats.failed.fetch_add(2, Ordering::Relaxed);
        m.track_usage(stats);
        let text = m.encode(&Index::new(IdentityPolicy::default()));
        assert!(
            text.contains("keygate_last_used_write_failures_total 2"),
            "{text}"
        );
        assert!(text.contains("keygate_last_used_writes_total 0"), "{text}");
    }

    #[test]
    fn staleness_is_the_age_of_the_last_sync() {
        let m = Metrics::new();
        let index = Index::new(IdentityPolicy::default());
        index.set_ready();
        let text = m.encode(&index);
        let stale: i64 = text
            .lines()
            .find_map(|l| l.strip_prefix("keygate_store_stale_seconds "))
            .unwrap()
            .parse()
            .unwrap();
        assert!((0..=1).contains(&stale), "{text}");
        assert!(text.contains("# HELP keygate_store_stale_seconds"));
    }
}
