//! File-system metadata operations used when unpacking image layers: device nodes, fifos,
//! ownership and timestamps of symlinks, extended attributes, and free-space checks.
//!
//! All functions act on the path itself and never follow a final symlink, because layer
//! contents are untrusted and a symlink must never redirect a write outside the rootfs.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
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

    /// The error kind of the underlying OS error (`StorageFull`, `PermissionDenied`, ...).
    pub fn kind(&self) -> std::io::ErrorKind {
        match self {
            FsError::Io { source, .. } => source.kind(),
        }
    }

    /// True when the file system or the kernel does not support the operation (EOPNOTSUPP),
    /// e.g. an xattr namespace the file system lacks: callers may degrade gracefully.
    pub fn is_unsupported(&self) -> bool {
        self.raw_os_error() == Some(libc::EOPNOTSUPP)
    }

    /// True for EPERM / EACCES: the caller lacks the privilege (or the inode refuses, as
    /// `user.*` xattrs on symlinks do).
    pub fn is_permission(&self) -> bool {
        matches!(self.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
    }
}

fn err(op: &'static str, path: &Path) -> FsError {
    FsError::Io {
        op,
        path: path.display().to_string(),
        source: std::io::Error::last_os_error(),
    }
}

fn cpath(op: &'static str, path: &Path) -> Result<CString, FsError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| FsError::Io {
        op,
        path: path.display().to_string(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains a NUL byte"),
    })
}

fn cname(op: &'static str, path: &Path, name: &str) -> Result<CString, FsError> {
    CString::new(name).map_err(|_| FsError::Io {
        op,
        path: path.display().to_string(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("xattr name {name:?} contains a NUL byte"),
        ),
    })
}

/// Kind of special file for [`mknod`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Char,
    Block,
    Fifo,
}

/// `mknod(2)`: create a character or block device (`major`, `minor`) or a fifo (the device
/// numbers are ignored) at `path` with permission bits `mode` (the file type bits of `mode`
/// are ignored; the umask applies, so callers wanting exact bits chmod afterwards). Fails
/// with EEXIST when anything (even a dangling symlink) is at `path`.
pub fn mknod(
    path: &Path,
    kind: NodeKind,
    mode: u32,
    major: u64,
    minor: u64,
) -> Result<(), FsError> {
    let c = cpath("mknod", path)?;
    let (fmt, dev) = match kind {
        NodeKind::Char => (libc::S_IFCHR, makedev(major, minor)),
        NodeKind::Block => (libc::S_IFBLK, makedev(major, minor)),
        NodeKind::Fifo => (libc::S_IFIFO, 0),
    };
    let mode = fmt | (mode & 0o7777) as libc::mode_t;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let rc = unsafe { libc::mknod(c.as_ptr(), mode, dev) };
    if rc != 0 {
        return Err(err("mknod", path));
    }
    Ok(())
}

/// The kernel's device number from `major` and `minor` (glibc's `makedev`).
pub fn makedev(major: u64, minor: u64) -> u64 {
    libc::makedev(major as u32, minor as u32)
}

/// The (major, minor) pair of a device number such as `MetadataExt::rdev`.
pub fn split_dev(dev: u64) -> (u64, u64) {
    (libc::major(dev) as u64, libc::minor(dev) as u64)
}

/// `lchown(2)`: set owner of `path` without following a final symlink.
pub fn lchown(path: &Path, uid: u32, gid: u32) -> Result<(), FsError> {
    let c = cpath("lchown", path)?;
    // SAFETY: valid C string for the duration of the call.
    let rc = unsafe { libc::lchown(c.as_ptr(), uid, gid) };
    if rc != 0 {
        return Err(err("lchown", path));
    }
    Ok(())
}

/// `lsetxattr(2)`.
pub fn lsetxattr(path: &Path, name: &str, value: &[u8]) -> Result<(), FsError> {
    let c = cpath("lsetxattr", path)?;
    let n = cname("lsetxattr", path, name)?;
    // SAFETY: both strings are valid and NUL-terminated; `value` is a valid slice of the
    // given length.
    let rc = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(err("lsetxattr", path));
    }
    Ok(())
}

/// `lgetxattr(2)`; `Ok(None)` when the attribute is absent.
pub fn lgetxattr(path: &Path, name: &str) -> Result<Option<Vec<u8>>, FsError> {
    let c = cpath("lgetxattr", path)?;
    let n = cname("lgetxattr", path, name)?;
    // The value may change between the size query and the read; retry on ERANGE.
    loop {
        // SAFETY: a NULL buffer with size 0 asks for the value's size.
        let size = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) };
        if size < 0 {
            return match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::ENODATA) => Ok(None),
                _ => Err(err("lgetxattr", path)),
            };
        }
        let mut buf = vec![0u8; size as usize];
        // SAFETY: `buf` is writable for `buf.len()` bytes.
        let got =
            unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if got < 0 {
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::ERANGE) => continue,
                Some(libc::ENODATA) => return Ok(None),
                _ => return Err(err("lgetxattr", path)),
            }
        }
        buf.truncate(got as usize);
        return Ok(Some(buf));
    }
}

/// `llistxattr(2)`: the names of every extended attribute of `path` (not following a final
/// symlink). Used to carry xattrs along when a file is copied up from a lower layer.
pub fn llistxattr(path: &Path) -> Result<Vec<String>, FsError> {
    let c = cpath("llistxattr", path)?;
    loop {
        // SAFETY: a NULL buffer with size 0 asks for the list's size.
        let size = unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
        if size < 0 {
            return match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EOPNOTSUPP) => Ok(Vec::new()),
                _ => Err(err("llistxattr", path)),
            };
        }
        if size == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; size as usize];
        // SAFETY: `buf` is writable for `buf.len()` bytes.
        let got = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if got < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::ERANGE) {
                continue;
            }
            return Err(err("llistxattr", path));
        }
        buf.truncate(got as usize);
        return Ok(buf
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect());
    }
}

/// Set access and modification times (seconds, nanoseconds) without following symlinks.
pub fn lutimes(path: &Path, atime: (i64, i64), mtime: (i64, i64)) -> Result<(), FsError> {
    let c = cpath("utimensat", path)?;
    let times = [
        libc::timespec {
            tv_sec: atime.0 as libc::time_t,
            tv_nsec: atime.1 as _,
        },
        libc::timespec {
            tv_sec: mtime.0 as libc::time_t,
            tv_nsec: mtime.1 as _,
        },
    ];
    // SAFETY: `times` is an array of two valid timespecs; `c` is a valid C string.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(err("utimensat", path));
    }
    Ok(())
}

/// Bytes available to an unprivileged writer on the file system holding `path`.
pub fn available_bytes(path: &Path) -> Result<u64, FsError> {
    let c = cpath("statvfs", path)?;
    // SAFETY: statvfs is plain old data; zeroed is a valid value that the kernel overwrites.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and a valid out pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(err("statvfs", path));
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// `syncfs(2)` on the file system holding `path`: one call makes everything written there
/// durable, far cheaper than an fsync per file when a layer has thousands of them.
pub fn syncfs(path: &Path) -> Result<(), FsError> {
    let dir = std::fs::File::open(path).map_err(|source| FsError::Io {
        op: "open",
        path: path.display().to_string(),
        source,
    })?;
    use std::os::fd::AsRawFd;
    // SAFETY: the fd is open for the duration of the call.
    let rc = unsafe { libc::syncfs(dir.as_raw_fd()) };
    if rc != 0 {
        return Err(err("syncfs", path));
    }
    Ok(())
}

/// Open the directory at `path` for metadata changes (`fchmod`, `futimens`), refusing a final
/// symlink or a non-directory (ENOTDIR): a layer that swapped a directory for a symlink
/// must not get its chmod applied to whatever the symlink points at.
pub fn open_dir_nofollow(path: &Path) -> Result<std::fs::File, FsError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| FsError::Io {
            op: "open directory",
            path: path.display().to_string(),
            source,
        })
}

// From <linux/fs.h>; libc does not export them.
const FS_IMMUTABLE_FL: libc::c_long = 0x0000_0010;
const FS_APPEND_FL: libc::c_long = 0x0000_0020;

/// Clear the immutable and append-only inode flags (`chattr -ia`) of `path`, so it can be
/// removed. A no-op for symlinks, device nodes and file systems without inode flags.
pub fn clear_immutable(path: &Path) -> Result<(), FsError> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    // O_NOFOLLOW: never act on a symlink's target. O_NONBLOCK: opening a fifo must not hang.
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ELOOP) | Some(libc::ENXIO) | Some(libc::ENODEV)
            ) =>
        {
            return Ok(())
        }
        Err(source) => {
            return Err(FsError::Io {
                op: "open",
                path: path.display().to_string(),
                source,
            })
        }
    };
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one long to the pointer.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) };
    if rc != 0 {
        return match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::ENOTTY) | Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) => Ok(()),
            _ => Err(err("ioctl FS_IOC_GETFLAGS", path)),
        };
    }
    let mask = FS_IMMUTABLE_FL | FS_APPEND_FL;
    if flags & mask == 0 {
        return Ok(());
    }
    flags &= !mask;
    // SAFETY: FS_IOC_SETFLAGS reads one long from the pointer.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) };
    if rc != 0 {
        return Err(err("ioctl FS_IOC_SETFLAGS", path));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    fn require_root(what: &str) {
        assert!(
            crate::privilege::is_root(),
            "{what} needs root (device nodes, chown, trusted xattrs): run the tests as root (make test)"
        );
    }

    #[test]
    fn mknod_char_block_fifo() {
        require_root("mknod test");
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().join("null");
        mknod(&c, NodeKind::Char, 0o640, 1, 3).unwrap();
        let m = std::fs::symlink_metadata(&c).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!(split_dev(m.rdev()), (1, 3));
        let b = dir.path().join("loop");
        mknod(&b, NodeKind::Block, 0o600, 7, 200).unwrap();
        let m = std::fs::symlink_metadata(&b).unwrap();
        assert!(m.file_type().is_block_device());
        assert_eq!(split_dev(m.rdev()), (7, 200));
        assert_eq!(m.mode() & 0o777, 0o600);
        let f = dir.path().join("fifo");
        mknod(&f, NodeKind::Fifo, 0o644, 0, 0).unwrap();
        assert!(std::fs::symlink_metadata(&f).unwrap().file_type().is_fifo());
        // Whiteout form used by overlayfs: char 0/0.
        let w = dir.path().join("wh");
        mknod(&w, NodeKind::Char, 0, 0, 0).unwrap();
        assert_eq!(std::fs::symlink_metadata(&w).unwrap().rdev(), 0);
        let e = mknod(&w, NodeKind::Fifo, 0o644, 0, 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
        assert!(e.to_string().contains("wh"), "error names the path: {e}");
    }

    #[test]
    fn lchown_does_not_follow_symlinks() {
        require_root("lchown test");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        lchown(&link, 1234, 5678).unwrap();
        let lm = std::fs::symlink_metadata(&link).unwrap();
        assert_eq!((lm.uid(), lm.gid()), (1234, 5678));
        let fm = std::fs::metadata(&file).unwrap();
        assert_eq!((fm.uid(), fm.gid()), (0, 0));
        lchown(&file, 42, 43).unwrap();
        let fm = std::fs::metadata(&file).unwrap();
        assert_eq!((fm.uid(), fm.gid()), (42, 43));
        assert!(lchown(&dir.path().join("missing"), 0, 0).is_err());
    }

    #[test]
    fn xattrs_roundtrip() {
        require_root("xattr test (trusted.* needs CAP_SYS_ADMIN)");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(lgetxattr(&file, "user.deckhand").unwrap(), None);
        match lsetxattr(&file, "user.deckhand", b"hello") {
            Ok(()) => {
                assert_eq!(
                    lgetxattr(&file, "user.deckhand").unwrap().as_deref(),
                    Some(&b"hello"[..])
                );
            }
            // tmpfs before 6.6 had no user xattrs.
            Err(e) if e.is_unsupported() => {}
            Err(e) => panic!("{e}"),
        }
        lsetxattr(&file, "trusted.overlay.opaque", b"y").unwrap();
        assert_eq!(
            lgetxattr(&file, "trusted.overlay.opaque")
                .unwrap()
                .as_deref(),
            Some(&b"y"[..])
        );
        let names = llistxattr(&file).unwrap();
        assert!(
            names.contains(&"trusted.overlay.opaque".to_string()),
            "{names:?}"
        );
        // Empty values are legal and distinct from absence.
        lsetxattr(&file, "trusted.empty", b"").unwrap();
        assert_eq!(lgetxattr(&file, "trusted.empty").unwrap(), Some(Vec::new()));
        // On a symlink the attribute lands on the link, not on its target.
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        lsetxattr(&link, "trusted.link", b"1").unwrap();
        assert_eq!(lgetxattr(&file, "trusted.link").unwrap(), None);
        assert_eq!(
            lgetxattr(&link, "trusted.link").unwrap().as_deref(),
            Some(&b"1"[..])
        );
    }

    #[test]
    fn lutimes_sets_symlink_times_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let before = std::fs::metadata(&file).unwrap().mtime();
        lutimes(&link, (1_000_000, 5), (1_234_567, 890)).unwrap();
        let lm = std::fs::symlink_metadata(&link).unwrap();
        assert_eq!((lm.mtime(), lm.mtime_nsec()), (1_234_567, 890));
        assert_eq!(std::fs::metadata(&file).unwrap().mtime(), before);
        lutimes(&file, (0, 0), (42, 0)).unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().mtime(), 42);
    }

    #[test]
    fn open_dir_nofollow_refuses_symlinks_and_files() {
        let dir = tempfile::tempdir().unwrap();
        open_dir_nofollow(dir.path()).unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        // With O_DIRECTORY the kernel reports a final symlink as ENOTDIR rather than ELOOP.
        let e = open_dir_nofollow(&link).unwrap_err();
        assert!(
            matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)),
            "{e}"
        );
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(
            open_dir_nofollow(&file).unwrap_err().raw_os_error(),
            Some(libc::ENOTDIR)
        );
    }

    #[test]
    fn available_bytes_and_syncfs() {
        let dir = tempfile::tempdir().unwrap();
        let free = available_bytes(dir.path()).unwrap();
        assert!(free > 0);
        syncfs(dir.path()).unwrap();
        let e = available_bytes(&dir.path().join("missing")).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn clear_immutable_allows_removal() {
        require_root("chattr test");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o000)).unwrap();
        // Set the flag the way `chattr +i` does; skip the assertion on file systems without
        // inode flags (tmpfs before 6.0).
        let f = std::fs::File::open(&file).unwrap();
        use std::os::fd::AsRawFd;
        let mut flags: libc::c_long = 0;
        // SAFETY: test-only ioctls with valid pointers.
        let supported =
            unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) } == 0;
        if supported {
            flags |= FS_IMMUTABLE_FL;
            // SAFETY: as above.
            assert_eq!(
                unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) },
                0
            );
            assert!(
                std::fs::remove_file(&file).is_err(),
                "immutable file must resist removal"
            );
        }
        drop(f);
        clear_immutable(&file).unwrap();
        std::fs::remove_file(&file).unwrap();
        // Symlinks and fifos are skipped without error.
        let link = dir.path().join("l");
        std::os::unix::fs::symlink("/nonexistent", &link).unwrap();
        clear_immutable(&link).unwrap();
        let fifo = dir.path().join("p");
        mknod(&fifo, NodeKind::Fifo, 0o600, 0, 0).unwrap();
        clear_immutable(&fifo).unwrap();
    }
}
