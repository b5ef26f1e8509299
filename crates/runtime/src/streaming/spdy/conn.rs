//! A multiplexed SPDY/3.1 connection, for either end.
//!
//! Two tasks own the socket. The reader decodes frames and routes them: a peer's SYN_STREAM
//! becomes an [`IncomingStream`] (accepted with a SYN_REPLY or refused with RST_STREAM), DATA
//! goes to the stream's bounded inbound queue, PINGs from the peer are echoed, RST_STREAM and
//! FIN end a stream's read side. The writer drains one queue of frames in order and owns the
//! outgoing header-compression context. A full inbound queue stops the reader, which is how a
//! slow consumer pushes back on the peer (there is no SPDY flow control, as in spdystream).
//!
//! Stream states (per side): open → half-closed by a FIN (or the stream's
//! [`tokio::io::AsyncWriteExt::shutdown`]) → closed when both sides are, or at once by
//! RST_STREAM. [`Connection::close`] FINs what is still open, sends GOAWAY and lets the peer
//! hang up first (so nothing in flight is lost to a TCP reset).

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use super::frame::{
    Frame, FrameDecoder, FrameEncoder, FrameError, Headers, FLAG_FIN, FLAG_UNIDIRECTIONAL,
    RST_CANCEL, RST_PROTOCOL_ERROR, RST_REFUSED_STREAM,
};
use crate::streaming::pipe::{ChanReader, ChanWriter, Framer};

/// Which end of the connection this is; it decides stream and ping id parity (clients odd).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("SPDY connection closed")]
    Closed,
    #[error("SPDY stream {0} reset by the peer (status {1})")]
    Reset(u32, u32),
    #[error("SPDY connection: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// Queued for the writer task.
pub(crate) enum Out {
    Frame(Frame),
    /// FIN every stream still open on our side (unless left open), then GOAWAY.
    Finish,
}

/// Inbound DATA frames buffered per stream before the reader task waits for the consumer.
const INBOUND_DEPTH: usize = 16;
/// Frames queued for the writer before writers wait.
const OUTBOUND_DEPTH: usize = 64;
/// Peer-initiated streams waiting to be accepted.
const INCOMING_DEPTH: usize = 16;

struct StreamState {
    /// None once the peer half-closed (or reset) the stream.
    inbound: Option<mpsc::Sender<Bytes>>,
    /// Client side: resolved by the peer's SYN_REPLY.
    reply: Option<oneshot::Sender<Result<Headers, ConnectionError>>>,
    reset: Arc<AtomicBool>,
    local_fin: bool,
    /// Whether [`Connection::close`] FINs this stream (see [`Stream::leave_open_on_close`]).
    fin_on_close: bool,
}

struct Shared {
    role: Role,
    out: mpsc::Sender<Out>,
    streams: Mutex<HashMap<u32, StreamState>>,
    next_id: AtomicU32,
    last_peer_id: AtomicU32,
    /// Bumped on every read and write; the idle timeout looks for it standing still.
    activity: AtomicU64,
    /// Cancelled when the reader task ends: the peer hung up or the connection failed.
    closed: CancellationToken,
    finishing: AtomicBool,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Shared {
    fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<u32, StreamState>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_peer_id(&self, id: u32) -> bool {
        match self.role {
            Role::Server => !id.is_multiple_of(2),
            Role::Client => id.is_multiple_of(2),
        }
    }

    /// The connection is gone: every reader sees end-of-file, every write and pending open
    /// fails.
    fn end(&self) {
        let mut map = self.streams();
        for (_, st) in map.drain() {
            st.reset.store(true, Ordering::Release);
            if let Some(reply) = st.reply {
                let _ = reply.send(Err(ConnectionError::Closed));
            }
        }
        drop(map);
        self.closed.cancel();
    }

    /// Drops a stream once both sides are done with it.
    fn gc(map: &mut HashMap<u32, StreamState>, id: u32) {
        if let Some(st) = map.get(&id) {
            if st.local_fin && st.inbound.is_none() && st.reply.is_none() {
                map.remove(&id);
            }
        }
    }
}

/// Options for a connection.
#[derive(Debug, Clone, Default)]
pub struct ConnectionConfig {
    /// Close the connection after this long without a frame in either direction.
    pub idle_timeout: Option<Duration>,
}

/// A handle on a SPDY connection; cheap to clone.
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
}

/// Streams the peer opens, in order.
pub struct Incoming {
    rx: mpsc::Receiver<IncomingStream>,
}

impl Incoming {
    /// The next stream the peer opened, or `None` once the connection is closed.
    pub async fn next(&mut self) -> Option<IncomingStream> {
        self.rx.recv().await
    }
}

/// A stream the peer opened that has not been answered yet.
pub struct IncomingStream {
    id: u32,
    headers: Headers,
    rx: mpsc::Receiver<Bytes>,
    reset: Arc<AtomicBool>,
    shared: Arc<Shared>,
}

impl IncomingStream {
    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// Answers with SYN_REPLY and returns the stream.
    pub async fn accept(self) -> Result<Stream, ConnectionError> {
        let reply = Frame::SynReply {
            stream_id: self.id,
            flags: 0,
            headers: Headers::new(),
        };
        self.shared
            .out
            .send(Out::Frame(reply))
            .await
            .map_err(|_| ConnectionError::Closed)?;
        Ok(Stream::new(
            self.id,
            self.headers,
            self.rx,
            self.reset,
            self.shared,
        ))
    }

    /// Refuses the stream with RST_STREAM.
    pub async fn reject(self, status: u32) {
        self.shared.streams().remove(&self.id);
        let _ = self
            .shared
            .out
            .send(Out::Frame(Frame::RstStream {
                stream_id: self.id,
                status,
            }))
            .await;
    }
}

/// One bidirectional SPDY stream: read what the peer sends, write (and `shutdown` to FIN).
pub struct Stream {
    id: u32,
    headers: Headers,
    reader: ChanReader,
    writer: ChanWriter<Out>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.id)
            .field("headers", &self.headers)
            .finish()
    }
}

impl Stream {
    fn new(
        id: u32,
        headers: Headers,
        rx: mpsc::Receiver<Bytes>,
        reset: Arc<AtomicBool>,
        shared: Arc<Shared>,
    ) -> Self {
        let framer: Framer<Out> = Arc::new(move |data: Option<Bytes>| {
            Some(Out::Frame(match data {
                Some(data) => Frame::Data {
                    stream_id: id,
                    flags: 0,
                    data,
                },
                None => Frame::Data {
                    stream_id: id,
                    flags: FLAG_FIN,
                    data: Bytes::new(),
                },
            }))
        });
        Stream {
            id,
            headers,
            reader: ChanReader::new(rx),
            writer: ChanWriter::new(shared.out.clone(), framer, Some(reset)),
            shared,
        }
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// Keeps [`Connection::close`] from FINning this stream. For streams only the peer writes
    /// (stdin, resize): the kubelet never closes them, and kubectl treats their end as the
    /// session ending under it, racing its own stdin copy; the connection's end closes them.
    pub fn leave_open_on_close(&self) {
        if let Some(st) = self.shared.streams().get_mut(&self.id) {
            st.fin_on_close = false;
        }
    }

    /// Aborts the stream in both directions (RST_STREAM CANCEL).
    pub async fn reset(self) {
        if let Some(st) = self.shared.streams().remove(&self.id) {
            st.reset.store(true, Ordering::Release);
        }
        let _ = self
            .shared
            .out
            .send(Out::Frame(Frame::RstStream {
                stream_id: self.id,
                status: RST_CANCEL,
            }))
            .await;
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().writer).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_shutdown(cx)
    }
}

impl Connection {
    /// Starts a connection over an already-upgraded byte stream. Must be called within a
    /// tokio runtime: it spawns the reader and writer tasks.
    pub fn new<IO>(io: IO, role: Role, config: ConnectionConfig) -> (Connection, Incoming)
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (out_tx, out_rx) = mpsc::channel(OUTBOUND_DEPTH);
        let (in_tx, in_rx) = mpsc::channel(INCOMING_DEPTH);
        let shared = Arc::new(Shared {
            role,
            out: out_tx,
            streams: Mutex::new(HashMap::new()),
            next_id: AtomicU32::new(if role == Role::Client { 1 } else { 2 }),
            last_peer_id: AtomicU32::new(0),
            activity: AtomicU64::new(0),
            closed: CancellationToken::new(),
            finishing: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
        });
        let (r, w) = tokio::io::split(io);
        let writer = tokio::spawn(write_loop(w, out_rx, shared.clone()));
        let reader = tokio::spawn(read_loop(r, in_tx, shared.clone(), config.idle_timeout));
        shared
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend([writer.abort_handle(), reader.abort_handle()]);
        (Connection { shared }, Incoming { rx: in_rx })
    }

    /// Opens a stream (SYN_STREAM) and waits for the peer's SYN_REPLY.
    pub async fn open_stream(&self, headers: Headers) -> Result<Stream, ConnectionError> {
        let id = self.shared.next_id.fetch_add(2, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(INBOUND_DEPTH);
        let (reply_tx, reply_rx) = oneshot::channel();
        let reset = Arc::new(AtomicBool::new(false));
        self.shared.streams().insert(
            id,
            StreamState {
                inbound: Some(tx),
                reply: Some(reply_tx),
                reset: reset.clone(),
                local_fin: false,
                fin_on_close: true,
            },
        );
        let syn = Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            slot: 0,
            flags: 0,
            headers: headers.clone(),
        };
        self.shared
            .out
            .send(Out::Frame(syn))
            .await
            .map_err(|_| ConnectionError::Closed)?;
        reply_rx.await.map_err(|_| ConnectionError::Closed)??;
        Ok(Stream::new(id, headers, rx, reset, self.shared.clone()))
    }

    /// Sends a PING (ids of our parity; the peer echoes it).
    pub async fn ping(&self, id: u32) -> Result<(), ConnectionError> {
        self.shared
            .out
            .send(Out::Frame(Frame::Ping { id }))
            .await
            .map_err(|_| ConnectionError::Closed)
    }

    /// Resolves when the peer has hung up or the connection failed.
    pub async fn closed(&self) {
        self.shared.closed.cancelled().await
    }

    /// Ends the connection gracefully: queued data first, then FIN on every stream still open
    /// on our side (unless left open), then GOAWAY. Waits up to `linger` for the peer to hang
    /// up, then drops the socket. (The peer, not us, closes first, so nothing in flight is
    /// lost to a TCP reset.)
    pub async fn close(&self, linger: Duration) {
        if !self.shared.finishing.swap(true, Ordering::AcqRel) {
            let _ = self.shared.out.send(Out::Finish).await;
        }
        let _ = tokio::time::timeout(linger, self.shared.closed.cancelled()).await;
        self.abort();
    }

    /// Drops the socket at once.
    pub fn abort(&self) {
        for t in self
            .shared
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.abort();
        }
        // An aborted reader never runs its cleanup; streams must still see the end.
        self.shared.end();
    }
}

async fn write_loop<W: AsyncWrite>(w: W, mut rx: mpsc::Receiver<Out>, shared: Arc<Shared>) {
    let mut w = std::pin::pin!(w);
    let mut enc = FrameEncoder::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        // Once the peer has hung up there is nobody to write to; stopping also releases the
        // socket, which the reader alone cannot do.
        let msg = tokio::select! {
            // Queued frames first: a pending Finish still goes out.
            biased;
            msg = rx.recv() => msg,
            () = shared.closed.cancelled() => None,
        };
        let Some(msg) = msg else { break };
        let mut finish = queue(msg, &mut enc, &mut buf, &shared);
        // Batch whatever else is already queued into one write.
        while !finish && buf.len() < 64 * 1024 {
            match rx.try_recv() {
                Ok(msg) => finish = queue(msg, &mut enc, &mut buf, &shared),
                Err(_) => break,
            }
        }
        if !buf.is_empty() {
            if let Err(e) = w.write_all(&buf).await {
                tracing::debug!(error = %e, "SPDY write failed");
                break;
            }
            buf.clear();
            if w.flush().await.is_err() {
                break;
            }
            shared.activity.fetch_add(1, Ordering::Relaxed);
        }
        if finish {
            // Keep serving (PING echoes) until the peer hangs up or `close` gives up.
            tracing::trace!("SPDY connection finished; waiting for the peer to hang up");
        }
    }
    // Later writes fail with BrokenPipe instead of queueing forever.
    rx.close();
}

/// Encodes one queued message; true when the connection is to be finished.
fn queue(msg: Out, enc: &mut FrameEncoder, buf: &mut BytesMut, shared: &Shared) -> bool {
    match msg {
        Out::Frame(frame) => {
            if let Frame::Data {
                stream_id, flags, ..
            } = &frame
            {
                let mut map = shared.streams();
                match map.get_mut(stream_id) {
                    Some(st) if !st.reset.load(Ordering::Acquire) && !st.local_fin => {
                        if flags & FLAG_FIN != 0 {
                            st.local_fin = true;
                            Shared::gc(&mut map, *stream_id);
                        }
                    }
                    // Reset, closed or never known: nobody reads it.
                    _ => return false,
                }
            }
            if let Err(e) = enc.encode(&frame, buf) {
                tracing::warn!(error = %e, "dropping SPDY frame that cannot be encoded");
            }
            false
        }
        Out::Finish => {
            let mut map = shared.streams();
            let mut open: Vec<u32> = map
                .iter()
                .filter(|(_, st)| {
                    st.fin_on_close && !st.local_fin && !st.reset.load(Ordering::Acquire)
                })
                .map(|(id, _)| *id)
                .collect();
            open.sort_unstable();
            for id in open {
                if let Some(st) = map.get_mut(&id) {
                    st.local_fin = true;
                }
                let _ = enc.encode(
                    &Frame::Data {
                        stream_id: id,
                        flags: FLAG_FIN,
                        data: Bytes::new(),
                    },
                    buf,
                );
            }
            let _ = enc.encode(
                &Frame::GoAway {
                    last_good_stream_id: shared.last_peer_id.load(Ordering::Relaxed),
                    status: 0,
                },
                buf,
            );
            true
        }
    }
}

async fn read_loop<R: AsyncRead>(
    r: R,
    incoming: mpsc::Sender<IncomingStream>,
    shared: Arc<Shared>,
    idle_timeout: Option<Duration>,
) {
    let mut r = std::pin::pin!(r);
    let mut dec = FrameDecoder::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut incoming = Some(incoming);
    let mut seen_activity = shared.activity.load(Ordering::Relaxed);
    'conn: loop {
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    if !handle(frame, &shared, &mut incoming).await {
                        break 'conn;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "SPDY protocol error; closing the connection");
                    let _ = shared
                        .out
                        .send(Out::Frame(Frame::GoAway {
                            last_good_stream_id: shared.last_peer_id.load(Ordering::Relaxed),
                            status: 1,
                        }))
                        .await;
                    break 'conn;
                }
            }
        }
        let read = r.read_buf(&mut buf);
        let n = match idle_timeout {
            None => read.await,
            Some(idle) => {
                tokio::select! {
                    n = read => n,
                    () = tokio::time::sleep(idle) => {
                        let now = shared.activity.load(Ordering::Relaxed);
                        if now == seen_activity {
                            tracing::debug!("SPDY connection idle for {idle:?}; closing");
                            break 'conn;
                        }
                        seen_activity = now;
                        continue 'conn;
                    }
                }
            }
        };
        match n {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                shared.activity.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    drop(incoming);
    shared.end();
}

/// Routes one frame; false stops the connection.
async fn handle(
    frame: Frame,
    shared: &Arc<Shared>,
    incoming: &mut Option<mpsc::Sender<IncomingStream>>,
) -> bool {
    match frame {
        Frame::SynStream {
            stream_id,
            flags,
            headers,
            ..
        } => {
            let refuse = |status| {
                let out = shared.out.clone();
                async move {
                    let _ = out
                        .send(Out::Frame(Frame::RstStream { stream_id, status }))
                        .await;
                }
            };
            if !shared.is_peer_id(stream_id) || stream_id == 0 {
                refuse(RST_PROTOCOL_ERROR).await;
                return true;
            }
            if shared.finishing.load(Ordering::Acquire) {
                refuse(RST_REFUSED_STREAM).await;
                return true;
            }
            shared.last_peer_id.fetch_max(stream_id, Ordering::Relaxed);
            let (tx, rx) = mpsc::channel(INBOUND_DEPTH);
            let reset = Arc::new(AtomicBool::new(false));
            let duplicate = {
                let mut map = shared.streams();
                let duplicate = map.contains_key(&stream_id);
                if !duplicate {
                    map.insert(
                        stream_id,
                        StreamState {
                            inbound: (flags & FLAG_FIN == 0).then_some(tx),
                            reply: None,
                            reset: reset.clone(),
                            local_fin: flags & FLAG_UNIDIRECTIONAL != 0,
                            fin_on_close: true,
                        },
                    );
                }
                duplicate
            };
            if duplicate {
                refuse(RST_PROTOCOL_ERROR).await;
                return true;
            }
            let stream = IncomingStream {
                id: stream_id,
                headers,
                rx,
                reset,
                shared: shared.clone(),
            };
            let delivered = match incoming {
                Some(tx) => tx.send(stream).await.map_err(|e| e.0),
                None => Err(stream),
            };
            if let Err(stream) = delivered {
                // Nobody accepts streams any more.
                *incoming = None;
                stream.reject(RST_REFUSED_STREAM).await;
            }
        }
        Frame::SynReply {
            stream_id,
            flags,
            headers,
        } => {
            let mut map = shared.streams();
            if let Some(st) = map.get_mut(&stream_id) {
                if let Some(reply) = st.reply.take() {
                    let _ = reply.send(Ok(headers));
                }
                if flags & FLAG_FIN != 0 {
                    st.inbound = None;
                }
                Shared::gc(&mut map, stream_id);
            }
        }
        Frame::Data {
            stream_id,
            flags,
            data,
        } => {
            let tx = shared
                .streams()
                .get(&stream_id)
                .and_then(|st| st.inbound.clone());
            if let Some(tx) = tx {
                // A consumer that went away just loses the data; it does not stall the rest.
                if !data.is_empty() {
                    let _ = tx.send(data).await;
                }
            }
            if flags & FLAG_FIN != 0 {
                let mut map = shared.streams();
                if let Some(st) = map.get_mut(&stream_id) {
                    st.inbound = None;
                }
                Shared::gc(&mut map, stream_id);
            }
        }
        Frame::Headers {
            stream_id, flags, ..
        } => {
            if flags & FLAG_FIN != 0 {
                let mut map = shared.streams();
                if let Some(st) = map.get_mut(&stream_id) {
                    st.inbound = None;
                }
                Shared::gc(&mut map, stream_id);
            }
        }
        Frame::RstStream { stream_id, status } => {
            if let Some(st) = shared.streams().remove(&stream_id) {
                st.reset.store(true, Ordering::Release);
                if let Some(reply) = st.reply {
                    let _ = reply.send(Err(ConnectionError::Reset(stream_id, status)));
                }
            }
        }
        Frame::Ping { id } => {
            // Echo the peer's pings; ours coming back need nothing.
            let peer_ping = match shared.role {
                Role::Server => !id.is_multiple_of(2),
                Role::Client => id.is_multiple_of(2),
            };
            if peer_ping {
                let _ = shared.out.send(Out::Frame(Frame::Ping { id })).await;
            }
        }
        Frame::GoAway { .. } => {
            // The peer opens no more streams; existing ones run to completion. If we are
            // finishing too, both ends are done: hang up rather than wait for each other.
            *incoming = None;
            if shared.finishing.load(Ordering::Acquire) {
                return false;
            }
        }
        // No flow control: windows are not enforced in either direction (see the module docs).
        Frame::Settings { .. } | Frame::WindowUpdate { .. } => {}
    }
    true
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;
