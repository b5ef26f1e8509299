//! The content-addressed blob store under `<root>/blobs/sha256/<hex>`.
//!
//! Writes go to `<root>/ingest/<hex>` (kept across crashes so a later pull can resume with a
//! `Range` request), are verified against the expected digest and size, fsynced, and renamed
//! into place: a blob is either absent or complete and correct. An exclusive file lock on
//! `<root>/ingest/<hex>.lock` makes concurrent writers of one digest (tasks or processes)
//! download it once: the second waits, then finds the blob committed.

use crate::digest::Digest;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// Retrying will not help: the source served the wrong bytes.
    #[error("blob {expected} failed verification (got {actual}, {actual_size} bytes, expected {expected_size} bytes); nothing was stored")]
    DigestMismatch { expected: Digest, actual: Digest, expected_size: u64, actual_size: u64 },
    #[error("blob {0} not found in the content store")]
    NotFound(Digest),
    #[error("no space left on the device holding {path} while writing blob {digest}: free space and retry")]
    NoSpace { path: PathBuf, digest: Digest },
    #[error("content store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
}

/// An open, locked ingest for one digest. Data appended with [`Ingest::write`]; `offset()`
/// tells how much a previous, interrupted writer left (already hashed on open).
pub struct Ingest {
    _private: (),
}

impl ContentStore {
    /// Open (creating directories) the store rooted at `root` (`<data-dir>/images`).
    pub fn open(_root: &Path) -> Result<ContentStore, ContentError> {
        todo!("ContentStore::open")
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// Path of a committed blob (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join("sha256").join(digest.hex())
    }
    pub fn contains(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }
    /// Read a whole committed blob (manifests, configs).
    pub fn read(&self, _digest: &Digest) -> Result<Vec<u8>, ContentError> {
        todo!("ContentStore::read")
    }
    /// Open a committed blob for streaming.
    pub fn open_blob(&self, _digest: &Digest) -> Result<std::fs::File, ContentError> {
        todo!("ContentStore::open_blob")
    }
    /// Write a small blob in one go (verified, atomic). No-op when already present.
    pub fn write_all(&self, _expected: &Digest, _data: &[u8]) -> Result<(), ContentError> {
        todo!("ContentStore::write_all")
    }
    /// Begin (or resume) writing `expected`. Blocks while another writer holds the lock; returns
    /// `Ok(None)` when, after acquiring it, the blob is already committed. Blocking: call from
    /// `spawn_blocking` in async code.
    pub fn begin(&self, _expected: &Digest, _expected_size: u64) -> Result<Option<Ingest>, ContentError> {
        todo!("ContentStore::begin")
    }
    /// Every committed blob digest.
    pub fn list(&self) -> Result<Vec<Digest>, ContentError> {
        todo!("ContentStore::list")
    }
    /// Delete a committed blob; Ok when absent.
    pub fn delete(&self, _digest: &Digest) -> Result<(), ContentError> {
        todo!("ContentStore::delete")
    }
    /// Re-hash every committed blob; returns the ones that do not match their name.
    pub fn verify_all(&self) -> Result<Vec<Digest>, ContentError> {
        todo!("ContentStore::verify_all")
    }
}

impl Ingest {
    /// Bytes already present from an interrupted earlier write (resume from here).
    pub fn offset(&self) -> u64 {
        todo!("Ingest::offset")
    }
    /// Discard partial data (the source does not support resumption).
    pub fn truncate(&mut self) -> Result<(), ContentError> {
        todo!("Ingest::truncate")
    }
    pub fn write(&mut self, _data: &[u8]) -> Result<(), ContentError> {
        todo!("Ingest::write")
    }
    /// Verify digest and size, fsync, rename into `blobs/`, fsync the directory. On mismatch the
    /// partial file is removed and nothing is stored.
    pub fn commit(self) -> Result<(), ContentError> {
        todo!("Ingest::commit")
    }
}
