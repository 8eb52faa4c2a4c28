//! Logging: `tracing` to standard error (standard output stays clean for `-o json`), as text or
//! JSON, written in batches by a background thread so a slow terminal never delays a review.
//!
//! Lines go into a shared buffer (one short lock per line) and a flusher thread writes the
//! buffer every [`FLUSH_EVERY`], or at once when it passes [`HIGH_WATER`]. A channel to a
//! writer thread (what tracing-appender does) wakes that thread for each line when requests arrive one
//! by one, as kube-apiserver sends them: a context switch per review, measured at ~20 µs of
//! CPU per request here (BENCHMARKS.md, part 4).
//!
//! Logging never blocks the caller. Events are written from tokio's worker threads, on the
//! TokenReview path: if the sink stalls (a full pipe, a stuck terminal, a slow log collector)
//! and a writer waited for room, every review would stall with it, and kube-apiserver would
//! see its authentication webhook hang. So past [`MAX_PENDING`] buffered bytes a line is
//! dropped instead and counted (`keygate_log_lines_dropped_total`); once the sink takes data
//! again, the flusher logs one warning with the number of lines lost. This is the usual choice
//! for a server on the authentication path: losing log lines under a stalled sink is visible
//! (the counter, the warning) and recoverable, a stalled review is neither.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

pub(crate) mod decision_line;
mod filter;

pub use filter::LogFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `key=value` text, one event per line.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Longest a line waits in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Buffered bytes that make the flusher write before its interval is up.
pub const HIGH_WATER: usize = 64 * 1024;
/// Buffered bytes past which new lines are dropped (and counted) rather than buffered. With the
/// buffer being written out, at most twice this is held for logs.
pub const MAX_PENDING: usize = 8 * 1024 * 1024;

struct Shared {
    buf: Mutex<Vec<u8>>,
    /// Signals the flusher (high water, close).
    changed: Condvar,
    closed: AtomicBool,
    /// Lines dropped since the writer was made.
    dropped: AtomicU64,
}

/// The `MakeWriter` handed to the subscriber: appends whole formatted events to the buffer.
#[derive(Clone)]
pub struct BatchWriter(Arc<Shared>);

impl Write for &BatchWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let shared = &self.0;
        let mut buf = shared.buf.lock().unwrap_or_else(PoisonError::into_inner);
        let before = buf.len();
        if before >= MAX_PENDING {
            // See the module doc: never wait for the sink. Reported as a success, since the
            // caller could do nothing better with an error.
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(data.len());
        }
        buf.extend_from_slice(data);
        // Only on crossing the mark: a notify is a syscall, not worth paying per line.
        if before < HIGH_WATER && buf.len() >= HIGH_WATER {
            shared.changed.notify_all();
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl BatchWriter {
    /// Lines dropped because the sink was too slow, since this writer was made.
    pub fn lines_dropped(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }
}

/// The writer [`init`] installed, for the `keygate_log_lines_dropped_total` metric.
static INSTALLED: OnceLock<BatchWriter> = OnceLock::new();

/// Log lines dropped by the installed writer (0 before [`init`]).
pub fn lines_dropped() -> u64 {
    INSTALLED.get().map_or(0, BatchWriter::lines_dropped)
}

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = &'a BatchWriter;
    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

/// Keeps the flusher running; dropping it writes what is buffered and stops the thread.
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Relaxed);
        self.shared.changed.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A batching writer onto `out`, with the guard that owns its flusher thread.
pub fn batch_writer<W: Write + Send + 'static>(mut out: W) -> (BatchWriter, LogGuard) {
    let shared = Arc::new(Shared {
        buf: Mutex::new(Vec::with_capacity(HIGH_WATER)),
        changed: Condvar::new(),
        closed: AtomicBool::new(false),
        dropped: AtomicU64::new(0),
    });
    let s = shared.clone();
    let flusher = move || {
        let mut spare = Vec::with_capacity(HIGH_WATER);
        // Dropped lines already reported.
        let mut reported = 0;
        loop {
            let closed = {
                let buf = s.buf.lock().unwrap_or_else(PoisonError::into_inner);
                let (mut buf, _) = s
                    .changed
                    .wait_timeout_while(buf, FLUSH_EVERY, |b| {
                        b.len() < HIGH_WATER && !s.closed.load(Ordering::Relaxed)
                    })
                    .unwrap_or_else(PoisonError::into_inner);
                std::mem::swap(&mut *buf, &mut spare);
                s.closed.load(Ordering::Relaxed)
            };
            if !spare.is_empty() {
                // Nowhere to report a failing stderr; the lines are lost either way.
                let written = out.write_all(&spare).and_then(|()| out.flush()).is_ok();
                spare.clear();
                let dropped = s.dropped.load(Ordering::Relaxed);
                if written && dropped > reported {
                    // The sink takes data again: say what it missed. This goes through the
                    // subscriber (so in the configured format) into the buffer, which was just
                    // emptied, and is written at the next flush.
                    tracing::warn!(
                        dropped = dropped - reported,
                        total = dropped,
                        "log lines dropped: the log output (stderr) did not keep up"
                    );
                    reported = dropped;
                }
            }
            // `closed` was read under the lock after the swap, so nothing written before the
            // guard dropped is left behind.
            if closed {
                let rest =
                    std::mem::take(&mut *s.buf.lock().unwrap_or_else(PoisonError::into_inner));
                let _ = out.write_all(&rest).and_then(|()| out.flush());
                return;
            }
        }
    };
    let thread = std::thread::Builder::new()
        .name("keygate-log".into())
        .spawn(flusher)
        .ok();
    (BatchWriter(shared.clone()), LogGuard { shared, thread })
}

/// Installs the global subscriber. Keep the guard alive until exit so buffered lines are flushed.
///
/// `RUST_LOG`, when set and valid, wins over `directives` (`--log`); when neither parses,
/// `info`.
pub fn init(format: LogFormat, directives: &str) -> LogGuard {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| LogFilter::parse(&f).ok())
        .or_else(|| LogFilter::parse(directives).ok())
        .unwrap_or_else(|| LogFilter::parse("info").expect("a level is a directive"));
    let (writer, guard) = batch_writer(std::io::stderr());
    // Only the first writer is counted; `init` is called once per process.
    let _ = INSTALLED.set(writer.clone());
    use tracing_subscriber::util::SubscriberInitExt;
    subscriber(format, filter, writer).init();
    guard
}

/// The subscriber [`init`] installs, writing to `writer`: tracing-subscriber's text (no
/// colours) or flattened JSON format, with the decision line written by
/// [`decision_line::DecisionLines`]. Public for the benchmarks, which write to a sink.
pub fn subscriber<W>(format: LogFormat, filter: LogFilter, writer: W) -> tracing::Dispatch
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    use decision_line::DecisionLines;
    use tracing_subscriber::fmt::format::Format;
    use tracing_subscriber::layer::SubscriberExt;
    // The layers tracing-subscriber's `fmt()` builder stacks, with our filter and formatter.
    let registry = tracing_subscriber::registry().with(filter.layer());
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Json => {
            let json = Format::default()
                .json()
                .flatten_event(true)
                .with_current_span(true);
            let layer = layer.json().event_format(DecisionLines::new(json, format));
            tracing::Dispatch::new(registry.with(layer))
        }
        LogFormat::Text => {
            let layer = layer
                .with_ansi(false)
                .event_format(DecisionLines::new(Format::default(), format));
            tracing::Dispatch::new(registry.with(layer))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything written, kept (also used by `decision_line`'s tests).
    #[derive(Clone, Default)]
    pub(super) struct Sink(pub(super) Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, d: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(d);
            Ok(d.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_arrives_in_order_by_the_interval_and_on_drop() {
        let sink = Sink::default();
        let (w, guard) = batch_writer(sink.clone());
        (&w).write_all(b"one\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sink.0.lock().unwrap().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "not flushed by the interval"
            );
            std::thread::yield_now();
        }
        (&w).write_all(b"two\n").unwrap();
        drop(guard);
        assert_eq!(&*sink.0.lock().unwrap(), b"one\ntwo\n");
    }

    /// A sink that takes nothing until it is opened, as a full pipe nobody reads.
    #[derive(Clone, Default)]
    struct Stalled {
        open: Arc<(Mutex<bool>, Condvar)>,
        sink: Sink,
    }
    impl Stalled {
        fn open(&self) {
            *self.open.0.lock().unwrap() = true;
            self.open.1.notify_all();
        }
    }
    impl Write for Stalled {
        fn write(&mut self, d: &[u8]) -> std::io::Result<usize> {
            let mut open = self.open.0.lock().unwrap();
            while !*open {
                open = self.open.1.wait(open).unwrap();
            }
            self.sink.write(d)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_sink_never_blocks_writers_and_dropped_lines_are_counted() {
        let stalled = Stalled::default();
        let (w, guard) = batch_writer(stalled.clone());
        let mut line = vec![b'x'; 1024];
        line[1023] = b'\n';
        let lines_each = 2 * MAX_PENDING / 1024;
        // Writers on threads: with a waiting writer they would never finish, and the receive
        // below would fail instead of hanging the test.
        let (done, finished) = std::sync::mpsc::channel();
        for _ in 0..4 {
            let (w, line, done) = (w.clone(), line.clone(), done.clone());
            std::thread::spawn(move || {
                for _ in 0..lines_each {
                    (&w).write_all(&line).unwrap();
                }
                done.send(()).unwrap();
            });
        }
        for _ in 0..4 {
            finished
                .recv_timeout(Duration::from_secs(60))
                .expect("a writer waited for a stalled sink");
        }
        let total = (4 * lines_each) as u64;
        let dropped = w.lines_dropped();
        // At most MAX_PENDING in the buffer plus what the flusher took before it stalled.
        assert!(
            dropped >= total - (2 * MAX_PENDING / 1024) as u64 - 2,
            "{dropped}"
        );
        stalled.open();
        drop(guard);
        let out = stalled.sink.0.lock().unwrap();
        assert_eq!(out.len() as u64, (total - dropped) * 1024);
        assert!(
            out.chunks(1024)
                .all(|c| c.len() == 1024 && c[1023] == b'\n'),
            "a line was cut"
        );
    }
}
