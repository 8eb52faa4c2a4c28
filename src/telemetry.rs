//! Logging: `tracing` to standard error (standard output stays clean for `-o json`), as text or
//! JSON, written in batches by a background thread so a slow terminal never delays a review.
//!
//! Lines go into a shared buffer (one short lock per line) and a flusher thread writes the
//! buffer every [`FLUSH_EVERY`], or at once when it passes [`HIGH_WATER`]. A channel to a
//! writer thread (what tracing-appender does) wakes that thread for each line when requests arrive one
//! by one, as kube-apiserver sends them: a context switch per review, measured at ~20 µs of
//! CPU per request here (BENCHMARKS.md, part 4). No line is ever dropped: past [`MAX_PENDING`]
//! the logging thread waits for the flusher, as a blocking writer would.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

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
/// Buffered bytes past which logging threads wait for the flusher (backpressure).
pub const MAX_PENDING: usize = 8 * 1024 * 1024;

struct Shared {
    buf: Mutex<Vec<u8>>,
    /// Signals the flusher (high water, close) and waiting writers (space freed).
    changed: Condvar,
    closed: AtomicBool,
}

/// The `MakeWriter` handed to the subscriber: appends whole formatted events to the buffer.
#[derive(Clone)]
pub struct BatchWriter(Arc<Shared>);

impl Write for &BatchWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let shared = &self.0;
        let mut buf = shared.buf.lock().unwrap_or_else(PoisonError::into_inner);
        while buf.len() >= MAX_PENDING && !shared.closed.load(Ordering::Relaxed) {
            buf = shared
                .changed
                .wait(buf)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let before = buf.len();
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
    });
    let s = shared.clone();
    let flusher = move || {
        let mut spare = Vec::with_capacity(HIGH_WATER);
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
                // Writers may be waiting for room: there is now.
                s.changed.notify_all();
                // Nowhere to report a failing stderr; the lines are lost either way.
                let _ = out.write_all(&spare).and_then(|()| out.flush());
                spare.clear();
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
pub fn init(format: LogFormat, filter: &str) -> LogGuard {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_new(filter).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let (writer, guard) = batch_writer(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        LogFormat::Text => builder.with_ansi(false).init(),
    }
    guard
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
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

    #[test]
    fn many_writers_past_the_backpressure_mark_lose_nothing() {
        let sink = Sink::default();
        let (w, guard) = batch_writer(sink.clone());
        let mut line = vec![b'x'; 1024];
        line[1023] = b'\n';
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..(MAX_PENDING / 1024) {
                        (&w).write_all(&line).unwrap();
                    }
                });
            }
        });
        drop(guard);
        let out = sink.0.lock().unwrap();
        assert_eq!(out.len(), 4 * MAX_PENDING);
        assert!(
            out.chunks(1024)
                .all(|c| c.len() == 1024 && c[1023] == b'\n')
        );
    }
}
