//! `kill`: send a signal to a container's init (or every process of its cgroup).

use nix::sys::signal::Signal;

use super::status::ContainerStatus;
use super::{ContainerError, Runtime};

impl Runtime {
    /// Send `signal` to the container's init and, with `all`, to every process of its cgroup.
    /// A stopped container is an [`ContainerError::InvalidState`] error.
    ///
    /// Not libcontainer's `kill`: with `all` on cgroup v1 it freezes the cgroup first and waits
    /// for the freezer, which took seconds here and blocked the shim. Signalling the listed
    /// processes is what runc does without a freezer; a process forked in between is in the
    /// container's PID namespace and dies with its init on SIGKILL anyway.
    pub fn kill(&self, id: &str, signal: Signal, all: bool) -> Result<(), ContainerError> {
        let state = self.state(id)?;
        if state.status == ContainerStatus::Stopped {
            return Err(ContainerError::InvalidState {
                id: id.into(),
                state: state.status,
                op: "kill",
            });
        }
        let process_err = |source| ContainerError::Process {
            id: id.into(),
            source,
        };
        deckhand_sys::process::signal_pid(state.pid, signal as i32).map_err(process_err)?;
        if all {
            let controller = if self.cgroups.mode().is_v2() {
                ""
            } else {
                "memory"
            };
            for pid in self
                .cgroups
                .procs(controller, &state.cgroup_path)
                .unwrap_or_default()
            {
                deckhand_sys::process::signal_pid(pid, signal as i32).map_err(process_err)?;
            }
        }
        Ok(())
    }
}
