//! `stats`: a container's resource usage read from its cgroup (CRI `ContainerStats`).

use chrono::{DateTime, Utc};
use deckhand_sys::cgroup::{CpuStats, MemoryStats, PidsStats};

use super::update::cgroup_error;
use super::{ContainerError, Runtime};

/// One sample of a container's resource usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStats {
    /// When the counters were read (just before the first file).
    pub timestamp: DateTime<Utc>,
    /// `cpu.usage_ns` is CRI's `usage_core_nano_seconds`: cumulative, so a rate needs two
    /// samples and their timestamps.
    pub cpu: CpuStats,
    /// `memory.working_set` is what the kubelet evicts on; `usage` includes page cache.
    pub memory: MemoryStats,
    pub pids: PidsStats,
    /// The writable layer's disk use. [`Runtime::stats`] leaves it `None`: the runtime does not
    /// know the snapshotter; the caller that owns the snapshot fills it in.
    pub writable_layer: Option<LayerUsage>,
}

/// Disk use of a container's writable layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerUsage {
    pub used_bytes: u64,
    pub inodes_used: u64,
}

impl Runtime {
    /// Read container `id`'s CPU, memory and pids counters from its cgroup. Works in every
    /// state until `delete` removes the cgroup (a stopped container's counters are final).
    /// Cheap (a few small file reads); does not fork or touch libcontainer.
    pub fn stats(&self, id: &str) -> Result<ContainerStats, ContainerError> {
        let state = self.state(id)?;
        let timestamp = Utc::now();
        let path = &state.cgroup_path;
        let read = |e| cgroup_error(id, "read stats", e);
        Ok(ContainerStats {
            timestamp,
            cpu: self.cgroups.cpu_stats(path).map_err(read)?,
            memory: self.cgroups.memory_stats(path).map_err(read)?,
            pids: self.cgroups.pids_stats(path).map_err(read)?,
            writable_layer: None,
        })
    }
}
