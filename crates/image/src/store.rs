//! [`ImageStore`]: the facade over content, snapshots, records and the registry client, used
//! by the `deckhand image` CLI and by the runtime. Pull lives in `pull.rs`, import in
//! `import.rs`; this file holds the rest (open, list, inspect, remove, prune, rootfs).
//!
//! Layout under `<data-dir>/images`: `blobs/`, `ingest/`, `snapshots/`, `active/`, `refs/`.

use crate::config::ImageConfig;
use crate::content::{ContentError, ContentStore};
use crate::digest::Digest;
use crate::manifest::{Descriptor, ManifestError, Platform};
use crate::metadata::{ImageRecord, MetadataError, MetadataStore};
use crate::reference::ReferenceError;
use crate::registry::auth::AuthError;
use crate::registry::client::{ClientConfig, RegistryClient, RegistryError};
use crate::registry::hosts::HostsError;
use crate::snapshot::{SnapshotError, Snapshotter};
use deckhand_sys::mount::OverlaySpec;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Hosts(#[from] HostsError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("image {0:?} not found: `deckhand image ls` lists the images present")]
    ImageNotFound(String),
    #[error("image {image} is in use by container(s) {containers}: remove them first, or pass --force")]
    InUse { image: String, containers: String },
    #[error("layer {digest} of {reference} failed verification: {message}; nothing was stored")]
    Layer { reference: String, digest: Digest, message: String },
    #[error("import {path}: {message}")]
    Import { path: PathBuf, message: String },
    #[error("{0}")]
    Internal(String),
}

/// Where the store lives and how it reaches registries.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// deckhand's data dir; the store uses `<data_dir>/images`, and reads
    /// `<data_dir>/registries.yaml` when `registries` is `None`.
    pub data_dir: PathBuf,
    pub registries: Option<crate::registry::RegistriesConfig>,
    /// Docker `config.json` to read credentials from; `None` uses the default location.
    pub docker_config: Option<PathBuf>,
    /// Layers downloaded at once per pull.
    pub max_concurrent_downloads: usize,
}

impl StoreConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig { data_dir: data_dir.into(), registries: None, docker_config: None, max_concurrent_downloads: 3 }
    }
}

/// An image present in the store (complete: all blobs and snapshots committed).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Image {
    /// Fully-qualified name the image is stored under.
    pub name: String,
    /// Image ID: the config digest.
    pub id: Digest,
    /// Repo digest: digest of what the name resolved to (index or manifest).
    pub digest: Digest,
    pub manifest: Digest,
    pub top_chain: Digest,
    pub size: u64,
    pub platform: Platform,
    pub created_at: String,
    pub config: ImageConfig,
}

/// What `remove` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RemoveReport {
    pub untagged: Vec<String>,
}

/// What `prune` freed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruneReport {
    pub blobs: Vec<Digest>,
    pub snapshots: Vec<Digest>,
    pub bytes_freed: u64,
}

pub struct ImageStore {
    pub(crate) config: StoreConfig,
    pub(crate) content: ContentStore,
    pub(crate) snapshots: Snapshotter,
    pub(crate) metadata: MetadataStore,
    pub(crate) registry: RegistryClient,
}

impl ImageStore {
    /// Open (creating) the store; loads `registries.yaml` and the Docker config; removes temp
    /// leftovers of interrupted unpacks (partial downloads in `ingest/` are kept for resume).
    pub fn open(_config: StoreConfig) -> Result<ImageStore, StoreError> {
        let _ = ClientConfig::default();
        todo!("ImageStore::open")
    }
    pub fn content(&self) -> &ContentStore {
        &self.content
    }
    pub fn snapshotter(&self) -> &Snapshotter {
        &self.snapshots
    }
    pub fn registry(&self) -> &RegistryClient {
        &self.registry
    }

    /// Given blobs already committed to content (the target document, the platform manifest,
    /// its config and layers), unpack any missing snapshots in order, verify diff IDs, and write
    /// the record for `name`. Shared by pull and import. Blocking.
    pub fn commit_image(
        &self,
        _name: &str,
        _target: &Descriptor,
        _manifest: &Digest,
        _platform: &Platform,
    ) -> Result<Image, StoreError> {
        todo!("ImageStore::commit_image")
    }

    pub fn list(&self) -> Result<Vec<Image>, StoreError> {
        todo!("ImageStore::list")
    }
    /// Look an image up by reference (normalised: `busybox` finds
    /// `docker.io/library/busybox:latest`), by image ID or unique ID prefix (with or without
    /// `sha256:`), or by repo digest.
    pub fn get(&self, _reference: &str) -> Result<Image, StoreError> {
        todo!("ImageStore::get")
    }
    /// Remove the name(s) matched by `reference` (an ID removes every name of that image).
    /// Refuses with [`StoreError::InUse`] while an active snapshot uses the image, unless
    /// `force`. Blobs and snapshots are freed by [`ImageStore::prune`] (the CLI runs it after).
    pub fn remove(&self, _reference: &str, _force: bool) -> Result<RemoveReport, StoreError> {
        todo!("ImageStore::remove")
    }
    /// Delete blobs and snapshots no image record or active snapshot references, and stale
    /// ingest files.
    pub fn prune(&self) -> Result<PruneReport, StoreError> {
        todo!("ImageStore::prune")
    }
    /// Prepare a container rootfs (active snapshot `container_id`) from an image.
    pub fn prepare_rootfs(&self, _container_id: &str, _image: &Image) -> Result<OverlaySpec, StoreError> {
        todo!("ImageStore::prepare_rootfs")
    }
    pub fn release_rootfs(&self, _container_id: &str) -> Result<(), StoreError> {
        todo!("ImageStore::release_rootfs")
    }

    pub(crate) fn image_from_record(&self, _record: &ImageRecord) -> Result<Image, StoreError> {
        todo!("ImageStore::image_from_record")
    }
}
