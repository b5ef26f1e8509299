//! Pulling an image from a registry into the store: resolve (mirrors first), pick the platform
//! manifest, fetch config, download layers in parallel (bounded) with retries and resumption
//! into the content store, unpack snapshots in order as soon as each layer and its parent are
//! ready, then write the record. Progress goes to a [`ProgressSink`].

use crate::manifest::Platform;
use crate::progress::ProgressSink;
use crate::reference::Reference;
use crate::registry::auth::Credentials;
use crate::store::{Image, ImageStore, StoreError};

/// Options of one pull.
#[derive(Clone)]
pub struct PullOptions {
    pub platform: Platform,
    /// CRI auth config or `--creds`; overrides configured credentials.
    pub credentials: Option<Credentials>,
    pub progress: ProgressSink,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions { platform: Platform::host(), credentials: None, progress: crate::progress::discard() }
    }
}

impl ImageStore {
    /// Pull `reference` and return the stored image. Safe to run concurrently with other pulls
    /// of the same or overlapping images (each blob downloads once). Cancel-safe: dropping the
    /// future leaves partial downloads in `ingest/` for the next pull to resume, never a
    /// visible half image.
    pub async fn pull(&self, _reference: &Reference, _options: PullOptions) -> Result<Image, StoreError> {
        todo!("ImageStore::pull")
    }
}
