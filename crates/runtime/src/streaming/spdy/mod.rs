//! SPDY/3.1, the subset Kubernetes streaming uses: frames ([`frame`]), zlib header compression
//! with the SPDY dictionary, a multiplexed [`Connection`] usable as server or client, and a
//! [`client`] that performs the HTTP upgrade (used by tests and by tools that talk to a
//! streaming URL without `kubectl`).
//!
//! Not implemented, as in the Go library the kubelet and kubectl use (moby/spdystream): flow
//! control (WINDOW_UPDATE and the SETTINGS window are accepted and ignored; nothing is withheld),
//! server push, and priorities.

pub mod client;
mod conn;
mod dictionary;
pub mod frame;

pub use conn::ConnectionConfig;
pub use conn::{Connection, ConnectionError, Incoming, IncomingStream, Role, Stream};
pub use frame::{Frame, FrameError, Headers};

/// The server's connection settings.
pub(crate) fn conn_config(idle_timeout: Option<std::time::Duration>) -> ConnectionConfig {
    ConnectionConfig { idle_timeout }
}
