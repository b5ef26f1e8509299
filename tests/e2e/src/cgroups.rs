//! A per-test cgroup subtree (`/<name>` in every hierarchy) that the CRI runtimes under test put
//! their pods under, removed on drop with everything still running in it, so that a failing test
//! leaves no container behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct CgroupTree {
    /// `/deckhand-cri-<pid>-<nanos>`: the cgroup_parent prefix given to the runtime.
    pub name: String,
}

impl CgroupTree {
    pub fn new(prefix: &str) -> CgroupTree {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        CgroupTree {
            name: format!("/{prefix}-{}-{nanos}", std::process::id()),
        }
    }

    /// This subtree's directory in each mounted hierarchy (v1 controllers, named hierarchies
    /// and the v2 unified one); only the ones that exist.
    pub fn dirs(&self) -> Vec<PathBuf> {
        hierarchy_roots()
            .into_iter()
            .map(|r| r.join(self.name.trim_start_matches('/')))
            .filter(|d| d.is_dir())
            .collect()
    }

    /// SIGKILLs every process in the subtree and removes the cgroups, deepest first.
    pub fn destroy(&self) {
        for d in self.dirs() {
            kill_and_remove(&d);
        }
    }
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        self.destroy();
    }
}

/// Mount points of every cgroup (v1) and cgroup2 file system this process sees.
pub fn hierarchy_roots() -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fstype = post.split(' ').next()?;
            let mount_point = pre.split(' ').nth(4)?;
            (fstype == "cgroup" || fstype == "cgroup2").then(|| PathBuf::from(mount_point))
        })
        .collect()
}

fn kill_and_remove(dir: &Path) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                kill_and_remove(&e.path());
            }
        }
    }
    // A process can still be forking when we read the list, so kill and re-read a few times;
    // rmdir succeeds only once the cgroup is empty.
    for _ in 0..100 {
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
