//! Mounting: overlay file systems for container root file systems, bind mounts, unmounts.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mount {kind} on {target}: {source}")]
    Mount {
        kind: String,
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("unmount {target}: {source}")]
    Unmount {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("overlay mount on {target}: {reason}")]
    Invalid { target: String, reason: String },
}

/// An overlay mount: `lower` is ordered top-most first, as overlayfs expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlaySpec {
    pub lower: Vec<PathBuf>,
    /// `None` mounts a read-only overlay of the lower layers only.
    pub upper: Option<PathBuf>,
    pub work: Option<PathBuf>,
}

/// Mount operations. The Linux implementation is [`LinuxMounter`]; tests above this seam use a
/// recording fake. Calls block on the kernel and may be slow under load: call from
/// `spawn_blocking` in async code.
pub trait Mounter: Send + Sync {
    fn mount_overlay(&self, spec: &OverlaySpec, target: &Path) -> Result<(), MountError>;
    fn bind(&self, source: &Path, target: &Path, read_only: bool) -> Result<(), MountError>;
    /// Detach-unmount; succeeds when `target` is not mounted.
    fn unmount(&self, target: &Path) -> Result<(), MountError>;
}

/// The real thing.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxMounter;

impl Mounter for LinuxMounter {
    fn mount_overlay(&self, _spec: &OverlaySpec, _target: &Path) -> Result<(), MountError> {
        todo!("LinuxMounter::mount_overlay")
    }
    fn bind(&self, _source: &Path, _target: &Path, _read_only: bool) -> Result<(), MountError> {
        todo!("LinuxMounter::bind")
    }
    fn unmount(&self, _target: &Path) -> Result<(), MountError> {
        todo!("LinuxMounter::unmount")
    }
}
