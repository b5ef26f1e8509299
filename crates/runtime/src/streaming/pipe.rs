//! Byte-stream ends over channels, shared by both transports.
//!
//! Each transport has one reader task that demultiplexes incoming frames into per-stream
//! [`ChanReader`]s and one writer task that owns the socket's write half and drains a single
//! queue fed by [`ChanWriter`]s. One queue keeps frames in the order they were written, so a
//! connection teardown queued after a stream's last write can never overtake it.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

/// Largest payload put into one frame or message; keeps one busy stream from holding the
/// connection's writer for long.
pub(crate) const MAX_CHUNK: usize = 32 * 1024;

/// Reads what a transport's reader task delivers; end-of-file when the sender is dropped
/// (the peer half-closed, reset the stream, or the connection ended).
pub(crate) struct ChanReader {
    rx: mpsc::Receiver<Bytes>,
    buf: Bytes,
}

impl ChanReader {
    pub(crate) fn new(rx: mpsc::Receiver<Bytes>) -> Self {
        ChanReader {
            rx,
            buf: Bytes::new(),
        }
    }
}

impl AsyncRead for ChanReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.buf.is_empty() {
            match ready!(this.rx.poll_recv(cx)) {
                Some(chunk) => this.buf = chunk,
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = this.buf.len().min(out.remaining());
        out.put_slice(&this.buf[..n]);
        this.buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

/// Turns written bytes (`Some`) or a shutdown (`None`) into the transport's queue message;
/// `None` back means a shutdown has nothing to send.
pub(crate) type Framer<T> = Arc<dyn Fn(Option<Bytes>) -> Option<T> + Send + Sync>;

/// Writes into a transport's writer queue.
pub(crate) struct ChanWriter<T: Send + 'static> {
    tx: PollSender<T>,
    frame: Framer<T>,
    /// Set by the reader task when the peer resets this stream: writes then fail instead of
    /// queueing data nobody will read.
    reset: Option<Arc<AtomicBool>>,
    shut: bool,
}

impl<T: Send + 'static> ChanWriter<T> {
    pub(crate) fn new(
        tx: mpsc::Sender<T>,
        frame: Framer<T>,
        reset: Option<Arc<AtomicBool>>,
    ) -> Self {
        ChanWriter {
            tx: PollSender::new(tx),
            frame,
            reset,
            shut: false,
        }
    }

    fn is_reset(&self) -> bool {
        self.reset
            .as_ref()
            .is_some_and(|r| r.load(Ordering::Acquire))
    }
}

fn broken() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "stream closed by the peer")
}

impl<T: Send + 'static> AsyncWrite for ChanWriter<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.shut || this.is_reset() {
            return Poll::Ready(Err(broken()));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(this.tx.poll_reserve(cx)).map_err(|_| broken())?;
        let n = buf.len().min(MAX_CHUNK);
        let Some(msg) = (this.frame)(Some(Bytes::copy_from_slice(&buf[..n]))) else {
            return Poll::Ready(Err(broken()));
        };
        this.tx.send_item(msg).map_err(|_| broken())?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Queued frames are written in order by the writer task; there is nothing to wait for
        // that would make a difference to the caller.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.shut {
            return Poll::Ready(Ok(()));
        }
        if let Some(msg) = (this.frame)(None) {
            if ready!(this.tx.poll_reserve(cx)).is_ok() {
                let _ = this.tx.send_item(msg);
            }
        }
        this.shut = true;
        this.tx.close();
        Poll::Ready(Ok(()))
    }
}
