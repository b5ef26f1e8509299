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
//!
//! Locking: `snapshots/<chain-hex>.lock` (an exclusive `flock`) guards everything that
//! creates or removes that chain's directories, including its `tmp-<chain-hex>-*` temp dirs,
//! so [`Snapshotter::cleanup_temp`] never removes an unpack in progress. Lock files are
//! unlinked by whoever releases them; a waiter that wakes on an unlinked file starts over.
//! `active/.lock` is held shared while an active snapshot is created or removed and
//! exclusively by the cleanup of `active/.tmp-*`.

use crate::digest::Digest;
use crate::media::Compression;
use crate::unpack::{self, UnpackError};
use deckhand_sys::fs as sysfs;
use deckhand_sys::mount::{MountError, OverlaySpec};
use std::fs::{self, File, OpenOptions, Permissions, TryLockError};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
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
    #[error("invalid active snapshot key {0:?}: use 1-128 characters of [A-Za-z0-9_.-], not starting with '.' (a container ID)")]
    InvalidKey(String),
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

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
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

const SNAPSHOTS: &str = "snapshots";
const ACTIVE: &str = "active";
const TMP_PREFIX: &str = "tmp-";
const ACTIVE_TMP_PREFIX: &str = ".tmp-";
const META: &str = "meta.json";
/// Far deeper than any real image (overlayfs stops at 500 layers): a longer parent chain
/// means the parent files form a cycle.
const MAX_CHAIN: usize = 1024;

/// Chain IDs for a list of diff IDs, bottom first: `chain[0] = diff[0]`,
/// `chain[n] = sha256(chain[n-1] + " " + diff[n])`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let next = match out.last() {
            None => diff.clone(),
            Some(prev) => Digest::of(format!("{prev} {diff}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// An exclusive lock on a chain ID; released (and its file unlinked) on drop.
struct ChainLock {
    path: PathBuf,
    _file: File,
}

impl Drop for ChainLock {
    fn drop(&mut self) {
        // Unlink before unlocking: a waiter that then gets the old inode sees it is no
        // longer at `path` and retries on a fresh file, so nobody piles up lock files.
        let _ = fs::remove_file(&self.path);
    }
}

fn is_chain_hex(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn validate_key(key: &str) -> Result<(), SnapshotError> {
    let ok = !key.is_empty()
        && key.len() <= 128
        && !key.starts_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(SnapshotError::InvalidKey(key.to_string()))
    }
}

/// Remove a tree even when a container left it hard to remove: directories without write or
/// search permission (overlayfs leaves `work/work` at mode 000) or immutable / append-only
/// files (`chattr +i`).
fn remove_tree(path: &Path) -> Result<(), SnapshotError> {
    match fs::remove_dir_all(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    loosen(path);
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SnapshotError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

fn loosen(path: &Path) {
    let Ok(m) = fs::symlink_metadata(path) else {
        return;
    };
    if m.file_type().is_symlink() {
        return;
    }
    if let Err(e) = sysfs::clear_immutable(path) {
        tracing::debug!(path = %path.display(), error = %e, "cannot clear inode flags");
    }
    if m.is_dir() {
        if let Ok(dir) = sysfs::open_dir_nofollow(path) {
            let _ = dir.set_permissions(Permissions::from_mode(0o700));
        }
        if let Ok(entries) = fs::read_dir(path) {
            for entry in entries.flatten() {
                loosen(&entry.path());
            }
        }
    }
}

/// fsync a directory, so a rename into it survives a crash.
fn sync_dir(path: &Path) -> Result<(), SnapshotError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_err(path))
}

impl Snapshotter {
    /// `root` is `<data-dir>/images`; directories are created as needed.
    pub fn open(root: &Path) -> Result<Snapshotter, SnapshotError> {
        for sub in [SNAPSHOTS, ACTIVE] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        Ok(Snapshotter {
            root: root.to_path_buf(),
        })
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    fn snapshots_dir(&self) -> PathBuf {
        self.root.join(SNAPSHOTS)
    }
    fn active_dir(&self) -> PathBuf {
        self.root.join(ACTIVE)
    }
    fn snapshot_dir(&self, chain: &Digest) -> PathBuf {
        self.snapshots_dir().join(chain.hex())
    }
    pub fn exists(&self, chain: &Digest) -> bool {
        // The directory appears by rename only once complete, so presence means committed.
        fs::symlink_metadata(self.snapshot_dir(chain)).is_ok_and(|m| m.is_dir())
    }
    /// The `fs` directory of a committed snapshot.
    pub fn fs_path(&self, chain: &Digest) -> PathBuf {
        self.snapshot_dir(chain).join("fs")
    }

    /// Take the chain's lock: blocking, or `Ok(None)` when someone else holds it.
    fn lock_chain(&self, hex: &str, wait: bool) -> Result<Option<ChainLock>, SnapshotError> {
        let path = self.snapshots_dir().join(format!("{hex}.lock"));
        loop {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(io_err(&path))?;
            if wait {
                file.lock().map_err(io_err(&path))?;
            } else {
                match file.try_lock() {
                    Ok(()) => {}
                    Err(TryLockError::WouldBlock) => return Ok(None),
                    Err(TryLockError::Error(e)) => return Err(io_err(&path)(e)),
                }
            }
            let held = file.metadata().map_err(io_err(&path))?;
            match fs::metadata(&path) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {
                    return Ok(Some(ChainLock { path, _file: file }))
                }
                // The previous holder unlinked it while we waited: our lock guards nothing.
                _ => continue,
            }
        }
    }

    /// `active/.lock`: shared while creating or removing active snapshots, exclusive for
    /// cleaning up their temp dirs.
    fn lock_active(&self, exclusive: bool) -> Result<Option<File>, SnapshotError> {
        let path = self.active_dir().join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        if exclusive {
            match file.try_lock() {
                Ok(()) => Ok(Some(file)),
                Err(TryLockError::WouldBlock) => Ok(None),
                Err(TryLockError::Error(e)) => Err(io_err(&path)(e)),
            }
        } else {
            file.lock_shared().map_err(io_err(&path))?;
            Ok(Some(file))
        }
    }

    /// A fresh, uniquely named directory in `parent`.
    fn temp_dir_in(parent: &Path, prefix: &str) -> Result<PathBuf, SnapshotError> {
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(parent)
            .map(|d| d.keep())
            .map_err(io_err(parent))
    }

    /// Unpack `layer` as the snapshot `chain` on top of `parent` (which must exist), verifying
    /// the diff ID. Returns Ok without reading when `chain` is already committed. Blocking.
    pub fn apply<R: Read>(
        &self,
        parent: Option<&Digest>,
        chain: &Digest,
        expected_diff_id: &Digest,
        layer: R,
        compression: Compression,
    ) -> Result<(), SnapshotError> {
        if self.exists(chain) {
            return Ok(());
        }
        if let Some(p) = parent {
            if !self.exists(p) {
                return Err(SnapshotError::MissingParent {
                    chain: chain.clone(),
                    parent: p.clone(),
                });
            }
        }
        let _lock = self.lock_chain(chain.hex(), true)?;
        // Someone else may have committed it while we waited for the lock.
        if self.exists(chain) {
            return Ok(());
        }
        let parents = match parent {
            Some(p) => self.lower_dirs(p)?,
            None => Vec::new(),
        };
        let snapshots = self.snapshots_dir();
        let tmp = Self::temp_dir_in(&snapshots, &format!("{TMP_PREFIX}{}-", chain.hex()))?;
        let result = self.unpack_into(
            &tmp,
            parent,
            chain,
            expected_diff_id,
            layer,
            compression,
            &parents,
        );
        if let Err(e) = result {
            if let Err(cleanup) = remove_tree(&tmp) {
                tracing::warn!(error = %cleanup, "cannot remove the temp dir of a failed unpack; cleanup_temp will retry");
            }
            return Err(e);
        }
        let dest = self.snapshot_dir(chain);
        if let Err(e) = fs::rename(&tmp, &dest) {
            let _ = remove_tree(&tmp);
            return Err(io_err(&dest)(e));
        }
        sync_dir(&snapshots)?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn unpack_into<R: Read>(
        &self,
        tmp: &Path,
        parent: Option<&Digest>,
        chain: &Digest,
        expected: &Digest,
        layer: R,
        compression: Compression,
        parents: &[PathBuf],
    ) -> Result<(), SnapshotError> {
        let fs_dir = tmp.join("fs");
        fs::create_dir(&fs_dir).map_err(io_err(&fs_dir))?;
        // The snapshot dir is private to the store; the overlay reads it with the mounter's
        // credentials, so nothing else needs to search it.
        let (actual, stats) = unpack::apply_layer(layer, compression, &fs_dir, parents)?;
        if actual != *expected {
            return Err(SnapshotError::DiffIdMismatch {
                chain: chain.clone(),
                expected: expected.clone(),
                actual,
            });
        }
        if let Some(p) = parent {
            let path = tmp.join("parent");
            fs::write(&path, p.to_string()).map_err(io_err(&path))?;
        }
        // One syncfs instead of an fsync per file: the snapshot is durable before it becomes
        // visible under its chain ID.
        sysfs::syncfs(tmp).map_err(|e| SnapshotError::Io {
            path: tmp.to_path_buf(),
            source: std::io::Error::new(e.kind(), e.to_string()),
        })?;
        tracing::debug!(%chain, entries = stats.entries, tar_bytes = stats.tar_bytes, "layer unpacked");
        Ok(())
    }

    /// The lower directories for an overlay with `top` as its top-most layer, top-most first.
    pub fn lower_dirs(&self, top: &Digest) -> Result<Vec<PathBuf>, SnapshotError> {
        if !self.exists(top) {
            return Err(SnapshotError::NotFound(top.clone()));
        }
        let mut out = vec![self.fs_path(top)];
        let mut cur = top.clone();
        loop {
            let path = self.snapshot_dir(&cur).join("parent");
            let parent: Digest = match fs::read_to_string(&path) {
                Ok(s) => s.trim().parse().map_err(|e| SnapshotError::Io {
                    path: path.clone(),
                    source: std::io::Error::new(ErrorKind::InvalidData, e),
                })?,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(io_err(&path)(e)),
            };
            if !self.exists(&parent) {
                return Err(SnapshotError::MissingParent { chain: cur, parent });
            }
            if out.len() >= MAX_CHAIN {
                return Err(SnapshotError::Io {
                    path,
                    source: std::io::Error::new(
                        ErrorKind::InvalidData,
                        format!("the parent chain of {top} is longer than {MAX_CHAIN} (a cycle?); remove the snapshot and pull the image again"),
                    ),
                });
            }
            out.push(self.fs_path(&parent));
            cur = parent;
        }
    }

    /// Create an active snapshot `key` (a container ID) on `top`: fresh upper and work dirs.
    /// Returns the overlay to mount as the container's rootfs.
    pub fn prepare(
        &self,
        key: &str,
        image: &Digest,
        top: &Digest,
    ) -> Result<OverlaySpec, SnapshotError> {
        validate_key(key)?;
        let lower = self.lower_dirs(top)?;
        let active = self.active_dir();
        let dir = active.join(key);
        let _shared = self.lock_active(false)?;
        if fs::symlink_metadata(&dir).is_ok() {
            return Err(SnapshotError::ActiveExists(key.to_string()));
        }
        // Built under a temp name and renamed, so a crash never leaves one without meta.json.
        let tmp = Self::temp_dir_in(&active, &format!("{ACTIVE_TMP_PREFIX}{key}-"))?;
        let built = (|| {
            let upper = tmp.join("upper");
            let work = tmp.join("work");
            fs::create_dir(&upper).map_err(io_err(&upper))?;
            fs::create_dir(&work).map_err(io_err(&work))?;
            // The merged root takes the upper dir's attributes: give it the image's.
            let root = fs::metadata(&lower[0]).map_err(io_err(&lower[0]))?;
            sysfs::lchown(&upper, root.uid(), root.gid()).map_err(|e| SnapshotError::Io {
                path: upper.clone(),
                source: std::io::Error::new(e.kind(), e.to_string()),
            })?;
            fs::set_permissions(&upper, Permissions::from_mode(root.mode() & 0o7777))
                .map_err(io_err(&upper))?;
            let meta = ActiveSnapshot {
                key: key.to_string(),
                image: image.clone(),
                top: top.clone(),
            };
            let path = tmp.join(META);
            let json = serde_json::to_vec_pretty(&meta).expect("ActiveSnapshot serializes");
            fs::write(&path, json).map_err(io_err(&path))?;
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(io_err(&path))?;
            fs::rename(&tmp, &dir).map_err(|e| {
                if matches!(
                    e.kind(),
                    ErrorKind::AlreadyExists | ErrorKind::DirectoryNotEmpty
                ) {
                    SnapshotError::ActiveExists(key.to_string())
                } else {
                    io_err(&dir)(e)
                }
            })
        })();
        if let Err(e) = built {
            let _ = remove_tree(&tmp);
            return Err(e);
        }
        sync_dir(&active)?;
        Ok(OverlaySpec {
            lower,
            upper: Some(dir.join("upper")),
            work: Some(dir.join("work")),
        })
    }

    fn read_active(&self, key: &str) -> Result<ActiveSnapshot, SnapshotError> {
        let path = self.active_dir().join(key).join(META);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(SnapshotError::ActiveNotFound(key.to_string()))
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        serde_json::from_slice(&data).map_err(|e| SnapshotError::Io {
            path,
            source: std::io::Error::new(ErrorKind::InvalidData, e),
        })
    }

    /// The overlay spec of an existing active snapshot (after a restart).
    pub fn active_spec(&self, key: &str) -> Result<OverlaySpec, SnapshotError> {
        validate_key(key)?;
        let meta = self.read_active(key)?;
        let dir = self.active_dir().join(key);
        Ok(OverlaySpec {
            lower: self.lower_dirs(&meta.top)?,
            upper: Some(dir.join("upper")),
            work: Some(dir.join("work")),
        })
    }

    /// Remove an active snapshot's directories; the caller has unmounted it. Ok when absent.
    pub fn remove_active(&self, key: &str) -> Result<(), SnapshotError> {
        validate_key(key)?;
        let active = self.active_dir();
        let dir = active.join(key);
        let _shared = self.lock_active(false)?;
        if fs::symlink_metadata(&dir).is_err() {
            return Ok(());
        }
        // Move it out of sight first, so a half-removed rootfs is never listed as active.
        let tmp = Self::temp_dir_in(&active, &format!("{ACTIVE_TMP_PREFIX}{key}-"))?;
        let victim = tmp.join("rm");
        match fs::rename(&dir, &victim) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                let _ = fs::remove_dir(&tmp);
                return Err(io_err(&dir)(e));
            }
        }
        remove_tree(&tmp)
    }

    pub fn list_active(&self) -> Result<Vec<ActiveSnapshot>, SnapshotError> {
        let active = self.active_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(&active).map_err(io_err(&active))? {
            let entry = entry.map_err(io_err(&active))?;
            let name = entry.file_name();
            let Some(key) = name.to_str() else { continue };
            if key.starts_with('.') {
                continue;
            }
            match self.read_active(key) {
                Ok(meta) => out.push(meta),
                Err(e) => {
                    tracing::warn!(key, error = %e, "skipping unreadable active snapshot")
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Every committed snapshot's chain ID.
    pub fn list(&self) -> Result<Vec<Digest>, SnapshotError> {
        let dir = self.snapshots_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !is_chain_hex(name) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if let Ok(d) = Digest::from_hex(name) {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Remove a committed snapshot (the caller checked nothing uses it). Ok when absent.
    pub fn remove(&self, chain: &Digest) -> Result<(), SnapshotError> {
        let _lock = self.lock_chain(chain.hex(), true)?;
        let dir = self.snapshot_dir(chain);
        if !self.exists(chain) {
            return Ok(());
        }
        // Rename first: the chain stops existing atomically, whatever the removal leaves.
        let snapshots = self.snapshots_dir();
        let tmp = Self::temp_dir_in(&snapshots, &format!("{TMP_PREFIX}{}-", chain.hex()))?;
        fs::rename(&dir, tmp.join("rm")).map_err(io_err(&dir))?;
        sync_dir(&snapshots)?;
        remove_tree(&tmp)
    }

    /// Remove leftovers of interrupted unpacks (temp dirs). Called on open by the store.
    pub fn cleanup_temp(&self) -> Result<(), SnapshotError> {
        let snapshots = self.snapshots_dir();
        for entry in fs::read_dir(&snapshots).map_err(io_err(&snapshots))? {
            let entry = entry.map_err(io_err(&snapshots))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            if let Some(rest) = name.strip_prefix(TMP_PREFIX) {
                let hex = rest.split('-').next().unwrap_or_default();
                // An unpack or removal in progress holds the chain lock: leave it alone.
                let _lock = if is_chain_hex(hex) {
                    match self.lock_chain(hex, false)? {
                        Some(lock) => Some(lock),
                        None => continue,
                    }
                } else {
                    None
                };
                tracing::info!(path = %path.display(), "removing leftover of an interrupted unpack");
                remove_tree(&path)?;
            } else if let Some(hex) = name.strip_suffix(".lock") {
                // A lock file left by a crash: taking and releasing it unlinks it.
                if is_chain_hex(hex) {
                    drop(self.lock_chain(hex, false)?);
                }
            }
        }
        let active = self.active_dir();
        if let Some(_exclusive) = self.lock_active(true)? {
            for entry in fs::read_dir(&active).map_err(io_err(&active))? {
                let entry = entry.map_err(io_err(&active))?;
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(ACTIVE_TMP_PREFIX)
                {
                    remove_tree(&entry.path())?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
