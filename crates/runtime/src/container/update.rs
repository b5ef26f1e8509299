//! `update_resources`: change a running container's cgroup limits in place (CRI
//! `UpdateContainerResources`).

use deckhand_sys::cgroup::{CgroupError, ResourceUpdate};

use super::status::ContainerStatus;
use super::{ContainerError, Runtime};
use crate::spec::Resources;

impl Runtime {
    /// Apply the limits set in `resources` to container `id`'s cgroup; fields left `None` keep
    /// their current values. The container must be created or running.
    ///
    /// Memory follows what `create` sets: the memory limit only. On v1 the memory+swap limit
    /// is left as it is (create leaves it unlimited), on v2 `memory.swap.max` too. CPU shares
    /// become `cpu.weight` on v2 with the same conversion libcontainer used at create.
    ///
    /// The cgroup files are the only record of the limits: the spec in the bundle and
    /// libcontainer's state keep the values from create. On an error the settings written
    /// before it stay applied (as with `runc update`); repeating the call is safe.
    pub fn update_resources(&self, id: &str, resources: &Resources) -> Result<(), ContainerError> {
        let state = self.state(id)?;
        if state.status == ContainerStatus::Stopped {
            return Err(ContainerError::InvalidState {
                id: id.into(),
                state: state.status,
                op: "update resources",
            });
        }
        let update = ResourceUpdate {
            cpu_shares: resources.cpu_shares,
            cpu_quota: resources.cpu_quota,
            cpu_period: resources.cpu_period,
            memory_limit: resources.memory_limit,
            memory_swap: None,
            cpuset_cpus: resources.cpuset_cpus.clone(),
            cpuset_mems: resources.cpuset_mems.clone(),
            pids_limit: resources.pids_limit,
        };
        self.cgroups
            .update(&state.cgroup_path, &update)
            .map_err(|e| cgroup_error(id, "update resources", e))
    }
}

/// Map a cgroup error onto [`ContainerError`], keeping the kernel's `io::Error` (and its errno)
/// as the source where there is one.
pub(super) fn cgroup_error(id: &str, op: &'static str, e: CgroupError) -> ContainerError {
    match e {
        CgroupError::Io { path, source } | CgroupError::Write { path, source, .. } => {
            ContainerError::Io {
                id: id.into(),
                op,
                path,
                source,
            }
        }
        other => ContainerError::Runtime {
            id: id.into(),
            op,
            message: other.to_string(),
        },
    }
}
