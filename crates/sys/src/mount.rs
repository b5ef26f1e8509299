//! Mounting: overlay file systems for container root file systems, bind mounts, unmounts.
//!
//! Overlays are mounted with the new mount API (`fsopen`/`fsconfig`/`fsmount`/`move_mount`)
//! and one `lowerdir+` parameter per layer (Linux 6.8+), because `mount(2)` takes its options
//! as a single page: a deep image with long snapshot paths does not fit. Older kernels fall
//! back to `mount(2)` with the classic option string, which fails with a clear error when the
//! string would not fit.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
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
///
/// `mount_overlay` with a single lower layer and no upper becomes a read-only bind mount,
/// because overlayfs refuses a lone lower layer. `bind` is recursive (`MS_REC`, like the
/// kubelet's bind mounts of volumes); `read_only` makes the whole tree read-only.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxMounter;

impl Mounter for LinuxMounter {
    fn mount_overlay(&self, spec: &OverlaySpec, target: &Path) -> Result<(), MountError> {
        validate(spec, target)?;
        if spec.upper.is_none() && spec.lower.len() == 1 {
            return self.bind(&spec.lower[0], target, true);
        }
        // Before 6.5 overlayfs took fsconfig keys through the legacy shim, which accepts any
        // key and fails only at create time; before 6.8 there is no `lowerdir+`.
        if !kernel_at_least(6, 8) {
            return mount_overlay_legacy(spec, target);
        }
        match mount_overlay_fsconfig(spec, target) {
            Ok(()) => Ok(()),
            Err(NewApi::Unsupported) => mount_overlay_legacy(spec, target),
            Err(NewApi::Failed(e)) => Err(e),
        }
    }

    fn bind(&self, source: &Path, target: &Path, read_only: bool) -> Result<(), MountError> {
        let bind_err = |e: std::io::Error| MountError::Mount {
            kind: format!("bind of {}", source.display()),
            target: path_str(target),
            source: e,
        };
        let src = cstring(source).map_err(bind_err)?;
        let tgt = cstring(target).map_err(bind_err)?;
        // SAFETY: valid C strings; NULL fstype and data are allowed for MS_BIND.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                tgt.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(bind_err(std::io::Error::last_os_error()));
        }
        if read_only {
            if let Err(e) = make_read_only(&tgt) {
                // Never leave a writable bind behind when read-only was asked for.
                let _ = self.unmount(target);
                return Err(MountError::Mount {
                    kind: format!("read-only remount of bind of {}", source.display()),
                    target: path_str(target),
                    source: e,
                });
            }
        }
        Ok(())
    }

    fn unmount(&self, target: &Path) -> Result<(), MountError> {
        let tgt = cstring(target).map_err(|source| MountError::Unmount {
            target: path_str(target),
            source,
        })?;
        // SAFETY: valid C string.
        let rc = unsafe { libc::umount2(tgt.as_ptr(), libc::MNT_DETACH) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            // EINVAL: not a mount point; ENOENT: nothing there. Both mean "not mounted".
            if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOENT)) {
                return Ok(());
            }
            return Err(MountError::Unmount {
                target: path_str(target),
                source: e,
            });
        }
        Ok(())
    }
}

/// The running kernel's (major, minor) version, from uname(2).
pub fn kernel_version() -> Option<(u32, u32)> {
    // SAFETY: utsname is plain old data; uname fills it in.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out pointer.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return None;
    }
    // SAFETY: the kernel NUL-terminates the release field.
    let release = unsafe { CStr::from_ptr(uts.release.as_ptr()) };
    parse_kernel_release(&release.to_string_lossy())
}

fn parse_kernel_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    // An unparseable release: try the new API; the EINVAL/ENOSYS fallback still applies.
    kernel_version().is_none_or(|v| v >= (major, minor))
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

fn cstring(p: &Path) -> Result<CString, std::io::Error> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("path {} contains a NUL byte", p.display()),
        )
    })
}

fn invalid(target: &Path, reason: impl Into<String>) -> MountError {
    MountError::Invalid {
        target: path_str(target),
        reason: reason.into(),
    }
}

fn validate(spec: &OverlaySpec, target: &Path) -> Result<(), MountError> {
    if spec.lower.is_empty() {
        return Err(invalid(
            target,
            "no lower directories given; an overlay needs at least one layer",
        ));
    }
    if spec.upper.is_some() != spec.work.is_some() {
        return Err(invalid(
            target,
            "upper and work directories must be given together (or neither, for a read-only overlay)",
        ));
    }
    Ok(())
}

/// Make the mount at `target` (and every mount below it) read-only.
fn make_read_only(target: &CStr) -> Result<(), std::io::Error> {
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: valid C string and a valid mount_attr of the size passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            target.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::ENOSYS) {
        return Err(e);
    }
    // Before Linux 5.12: remount the top mount only. Keep the flags it already has, because
    // a bind remount that drops a locked flag (nosuid, nodev, ...) is refused with EPERM.
    // SAFETY: statvfs is plain old data.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out pointer.
    if unsafe { libc::statvfs(target.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
    for (st_flag, ms_flag) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if st.f_flag & st_flag != 0 {
            flags |= ms_flag;
        }
    }
    // SAFETY: valid C string; NULL source/fstype/data are allowed for a bind remount.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            target.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

enum NewApi {
    /// The kernel lacks the new mount API or the `lowerdir+` parameter: use `mount(2)`.
    Unsupported,
    Failed(MountError),
}

/// Reads the messages the kernel queued on a file-system context (`e overlay: ...`): they say
/// which path or option was wrong, which the bare errno does not.
fn context_log(fs_fd: &OwnedFd) -> String {
    let mut msgs = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        // SAFETY: `buf` is writable for its length; the fd is open.
        let n = unsafe { libc::read(fs_fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        let line = String::from_utf8_lossy(&buf[..n as usize])
            .trim()
            .to_string();
        // Strip the "e " / "w " / "i " severity prefix.
        let line = line.get(2..).unwrap_or(&line).to_string();
        msgs.push(line);
        if msgs.len() > 16 {
            break;
        }
    }
    msgs.join("; ")
}

fn mount_overlay_fsconfig(spec: &OverlaySpec, target: &Path) -> Result<(), NewApi> {
    let fail = |what: String, e: std::io::Error, log: String| {
        let msg = if log.is_empty() {
            format!("{what}: {e}")
        } else {
            format!("{what}: {e} (kernel: {log})")
        };
        NewApi::Failed(MountError::Mount {
            kind: "overlay".to_string(),
            target: path_str(target),
            source: std::io::Error::new(e.kind(), msg),
        })
    };
    // SAFETY: a static C string; fsopen returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), libc::FSOPEN_CLOEXEC) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOSYS) | Some(libc::EINVAL) => Err(NewApi::Unsupported),
            _ => Err(fail("fsopen".into(), e, String::new())),
        };
    }
    // SAFETY: `fd` is a fresh file descriptor that nothing else owns.
    let fs_fd = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };

    let set = |key: &CStr, value: &Path| -> Result<(), std::io::Error> {
        let v = cstring(value)?;
        // SAFETY: valid fd, key and value C strings; aux must be 0 for SET_STRING.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs_fd.as_raw_fd(),
                libc::FSCONFIG_SET_STRING as libc::c_uint,
                key.as_ptr(),
                v.as_ptr(),
                0 as libc::c_int,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };

    for (i, lower) in spec.lower.iter().enumerate() {
        if let Err(e) = set(c"lowerdir+", lower) {
            // An unknown parameter (before Linux 6.8) is EINVAL on the very first layer; later
            // failures are about the path itself.
            if i == 0 && e.raw_os_error() == Some(libc::EINVAL) {
                let log = context_log(&fs_fd);
                if log.is_empty() || log.contains("nknown parameter") {
                    return Err(NewApi::Unsupported);
                }
                return Err(fail(format!("lower layer {}", lower.display()), e, log));
            }
            let log = context_log(&fs_fd);
            return Err(fail(format!("lower layer {}", lower.display()), e, log));
        }
    }
    if let (Some(upper), Some(work)) = (&spec.upper, &spec.work) {
        set(c"upperdir", upper).map_err(|e| {
            fail(
                format!("upper dir {}", upper.display()),
                e,
                context_log(&fs_fd),
            )
        })?;
        set(c"workdir", work).map_err(|e| {
            fail(
                format!("work dir {}", work.display()),
                e,
                context_log(&fs_fd),
            )
        })?;
    }
    // SAFETY: valid fd; CMD_CREATE takes no key or value.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs_fd.as_raw_fd(),
            libc::FSCONFIG_CMD_CREATE as libc::c_uint,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0 as libc::c_int,
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return Err(fail(
            "create overlay superblock".into(),
            e,
            context_log(&fs_fd),
        ));
    }
    let attrs: u64 = if spec.upper.is_none() {
        libc::MOUNT_ATTR_RDONLY
    } else {
        0
    };
    // SAFETY: valid fd; returns a new mount fd or -1.
    let mfd = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs_fd.as_raw_fd(),
            libc::FSMOUNT_CLOEXEC,
            attrs as libc::c_uint,
        )
    };
    if mfd < 0 {
        let e = std::io::Error::last_os_error();
        return Err(fail("fsmount".into(), e, context_log(&fs_fd)));
    }
    // SAFETY: `mfd` is a fresh file descriptor that nothing else owns.
    let mnt_fd = unsafe { OwnedFd::from_raw_fd(mfd as libc::c_int) };
    let tgt = cstring(target).map_err(|e| fail("target".into(), e, String::new()))?;
    // SAFETY: valid fds and C strings; the empty path with F_EMPTY_PATH means "mnt_fd itself".
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt_fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            tgt.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return Err(fail("move_mount".into(), e, String::new()));
    }
    Ok(())
}

/// Escape the characters overlayfs's option parser treats specially (`,` between options,
/// `:` between lower layers).
fn escape_option(p: &Path) -> String {
    let s = p.to_string_lossy();
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, ',' | ':' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The classic `mount(2)` option string for `spec`.
pub(crate) fn legacy_options(spec: &OverlaySpec) -> String {
    let lower: Vec<String> = spec.lower.iter().map(|p| escape_option(p)).collect();
    let mut opts = format!("lowerdir={}", lower.join(":"));
    if let (Some(upper), Some(work)) = (&spec.upper, &spec.work) {
        opts.push_str(",upperdir=");
        opts.push_str(&escape_option(upper));
        opts.push_str(",workdir=");
        opts.push_str(&escape_option(work));
    }
    opts
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

pub(crate) fn mount_overlay_legacy(spec: &OverlaySpec, target: &Path) -> Result<(), MountError> {
    validate(spec, target)?;
    let opts = legacy_options(spec);
    // The kernel copies exactly one page of mount data, NUL included.
    if opts.len() + 1 > page_size() {
        return Err(invalid(
            target,
            format!(
                "the overlay option string for {} layers is {} bytes but mount(2) takes at most {}; \
                 this kernel lacks the `lowerdir+` mount API (Linux 6.8+): upgrade the kernel, \
                 use a shorter data directory path, or use an image with fewer layers",
                spec.lower.len(),
                opts.len(),
                page_size() - 1
            ),
        ));
    }
    let merr = |source: std::io::Error| MountError::Mount {
        kind: "overlay".to_string(),
        target: path_str(target),
        source,
    };
    let data = CString::new(opts).map_err(|_| {
        merr(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a layer path contains a NUL byte",
        ))
    })?;
    let tgt = cstring(target).map_err(merr)?;
    let flags = if spec.upper.is_none() {
        libc::MS_RDONLY
    } else {
        0
    };
    // SAFETY: valid C strings for source, target, fstype and data.
    let rc = unsafe {
        libc::mount(
            c"overlay".as_ptr(),
            tgt.as_ptr(),
            c"overlay".as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(merr(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Bind-mount `base/rel` onto `target` (an existing directory, or file for a file) without
/// following a symlink anywhere along `rel`: each component is opened with `O_NOFOLLOW` from
/// the one before, and the bind is made from the opened descriptor (`/proc/self/fd/N`). A
/// symlink swapped into the path after the caller checked it makes this fail (ELOOP) instead
/// of mounting what it points to (the kubelet's safe subPath, CVE-2017-1002101). `base` is
/// trusted as given.
pub fn bind_beneath(
    base: &Path,
    rel: &Path,
    target: &Path,
    read_only: bool,
) -> Result<(), MountError> {
    let fail = |what: String, source: std::io::Error| MountError::Mount {
        kind: format!("bind of {} beneath {}", rel.display(), base.display()),
        target: path_str(target),
        source: std::io::Error::new(source.kind(), format!("{what}: {source}")),
    };
    let open =
        |dirfd: libc::c_int, name: &CStr, flags: libc::c_int| -> Result<OwnedFd, std::io::Error> {
            // SAFETY: valid C string; openat returns a new fd or -1.
            let fd = unsafe {
                libc::openat(dirfd, name.as_ptr(), flags | libc::O_PATH | libc::O_CLOEXEC)
            };
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: a fresh fd nothing else owns.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        };
    let base_c = cstring(base).map_err(|e| fail("base".into(), e))?;
    let mut fd = open(libc::AT_FDCWD, &base_c, libc::O_DIRECTORY)
        .map_err(|e| fail(format!("open {}", base.display()), e))?;
    for c in rel.components() {
        let std::path::Component::Normal(name) = c else {
            if c == std::path::Component::CurDir {
                continue;
            }
            return Err(invalid(
                target,
                format!("{} must be a relative path without '..'", rel.display()),
            ));
        };
        let name_c = CString::new(name.as_bytes()).map_err(|_| {
            fail(
                "component".into(),
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL byte in path"),
            )
        })?;
        let next = open(fd.as_raw_fd(), &name_c, libc::O_NOFOLLOW)
            .map_err(|e| fail(format!("open {}", name.to_string_lossy()), e))?;
        // SAFETY: stat is plain old data; fstat fills it in.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid fd and out pointer.
        if unsafe { libc::fstat(next.as_raw_fd(), &mut st) } != 0 {
            return Err(fail("fstat".into(), std::io::Error::last_os_error()));
        }
        if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
            return Err(fail(
                format!("{} is a symlink", name.to_string_lossy()),
                std::io::Error::from_raw_os_error(libc::ELOOP),
            ));
        }
        fd = next;
    }
    let source = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    LinuxMounter.bind(&source, target, read_only)
}

/// Mount a fresh tmpfs on `target` (the kubelet's memory-backed emptyDir, secret and projected
/// volumes). `size_bytes` becomes `size=`, so writes past it fail with ENOSPC; `None` leaves
/// the kernel's default (half of RAM). `mode` sets the root directory's permission bits
/// (`None`: tmpfs's default 1777).
pub fn mount_tmpfs(
    target: &Path,
    size_bytes: Option<u64>,
    mode: Option<u32>,
) -> Result<(), MountError> {
    let merr = |source: std::io::Error| MountError::Mount {
        kind: "tmpfs".to_string(),
        target: path_str(target),
        source,
    };
    let mut opts = Vec::new();
    if let Some(size) = size_bytes {
        opts.push(format!("size={size}"));
    }
    if let Some(mode) = mode {
        opts.push(format!("mode={:o}", mode & 0o7777));
    }
    let data = CString::new(opts.join(",")).map_err(|_| {
        merr(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "tmpfs options contain a NUL byte",
        ))
    })?;
    let tgt = cstring(target).map_err(merr)?;
    // SAFETY: valid C strings for source, target, fstype and data.
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            tgt.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(merr(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Whether `path` is a mount point in the calling thread's mount namespace, from
/// `/proc/thread-self/mountinfo` (so bind mounts of the same file system count, unlike a
/// device-number comparison with the parent). `path` is canonicalized first; a missing path is
/// not a mount point.
pub fn is_mount_point(path: &Path) -> Result<bool, std::io::Error> {
    let canonical = match std::fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    // The thread's own view: a thread may have unshared its mount namespace.
    let info = std::fs::read_to_string("/proc/thread-self/mountinfo")
        .or_else(|_| std::fs::read_to_string("/proc/self/mountinfo"))?;
    let wanted = canonical.as_os_str().as_bytes();
    Ok(info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|mount_point| unescape_mountinfo(mount_point) == wanted))
}

/// Undo mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape_mountinfo(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Move the calling thread into a new mount namespace whose mounts propagate nowhere, so
/// mounts made afterwards (by this thread) are invisible to the host and vanish with it.
/// For tests and tools that must not touch the host's mount table.
pub fn enter_private_mount_namespace() -> Result<(), MountError> {
    // SAFETY: unshare has no memory-safety preconditions; it affects only this thread.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(MountError::Mount {
            kind: "new mount namespace".into(),
            target: "/".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: valid C string; NULL source/fstype/data are allowed for a propagation change.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(MountError::Mount {
            kind: "private propagation".into(),
            target: "/".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod tmpfs_tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo(r"/a\040b\011c\134d"), b"/a b\tc\\d");
        assert_eq!(unescape_mountinfo(r"/plain\04"), b"/plain\\04");
    }

    #[test]
    fn tmpfs_on_a_path_with_a_space_is_a_mount_point() {
        assert!(
            crate::privilege::is_root(),
            "mounts tmpfs: run as root (make test)"
        );
        enter_private_mount_namespace().expect("private mount namespace");
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("with space");
        std::fs::create_dir(&target).unwrap();
        assert!(!is_mount_point(&target).unwrap());
        mount_tmpfs(&target, Some(1 << 20), Some(0o700)).unwrap();
        let mounted = is_mount_point(&target);
        let mode = std::fs::metadata(&target).map(|m| {
            use std::os::unix::fs::PermissionsExt;
            m.permissions().mode() & 0o7777
        });
        LinuxMounter.unmount(&target).unwrap();
        assert!(mounted.unwrap());
        assert_eq!(mode.unwrap(), 0o700);
        assert!(!is_mount_point(&target).unwrap());
        assert!(!is_mount_point(&tmp.path().join("missing")).unwrap());
    }
}
