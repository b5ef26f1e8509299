//! The mounts volume plugins need, behind a trait so plugin logic is unit-tested with a
//! recording fake and integration tests use [`LinuxMounter`] (which calls `deckhand-sys`).

use std::path::Path;

use deckhand_sys::mount::MountError;

/// Mount calls made by volume setup and teardown. Called on the kubelet's blocking threads;
/// every call blocks on the kernel.
pub trait Mounter: Send + Sync {
    /// Mount a tmpfs on `target` (an existing directory), `size=` when given.
    fn mount_tmpfs(&self, target: &Path, size_bytes: Option<u64>) -> Result<(), MountError>;
    /// Detach-unmount `target`; succeeds when it is not mounted.
    fn unmount(&self, target: &Path) -> Result<(), MountError>;
    /// Whether something is mounted on `target`.
    fn is_mount_point(&self, target: &Path) -> Result<bool, std::io::Error>;
    /// Bind `base/rel` onto `target` (existing, same kind as the source) without following any
    /// symlink along `rel`: fails if one was swapped in (the safe subPath bind).
    fn bind_beneath(
        &self,
        base: &Path,
        rel: &Path,
        target: &Path,
        read_only: bool,
    ) -> Result<(), MountError>;
}

/// The real thing.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxMounter;

impl Mounter for LinuxMounter {
    fn mount_tmpfs(&self, target: &Path, size_bytes: Option<u64>) -> Result<(), MountError> {
        deckhand_sys::mount::mount_tmpfs(target, size_bytes, None)
    }

    fn unmount(&self, target: &Path) -> Result<(), MountError> {
        use deckhand_sys::mount::Mounter as _;
        deckhand_sys::mount::LinuxMounter.unmount(target)
    }

    fn is_mount_point(&self, target: &Path) -> Result<bool, std::io::Error> {
        deckhand_sys::mount::is_mount_point(target)
    }

    fn bind_beneath(
        &self,
        base: &Path,
        rel: &Path,
        target: &Path,
        read_only: bool,
    ) -> Result<(), MountError> {
        deckhand_sys::mount::bind_beneath(base, rel, target, read_only)
    }
}
