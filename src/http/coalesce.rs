//! The TLS stream as hyper sees it: a transport without vectored writes, so that the answers
//! of many concurrent HTTP/2 streams leave in one TLS write instead of one write each.
//!
//! h2 (hyper's HTTP/2) buffers frames until it flushes, except that over a transport that
//! takes vectored writes it keeps a DATA frame of 256 bytes or more aside, by reference, to
//! send it with `writev` instead of copying it, and must flush before it can take the next
//! frame. tokio-rustls says it takes vectored writes, and each of its writes encrypts what it
//! is given and sends it at once: so every answer (a TokenReview for a key is ~400 bytes) cost
//! one TLS record and one `writev` syscall of its own, whatever the number of answers ready at
//! that moment. Counted with `perf stat -e 'syscalls:sys_enter_*'` over 60 000 reviews on one
//! HTTP/2 connection with 250 streams: 52 247 `writev`s (the bare hyper + tokio-rustls floor:
//! 59 155). Copying a payload into h2's buffer saves nothing under TLS, which copies it again
//! to encrypt it. Without vectored writes h2 copies payloads under 1 KiB into its 16 KiB
//! buffer and flushes once per turn of the connection, so the answers ready together go out
//! together, without waiting for anything more. Measured (BENCHMARKS.md, "Session of
//! 2026-12-02, 15:25–17:40 UTC"): HTTP/2 `/authenticate` from 0.77 to 1.00 × the bare floor's
//! requests per second (24 alternating rounds), server CPU per request 14.3 → 11.4 µs, 5 700
//! fewer instructions per request in user space and 56 % fewer `writev`s.
//!
//! HTTP/1.1 answers one request at a time, in one write either way; without vectored writes
//! hyper copies the answer's body behind its head instead of queuing both (~540 instructions
//! fewer per request, measured the same way).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `I` with vectored writes hidden (see the module doc); everything else passes through.
pub struct Coalesced<I>(pub I);

impl<I: AsyncRead + Unpin> AsyncRead for Coalesced<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

/// `poll_write_vectored` and `is_write_vectored` keep tokio's defaults: one buffer at a time,
/// and `false`, which is what makes h2 and hyper copy small payloads into their buffers.
impl<I: AsyncWrite + Unpin> AsyncWrite for Coalesced<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
