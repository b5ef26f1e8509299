//! Usage counters of one cgroup, read from the v1 controller files or the v2 interface files
//! and reported in the same units either way (nanoseconds, bytes, counts), as the CRI
//! `ContainerStats` and the kubelet's summary API want them.
//!
//! Working set is `usage - inactive_file` (never below 0), which is what cAdvisor and
//! containerd report and what the kubelet evicts on: page cache the kernel can drop at once does
//! not count. v1 takes the hierarchical `total_*` counters of `memory.stat`, v2's `memory.stat`
//! is hierarchical already.

use std::fs;

use super::{parse_keyed, CgroupError, Cgroups};

/// CPU time consumed by a cgroup and its descendants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// Total CPU time (v1 `cpuacct.usage`, v2 `cpu.stat` `usage_usec`), in nanoseconds.
    pub usage_ns: u64,
    pub user_ns: u64,
    pub system_ns: u64,
    /// CFS bandwidth throttling (all 0 when no quota was ever set).
    pub throttling: Throttling,
}

/// CFS bandwidth control counters (v1 `cpu.stat`, v2 `cpu.stat`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Throttling {
    /// Enforcement periods that elapsed while the cgroup had runnable tasks.
    pub periods: u64,
    /// Periods in which the cgroup used up its quota.
    pub throttled_periods: u64,
    /// Total time the cgroup's tasks were throttled, in nanoseconds.
    pub throttled_ns: u64,
}

/// Memory use of a cgroup and its descendants, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// v1 `memory.usage_in_bytes`, v2 `memory.current` (includes page cache).
    pub usage: u64,
    /// `usage - inactive_file`, saturating at 0.
    pub working_set: u64,
    /// Anonymous memory: v1 `total_rss`, v2 `anon`.
    pub rss: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    /// The hard limit; `None` when unlimited (v2 `max`, or v1's page-rounded `LONG_MAX`).
    pub limit: Option<u64>,
}

/// Task counts of a cgroup (`pids` controller).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PidsStats {
    pub current: u64,
    /// `pids.max`; `None` when unlimited (`max`).
    pub limit: Option<u64>,
}

/// Everything [`Cgroups::stats`] reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupStats {
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    pub pids: PidsStats,
    /// Processes killed by the kernel's OOM killer (see [`Cgroups::oom_kill_count`]).
    pub oom_kills: u64,
}

/// v1 reports "no limit" as `PAGE_COUNTER_MAX * PAGE_SIZE`: `LONG_MAX` rounded down to the page
/// size (9223372036854771712 with 4 KiB pages). Anything within the largest page size (64 KiB)
/// of `LONG_MAX` is that value.
fn v1_unlimited(v: u64) -> bool {
    v > (i64::MAX as u64) - (64 << 10)
}

/// A limit file's value: `max` (v2) or v1's page-rounded `LONG_MAX` is unlimited.
pub fn parse_limit(text: &str) -> Option<Option<u64>> {
    let t = text.trim();
    if t == "max" {
        return Some(None);
    }
    let v: u64 = t.parse().ok()?;
    Some((!v1_unlimited(v)).then_some(v))
}

impl Cgroups {
    fn read_file(
        &self,
        controller: &str,
        path: &str,
        file: &str,
    ) -> Result<(String, std::path::PathBuf), CgroupError> {
        let p = self.dir(controller, path)?.join(file);
        match fs::read_to_string(&p) {
            Ok(s) => Ok((s, p)),
            Err(source) => Err(CgroupError::Io { path: p, source }),
        }
    }

    fn read_u64(&self, controller: &str, path: &str, file: &str) -> Result<u64, CgroupError> {
        let (text, p) = self.read_file(controller, path, file)?;
        text.trim().parse().map_err(|_| CgroupError::Malformed {
            path: p,
            text: text.trim().to_owned(),
        })
    }

    fn read_limit(
        &self,
        controller: &str,
        path: &str,
        file: &str,
    ) -> Result<Option<u64>, CgroupError> {
        let (text, p) = self.read_file(controller, path, file)?;
        parse_limit(&text).ok_or_else(|| CgroupError::Malformed {
            path: p,
            text: text.trim().to_owned(),
        })
    }

    /// CPU usage of cgroup `path`.
    pub fn cpu_stats(&self, path: &str) -> Result<CpuStats, CgroupError> {
        if self.mode.is_v2() {
            let (text, p) = self.read_file("cpu", path, "cpu.stat")?;
            return parse_v2_cpu_stat(&text).ok_or(CgroupError::MissingKey {
                path: p,
                key: "usage_usec".into(),
            });
        }
        let usage_ns = self.read_u64("cpuacct", path, "cpuacct.usage")?;
        // `cpuacct.usage_user`/`_sys` are in nanoseconds (kernel 4.7+); `cpuacct.stat` only has
        // USER_HZ ticks, 10 ms apart, too coarse for short-lived containers.
        let (user_ns, system_ns) = match (
            self.read_u64("cpuacct", path, "cpuacct.usage_user"),
            self.read_u64("cpuacct", path, "cpuacct.usage_sys"),
        ) {
            (Ok(u), Ok(s)) => (u, s),
            _ => {
                let (text, _) = self.read_file("cpuacct", path, "cpuacct.stat")?;
                let tick = 1_000_000_000 / clock_ticks();
                (
                    parse_keyed(&text, "user").unwrap_or(0) * tick,
                    parse_keyed(&text, "system").unwrap_or(0) * tick,
                )
            }
        };
        // The cpu controller may sit in another hierarchy (it does on the build hosts).
        let throttling = match self.read_file("cpu", path, "cpu.stat") {
            Ok((text, _)) => parse_v1_throttling(&text),
            Err(CgroupError::NoController { .. }) => Throttling::default(),
            Err(e) => return Err(e),
        };
        Ok(CpuStats {
            usage_ns,
            user_ns,
            system_ns,
            throttling,
        })
    }

    /// Memory use of cgroup `path`.
    pub fn memory_stats(&self, path: &str) -> Result<MemoryStats, CgroupError> {
        let (usage_file, limit_file) = if self.mode.is_v2() {
            ("memory.current", "memory.max")
        } else {
            ("memory.usage_in_bytes", "memory.limit_in_bytes")
        };
        let usage = self.read_u64("memory", path, usage_file)?;
        let limit = self.read_limit("memory", path, limit_file)?;
        let (stat, _) = self.read_file("memory", path, "memory.stat")?;
        Ok(memory_from_stat(&stat, usage, limit, self.mode.is_v2()))
    }

    /// Task count and limit of cgroup `path`.
    pub fn pids_stats(&self, path: &str) -> Result<PidsStats, CgroupError> {
        Ok(PidsStats {
            current: self.read_u64("pids", path, "pids.current")?,
            limit: self.read_limit("pids", path, "pids.max")?,
        })
    }

    /// CPU, memory, pids and the OOM-kill count of cgroup `path`. `Io` with `NotFound` means
    /// the cgroup is gone (the container was deleted).
    pub fn stats(&self, path: &str) -> Result<CgroupStats, CgroupError> {
        Ok(CgroupStats {
            cpu: self.cpu_stats(path)?,
            memory: self.memory_stats(path)?,
            pids: self.pids_stats(path)?,
            oom_kills: self.oom_kill_count(path)?,
        })
    }
}

/// USER_HZ, the unit of v1 `cpuacct.stat`.
fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// v2 `cpu.stat`: `usage_usec`, `user_usec`, `system_usec`, and the throttling counters when
/// the cpu controller is enabled. `None` without `usage_usec`.
pub fn parse_v2_cpu_stat(text: &str) -> Option<CpuStats> {
    let us = |k| parse_keyed(text, k).unwrap_or(0).saturating_mul(1000);
    Some(CpuStats {
        usage_ns: parse_keyed(text, "usage_usec")?.saturating_mul(1000),
        user_ns: us("user_usec"),
        system_ns: us("system_usec"),
        throttling: Throttling {
            periods: parse_keyed(text, "nr_periods").unwrap_or(0),
            throttled_periods: parse_keyed(text, "nr_throttled").unwrap_or(0),
            throttled_ns: us("throttled_usec"),
        },
    })
}

/// v1 `cpu.stat` (`throttled_time` is in nanoseconds there).
pub fn parse_v1_throttling(text: &str) -> Throttling {
    Throttling {
        periods: parse_keyed(text, "nr_periods").unwrap_or(0),
        throttled_periods: parse_keyed(text, "nr_throttled").unwrap_or(0),
        throttled_ns: parse_keyed(text, "throttled_time").unwrap_or(0),
    }
}

/// Combine `memory.stat` with the usage and limit files. v1 uses the hierarchical `total_*`
/// keys (a container may have child cgroups), v2's keys are hierarchical already.
pub fn memory_from_stat(stat: &str, usage: u64, limit: Option<u64>, v2: bool) -> MemoryStats {
    let key = |v1: &str, v2name: &str| {
        if v2 {
            parse_keyed(stat, v2name)
        } else {
            parse_keyed(stat, v1)
        }
        .unwrap_or(0)
    };
    let inactive_file = key("total_inactive_file", "inactive_file");
    MemoryStats {
        usage,
        working_set: usage.saturating_sub(inactive_file),
        rss: key("total_rss", "anon"),
        page_faults: key("total_pgfault", "pgfault"),
        major_page_faults: key("total_pgmajfault", "pgmajfault"),
        limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn touch(p: &Path, content: &str) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    #[test]
    fn limits_parse_max_and_v1_unlimited() {
        assert_eq!(parse_limit("max\n"), Some(None));
        assert_eq!(parse_limit("9223372036854771712\n"), Some(None));
        // 64 KiB pages (arm64) round LONG_MAX down further.
        assert_eq!(parse_limit("9223372036854710272"), Some(None));
        assert_eq!(parse_limit("16777216\n"), Some(Some(16 << 20)));
        assert_eq!(parse_limit("x"), None);
    }

    #[test]
    fn v2_cpu_stat_is_converted_to_nanoseconds() {
        let text = "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 10\n\
                    nr_throttled 4\nthrottled_usec 1234\nnr_bursts 0\nburst_usec 0\n";
        let s = parse_v2_cpu_stat(text).unwrap();
        assert_eq!(
            (s.usage_ns, s.user_ns, s.system_ns),
            (2_500_000, 2_000_000, 500_000)
        );
        assert_eq!(
            s.throttling,
            Throttling {
                periods: 10,
                throttled_periods: 4,
                throttled_ns: 1_234_000
            }
        );
        // Without the cpu controller only the usage keys exist.
        let s = parse_v2_cpu_stat("usage_usec 7\nuser_usec 5\nsystem_usec 2\n").unwrap();
        assert_eq!(s.throttling, Throttling::default());
        assert!(parse_v2_cpu_stat("user_usec 5\n").is_none());
    }

    #[test]
    fn working_set_subtracts_inactive_file_and_saturates() {
        let v1 = "cache 100\nrss 1\ninactive_file 7\ntotal_rss 4096\ntotal_inactive_file 1000\n\
                  total_pgfault 55\ntotal_pgmajfault 2\npgfault 1\n";
        let m = memory_from_stat(v1, 5000, Some(1 << 20), false);
        assert_eq!(
            m,
            MemoryStats {
                usage: 5000,
                working_set: 4000,
                rss: 4096,
                page_faults: 55,
                major_page_faults: 2,
                limit: Some(1 << 20),
            }
        );
        let v2 = "anon 8192\nfile 3000\ninactive_file 9000\npgfault 9\npgmajfault 1\n";
        let m = memory_from_stat(v2, 5000, None, true);
        assert_eq!((m.working_set, m.rss, m.page_faults), (0, 8192, 9));
    }

    #[test]
    fn v1_stats_from_split_hierarchies() {
        // cpu and cpuacct mounted separately, as on the build hosts.
        let t = tempfile::tempdir().unwrap();
        for c in ["cpu", "cpuacct", "memory", "pids"] {
            touch(&t.path().join(c).join("cgroup.procs"), "");
        }
        let d = |c: &str| t.path().join(c).join("pod/ctr");
        touch(&d("cpuacct").join("cpuacct.usage"), "3000000\n");
        touch(&d("cpuacct").join("cpuacct.usage_user"), "2000000\n");
        touch(&d("cpuacct").join("cpuacct.usage_sys"), "1000000\n");
        touch(
            &d("cpu").join("cpu.stat"),
            "nr_periods 3\nnr_throttled 1\nthrottled_time 99\n",
        );
        touch(&d("memory").join("memory.usage_in_bytes"), "8192\n");
        touch(
            &d("memory").join("memory.limit_in_bytes"),
            "9223372036854771712\n",
        );
        touch(
            &d("memory").join("memory.stat"),
            "total_rss 4096\ntotal_inactive_file 4096\n",
        );
        touch(
            &d("memory").join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        );
        touch(&d("pids").join("pids.current"), "3\n");
        touch(&d("pids").join("pids.max"), "max\n");
        let cg = Cgroups::open(t.path()).unwrap();
        let s = cg.stats("/pod/ctr").unwrap();
        assert_eq!(s.cpu.usage_ns, 3_000_000);
        assert_eq!((s.cpu.user_ns, s.cpu.system_ns), (2_000_000, 1_000_000));
        assert_eq!(s.cpu.throttling.throttled_ns, 99);
        assert_eq!((s.memory.usage, s.memory.working_set), (8192, 4096));
        assert_eq!(s.memory.limit, None);
        assert_eq!(
            s.pids,
            PidsStats {
                current: 3,
                limit: None
            }
        );

        // Old kernels: only tick counts in cpuacct.stat.
        fs::remove_file(d("cpuacct").join("cpuacct.usage_user")).unwrap();
        touch(&d("cpuacct").join("cpuacct.stat"), "user 3\nsystem 1\n");
        let tick = 1_000_000_000 / clock_ticks();
        let c = cg.cpu_stats("/pod/ctr").unwrap();
        assert_eq!((c.user_ns, c.system_ns), (3 * tick, tick));

        fs::write(d("pids").join("pids.current"), "lots\n").unwrap();
        assert!(matches!(
            cg.pids_stats("/pod/ctr"),
            Err(CgroupError::Malformed { .. })
        ));
        assert!(matches!(cg.stats("/gone"), Err(CgroupError::Io { .. })));
    }

    #[test]
    fn v2_stats_from_one_hierarchy() {
        let t = tempfile::tempdir().unwrap();
        touch(&t.path().join("cgroup.controllers"), "cpu memory pids\n");
        let d = t.path().join("pod/ctr");
        touch(
            &d.join("cpu.stat"),
            "usage_usec 10\nuser_usec 6\nsystem_usec 4\n",
        );
        touch(&d.join("memory.current"), "10000\n");
        touch(&d.join("memory.max"), "16777216\n");
        touch(
            &d.join("memory.stat"),
            "anon 6000\ninactive_file 1000\npgfault 3\n",
        );
        touch(&d.join("memory.events"), "oom 1\noom_kill 1\n");
        touch(&d.join("pids.current"), "1\n");
        touch(&d.join("pids.max"), "64\n");
        let s = Cgroups::open(t.path()).unwrap().stats("pod/ctr").unwrap();
        assert_eq!(s.cpu.usage_ns, 10_000);
        assert_eq!(s.memory.working_set, 9000);
        assert_eq!(s.memory.limit, Some(16 << 20));
        assert_eq!(s.pids.limit, Some(64));
        assert_eq!(s.oom_kills, 1);
    }
}
