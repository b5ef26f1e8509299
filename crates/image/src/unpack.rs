//! Applying one layer tar (uncompressed, gzip or zstd) to a snapshot directory, converting
//! OCI / AUFS whiteouts into overlayfs form so the directory can be an overlay lowerdir as is:
//! `.wh.<name>` becomes a 0/0 character device `<name>`; `.wh..wh..opq` sets
//! `trusted.overlay.opaque=y` on its directory. Hard links, symlinks, device nodes, fifos,
//! xattrs (PAX `SCHILY.xattr.*`), modes (incl. setuid/sticky), ownership and mtimes are kept.
//! Entries that would escape the target (`..`, absolute paths, through symlinks) are refused.
//! The uncompressed stream is hashed on the way so the caller can check the diff ID.

use crate::digest::Digest;
use crate::media::Compression;
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer entry {entry:?} would escape the root file system; the layer is malformed or malicious")]
    Escape { entry: String },
    #[error("layer is not a valid tar stream: {0}")]
    Tar(String),
    #[error("layer decompression failed: {0}")]
    Decompress(String),
    #[error("hard link {entry:?} points to {target:?}, which is in neither this layer nor its parents")]
    DanglingHardlink { entry: String, target: String },
    #[error("no space left on the device holding {0}: free space and retry")]
    NoSpace(PathBuf),
    #[error("unpacking {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Sys(#[from] deckhand_sys::fs::FsError),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// Uncompressed tar bytes read.
    pub tar_bytes: u64,
    pub entries: u64,
}

/// Apply `layer` to the empty directory `target`. `parents` are the already-unpacked lower
/// snapshot directories, top-most first; they are read only to resolve hard links to files of
/// lower layers (the file is copied up, then linked). Returns the diff ID (sha256 of the
/// uncompressed tar, read to its end) and stats. Blocking.
pub fn apply_layer<R: Read>(
    _layer: R,
    _compression: Compression,
    _target: &Path,
    _parents: &[PathBuf],
) -> Result<(Digest, UnpackStats), UnpackError> {
    todo!("unpack::apply_layer")
}
