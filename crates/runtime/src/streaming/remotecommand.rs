//! Exec and attach over either transport: gather the client's streams, run the runtime call,
//! report the outcome on the error stream, close.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::protocol::*;
use super::resize::forward_resizes;
use super::spdy::{frame::RST_REFUSED_STREAM, Connection, Incoming, Stream};
use super::status::Status;
use super::websocket::{ChannelKind, Codec, WsConn};
use super::{StreamingRuntime, Streams};

/// What the CRI request asked for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

pub(crate) enum Action {
    Exec {
        container_id: String,
        cmd: Vec<String>,
    },
    Attach {
        container_id: String,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum StatusFormat {
    /// JSON `Status`, success included (v4).
    Json,
    /// Failure message as text (v1–v3).
    Text,
}

type BoxRead = Pin<Box<dyn AsyncRead + Send>>;
type BoxWrite = Pin<Box<dyn AsyncWrite + Send>>;

struct Session {
    stdin: Option<BoxRead>,
    stdout: Option<BoxWrite>,
    stderr: Option<BoxWrite>,
    resize: Option<BoxRead>,
    error: Option<BoxWrite>,
    format: StatusFormat,
    tty: bool,
}

/// Timeouts the transports need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub creation: Duration,
    pub linger: Duration,
}

/// Serves an upgraded SPDY connection: waits for the streams the protocol promises, then runs.
pub(crate) async fn serve_spdy(
    conn: Connection,
    mut incoming: Incoming,
    protocol: String,
    opts: Options,
    action: Action,
    runtime: Arc<dyn StreamingRuntime>,
    timeouts: Timeouts,
) {
    let resize_capable = protocol == STREAM_PROTOCOL_V4 || protocol == STREAM_PROTOCOL_V3;
    let expected = 1
        + usize::from(opts.stdin)
        + usize::from(opts.stdout)
        + usize::from(opts.stderr)
        + usize::from(opts.tty && resize_capable);
    let mut streams: HashMap<&'static str, Stream> = HashMap::new();
    let deadline = tokio::time::sleep(timeouts.creation);
    tokio::pin!(deadline);
    while streams.len() < expected {
        tokio::select! {
            next = incoming.next() => {
                let Some(next) = next else { return conn.abort() };
                let kind = match next.headers().get(HEADER_STREAM_TYPE) {
                    Some(STREAM_TYPE_ERROR) => STREAM_TYPE_ERROR,
                    Some(STREAM_TYPE_STDIN) => STREAM_TYPE_STDIN,
                    Some(STREAM_TYPE_STDOUT) => STREAM_TYPE_STDOUT,
                    Some(STREAM_TYPE_STDERR) => STREAM_TYPE_STDERR,
                    Some(STREAM_TYPE_RESIZE) => STREAM_TYPE_RESIZE,
                    other => {
                        tracing::debug!(stream_type = ?other, "ignoring stream of unexpected type");
                        next.reject(RST_REFUSED_STREAM).await;
                        continue;
                    }
                };
                match next.accept().await {
                    Ok(s) => { streams.insert(kind, s); }
                    Err(_) => return conn.abort(),
                }
            }
            () = &mut deadline => {
                tracing::info!("timed out waiting for the client to create streams");
                return conn.abort();
            }
        }
    }
    // The session is fixed now; later streams have no place in it.
    tokio::spawn(async move {
        while let Some(s) = incoming.next().await {
            s.reject(RST_REFUSED_STREAM).await;
        }
    });
    let read = |s: Stream| -> BoxRead {
        s.leave_open_on_close();
        Box::pin(s)
    };
    let write = |s: Stream| -> BoxWrite { Box::pin(s) };
    let session = Session {
        stdin: streams.remove(STREAM_TYPE_STDIN).map(read),
        stdout: streams.remove(STREAM_TYPE_STDOUT).map(write),
        stderr: streams.remove(STREAM_TYPE_STDERR).map(write),
        resize: streams.remove(STREAM_TYPE_RESIZE).map(read),
        error: streams.remove(STREAM_TYPE_ERROR).map(write),
        format: if protocol == STREAM_PROTOCOL_V4 {
            StatusFormat::Json
        } else {
            StatusFormat::Text
        },
        tty: opts.tty,
    };
    run(runtime.as_ref(), action, session).await;
    conn.close(timeouts.linger).await;
}

/// The WebSocket subprotocols exec/attach accept ("" = the client named none).
pub(crate) const WS_PROTOCOLS: &[&str] = &[
    "",
    WS_PROTOCOL_V1,
    WS_PROTOCOL_V1_BASE64,
    WS_PROTOCOL_V4,
    WS_PROTOCOL_V4_BASE64,
    WS_PROTOCOL_V5,
];

/// Serves an upgraded WebSocket connection.
pub(crate) async fn serve_websocket<IO>(
    io: IO,
    protocol: String,
    opts: Options,
    action: Action,
    runtime: Arc<dyn StreamingRuntime>,
    timeouts: Timeouts,
    idle: Option<Duration>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let on = |b: bool, k: ChannelKind| if b { k } else { ChannelKind::Off };
    let kinds = [
        on(opts.stdin, ChannelKind::Read),
        on(opts.stdout, ChannelKind::Write),
        on(opts.stderr, ChannelKind::Write),
        ChannelKind::Write,
        ChannelKind::Read,
    ];
    let codec = Codec::for_protocol(&protocol);
    let (conn, mut ch) = WsConn::start(io, codec, &kinds, idle).await;
    // Tell the client the streams are ready: an empty message on the lowest writable channel.
    let ready = if opts.stdout {
        CHANNEL_STDOUT
    } else if opts.stderr {
        CHANNEL_STDERR
    } else {
        CHANNEL_ERROR
    };
    conn.send(ready, Bytes::new()).await;
    let take_w = |i: u8, ch: &mut super::websocket::Channels| -> Option<BoxWrite> {
        ch.writers[usize::from(i)]
            .take()
            .map(|w| Box::pin(w) as BoxWrite)
    };
    let session = Session {
        stdin: ch.readers[usize::from(CHANNEL_STDIN)]
            .take()
            .map(|r| Box::pin(r) as BoxRead),
        stdout: take_w(CHANNEL_STDOUT, &mut ch),
        stderr: take_w(CHANNEL_STDERR, &mut ch),
        resize: ch.readers[usize::from(CHANNEL_RESIZE)]
            .take()
            .map(|r| Box::pin(r) as BoxRead),
        error: take_w(CHANNEL_ERROR, &mut ch),
        format: if protocol == WS_PROTOCOL_V4
            || protocol == WS_PROTOCOL_V4_BASE64
            || protocol == WS_PROTOCOL_V5
        {
            StatusFormat::Json
        } else {
            StatusFormat::Text
        },
        tty: opts.tty,
    };
    run(runtime.as_ref(), action, session).await;
    conn.close(timeouts.linger).await;
}

async fn run(runtime: &dyn StreamingRuntime, action: Action, session: Session) {
    // Sizes only mean something for a terminal.
    let (resize_rx, resize_task) = match (session.tty, session.resize) {
        (true, Some(stream)) => {
            let (tx, rx) = mpsc::channel(16);
            (Some(rx), Some(tokio::spawn(forward_resizes(stream, tx))))
        }
        _ => (None, None),
    };
    let streams = Streams {
        stdin: session.stdin,
        stdout: session.stdout,
        stderr: session.stderr,
        resize: resize_rx,
        tty: session.tty,
    };
    let status = match action {
        Action::Exec { container_id, cmd } => {
            match runtime.exec(&container_id, &cmd, streams).await {
                Ok(0) => Status::success(),
                Ok(code) => Status::exit_code(&cmd, code),
                Err(e) => {
                    tracing::info!(container = %container_id, error = %e, "exec failed");
                    Status::from_error("executing command in container", &e)
                }
            }
        }
        Action::Attach { container_id } => match runtime.attach(&container_id, streams).await {
            Ok(()) => Status::success(),
            Err(e) => {
                tracing::info!(container = %container_id, error = %e, "attach failed");
                Status::from_error("attaching to container", &e)
            }
        },
    };
    if let Some(task) = resize_task {
        task.abort();
    }
    if let Some(mut error) = session.error {
        let bytes = match session.format {
            StatusFormat::Json => status.to_v4_bytes(),
            StatusFormat::Text => status.to_v1_bytes(),
        };
        if !bytes.is_empty() {
            let _ = error.write_all(&bytes).await;
        }
        let _ = error.shutdown().await;
    }
}
