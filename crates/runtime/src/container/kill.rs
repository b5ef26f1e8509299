//! `kill`: send a signal to a container's init (or every process of its cgroup).

use nix::sys::signal::Signal;

use super::status::ContainerStatus;
use super::{ContainerError, Runtime};

impl Runtime {
    /// Send `signal` to the container's init and, with `all`, to every process of its cgroup.
    /// A stopped container is an [`ContainerError::InvalidState`] error.
    /// See [`deckhand_shim::ops::signal_container`] for why this is not libcontainer's kill.
    pub fn kill(&self, id: &str, signal: Signal, all: bool) -> Result<(), ContainerError> {
        let state = self.state(id)?;
        if state.status == ContainerStatus::Stopped {
            return Err(ContainerError::InvalidState {
                id: id.into(),
                state: state.status,
                op: "kill",
            });
        }
        deckhand_shim::ops::signal_container(&self.cgroups, &state, signal as i32, all).map_err(
            |source| ContainerError::Process {
                id: id.into(),
                source,
            },
        )
    }
}
