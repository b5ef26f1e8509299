//! Live changes of a running container's limits (CRI `UpdateContainerResources`): CPU shares,
//! CFS quota and period, memory (+swap), cpuset and pids, written to the v1 controller files or
//! the v2 interface files with the conversions and write orders runc uses, so a container
//! updated by deckhand ends up where one updated by runc would.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use super::{CgroupError, Cgroups};

/// A change of a cgroup's limits. `None` leaves that setting as it is. Values follow the OCI
/// runtime spec (`LinuxResources`), including its "unlimited" spellings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceUpdate {
    /// v1 shares (2..=262144); 0 means unset. On v2 converted to `cpu.weight`
    /// ([`shares_to_weight`]).
    pub cpu_shares: Option<u64>,
    /// CFS quota in microseconds per period; -1 (or any value ≤ 0) removes the quota.
    pub cpu_quota: Option<i64>,
    /// CFS period in microseconds.
    pub cpu_period: Option<u64>,
    /// Memory limit in bytes; -1 removes it.
    pub memory_limit: Option<i64>,
    /// Memory plus swap in bytes (OCI `memory.swap`); -1 is unlimited. Equal to the memory
    /// limit means no swap.
    pub memory_swap: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    /// Maximum number of tasks; 0 or less is unlimited.
    pub pids_limit: Option<i64>,
}

/// Upper end of v2 `cpu.weight`.
const MAX_CPU_WEIGHT: u64 = 10_000;

/// Convert v1 CPU shares (2..=262144) to v2 `cpu.weight` (1..=10000) as runc 1.3.2+
/// (opencontainers/cgroups#20) and libcontainer 0.7 do, so a weight set by a live update equals
/// the one libcontainer wrote at create: a quadratic in log2(shares) through the three points
/// that matter, min (2 → 1), default (1024 → 100) and max (262144 → 10000). The older linear
/// formula mapped the default 1024 shares to 39, below the weight of a v2 process outside
/// any container. 0 means unset and stays 0.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    if shares <= 2 {
        return 1;
    }
    if shares >= 262_144 {
        return MAX_CPU_WEIGHT;
    }
    let l = (shares as f64).log2();
    let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
    (10f64.powf(exponent).ceil() as u64).clamp(1, MAX_CPU_WEIGHT)
}

/// Write `value` to an existing cgroup interface file. Never creates the file: a missing file
/// means the controller is not there, which must be an error and not a stray regular file.
fn write_file(path: &Path, value: &str) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    f.write_all(value.as_bytes())
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let p = dir.join(file);
    write_file(&p, value).map_err(|source| CgroupError::Write {
        path: p,
        value: value.to_owned(),
        source,
    })
}

fn read_trimmed(p: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(p)
        .map(|s| s.trim().to_owned())
        .map_err(|source| CgroupError::Io {
            path: p.to_owned(),
            source,
        })
}

fn is_errno(e: &CgroupError, errno: i32) -> bool {
    matches!(e, CgroupError::Write { source, .. } if source.raw_os_error() == Some(errno))
}

impl Cgroups {
    /// Apply `update` to cgroup `path`. Settings are written controller by controller; on an
    /// error the ones before it stay applied (as with runc), and applying the same update again
    /// is safe.
    pub fn update(&self, path: &str, update: &ResourceUpdate) -> Result<(), CgroupError> {
        if update.cpuset_cpus.is_some() || update.cpuset_mems.is_some() {
            self.set_cpuset(
                path,
                update.cpuset_cpus.as_deref(),
                update.cpuset_mems.as_deref(),
            )?;
        }
        if let Some(shares) = update.cpu_shares {
            self.set_cpu_shares(path, shares)?;
        }
        if update.cpu_quota.is_some() || update.cpu_period.is_some() {
            self.set_cpu_bandwidth(path, update.cpu_quota, update.cpu_period)?;
        }
        if update.memory_limit.is_some() || update.memory_swap.is_some() {
            self.set_memory_limit(path, update.memory_limit, update.memory_swap)?;
        }
        if let Some(limit) = update.pids_limit {
            self.set_pids_limit(path, limit)?;
        }
        Ok(())
    }

    /// v1 `cpu.shares`; v2 `cpu.weight` from [`shares_to_weight`]. 0 leaves the value as is.
    pub fn set_cpu_shares(&self, path: &str, shares: u64) -> Result<(), CgroupError> {
        if shares == 0 {
            return Ok(());
        }
        let dir = self.dir("cpu", path)?;
        if self.mode.is_v2() {
            write(&dir, "cpu.weight", &shares_to_weight(shares).to_string())
        } else {
            write(&dir, "cpu.shares", &shares.to_string())
        }
    }

    /// CFS bandwidth: v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us`, v2 `cpu.max`. A quota ≤ 0
    /// removes the limit.
    pub fn set_cpu_bandwidth(
        &self,
        path: &str,
        quota: Option<i64>,
        period: Option<u64>,
    ) -> Result<(), CgroupError> {
        let dir = self.dir("cpu", path)?;
        if self.mode.is_v2() {
            let q = |q: i64| {
                if q > 0 {
                    q.to_string()
                } else {
                    "max".to_owned()
                }
            };
            let value = match (quota, period) {
                (Some(quota), Some(period)) => format!("{} {period}", q(quota)),
                (Some(quota), None) => q(quota),
                // cpu.max takes "quota period" or "quota": keep the current quota.
                (None, Some(period)) => {
                    let cur = read_trimmed(&dir.join("cpu.max"))?;
                    let old = cur.split_whitespace().next().unwrap_or("max");
                    format!("{old} {period}")
                }
                (None, None) => return Ok(()),
            };
            return write(&dir, "cpu.max", &value);
        }
        let mut period_pending = false;
        if let Some(period) = period {
            if let Err(e) = write(&dir, "cpu.cfs_period_us", &period.to_string()) {
                // A shorter period can make old_quota/new_period exceed the parent's bandwidth,
                // which the kernel refuses with EINVAL. When a quota comes with it, write the
                // quota first and the period again (runc does the same).
                if !is_errno(&e, libc::EINVAL) || quota.is_none() {
                    return Err(e);
                }
                period_pending = true;
            }
        }
        if let Some(quota) = quota {
            let quota = if quota > 0 { quota } else { -1 };
            write(&dir, "cpu.cfs_quota_us", &quota.to_string())?;
            if period_pending {
                if let Some(period) = period {
                    write(&dir, "cpu.cfs_period_us", &period.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// Memory limit and memory+swap limit (OCI meanings; -1 is unlimited).
    ///
    /// v1: `memory.limit_in_bytes` must never exceed `memory.memsw.limit_in_bytes`, so when
    /// both change, the one that keeps that true is written first: swap first when it grows
    /// past the current memory limit (or becomes unlimited), memory first otherwise. Removing
    /// the memory limit without a swap value also removes the swap limit (as runc does), or the
    /// kernel would refuse it. A limit below what the cgroup uses and cannot reclaim is
    /// [`CgroupError::LimitBelowUsage`].
    ///
    /// v2: `memory.max`, and `memory.swap.max` = swap − memory (swap alone there).
    pub fn set_memory_limit(
        &self,
        path: &str,
        limit: Option<i64>,
        swap: Option<i64>,
    ) -> Result<(), CgroupError> {
        let dir = self.dir("memory", path)?;
        let num = |v: i64| {
            if v < 0 {
                "max".to_owned()
            } else {
                v.to_string()
            }
        };
        if self.mode.is_v2() {
            let memory = match limit {
                Some(l) => Some(l),
                None if swap.is_some_and(|s| s >= 0) => {
                    let cur = read_trimmed(&dir.join("memory.max"))?;
                    Some(cur.parse().unwrap_or(-1))
                }
                None => None,
            };
            if let Some(swap_max) = v2_swap_max(&dir, memory, swap)? {
                let v = num(swap_max);
                match write(&dir, "memory.swap.max", &v) {
                    // Without swap accounting, "no swap" and "unlimited swap" hold already.
                    Err(CgroupError::Write { ref source, .. })
                        if source.kind() == io::ErrorKind::NotFound && swap_max <= 0 => {}
                    r => r?,
                }
            }
            if let Some(l) = limit {
                write(&dir, "memory.max", &num(l))?;
            }
            return Ok(());
        }

        // v1 takes -1 for unlimited.
        let v1 = |v: i64| {
            if v < 0 {
                "-1".to_owned()
            } else {
                v.to_string()
            }
        };
        let memsw = dir.join("memory.memsw.limit_in_bytes");
        let has_memsw = memsw.exists();
        let mut swap = swap;
        if limit.is_some_and(|l| l < 0) && swap.is_none() && has_memsw {
            swap = Some(-1);
        }
        if swap.is_some() && !has_memsw {
            return Err(CgroupError::Invalid {
                path: memsw,
                reason: "swap accounting is off on this host (no memory.memsw.*): \
                         a memory+swap limit cannot be set"
                    .into(),
            });
        }
        let set_memory = |l: i64| -> Result<(), CgroupError> {
            match write(&dir, "memory.limit_in_bytes", &v1(l)) {
                Err(e) if is_errno(&e, libc::EBUSY) => {
                    let usage = read_trimmed(&dir.join("memory.usage_in_bytes"))?
                        .parse()
                        .unwrap_or(0);
                    Err(CgroupError::LimitBelowUsage {
                        path: dir.clone(),
                        limit: l,
                        usage,
                    })
                }
                r => r,
            }
        };
        let set_swap = |s: i64| write(&dir, "memory.memsw.limit_in_bytes", &v1(s));
        if let (Some(l), Some(s)) = (limit, swap) {
            let current: i64 = read_trimmed(&dir.join("memory.limit_in_bytes"))?
                .parse()
                .unwrap_or(i64::MAX);
            if s < 0 || current < s {
                set_swap(s)?;
                return set_memory(l);
            }
        }
        if let Some(l) = limit {
            set_memory(l)?;
        }
        if let Some(s) = swap {
            set_swap(s)?;
        }
        Ok(())
    }

    /// `cpuset.cpus` and `cpuset.mems` (list syntax such as `0-2,4`). Empty strings are skipped.
    pub fn set_cpuset(
        &self,
        path: &str,
        cpus: Option<&str>,
        mems: Option<&str>,
    ) -> Result<(), CgroupError> {
        let dir = self.dir("cpuset", path)?;
        if let Some(cpus) = cpus.filter(|c| !c.is_empty()) {
            write(&dir, "cpuset.cpus", cpus)?;
        }
        if let Some(mems) = mems.filter(|m| !m.is_empty()) {
            write(&dir, "cpuset.mems", mems)?;
        }
        Ok(())
    }

    /// `pids.max`; a limit of 0 or less is unlimited (`max`).
    pub fn set_pids_limit(&self, path: &str, limit: i64) -> Result<(), CgroupError> {
        let dir = self.dir("pids", path)?;
        let v = if limit > 0 {
            limit.to_string()
        } else {
            "max".to_owned()
        };
        write(&dir, "pids.max", &v)
    }
}

/// v2 `memory.swap.max` for an OCI memory+swap value, as runc's
/// `ConvertMemorySwapToCgroupV2Value`: unlimited memory with no swap value means unlimited
/// swap; otherwise swap.max = swap − memory. `None`: leave swap as it is.
fn v2_swap_max(
    dir: &Path,
    memory: Option<i64>,
    swap: Option<i64>,
) -> Result<Option<i64>, CgroupError> {
    let invalid = |reason: &str| CgroupError::Invalid {
        path: dir.join("memory.swap.max"),
        reason: reason.to_owned(),
    };
    match (memory, swap) {
        (Some(m), None) if m < 0 => Ok(Some(-1)),
        (_, None) => Ok(None),
        (_, Some(s)) if s < 0 => Ok(Some(-1)),
        (None, Some(_)) => Err(invalid("a swap limit needs a memory limit")),
        (Some(m), Some(_)) if m < 0 => Err(invalid("a swap limit needs a memory limit")),
        (Some(m), Some(s)) if s < m => Err(invalid(&format!(
            "memory+swap limit {s} is below the memory limit {m}"
        ))),
        (Some(m), Some(s)) => Ok(Some(s - m)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::{CgroupMode, DEFAULT_ROOT};
    use std::path::PathBuf;

    fn touch(p: &Path, content: &str) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    fn read(p: &Path) -> String {
        fs::read_to_string(p).unwrap().trim().to_owned()
    }

    #[test]
    fn shares_to_weight_matches_runc() {
        // Fixed points of runc 1.3.2+ / opencontainers/cgroups ConvertCPUSharesToCgroupV2Value.
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(1), 1);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 100);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1 << 20), 10_000);
        // Kubernetes' 100m CPU request is 102 shares; half a CPU 512.
        assert_eq!(shares_to_weight(102), 17);
        assert_eq!(shares_to_weight(512), 59);
        let mut last = 0;
        for s in (2..=262_144).step_by(97) {
            let w = shares_to_weight(s);
            assert!((1..=10_000).contains(&w) && w >= last, "{s} -> {w}");
            last = w;
        }
    }

    fn v2_fixture() -> (tempfile::TempDir, Cgroups, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        touch(&t.path().join("cgroup.controllers"), "cpu memory pids\n");
        let d = t.path().join("pod/ctr");
        for (f, v) in [
            ("cpu.weight", "100"),
            ("cpu.max", "max 100000"),
            ("memory.max", "max"),
            ("memory.swap.max", "max"),
            ("pids.max", "max"),
        ] {
            touch(&d.join(f), v);
        }
        let cg = Cgroups::open(t.path()).unwrap();
        (t, cg, d)
    }

    #[test]
    fn v2_cpu_max_combinations() {
        let (_t, cg, d) = v2_fixture();
        cg.set_cpu_bandwidth("/pod/ctr", None, Some(50_000))
            .unwrap();
        assert_eq!(read(&d.join("cpu.max")), "max 50000");
        cg.set_cpu_bandwidth("/pod/ctr", Some(20_000), Some(100_000))
            .unwrap();
        assert_eq!(read(&d.join("cpu.max")), "20000 100000");
        cg.set_cpu_bandwidth("/pod/ctr", None, Some(40_000))
            .unwrap();
        assert_eq!(read(&d.join("cpu.max")), "20000 40000");
        cg.set_cpu_bandwidth("/pod/ctr", Some(-1), None).unwrap();
        assert_eq!(read(&d.join("cpu.max")), "max");
        cg.set_cpu_shares("/pod/ctr", 512).unwrap();
        assert_eq!(read(&d.join("cpu.weight")), "59");
    }

    #[test]
    fn v2_memory_and_swap_follow_runc_conversion() {
        let (_t, cg, d) = v2_fixture();
        let mib = 1 << 20;
        // Swap equal to memory: no swap at all.
        cg.set_memory_limit("pod/ctr", Some(64 * mib), Some(64 * mib))
            .unwrap();
        assert_eq!(read(&d.join("memory.max")), (64 * mib).to_string());
        assert_eq!(read(&d.join("memory.swap.max")), "0");
        cg.set_memory_limit("pod/ctr", Some(32 * mib), Some(96 * mib))
            .unwrap();
        assert_eq!(read(&d.join("memory.swap.max")), (64 * mib).to_string());
        // Memory alone leaves swap alone.
        cg.set_memory_limit("pod/ctr", Some(48 * mib), None)
            .unwrap();
        assert_eq!(read(&d.join("memory.max")), (48 * mib).to_string());
        assert_eq!(read(&d.join("memory.swap.max")), (64 * mib).to_string());
        // Swap alone is relative to the current memory.max.
        cg.set_memory_limit("pod/ctr", None, Some(50 * mib))
            .unwrap();
        assert_eq!(read(&d.join("memory.swap.max")), (2 * mib).to_string());
        // Unlimited memory without a swap value: both unlimited.
        cg.set_memory_limit("pod/ctr", Some(-1), None).unwrap();
        assert_eq!(read(&d.join("memory.max")), "max");
        assert_eq!(read(&d.join("memory.swap.max")), "max");
        assert!(matches!(
            cg.set_memory_limit("pod/ctr", Some(64 * mib), Some(mib)),
            Err(CgroupError::Invalid { .. })
        ));
        assert!(matches!(
            cg.set_memory_limit("pod/ctr", None, Some(mib)),
            Err(CgroupError::Invalid { .. })
        ));
    }

    #[test]
    fn pids_and_missing_files() {
        let (_t, cg, d) = v2_fixture();
        cg.update(
            "/pod/ctr",
            &ResourceUpdate {
                pids_limit: Some(42),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(read(&d.join("pids.max")), "42");
        cg.set_pids_limit("/pod/ctr", 0).unwrap();
        assert_eq!(read(&d.join("pids.max")), "max");
        // A file the controller does not provide is an error, never created.
        assert!(matches!(
            cg.set_cpuset("/pod/ctr", Some("0"), None),
            Err(CgroupError::Write { .. })
        ));
        assert!(!d.join("cpuset.cpus").exists());
        assert!(matches!(
            cg.set_pids_limit("/gone", 1),
            Err(CgroupError::Write { .. })
        ));
    }

    /// A cgroup `/deckhand-sys-test-<pid>-<n>` in every hierarchy of the host, removed on drop.
    struct TempCgroup {
        cg: Cgroups,
        path: String,
    }

    impl TempCgroup {
        fn new() -> Self {
            assert!(
                nix::unistd::geteuid().is_root(),
                "this test writes host cgroups: run it as root"
            );
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let path = format!(
                "/deckhand-sys-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            );
            let cg = Cgroups::open(DEFAULT_ROOT).unwrap();
            let t = Self { cg, path };
            for c in ["cpu", "cpuacct", "cpuset", "memory", "pids"] {
                if let Ok(d) = t.cg.dir(c, &t.path) {
                    fs::create_dir_all(&d).unwrap();
                }
            }
            t
        }

        fn file(&self, controller: &str, file: &str) -> String {
            read(&self.cg.dir(controller, &self.path).unwrap().join(file))
        }
    }

    impl Drop for TempCgroup {
        fn drop(&mut self) {
            if let Err(e) = self.cg.remove_tree(&self.path) {
                eprintln!("cleanup {}: {e}", self.path);
            }
        }
    }

    #[test]
    fn updates_a_real_cgroup() {
        let t = TempCgroup::new();
        let v2 = t.cg.mode() == CgroupMode::Unified;
        let p = t.path.as_str();
        let mib: i64 = 1 << 20;
        let (mem_file, swap_file) = if v2 {
            ("memory.max", "memory.swap.max")
        } else {
            ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes")
        };
        let has_swap = t.cg.dir("memory", p).unwrap().join(swap_file).exists();

        t.cg.set_memory_limit(p, Some(64 * mib), None).unwrap();
        assert_eq!(t.file("memory", mem_file), (64 * mib).to_string());
        if has_swap {
            // Swap first when raising, memory first when lowering: both orders must succeed
            // under the kernel's memory <= memory+swap check.
            t.cg.set_memory_limit(p, Some(64 * mib), Some(64 * mib))
                .unwrap();
            t.cg.set_memory_limit(p, Some(256 * mib), Some(256 * mib))
                .unwrap();
            assert_eq!(t.file("memory", mem_file), (256 * mib).to_string());
            t.cg.set_memory_limit(p, Some(32 * mib), Some(48 * mib))
                .unwrap();
            assert_eq!(t.file("memory", mem_file), (32 * mib).to_string());
            let swap = if v2 { 16 * mib } else { 48 * mib };
            assert_eq!(t.file("memory", swap_file), swap.to_string());
            // Memory alone above the memory+swap limit: the kernel refuses, nothing changes.
            if !v2 {
                let e = t.cg.set_memory_limit(p, Some(128 * mib), None).unwrap_err();
                assert!(is_errno(&e, libc::EINVAL), "{e}");
            }
        }
        // Unlimited again.
        t.cg.set_memory_limit(p, Some(-1), None).unwrap();
        assert_eq!(
            t.cg.memory_stats(p).unwrap().limit,
            None,
            "memory limit must be gone"
        );

        t.cg.set_cpu_shares(p, 512).unwrap();
        if v2 {
            assert_eq!(t.file("cpu", "cpu.weight"), "59");
        } else {
            assert_eq!(t.file("cpu", "cpu.shares"), "512");
        }
        t.cg.set_cpu_bandwidth(p, Some(50_000), Some(100_000))
            .unwrap();
        // A shorter period with a quota that fits it.
        t.cg.set_cpu_bandwidth(p, Some(5_000), Some(10_000))
            .unwrap();
        if v2 {
            assert_eq!(t.file("cpu", "cpu.max"), "5000 10000");
        } else {
            assert_eq!(t.file("cpu", "cpu.cfs_quota_us"), "5000");
            assert_eq!(t.file("cpu", "cpu.cfs_period_us"), "10000");
        }
        t.cg.set_cpu_bandwidth(p, Some(-1), None).unwrap();
        if !v2 {
            assert_eq!(t.file("cpu", "cpu.cfs_quota_us"), "-1");
        }

        t.cg.set_pids_limit(p, 10).unwrap();
        assert_eq!(t.cg.pids_stats(p).unwrap().limit, Some(10));
        t.cg.set_pids_limit(p, -1).unwrap();
        assert_eq!(t.cg.pids_stats(p).unwrap().limit, None);

        if t.cg.dir("cpuset", p).is_ok_and(|d| d.exists()) {
            t.cg.set_cpuset(p, Some("0"), Some("0")).unwrap();
            assert_eq!(t.file("cpuset", "cpuset.cpus"), "0");
        }

        // An empty cgroup reads as all zeros, not as an error.
        let s = t.cg.stats(p).unwrap();
        assert_eq!((s.pids.current, s.oom_kills), (0, 0));
    }
}
