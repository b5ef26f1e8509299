//! Progress events of a pull or import, for the CLI's progress bars and log lines (and later
//! the CRI's pull logging). Reporting never blocks the pull.

use crate::digest::Digest;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub enum ProgressEvent {
    /// The reference resolved to a manifest; `layers` are (digest, compressed size).
    Resolved {
        reference: String,
        manifest: Digest,
        layers: Vec<(Digest, u64)>,
    },
    /// Layer already in the content store: nothing to download.
    LayerExists { digest: Digest, size: u64 },
    /// Download started (`offset` > 0 when resuming an interrupted download).
    LayerStarted {
        digest: Digest,
        size: u64,
        offset: u64,
    },
    LayerProgress {
        digest: Digest,
        downloaded: u64,
        size: u64,
    },
    /// A transient failure; the download is retried (resuming where it stopped).
    LayerRetry {
        digest: Digest,
        attempt: u32,
        error: String,
    },
    LayerDownloaded {
        digest: Digest,
        size: u64,
        elapsed: Duration,
    },
    /// Snapshot unpacked (or already present: `bytes == 0`).
    LayerUnpacked {
        digest: Digest,
        chain: Digest,
        bytes: u64,
        elapsed: Duration,
    },
    Done {
        reference: String,
        manifest: Digest,
        elapsed: Duration,
    },
}

/// Where events go. Must be cheap and must not block (it runs on the pull's tasks).
pub type ProgressSink = Arc<dyn Fn(ProgressEvent) + Send + Sync>;

/// A sink that drops everything.
pub fn discard() -> ProgressSink {
    Arc::new(|_| {})
}
