//! HTTP/2 streams served inside their connection's task, not as tasks of their own.
//!
//! hyper hands each stream to an executor; with tokio's, every stream is a task that the
//! scheduler may run on the other worker, and each answer then wakes the connection's task
//! across threads (a `futex` call) to be written. Here the executor only queues the stream,
//! and [`drive`](super::listener) polls the queued streams right after the connection, on the
//! same thread: no task per stream, no wake-up between workers, and every answer ready before
//! the connection's next flush leaves in the same write ([`super::coalesce`]). Measured over
//! TLS (BENCHMARKS.md, "Session of 2026-12-02, 15:25–17:40 UTC"; 12 alternating rounds):
//! HTTP/2 `/authenticate` 1.07 → 1.18 × the bare floor's requests per second, server CPU per
//! review 9.6 → 6.6 µs (the bare floor: 7.9).
//!
//! What it costs: the requests of one connection share one core. The webhook's are short and
//! never block (a review is a few microseconds), and connections still spread over the
//! workers. With one request at a time per connection it costs ~20 % more CPU per request than
//! a task per stream (16 connections × 1 stream, BENCHMARKS.md); why was not found. The
//! AccessKey API's requests, which can be long (a list of many keys), run as tasks of their
//! own ([`super::router`]) so they never hold up their connection. A handler that panics ends
//! its own stream only (reset), as a panicking task would.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures::FutureExt;
use futures::StreamExt;
use futures::future::CatchUnwind;
use futures::stream::FuturesUnordered;

type Stream = Pin<Box<dyn Future<Output = ()> + Send>>;

/// hyper's executor for one connection's streams: it queues them for the connection's task.
#[derive(Clone, Default)]
pub(super) struct Queue(Arc<Mutex<Vec<Stream>>>);

impl<F: Future<Output = ()> + Send + 'static> hyper::rt::Executor<F> for Queue {
    fn execute(&self, stream: F) {
        // Only the connection's task uses the lock: it is never contended.
        let mut queued = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        queued.push(Box::pin(stream));
    }
}

/// The streams of one connection in progress.
#[derive(Default)]
pub(super) struct Running(FuturesUnordered<CatchUnwind<AssertUnwindSafe<Stream>>>);

impl Running {
    /// Takes the streams queued since the last call and polls every stream that can go on.
    /// Returns whether one finished: its answer may be waiting for the connection to write it.
    pub(super) fn poll(&mut self, queue: &Queue, cx: &mut Context<'_>) -> bool {
        {
            let mut queued = queue.0.lock().unwrap_or_else(PoisonError::into_inner);
            self.0
                .extend(queued.drain(..).map(|s| AssertUnwindSafe(s).catch_unwind()));
        }
        let mut finished = false;
        while let Poll::Ready(Some(ended)) = self.0.poll_next_unpin(cx) {
            if ended.is_err() {
                tracing::error!("an HTTP/2 request's handler panicked; its stream was reset");
            }
            finished = true;
        }
        finished
    }
}
