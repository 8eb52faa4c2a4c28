//! Which events are logged: the `--log` directives (or `RUST_LOG`), in `EnvFilter` syntax.
//!
//! `EnvFilter` takes a process-wide read lock on every span enter and exit, to keep the span
//! levels its span directives (`target[span{field=value}]=level`) need. keygate enters the
//! `conn` span on every poll of an HTTP/1.1 connection, so with two worker threads that lock's
//! cache line moves between cores several times per request. Directives that name only targets
//! and levels need none of it: they are served by `Targets`, which holds the same static
//! directive set `EnvFilter` uses for them and keeps no per-span state. Measured over TLS
//! (BENCHMARKS.md, "Session of 2026-12-02, 06:10–09:00 UTC"): HTTP/1.1 `/authenticate`, which
//! nothing else in that change touched, went from 17.25 to 16.25 µs of server CPU per request.
//!
//! Anything with a `[` or `{` (a span or field directive) keeps `EnvFilter`, as does a list
//! `Targets` would read differently (an empty directive, which `EnvFilter` skips and `Targets`
//! reads as "every target", or white space).

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{ParseError, Targets};
use tracing_subscriber::registry::LookupSpan;

/// A parsed filter.
#[derive(Debug)]
pub struct LogFilter(Kind);

#[derive(Debug)]
enum Kind {
    Static(Box<Targets>),
    Dynamic(Box<EnvFilter>),
}

impl LogFilter {
    /// `directives` as `EnvFilter` reads them (an error is `EnvFilter`'s).
    pub fn parse(directives: &str) -> Result<LogFilter, ParseError> {
        let env = EnvFilter::try_new(directives)?;
        let plain = directives
            .split(',')
            .all(|d| !d.is_empty() && !d.contains(['[', '{']) && !d.contains(char::is_whitespace));
        Ok(LogFilter(match directives.parse::<Targets>() {
            Ok(targets) if plain => Kind::Static(Box::new(targets)),
            _ => Kind::Dynamic(Box::new(env)),
        }))
    }

    /// Whether span directives are in play (the filter tracks spans).
    pub fn tracks_spans(&self) -> bool {
        matches!(self.0, Kind::Dynamic(_))
    }

    /// As a global filter layer.
    pub(crate) fn layer<S>(self) -> Box<dyn Layer<S> + Send + Sync>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        match self.0 {
            Kind::Static(t) => t,
            Kind::Dynamic(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::tests::Sink;
    use tracing_subscriber::layer::SubscriberExt;

    /// Which of a fixed set of events and spans' events `filter` lets through.
    fn passed(filter: Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>) -> String {
        let sink = Sink::default();
        let fmt = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .without_time()
            .with_writer({
                let sink = sink.clone();
                move || sink.clone()
            });
        let sub = tracing_subscriber::registry().with(filter).with(fmt);
        tracing::subscriber::with_default(sub, || {
            tracing::trace!(target: "keygate::http", "1");
            tracing::debug!(target: "keygate::http", "2");
            tracing::info!(target: "keygate::http::webhook", "3");
            tracing::warn!(target: "hyper::proto", "4");
            tracing::info!(target: "hyper", "5");
            tracing::error!(target: "kube_runtime", "6");
            tracing::info!(target: "keygate", user = "a", "7");
            let span = tracing::info_span!(target: "keygate::http", "conn", peer = "p");
            let _in = span.enter();
            tracing::debug!(target: "keygate::index", "8");
            tracing::info!(target: "keygate::http::webhook", "9");
        });
        String::from_utf8(sink.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn static_directives_filter_as_env_filter_does() {
        for d in [
            "info",
            "warn",
            "debug",
            "off",
            "keygate=debug",
            "info,hyper=warn",
            "warn,keygate::http=trace,kube_runtime=off",
            "keygate",
            "keygate[{user}]=info",
        ] {
            let ours = LogFilter::parse(d).unwrap();
            assert_eq!(ours.tracks_spans(), d.contains('['), "{d}");
            let want = passed(Box::new(EnvFilter::new(d)));
            assert_eq!(passed(ours.layer()), want, "{d}");
        }
    }

    #[test]
    fn span_directives_keep_env_filter() {
        for d in [
            "keygate[conn]=debug",
            "info,[conn{peer=p}]=trace",
            "info,,warn",
        ] {
            let ours = LogFilter::parse(d).unwrap();
            assert!(ours.tracks_spans(), "{d}");
            assert_eq!(passed(ours.layer()), passed(Box::new(EnvFilter::new(d))));
        }
        // Refused exactly when EnvFilter refuses.
        for d in ["keygate=loud", "a=b=c", "[{", "", "info,"] {
            assert_eq!(
                LogFilter::parse(d).is_err(),
                EnvFilter::try_new(d).is_err(),
                "{d:?}"
            );
        }
    }
}
