//! The per-pod shim (`deckhand shim`): the small supervisor that parents a pod's containers.
//!
//! - [`server`]: the shim process itself (single-threaded `poll` loop, subreaper, CRI logs,
//!   exit records, exec and attach streams);
//! - [`protocol`]: its JSON-lines control protocol and stream frames;
//! - [`client`]: the runtime's async side (spawning a shim, requests, exec/attach streams);
//! - [`logs`]: the CRI log format writer.
//!
//! Lifecycle: RunPodSandbox spawns the shim (`deckhand shim --sandbox-id … --socket …`), which
//! daemonizes into its own session and answers on its socket; RemovePodSandbox sends
//! `Shutdown`. A runtime restart does not touch shims: the runtime reconnects by socket path.

pub mod client;
pub mod logs;
pub mod protocol;
pub mod server;

pub use client::{ShimClient, ShimClientError};
pub use server::{start_daemon, ShimConfig, ShimError};
