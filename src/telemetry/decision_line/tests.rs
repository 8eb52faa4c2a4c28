use std::net::SocketAddr;
use std::time::Duration;

use tracing_subscriber::EnvFilter;

use super::*;
use crate::telemetry::tests::Sink;
use crate::telemetry::{LogFilter, subscriber};

/// The lines a sink received.
fn lines(sink: &Sink) -> Vec<String> {
    let bytes = sink.0.lock().unwrap().clone();
    String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The subscriber as `telemetry::init` built it before this module: tracing-subscriber's own
/// formatters, nothing of ours.
fn stock(format: LogFormat, sink: Sink) -> tracing::Dispatch {
    let b = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("info"))
        .with_writer(move || sink.clone());
    match format {
        LogFormat::Json => tracing::Dispatch::new(
            b.json()
                .flatten_event(true)
                .with_current_span(true)
                .finish(),
        ),
        LogFormat::Text => tracing::Dispatch::new(b.with_ansi(false).finish()),
    }
}

/// The decision event as `http::webhook` logs it (same target, fields, order and kinds).
fn decision(key_id: &str, username: &str, result: &str, reason: &str, peer: SocketAddr, us: u64) {
    tracing::info!(
        target: "keygate::http::webhook",
        key_id = %key_id,
        %username,
        result = %result,
        reason = %reason,
        peer = %peer,
        duration_us = us,
        "tokenreview"
    );
}

/// Every event of `emit`, under each span nesting the webhook can log in, through `dispatch`.
fn run(dispatch: &tracing::Dispatch, emit: &dyn Fn()) {
    tracing::dispatcher::with_default(dispatch, || {
        emit();
        let peer: SocketAddr = "10.1.2.3:40000".parse().unwrap();
        let conn = tracing::info_span!("conn", peer = %peer);
        conn.in_scope(emit);
        let outer = tracing::info_span!("outer", n = 3, s = "q\"uote");
        outer.in_scope(|| tracing::info_span!("conn", peer = %peer).in_scope(emit));
        tracing::info_span!("bare").in_scope(emit);
    });
}

/// Splits a line into its timestamp and the rest.
fn split_time(format: LogFormat, line: &str) -> (String, String) {
    match format {
        LogFormat::Text => {
            let (t, rest) = line.split_once(' ').unwrap();
            (t.to_owned(), rest.to_owned())
        }
        LogFormat::Json => {
            let start = line.find("\"timestamp\":\"").unwrap() + 13;
            let end = start + line[start..].find('"').unwrap();
            (
                line[start..end].to_owned(),
                format!("{}{}", &line[..start], &line[end..]),
            )
        }
    }
}

#[test]
fn decision_lines_are_byte_for_byte_the_stock_formatters_lines() {
    let v4: SocketAddr = "192.168.10.200:51234".parse().unwrap();
    let v6: SocketAddr = "[fe80::1%2]:443".parse().unwrap();
    let emit = || {
        decision(
            "AbCdEfGhIjKlMnOpQrStUv",
            "keygate:abcdefghijklmnopqrstuv",
            "authenticated",
            "valid",
            v4,
            12,
        );
        decision("", "", "denied", "malformed", v6, 0);
        // A username prefix is configuration: any character, JSON escapes included.
        decision(
            "x",
            "we\"ird\\ \u{1}é\u{85}",
            "denied",
            "unknown-key",
            v4,
            u64::MAX,
        );
        // Other events pass through the wrapped formatter.
        tracing::info!(keys = 3, dir = "d", "key directory loaded");
        tracing::warn!(target: "keygate::http::webhook", x = 1, "tokenreview");
    };
    for format in [LogFormat::Text, LogFormat::Json] {
        let (want, got) = (Sink::default(), Sink::default());
        run(&stock(format, want.clone()), &emit);
        let ours = subscriber(format, LogFilter::parse("info").unwrap(), {
            let got = got.clone();
            move || got.clone()
        });
        run(&ours, &emit);
        let (want, got) = (lines(&want), lines(&got));
        assert_eq!(want.len(), 20, "{format:?}: {want:#?}");
        assert_eq!(want.len(), got.len(), "{format:?}");
        for (w, g) in want.iter().zip(&got) {
            let ((wt, wr), (gt, gr)) = (split_time(format, w), split_time(format, g));
            assert_eq!(wr, gr, "{format:?}");
            assert_eq!(wt.len(), gt.len(), "{format:?}: {wt} vs {gt}");
            let (wt, gt): (jiff::Timestamp, jiff::Timestamp) =
                (wt.parse().unwrap(), gt.parse().unwrap());
            assert!(gt.duration_since(wt).unsigned_abs() < Duration::from_secs(60));
        }
    }
}

#[test]
fn timestamps_are_written_as_the_stock_timer_writes_them() {
    for (secs, nanos) in [
        (0, 0),
        (1_795_000_000, 123_456_789),
        (1_795_000_000, 999_999_999),
        (951_782_400, 1_000),   // 2000-02-29
        (4_102_444_799, 5_000), // 2099-12-31T23:59:59
    ] {
        let d = Duration::new(secs, nanos);
        let mut ours = String::new();
        assert!(write_time(&mut ours, d));
        let ts = jiff::Timestamp::new(secs as i64, (nanos / 1000 * 1000) as i32).unwrap();
        assert_eq!(ours, format!("{ts:.6}"));
    }
    // A cached second is reused for the next micro-second, and replaced the next second.
    let mut s = String::new();
    assert!(write_time(&mut s, Duration::new(1_795_000_000, 1_000)));
    assert!(write_time(&mut s, Duration::new(1_795_000_000, 2_000)));
    assert!(write_time(&mut s, Duration::new(1_795_000_001, 0)));
    assert_eq!(
        s,
        "2026-11-18T11:06:40.000001Z2026-11-18T11:06:40.000002Z2026-11-18T11:06:41.000000Z"
    );
}

/// A wrapped formatter that only says it was asked.
struct Wrapped;

impl<S, N> FormatEvent<S, N> for Wrapped
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        _: &Event<'_>,
    ) -> fmt::Result {
        writeln!(w, "wrapped")
    }
}

/// The byte-for-byte test above would pass with every line from the wrapped formatter; this
/// one fails if the decision event (escapes, spans and all) leaves the fast path.
#[test]
fn decision_events_never_reach_the_wrapped_formatter() {
    use tracing_subscriber::layer::SubscriberExt;
    let v6: SocketAddr = "[fe80::1%2]:443".parse().unwrap();
    let emit = || {
        decision("AbC", "keygate:abc", "authenticated", "valid", v6, 7);
        decision(
            "x",
            "we\"ird\\ \u{1}é\u{85}",
            "denied",
            "unknown-key",
            v6,
            0,
        );
        tracing::info!(target: "keygate::http::webhook", "another event");
    };
    for format in [LogFormat::Text, LogFormat::Json] {
        let sink = Sink::default();
        let layer = tracing_subscriber::fmt::layer().with_writer({
            let sink = sink.clone();
            move || sink.clone()
        });
        let dispatch = match format {
            LogFormat::Text => tracing::Dispatch::new(
                tracing_subscriber::registry().with(
                    layer
                        .with_ansi(false)
                        .event_format(DecisionLines::new(Wrapped, format)),
                ),
            ),
            LogFormat::Json => tracing::Dispatch::new(
                tracing_subscriber::registry().with(
                    layer
                        .json()
                        .event_format(DecisionLines::new(Wrapped, format)),
                ),
            ),
        };
        run(&dispatch, &emit);
        let lines = lines(&sink);
        // Four nestings (`run`), two decisions and one other event in each.
        assert_eq!(lines.len(), 12, "{format:?}: {lines:#?}");
        let wrapped = lines.iter().filter(|l| *l == "wrapped").count();
        assert_eq!(wrapped, 4, "{format:?}: {lines:#?}");
    }
}
