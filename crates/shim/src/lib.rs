//! The per-pod shim (`deckhand-shim`): the small supervisor that parents a pod's containers.
//!
//! - [`server`]: the shim process itself (single-threaded `poll` loop, subreaper, CRI logs,
//!   exit records, exec and attach streams);
//! - [`protocol`]: its JSON-lines control protocol and stream frames (the runtime's client
//!   lives in `deckhand-runtime`);
//! - [`ops`]: the container operations it delegates to `deckhand oci` (libcontainer);
//! - [`state`]: the container status records it writes and the runtime reads;
//! - [`logs`]: the CRI log format writer.
//!
//! Lifecycle: RunPodSandbox spawns the shim, which daemonizes into its own session and answers
//! on its socket; RemovePodSandbox sends `Shutdown`. A runtime restart does not touch shims:
//! the runtime reconnects by socket path.

pub mod logs;
pub mod ops;
pub mod protocol;
pub mod server;
pub mod state;

pub use server::{start_daemon, ShimConfig, ShimError};

/// One line on the shim's stderr (its log file): `<RFC3339 time> <LEVEL> <message>`. The shim
/// has no tracing subscriber: a few lines per container lifecycle do not need one.
#[macro_export]
macro_rules! log {
    ($level:literal, $($arg:tt)*) => {
        eprintln!(
            "{} {} {}",
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            $level,
            format_args!($($arg)*)
        )
    };
}
