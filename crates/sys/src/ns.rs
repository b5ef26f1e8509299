//! Namespace pinning: a pod sandbox's network, IPC and UTS namespaces are created once and kept
//! alive by bind-mounting their `nsfs` handles onto plain files under the sandbox's directory, so
//! they outlive every process (no pause container). Containers join them by path.
//!
//! The namespaces are created on a short-lived dedicated thread: `unshare(2)` of net/ipc/uts only
//! affects the calling thread, so the caller (and every other thread of the process) stays in its
//! own namespaces, and the thread dies right after the bind mounts are made.

use std::fmt;
use std::fs;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

#[derive(Debug, thiserror::Error)]
pub enum NsError {
    /// The kernel refused to create the namespaces (missing privilege or kernel support); a
    /// retry does not help.
    #[error("unshare {kinds}: {source}")]
    Unshare {
        kinds: String,
        #[source]
        source: nix::Error,
    },
    /// Creating the pin file or bind-mounting the namespace onto it failed; retrying may help if
    /// the cause was transient (e.g. a full disk), and nothing is left behind.
    #[error("pin {kind} namespace at {path}: {source}")]
    Pin {
        kind: NsKind,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("release pinned namespace {path}: {source}")]
    Release {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("set hostname in the new UTS namespace: {source}")]
    Hostname {
        #[source]
        source: io::Error,
    },
    #[error("namespace pinning thread panicked")]
    ThreadPanicked,
}

/// The namespace kinds a pod sandbox owns and pins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NsKind {
    Net,
    Ipc,
    Uts,
}

impl NsKind {
    /// Name under `/proc/<pid>/ns/`; also the pin file's name.
    pub fn proc_name(self) -> &'static str {
        match self {
            NsKind::Net => "net",
            NsKind::Ipc => "ipc",
            NsKind::Uts => "uts",
        }
    }

    fn clone_flag(self) -> CloneFlags {
        match self {
            NsKind::Net => CloneFlags::CLONE_NEWNET,
            NsKind::Ipc => CloneFlags::CLONE_NEWIPC,
            NsKind::Uts => CloneFlags::CLONE_NEWUTS,
        }
    }
}

impl fmt::Display for NsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.proc_name())
    }
}

/// Pinned namespaces: one file per kind under the directory given to [`pin_namespaces`]. The
/// pins stay until [`PinnedNamespaces::release`] is called (dropping this value does not release
/// them: they must survive restarts of the process that created them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedNamespaces {
    pins: Vec<(NsKind, PathBuf)>,
}

impl PinnedNamespaces {
    /// The pin file of `kind`, if it was pinned.
    pub fn path(&self, kind: NsKind) -> Option<&Path> {
        self.pins
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, p)| p.as_path())
    }

    pub fn iter(&self) -> impl Iterator<Item = (NsKind, &Path)> {
        self.pins.iter().map(|(k, p)| (*k, p.as_path()))
    }

    /// Rebuild the handle of pins made earlier (e.g. after a restart) from their directory.
    /// Only kinds whose pin file exists are included.
    pub fn open(dir: &Path, kinds: &[NsKind]) -> Self {
        let pins = kinds
            .iter()
            .map(|k| (*k, dir.join(k.proc_name())))
            .filter(|(_, p)| p.exists())
            .collect();
        Self { pins }
    }

    /// Unmount and remove every pin file. Idempotent: pins already gone are skipped. The
    /// namespace itself disappears when the last process in it exits.
    pub fn release(&self) -> Result<(), NsError> {
        let mut first_err = None;
        for (_, path) in &self.pins {
            if let Err(e) = release_pin(path) {
                tracing::warn!(path = %path.display(), error = %e, "releasing namespace pin");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

fn release_pin(path: &Path) -> Result<(), NsError> {
    match umount2(path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (already unmounted); ENOENT: already removed.
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => {
            return Err(NsError::Release {
                path: path.to_owned(),
                source: e.into(),
            })
        }
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NsError::Release {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Create new namespaces of the given kinds and pin each at `dir/<kind>` (`dir` is created if
/// missing). Blocks for the duration of a thread spawn plus a few syscalls; needs
/// `CAP_SYS_ADMIN`. On failure every pin made so far is released.
pub fn pin_namespaces(dir: &Path, kinds: &[NsKind]) -> Result<PinnedNamespaces, NsError> {
    pin_namespaces_with_hostname(dir, kinds, None)
}

/// [`pin_namespaces`], also setting the hostname inside the new UTS namespace (a pod's
/// hostname belongs to its sandbox: containers joining the namespace see it).
pub fn pin_namespaces_with_hostname(
    dir: &Path,
    kinds: &[NsKind],
    hostname: Option<&str>,
) -> Result<PinnedNamespaces, NsError> {
    if hostname.is_some() && !kinds.contains(&NsKind::Uts) {
        return Err(NsError::Hostname {
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                "a hostname needs a new UTS namespace",
            ),
        });
    }
    fs::create_dir_all(dir).map_err(|source| NsError::Pin {
        kind: kinds.first().copied().unwrap_or(NsKind::Net),
        path: dir.to_owned(),
        source,
    })?;
    let dir = dir.to_owned();
    let kinds = kinds.to_vec();
    let hostname = hostname.map(str::to_owned);
    std::thread::Builder::new()
        .name("ns-pin".into())
        .spawn(move || pin_on_this_thread(&dir, &kinds, hostname.as_deref()))
        .map_err(|source| NsError::Pin {
            kind: NsKind::Net,
            path: PathBuf::new(),
            source,
        })?
        .join()
        .map_err(|_| NsError::ThreadPanicked)?
}

/// Runs on a throwaway thread: after `unshare` this thread lives in the new namespaces.
fn pin_on_this_thread(
    dir: &Path,
    kinds: &[NsKind],
    hostname: Option<&str>,
) -> Result<PinnedNamespaces, NsError> {
    let flags = kinds
        .iter()
        .fold(CloneFlags::empty(), |acc, k| acc | k.clone_flag());
    unshare(flags).map_err(|source| NsError::Unshare {
        kinds: kinds
            .iter()
            .map(|k| k.proc_name())
            .collect::<Vec<_>>()
            .join(","),
        source,
    })?;
    if let Some(h) = hostname {
        // Only this thread's (new) UTS namespace is affected.
        set_hostname(h).map_err(|source| NsError::Hostname { source })?;
    }
    let mut pinned = PinnedNamespaces { pins: Vec::new() };
    for &kind in kinds {
        let target = dir.join(kind.proc_name());
        let source = PathBuf::from(format!("/proc/thread-self/ns/{}", kind.proc_name()));
        let res = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&target)
            .and_then(|_| {
                mount(
                    Some(&source),
                    &target,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(io::Error::from)
            });
        if let Err(source) = res {
            // Remove the file we may have created, then whatever was pinned before it.
            let _ = fs::remove_file(&target);
            let _ = pinned.release();
            return Err(NsError::Pin {
                kind,
                path: target,
                source,
            });
        }
        pinned.pins.push((kind, target));
    }
    Ok(pinned)
}

fn set_hostname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes, valid for the call.
    let rc = unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The hostname of the calling thread's UTS namespace.
pub fn hostname() -> io::Result<String> {
    Ok(fs::read_to_string("/proc/sys/kernel/hostname")?
        .trim_end()
        .to_owned())
}

/// The namespace identity (`net:[4026532...]`) of a namespace file or `/proc/<pid>/ns/<kind>`,
/// as `readlink` shows it for proc links. For a pin file (a bind mount of an nsfs inode) this is
/// derived from the inode number, which is what the kernel prints.
pub fn ns_identity(path: &Path, kind: NsKind) -> io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path)?;
    Ok(format!("{}:[{}]", kind.proc_name(), meta.ino()))
}

/// A TCP connection to `addr` made from inside the network namespace at `netns` (a pin file
/// or `/proc/<pid>/ns/net`), for port-forwarding into a pod.
///
/// The socket is created on a throwaway thread that joins the namespace and exits right after
/// `connect`, so the caller's threads never change namespace; a socket stays in the namespace
/// it was created in, so the returned stream keeps talking to the pod. Blocking: call it from
/// `spawn_blocking` in async code.
pub fn connect_tcp_in_netns(netns: &Path, addr: SocketAddr) -> io::Result<TcpStream> {
    let ns = fs::File::open(netns)?;
    std::thread::Builder::new()
        .name("netns-connect".into())
        .spawn(move || {
            nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            TcpStream::connect(addr)
        })?
        .join()
        .map_err(|_| io::Error::other("netns connect thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn require_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test creates namespaces and mounts: run it as root"
        );
    }

    #[test]
    fn pins_new_namespaces_without_moving_the_caller() {
        require_root();
        let tmp = tempfile::tempdir().unwrap();
        let before = ns_identity(Path::new("/proc/thread-self/ns/net"), NsKind::Net).unwrap();
        let before_uts = ns_identity(Path::new("/proc/thread-self/ns/uts"), NsKind::Uts).unwrap();
        let host_name = hostname().unwrap();
        let pins = pin_namespaces_with_hostname(
            tmp.path(),
            &[NsKind::Net, NsKind::Ipc, NsKind::Uts],
            Some("pinned-host"),
        )
        .unwrap();
        assert_eq!(hostname().unwrap(), host_name, "caller's hostname changed");
        let uts_path = pins.path(NsKind::Uts).unwrap().to_owned();
        let seen = std::thread::spawn(move || {
            let f = fs::File::open(&uts_path).unwrap();
            nix::sched::setns(&f, CloneFlags::CLONE_NEWUTS).unwrap();
            hostname().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(seen, "pinned-host");

        // The caller did not move.
        assert_eq!(
            ns_identity(Path::new("/proc/thread-self/ns/net"), NsKind::Net).unwrap(),
            before
        );
        let net = pins.path(NsKind::Net).unwrap();
        let pinned = ns_identity(net, NsKind::Net).unwrap();
        assert_ne!(pinned, before, "pinned net namespace must be a new one");
        let uts = ns_identity(pins.path(NsKind::Uts).unwrap(), NsKind::Uts).unwrap();
        assert_ne!(uts, before_uts);

        // The pin is a usable namespace: a thread that joins it sees it as its own.
        let net_owned = net.to_owned();
        let joined = std::thread::spawn(move || {
            let f = fs::File::open(&net_owned).unwrap();
            nix::sched::setns(&f, CloneFlags::CLONE_NEWNET).unwrap();
            fs::read_link("/proc/thread-self/ns/net").unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(joined.to_string_lossy(), pinned);

        // Re-opening finds the same pins; release removes them and is idempotent.
        assert_eq!(
            PinnedNamespaces::open(tmp.path(), &[NsKind::Net, NsKind::Ipc, NsKind::Uts]),
            pins
        );
        pins.release().unwrap();
        assert!(!net.exists());
        pins.release().unwrap();
    }

    #[test]
    fn pin_fails_cleanly_when_dir_is_unusable() {
        require_root();
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("not-a-dir");
        fs::write(&file, b"x").unwrap();
        let err = pin_namespaces(&file, &[NsKind::Net]).unwrap_err();
        assert!(matches!(err, NsError::Pin { .. }), "{err}");
        let err = pin_namespaces_with_hostname(tmp.path(), &[NsKind::Net], Some("x")).unwrap_err();
        assert!(matches!(err, NsError::Hostname { .. }), "{err}");
    }
}
