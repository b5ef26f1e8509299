//! Image records: which names point at which manifest, under `<root>/refs/<sha256(name)>.json`.
//! A record is written (atomically) only after every blob and snapshot of the image is
//! committed, so a listed image is always complete.

use crate::digest::Digest;
use crate::manifest::{Descriptor, Platform};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("image record {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("image record {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageRecord {
    /// Fully-qualified reference string, e.g. `docker.io/library/busybox:latest`, or
    /// `name@sha256:…` for by-digest pulls.
    pub name: String,
    /// What the name resolved to (index or manifest): its digest is the repo digest.
    pub target: Descriptor,
    /// The platform manifest chosen.
    pub manifest: Digest,
    /// The config digest: the image ID.
    pub config: Digest,
    /// Top-most snapshot chain ID.
    pub top_chain: Digest,
    /// Sum of the compressed layer sizes plus config.
    pub size: u64,
    pub platform: Platform,
    /// RFC 3339 time the record was written.
    pub created_at: String,
}

#[derive(Debug, Clone)]
pub struct MetadataStore {
    root: PathBuf,
}

impl MetadataStore {
    pub fn open(_root: &Path) -> Result<MetadataStore, MetadataError> {
        todo!("MetadataStore::open")
    }
    /// Create or replace the record for `record.name`.
    pub fn put(&self, _record: &ImageRecord) -> Result<(), MetadataError> {
        todo!("MetadataStore::put")
    }
    pub fn get(&self, _name: &str) -> Result<Option<ImageRecord>, MetadataError> {
        todo!("MetadataStore::get")
    }
    pub fn list(&self) -> Result<Vec<ImageRecord>, MetadataError> {
        todo!("MetadataStore::list")
    }
    /// Ok(false) when absent.
    pub fn delete(&self, _name: &str) -> Result<bool, MetadataError> {
        todo!("MetadataStore::delete")
    }
}
