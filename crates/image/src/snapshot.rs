//! Overlay snapshots under `<root>/snapshots`.
//!
//! A committed snapshot is the unpacked content of one layer, keyed by its chain ID (as the
//! OCI image spec defines it: the chain of diff IDs), at `<root>/snapshots/<chain-hex>/fs`,
//! with `<root>/snapshots/<chain-hex>/parent` naming the parent chain ID. Images that share
//! their bottom layers share those snapshots. Snapshots are unpacked into a temp dir and
//! renamed into place, so a crash leaves no half snapshot; a per-chain lock makes concurrent
//! unpacks of one layer happen once.
//!
//! An active snapshot (a container's rootfs) is `<root>/active/<key>/{upper,work}` plus
//! `<root>/active/<key>/meta.json` naming the image and its top chain ID. Active snapshots are
//! what stops `image rm` from removing an image in use.

use crate::digest::Digest;
use crate::media::Compression;
use crate::unpack::UnpackError;
use deckhand_sys::mount::{MountError, OverlaySpec};
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("layer diff ID mismatch for snapshot {chain}: the layer unpacked to {actual}, the image config says {expected}; nothing was stored")]
    DiffIdMismatch {
        chain: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("snapshot {0} does not exist")]
    NotFound(Digest),
    #[error("parent snapshot {parent} of {chain} does not exist")]
    MissingParent { chain: Digest, parent: Digest },
    #[error("active snapshot {0:?} already exists")]
    ActiveExists(String),
    #[error("active snapshot {0:?} does not exist")]
    ActiveNotFound(String),
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error("snapshot store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What an active snapshot records about itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ActiveSnapshot {
    pub key: String,
    /// The image (its manifest digest) the rootfs was prepared from.
    pub image: Digest,
    pub top: Digest,
}

#[derive(Debug, Clone)]
pub struct Snapshotter {
    root: PathBuf,
}

/// Chain IDs for a list of diff IDs, bottom first: `chain[0] = diff[0]`,
/// `chain[n] = sha256(chain[n-1] + " " + diff[n])`.
pub fn chain_ids(_diff_ids: &[Digest]) -> Vec<Digest> {
    todo!("snapshot::chain_ids")
}

impl Snapshotter {
    /// `root` is `<data-dir>/images`; directories are created as needed.
    pub fn open(_root: &Path) -> Result<Snapshotter, SnapshotError> {
        todo!("Snapshotter::open")
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn exists(&self, _chain: &Digest) -> bool {
        todo!("Snapshotter::exists")
    }
    /// The `fs` directory of a committed snapshot.
    pub fn fs_path(&self, _chain: &Digest) -> PathBuf {
        todo!("Snapshotter::fs_path")
    }
    /// Unpack `layer` as the snapshot `chain` on top of `parent` (which must exist), verifying
    /// the diff ID. Returns Ok without reading when `chain` is already committed. Blocking.
    pub fn apply<R: Read>(
        &self,
        _parent: Option<&Digest>,
        _chain: &Digest,
        _expected_diff_id: &Digest,
        _layer: R,
        _compression: Compression,
    ) -> Result<(), SnapshotError> {
        todo!("Snapshotter::apply")
    }
    /// The lower directories for an overlay with `top` as its top-most layer, top-most first.
    pub fn lower_dirs(&self, _top: &Digest) -> Result<Vec<PathBuf>, SnapshotError> {
        todo!("Snapshotter::lower_dirs")
    }
    /// Create an active snapshot `key` (a container ID) on `top`: fresh upper and work dirs.
    /// Returns the overlay to mount as the container's rootfs.
    pub fn prepare(
        &self,
        _key: &str,
        _image: &Digest,
        _top: &Digest,
    ) -> Result<OverlaySpec, SnapshotError> {
        todo!("Snapshotter::prepare")
    }
    /// The overlay spec of an existing active snapshot (after a restart).
    pub fn active_spec(&self, _key: &str) -> Result<OverlaySpec, SnapshotError> {
        todo!("Snapshotter::active_spec")
    }
    /// Remove an active snapshot's directories; the caller has unmounted it. Ok when absent.
    pub fn remove_active(&self, _key: &str) -> Result<(), SnapshotError> {
        todo!("Snapshotter::remove_active")
    }
    pub fn list_active(&self) -> Result<Vec<ActiveSnapshot>, SnapshotError> {
        todo!("Snapshotter::list_active")
    }
    /// Every committed snapshot's chain ID.
    pub fn list(&self) -> Result<Vec<Digest>, SnapshotError> {
        todo!("Snapshotter::list")
    }
    /// Remove a committed snapshot (the caller checked nothing uses it). Ok when absent.
    pub fn remove(&self, _chain: &Digest) -> Result<(), SnapshotError> {
        todo!("Snapshotter::remove")
    }
    /// Remove leftovers of interrupted unpacks (temp dirs). Called on open by the store.
    pub fn cleanup_temp(&self) -> Result<(), SnapshotError> {
        todo!("Snapshotter::cleanup_temp")
    }
}
