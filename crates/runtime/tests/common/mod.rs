//! Fixtures for tests that run real containers: root check, a busybox root file system, a
//! runtime in its own temp dir with its own cgroup parent, all removed on drop.

#![allow(dead_code)]

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use deckhand_runtime::container::{
    ContainerError, ContainerState, ExitRecord, Runtime, RuntimeConfig, Stdio,
};
use deckhand_runtime::spec::ContainerConfig;

/// `Runtime::create` forks this multi-threaded test process. A lock another thread holds at
/// that moment (Rust's environment lock, taken by `Command::spawn`, `tempdir` or the first
/// `thread::spawn`) stays locked forever in the child, and libcontainer's init then deadlocks
/// when it sets the container's environment. Tests take this lock shared around code that may
/// touch such locks, and exclusively around every create.
static FORK_GUARD: RwLock<()> = RwLock::new(());

pub fn no_fork() -> RwLockReadGuard<'static, ()> {
    FORK_GUARD.read().unwrap_or_else(|e| e.into_inner())
}

fn forking() -> RwLockWriteGuard<'static, ()> {
    FORK_GUARD.write().unwrap_or_else(|e| e.into_inner())
}

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests run real containers (namespaces, cgroups, mounts): run them as root"
    );
}

/// A minimal image: busybox-static plus a symlink per applet, /etc/passwd and /etc/group with
/// root and `app` (1000:1000, also in group `extra` 2000).
pub fn busybox_rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for d in [
        "bin", "etc", "proc", "sys", "dev", "tmp", "root", "home/app",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .expect("/bin/busybox (Debian busybox-static) is needed to build the test rootfs");
    let list = std::process::Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = root.join("bin").join(applet);
        if applet != "busybox" && !link.exists() {
            std::os::unix::fs::symlink("busybox", link).unwrap();
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/group"),
        "root:x:0:\napp:x:1000:\nextra:x:2000:app\n",
    )
    .unwrap();
    root
}

fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{nanos:x}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// One runtime, rootfs and cgroup parent per test.
pub struct Fixture {
    pub rt: Runtime,
    pub rootfs: PathBuf,
    pub cgroup_parent: String,
    pub tmp: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Self {
        require_root();
        let _g = no_fork();
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = busybox_rootfs(tmp.path());
        let rt = Runtime::new(RuntimeConfig::new(tmp.path().join("data"))).unwrap();
        Self {
            rt,
            rootfs,
            cgroup_parent: unique("deckhand-test"),
            tmp,
        }
    }

    pub fn config(&self, args: &[&str]) -> ContainerConfig {
        ContainerConfig {
            rootfs: self.rootfs.clone(),
            args: args.iter().map(|s| s.to_string()).collect(),
            cgroup_parent: self.cgroup_parent.clone(),
            ..Default::default()
        }
    }

    pub fn id(&self) -> String {
        unique("c")
    }

    /// `Runtime::create`, serialised against code that may hold locks (see [`FORK_GUARD`]).
    pub fn create(
        &self,
        id: &str,
        config: &ContainerConfig,
        stdio: Stdio,
    ) -> Result<ContainerState, ContainerError> {
        let _g = forking();
        self.rt.create(id, config, stdio)
    }

    /// Run to completion; returns the exit and what the container wrote to stdout and stderr.
    pub fn run(&self, config: &ContainerConfig) -> (ExitRecord, String, String) {
        let (out_r, out_w) = pipe();
        let (err_r, err_w) = pipe();
        let id = self.id();
        self.create(
            &id,
            config,
            Stdio {
                stdin: None,
                stdout: Some(out_w),
                stderr: Some(err_w),
                console_socket: None,
            },
        )
        .unwrap();
        let exit = self.rt.start(&id).and_then(|()| self.rt.wait(&id));
        let deleted = self.rt.delete(&id, true);
        let exit = exit.unwrap();
        deleted.unwrap();
        (exit, read_all(out_r), read_all(err_r))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Err(e) = self.rt.cgroups().remove_tree(&self.cgroup_parent) {
            eprintln!("cleanup: cgroup {}: {e}", self.cgroup_parent);
        }
    }
}

pub fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap()
}

pub fn read_all(fd: OwnedFd) -> String {
    let mut s = String::new();
    std::fs::File::from(fd).read_to_string(&mut s).unwrap();
    s
}
