//! Request bodies: read within a size limit and a time limit, charged to one memory budget
//! shared by every connection. The webhook and the AccessKey API read theirs here.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, Version};
use http_body_util::BodyExt;
use hyper::body::Body;

/// What a request is charged against the [`MemoryBudget`] besides its headers and body: an
/// allowance for the stream's state in hyper and h2, its task and the handler's future.
pub const REQUEST_OVERHEAD: usize = 4 * 1024;

/// One budget, in bytes, for every request whose body is being received, on all connections
/// together: its headers, its body buffer and [`REQUEST_OVERHEAD`]. A request that cannot get
/// its share is answered `503` with `Retry-After: 1` at once (see [`super::Webhook::handle`]), so what
/// slow or stalled uploads can make the server hold is this budget, whatever the number of
/// connections and streams.
///
/// The budget is one atomic count of free bytes, taken with a compare-and-swap and given back
/// with an add. (It was a `tokio::sync::Semaphore`, used only through `try_acquire_many`:
/// nothing ever waits for memory. But a semaphore's permits are given back under the lock of
/// its waiter list, so every request took that lock, shared by every connection on every
/// worker thread; issue 16, third round, BENCHMARKS.md.) The arithmetic is the semaphore's:
/// a request gets all it asks for or nothing.
pub struct MemoryBudget {
    free: AtomicUsize,
    total: usize,
}

impl MemoryBudget {
    pub fn new(total: usize) -> Arc<Self> {
        let total = total.min(tokio::sync::Semaphore::MAX_PERMITS);
        Arc::new(MemoryBudget {
            free: AtomicUsize::new(total),
            total,
        })
    }

    /// Bytes held by requests right now.
    pub fn in_use(&self) -> usize {
        self.total - self.free.load(Ordering::Relaxed)
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// `bytes` of the budget, or `None` when fewer are free (or more than a semaphore could
    /// grant at once, `u32::MAX`, as before).
    fn take(&self, bytes: usize) -> Option<Held<'_>> {
        u32::try_from(bytes).ok()?;
        self.free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |free| {
                free.checked_sub(bytes)
            })
            .ok()?;
        Some(Held {
            budget: self,
            bytes,
        })
    }
}

/// Bytes taken from a [`MemoryBudget`], given back when dropped.
pub(crate) struct Held<'m> {
    budget: &'m MemoryBudget,
    bytes: usize,
}

impl<'m> Held<'m> {
    /// Adds `other`'s bytes to these (given back together).
    fn merge(&mut self, mut other: Held<'m>) {
        self.bytes += std::mem::take(&mut other.bytes);
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.free.fetch_add(self.bytes, Ordering::Release);
        }
    }
}

/// Over HTTP/1.1, an oversized body is read on and discarded up to this many bytes before the
/// 413 is sent: closing a connection with unread data makes the kernel reset it, which can
/// destroy the answer before the client reads it. Larger bodies are refused at once.
const DRAIN_MAX: usize = 2 * 1024 * 1024;

/// Why a body was not read; each caller answers it in its own format.
pub(crate) enum BodyError {
    /// Over the size limit (declared or sent).
    TooLarge,
    /// The [`MemoryBudget`] is spent.
    NoMemory,
    /// Not received within the time allowed.
    Timeout,
    Read(Box<dyn std::error::Error + Send + Sync>),
}

/// Reads the body of a request with `headers` and `version`: at most `max` bytes, within
/// `timeout`, its headers, body buffer and [`REQUEST_OVERHEAD`] charged to `memory` while it
/// is received (released once it is read).
///
/// The headers are looked at before the returned future is first polled and not borrowed by
/// it, so a caller can drop them while the body arrives: a stream holding a partial body then
/// does not also hold its (possibly large) headers. The overload test measures this.
pub(crate) fn read<'m, B>(
    headers: &HeaderMap,
    version: Version,
    body: B,
    max: usize,
    memory: &'m MemoryBudget,
    timeout: Duration,
) -> impl Future<Output = Result<Bytes, BodyError>> + 'm
where
    B: Body + 'm,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let admitted = admit(headers, version, max, memory);
    async move {
        let (held, first, limits) = admitted?;
        let mut read = std::pin::pin!(read_body(body, limits, first, memory, held));
        // The timer is made only once the body is found incomplete (the time allowed then
        // starts). Nearly every review's body arrives with its headers, and making a tokio
        // `Sleep`, even one never polled, reads the clock and clones and drops the runtime's
        // handle (a reference count all workers share): about 360 instructions per request
        // (callgrind, `profile_review 5000 --http1`).
        let mut timer = std::pin::pin!(None::<tokio::time::Sleep>);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(done) = read.as_mut().poll(cx) {
                return Poll::Ready(done);
            }
            if timer.is_none() {
                timer.set(Some(tokio::time::sleep(timeout)));
            }
            match timer.as_mut().as_pin_mut() {
                Some(t) => t.poll(cx).map(|()| Err(BodyError::Timeout)),
                None => Poll::Pending,
            }
        })
        .await
    }
}

/// The checks made on the headers alone: the declared length, and the memory for the headers.
fn admit<'m>(
    headers: &HeaderMap,
    version: Version,
    max: usize,
    memory: &'m MemoryBudget,
) -> Result<(Held<'m>, usize, (usize, usize)), BodyError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // HTTP/1.1 only: see `read_body`.
    let drain = version < Version::HTTP_2;
    let drain_max = DRAIN_MAX.max(max);
    if declared.is_some_and(|n| n > max as u64 && (!drain || n > drain_max as u64)) {
        return Err(BodyError::TooLarge);
    }
    // Headers as HPACK counts them (32 bytes of overhead each).
    let header_bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 32)
        .sum();
    let Some(held) = memory.take(REQUEST_OVERHEAD + header_bytes) else {
        return Err(BodyError::NoMemory);
    };
    let first = declared.map_or(1024, |n| n.min(max as u64) as usize);
    Ok((held, first, (max, if drain { drain_max } else { max })))
}

/// Reads a body of at most `max` bytes; keeps reading (and discarding) an oversized one up to
/// `drain_max` so the 413 can be delivered. The buffer starts at `first` bytes and every byte
/// of its capacity is charged to `memory` (added to `held`) before it is allocated.
async fn read_body<B>(
    body: B,
    (max, drain_max): (usize, usize),
    first: usize,
    memory: &MemoryBudget,
    mut held: Held<'_>,
) -> Result<Bytes, BodyError>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = std::pin::pin!(body);
    let mut buf = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.as_mut().frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.into()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.remaining());
        if seen > max {
            if seen > drain_max {
                return Err(BodyError::TooLarge);
            }
            continue;
        }
        if seen > buf.capacity() {
            // Grow by doubling (from `first`), never past `max`, charging the growth first.
            let cap = seen.max(first).max(buf.capacity() * 2).min(max);
            let more = memory
                .take(cap - buf.capacity())
                .ok_or(BodyError::NoMemory)?;
            held.merge(more);
            buf.reserve_exact(cap - buf.len());
        }
        buf.put(data);
    }
    if seen > max {
        return Err(BodyError::TooLarge);
    }
    // `held` is released here: the budget bounds what requests being received hold.
    drop(held);
    Ok(Bytes::from(buf))
}
