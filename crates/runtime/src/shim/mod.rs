//! The runtime's side of the per-pod shim (`deckhand-shim`, crate `deckhand-shim`):
//!
//! - [`client`]: the async client (spawning a shim, requests, exec/attach streams);
//! - [`oci`]: `deckhand oci`, the libcontainer operations a shim runs as a helper process;
//! - [`protocol`]: re-exported from the shim crate.
//!
//! Lifecycle: RunPodSandbox spawns the shim, which daemonizes into its own session and answers
//! on its socket; RemovePodSandbox sends `Shutdown`. A runtime restart does not touch shims:
//! the runtime reconnects by socket path.

pub mod client;
pub mod oci;

pub use client::{ShimClient, ShimClientError};
pub use deckhand_shim::{logs, protocol};
