//! File-system metadata operations used when unpacking image layers: device nodes, fifos,
//! ownership and timestamps of symlinks, extended attributes, and free-space checks.
//!
//! All functions act on the path itself and never follow a final symlink, because layer
//! contents are untrusted and a symlink must never redirect a write outside the rootfs.

use std::path::Path;

/// Errors from file-system metadata calls, each carrying the path it failed on.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl FsError {
    /// The raw OS error number, when there is one (ENOSPC, EPERM, ...).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            FsError::Io { source, .. } => source.raw_os_error(),
        }
    }
}

/// Kind of special file for [`mknod`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Char,
    Block,
    Fifo,
}

pub fn mknod(_path: &Path, _kind: NodeKind, _mode: u32, _major: u64, _minor: u64) -> Result<(), FsError> {
    todo!("sys::fs::mknod")
}

/// `lchown(2)`: set owner of `path` without following a final symlink.
pub fn lchown(_path: &Path, _uid: u32, _gid: u32) -> Result<(), FsError> {
    todo!("sys::fs::lchown")
}

/// `lsetxattr(2)`.
pub fn lsetxattr(_path: &Path, _name: &str, _value: &[u8]) -> Result<(), FsError> {
    todo!("sys::fs::lsetxattr")
}

/// `lgetxattr(2)`; `Ok(None)` when the attribute is absent.
pub fn lgetxattr(_path: &Path, _name: &str) -> Result<Option<Vec<u8>>, FsError> {
    todo!("sys::fs::lgetxattr")
}

/// Set access and modification times (seconds, nanoseconds) without following symlinks.
pub fn lutimes(_path: &Path, _atime: (i64, i64), _mtime: (i64, i64)) -> Result<(), FsError> {
    todo!("sys::fs::lutimes")
}

/// Bytes available to an unprivileged writer on the file system holding `path`.
pub fn available_bytes(_path: &Path) -> Result<u64, FsError> {
    todo!("sys::fs::available_bytes")
}
