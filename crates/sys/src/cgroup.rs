//! cgroupfs access that the runtime needs beside what `libcontainer` does: detecting the
//! hierarchy layout (v1, hybrid, v2), locating a cgroup's directory for a controller, reading
//! the OOM-kill counter and usage statistics of a container ([`stats`]), changing its limits
//! while it runs ([`update`]), and removing cgroup subtrees (pod and test parents).
//!
//! Every function takes the cgroupfs root (normally `/sys/fs/cgroup`) as a parameter so tests
//! can point it at fixture directories.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod stats;
mod update;

pub use stats::{
    memory_from_stat, parse_limit, parse_v1_throttling, parse_v2_cpu_stat, CgroupStats, CpuStats,
    MemoryStats, PidsStats, Throttling,
};
pub use update::{shares_to_weight, ResourceUpdate};

/// Default mount point of cgroupfs.
pub const DEFAULT_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroupfs at {root}: cannot tell the hierarchy layout (no cgroup.controllers, no v1 controller directories)")]
    UnknownLayout { root: PathBuf },
    #[error("cgroup {path}: controller {controller} is not mounted under {root}")]
    NoController {
        root: PathBuf,
        controller: String,
        path: String,
    },
    /// Reading or writing a cgroup file failed; `NotFound` means the cgroup is gone.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: no {key} entry")]
    MissingKey { path: PathBuf, key: String },
    /// A cgroup file holds something else than the kernel writes there (not retryable).
    #[error("{path}: unexpected content {text:?}")]
    Malformed { path: PathBuf, text: String },
    /// The kernel refused a new limit: EINVAL for a value out of range or one that conflicts
    /// with another limit or the parent's, ENOENT when the cgroup is gone.
    #[error("write {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    /// The requested change cannot be expressed on this host (not retryable).
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    /// v1 memory limit below what the cgroup uses and the kernel could not reclaim (EBUSY);
    /// a retry may succeed once the container frees memory.
    #[error("{path}: cannot lower the memory limit to {limit} bytes: the cgroup uses {usage} bytes that cannot be reclaimed")]
    LimitBelowUsage {
        path: PathBuf,
        limit: i64,
        usage: u64,
    },
    /// The cgroup still has processes after the removal retries; retry after killing them.
    #[error("remove cgroup {path}: still busy after retries: {source}")]
    Busy {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The layout of the cgroup hierarchies on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// Only v1 hierarchies (one directory per controller under the root).
    Legacy,
    /// v1 controller hierarchies plus an empty v2 hierarchy at `<root>/unified` (systemd's hybrid
    /// layout); controllers are used through v1.
    Hybrid,
    /// A single v2 hierarchy mounted at the root.
    Unified,
}

impl CgroupMode {
    /// Controllers are driven through the v2 interface files.
    pub fn is_v2(self) -> bool {
        self == CgroupMode::Unified
    }
}

/// Tell the layout of the cgroupfs mounted at `root` from its files.
pub fn detect(root: &Path) -> Result<CgroupMode, CgroupError> {
    if root.join("cgroup.controllers").is_file() {
        return Ok(CgroupMode::Unified);
    }
    let has_v1 = ["memory", "cpu", "pids", "devices"]
        .iter()
        .any(|c| find_v1_hierarchy(root, c).is_some());
    if !has_v1 {
        return Err(CgroupError::UnknownLayout {
            root: root.to_owned(),
        });
    }
    if root.join("unified/cgroup.controllers").is_file() {
        Ok(CgroupMode::Hybrid)
    } else {
        Ok(CgroupMode::Legacy)
    }
}

/// The v1 hierarchy directory holding `controller`: `<root>/<controller>` or a co-mounted
/// directory such as `<root>/cpu,cpuacct`.
fn find_v1_hierarchy(root: &Path, controller: &str) -> Option<PathBuf> {
    let direct = root.join(controller);
    if direct.join("cgroup.procs").exists() {
        return Some(direct);
    }
    let entries = fs::read_dir(root).ok()?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.split(',').any(|c| c == controller) && entry.path().join("cgroup.procs").exists() {
            return Some(entry.path());
        }
    }
    None
}

/// A cgroupfs root and its detected layout.
#[derive(Debug, Clone)]
pub struct Cgroups {
    root: PathBuf,
    mode: CgroupMode,
}

impl Cgroups {
    /// Detect the layout at `root` (normally [`DEFAULT_ROOT`]).
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, CgroupError> {
        let root = root.into();
        let mode = detect(&root)?;
        Ok(Self { root, mode })
    }

    pub fn mode(&self) -> CgroupMode {
        self.mode
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of cgroup `path` (e.g. `/deckhand-node/pod1/ctr`) for `controller`.
    pub fn dir(&self, controller: &str, path: &str) -> Result<PathBuf, CgroupError> {
        let rel = path.trim_start_matches('/');
        if self.mode.is_v2() {
            return Ok(self.root.join(rel));
        }
        find_v1_hierarchy(&self.root, controller)
            .map(|h| h.join(rel))
            .ok_or_else(|| CgroupError::NoController {
                root: self.root.clone(),
                controller: controller.to_owned(),
                path: path.to_owned(),
            })
    }

    /// Read an interface file of cgroup `path`, trimmed.
    pub fn read(&self, controller: &str, path: &str, file: &str) -> Result<String, CgroupError> {
        let p = self.dir(controller, path)?.join(file);
        fs::read_to_string(&p)
            .map(|s| s.trim().to_owned())
            .map_err(|source| CgroupError::Io { path: p, source })
    }

    /// Process ids in cgroup `path` (as seen from the v1 `controller` hierarchy, or the single
    /// v2 hierarchy).
    pub fn procs(&self, controller: &str, path: &str) -> Result<Vec<i32>, CgroupError> {
        Ok(self
            .read(controller, path, "cgroup.procs")?
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect())
    }

    /// How many times the kernel's OOM killer killed a process of cgroup `path`: v1
    /// `memory.oom_control` line `oom_kill`, v2 `memory.events` line `oom_kill`. Read it before
    /// the cgroup is removed.
    pub fn oom_kill_count(&self, path: &str) -> Result<u64, CgroupError> {
        let file = if self.mode.is_v2() {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        let p = self.dir("memory", path)?.join(file);
        let text = fs::read_to_string(&p).map_err(|source| CgroupError::Io {
            path: p.clone(),
            source,
        })?;
        parse_keyed(&text, "oom_kill").ok_or(CgroupError::MissingKey {
            path: p,
            key: "oom_kill".into(),
        })
    }

    /// Every hierarchy directory where cgroup `path` may exist: each v1 hierarchy (and the
    /// hybrid `unified` one), or the single v2 root.
    fn hierarchies(&self) -> Vec<PathBuf> {
        if self.mode.is_v2() {
            return vec![self.root.clone()];
        }
        let mut out = Vec::new();
        if let Ok(entries) = fs::read_dir(&self.root) {
            for e in entries.flatten() {
                let p = e.path();
                if p.join("cgroup.procs").exists() && !e.file_type().is_ok_and(|t| t.is_symlink()) {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }

    /// Remove cgroup `path` and all its descendants from every hierarchy. Missing directories
    /// are fine. A cgroup whose processes have just exited may stay busy for a moment, so each
    /// rmdir is retried briefly before [`CgroupError::Busy`].
    pub fn remove_tree(&self, path: &str) -> Result<(), CgroupError> {
        let rel = path.trim_start_matches('/');
        if rel.is_empty() {
            // Never remove a hierarchy root.
            return Ok(());
        }
        for h in self.hierarchies() {
            remove_dir_tree(&h.join(rel))?;
        }
        Ok(())
    }
}

fn remove_dir_tree(dir: &Path) -> Result<(), CgroupError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CgroupError::Io {
                path: dir.to_owned(),
                source,
            })
        }
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_dir_tree(&e.path())?;
        }
    }
    let mut attempt = 0;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 50 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(source) if source.raw_os_error() == Some(libc::EBUSY) => {
                return Err(CgroupError::Busy {
                    path: dir.to_owned(),
                    source,
                })
            }
            Err(source) => {
                return Err(CgroupError::Io {
                    path: dir.to_owned(),
                    source,
                })
            }
        }
    }
}

/// Value of `key` in a flat keyed file (`key value` lines), as in `memory.events`.
pub fn parse_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()? == key).then_some(())?;
        it.next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path, content: &str) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    #[test]
    fn detects_v2() {
        let t = tempfile::tempdir().unwrap();
        touch(&t.path().join("cgroup.controllers"), "cpu memory pids\n");
        assert_eq!(detect(t.path()).unwrap(), CgroupMode::Unified);
    }

    #[test]
    fn detects_hybrid_and_legacy_and_unknown() {
        let t = tempfile::tempdir().unwrap();
        assert!(matches!(
            detect(t.path()),
            Err(CgroupError::UnknownLayout { .. })
        ));
        touch(&t.path().join("memory/cgroup.procs"), "");
        touch(&t.path().join("cpu,cpuacct/cgroup.procs"), "");
        assert_eq!(detect(t.path()).unwrap(), CgroupMode::Legacy);
        touch(&t.path().join("unified/cgroup.controllers"), "");
        assert_eq!(detect(t.path()).unwrap(), CgroupMode::Hybrid);
        let cg = Cgroups::open(t.path()).unwrap();
        // Co-mounted controllers are found by their combined directory name.
        assert_eq!(
            cg.dir("cpuacct", "/a/b").unwrap(),
            t.path().join("cpu,cpuacct/a/b")
        );
        assert!(matches!(
            cg.dir("pids", "/a"),
            Err(CgroupError::NoController { .. })
        ));
    }

    #[test]
    fn oom_kill_counter_v1_and_v2() {
        let v1 = tempfile::tempdir().unwrap();
        touch(&v1.path().join("memory/cgroup.procs"), "");
        touch(
            &v1.path().join("memory/pod/ctr/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        );
        let cg = Cgroups::open(v1.path()).unwrap();
        assert_eq!(cg.oom_kill_count("/pod/ctr").unwrap(), 2);
        touch(
            &v1.path().join("memory/old/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\n",
        );
        assert!(matches!(
            cg.oom_kill_count("old"),
            Err(CgroupError::MissingKey { .. })
        ));
        assert!(matches!(
            cg.oom_kill_count("/gone"),
            Err(CgroupError::Io { .. })
        ));

        let v2 = tempfile::tempdir().unwrap();
        touch(&v2.path().join("cgroup.controllers"), "memory\n");
        touch(
            &v2.path().join("pod/ctr/memory.events"),
            "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n",
        );
        let cg = Cgroups::open(v2.path()).unwrap();
        assert_eq!(cg.oom_kill_count("pod/ctr").unwrap(), 1);
    }

    #[test]
    fn parse_keyed_ignores_prefix_matches() {
        assert_eq!(
            parse_keyed("oom_kill_disable 1\noom_kill 7\n", "oom_kill"),
            Some(7)
        );
        assert_eq!(parse_keyed("oom_kill_disable 1\n", "oom_kill"), None);
    }

    #[test]
    fn remove_tree_removes_children_first_in_every_hierarchy() {
        // Plain directories stand in for cgroupfs: rmdir semantics are the same for empty ones.
        let t = tempfile::tempdir().unwrap();
        touch(&t.path().join("memory/cgroup.procs"), "");
        touch(&t.path().join("pids/cgroup.procs"), "");
        fs::create_dir_all(t.path().join("memory/p/c1/c2")).unwrap();
        fs::create_dir_all(t.path().join("pids/p/c1")).unwrap();
        let cg = Cgroups::open(t.path()).unwrap();
        cg.remove_tree("/p").unwrap();
        assert!(!t.path().join("memory/p").exists());
        assert!(!t.path().join("pids/p").exists());
        // Missing is fine; the root is never removed.
        cg.remove_tree("/p").unwrap();
        cg.remove_tree("/").unwrap();
        assert!(t.path().join("memory").exists());
    }

    #[test]
    fn host_layout_is_detected() {
        // The build hosts are v1 hybrid, production v2: either way detection must succeed.
        let mode = detect(Path::new(DEFAULT_ROOT)).unwrap();
        assert!(matches!(
            mode,
            CgroupMode::Hybrid | CgroupMode::Unified | CgroupMode::Legacy
        ));
    }
}
