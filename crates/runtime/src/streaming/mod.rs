//! The CRI streaming server: what the CRI `Exec`, `Attach` and `PortForward` calls hand out.
//!
//! Those RPCs do not stream themselves; they return a one-shot URL on this server
//! ([`StreamingServer::get_exec`] and friends). The client (the kubelet's proxy, `kubectl` through
//! the API server, `crictl`) then connects to the URL and upgrades the HTTP/1.1 connection to
//! one of the two stream protocols the kubelet has always served:
//!
//! - SPDY/3.1 ([`spdy`]), one SPDY stream per stdio channel, selected with
//!   `X-Stream-Protocol-Version` (`v4.channel.k8s.io` … `channel.k8s.io`, `portforward.k8s.io`);
//! - WebSocket (RFC 6455) with the `*.channel.k8s.io` subprotocols, where every message starts
//!   with its channel number.
//!
//! Either way the server assembles plain byte streams and hands them to the runtime through
//! [`StreamingRuntime`], the only thing the container runtime implements. The exit status of an
//! exec travels back on the `error` stream as a Kubernetes `metav1.Status` ([`status`]).
//!
//! Module map: [`server`] (listener, routing, tokens), `cache` (the one-shot request cache),
//! `remotecommand` (exec/attach over either transport), `portforward` (port-forward over either
//! transport, and [`NetnsPortForwarder`]), `websocket` (the channel multiplexer), [`spdy`]
//! (framing, header compression, connections and a client), [`status`], [`protocol`]
//! (the wire constants).

// Handlers return `tonic::Status` (CRI) or a complete `http::Response` (a refused upgrade) as
// their error; both are large, but boxing them would only move the conversion around.
#![allow(clippy::result_large_err)]

use std::io;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

mod cache;
mod pipe;
mod portforward;
pub mod protocol;
mod remotecommand;
mod resize;
pub mod server;
pub mod spdy;
pub mod status;
mod websocket;

pub use portforward::NetnsPortForwarder;
pub use server::{Config, ServerError, StreamingServer};

/// A terminal size as the client reports it on the `resize` stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalSize {
    pub width: u16,
    pub height: u16,
}

/// The client's streams for one exec or attach, as the runtime sees them.
///
/// A stream is `None` when the CRI request did not ask for it. `stdin` reaches end-of-file
/// when the client closes its side (or the connection goes away). Writes to `stdout` or
/// `stderr` fail with `BrokenPipe` once the client is gone. `resize` is present only with
/// `tty`; it closes when the client stops sending sizes, and the runtime must keep draining it
/// (or drop it), since a full channel eventually stalls the connection's reader.
pub struct Streams {
    pub stdin: Option<Pin<Box<dyn AsyncRead + Send>>>,
    pub stdout: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    pub stderr: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    pub resize: Option<tokio::sync::mpsc::Receiver<TerminalSize>>,
    pub tty: bool,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("resize", &self.resize.is_some())
            .field("tty", &self.tty)
            .finish()
    }
}

/// What the container runtime implements so the streaming server can reach containers.
///
/// The server calls these from its own tasks, once per upgraded connection (port-forward: once
/// per forwarded connection), after the client has opened every stream it asked for. The calls
/// may take as long as the command or the attach session lasts; they must not block the thread
/// (spawn_blocking anything synchronous). When a call returns, the server reports its result on
/// the error stream and closes the connection, so everything the command wrote must already be
/// written to `stdout`/`stderr` by then. A client that disconnects does not cancel the call:
/// the runtime sees stdin end and output writes fail, as with the kubelet.
#[tonic::async_trait]
pub trait StreamingRuntime: Send + Sync + 'static {
    /// Runs cmd in the container; returns its exit code.
    async fn exec(
        &self,
        container_id: &str,
        cmd: &[String],
        streams: Streams,
    ) -> Result<i32, StreamError>;

    /// Connects the streams to the container's main process until it exits or the client
    /// detaches.
    async fn attach(&self, container_id: &str, streams: Streams) -> Result<(), StreamError>;

    /// A connected TCP stream to `port` on the pod's loopback, inside the pod's network namespace.
    async fn port_forward(
        &self,
        pod_sandbox_id: &str,
        port: u16,
    ) -> Result<tokio::net::TcpStream, StreamError>;
}

/// Why a runtime could not exec, attach or forward. The message goes to the client verbatim
/// (on the error stream), so it should name the object and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The container or sandbox does not exist (or no longer does); retrying will not help.
    #[error("{0}")]
    NotFound(String),
    /// The object exists but cannot be streamed to now (e.g. the container is not running);
    /// a retry may help once its state changes.
    #[error("{0}")]
    Unavailable(String),
    /// The runtime failed; the message says where.
    #[error("{0}")]
    Internal(String),
    /// An I/O error reaching the container or the pod's network namespace.
    #[error(transparent)]
    Io(#[from] io::Error),
}
