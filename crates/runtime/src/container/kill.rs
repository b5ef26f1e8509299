//! `kill`: send a signal to a container's init.

use nix::sys::signal::Signal;

use super::status::ContainerStatus;
use super::{error_chain, ContainerError, Runtime};

impl Runtime {
    /// Send `signal` to the container's init (and, with `all`, to every process of its
    /// cgroup). A stopped container is an [`ContainerError::InvalidState`] error.
    pub fn kill(&self, id: &str, signal: Signal, all: bool) -> Result<(), ContainerError> {
        let state = self.state(id)?;
        if state.status == ContainerStatus::Stopped {
            return Err(ContainerError::InvalidState {
                id: id.into(),
                state: state.status,
                op: "kill",
            });
        }
        let mut c = self.load_libcontainer(id)?;
        c.kill(signal, all).map_err(|e| ContainerError::Runtime {
            id: id.into(),
            op: "kill",
            message: error_chain(&e),
        })
    }
}
