//! Importing images from files: OCI archives (tar of an OCI layout), docker-archives (`docker
//! save`, `skopeo copy … docker-archive:`), and OCI layout directories. Names come from the
//! `org.opencontainers.image.ref.name` annotation / `index.json` (OCI) or `RepoTags`
//! (docker-archive), or the `name` option. Docker-archive layers are stored as blobs with a
//! synthesised OCI manifest so the image is pullable-identical afterwards.

use crate::manifest::Platform;
use crate::progress::ProgressSink;
use crate::store::{Image, ImageStore, StoreError};
use std::path::Path;

#[derive(Clone)]
pub struct ImportOptions {
    /// Name to give the image when the archive carries none (or to override a single one).
    pub name: Option<String>,
    pub platform: Platform,
    pub progress: ProgressSink,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions { name: None, platform: Platform::host(), progress: crate::progress::discard() }
    }
}

impl ImageStore {
    /// Import every image in `path` (a file: OCI or docker archive, possibly gzip-compressed;
    /// a directory: OCI layout). Blocking work runs on the blocking pool.
    pub async fn import(&self, _path: &Path, _options: ImportOptions) -> Result<Vec<Image>, StoreError> {
        todo!("ImageStore::import")
    }
}
