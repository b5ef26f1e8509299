//! `delete`: remove a stopped container (or, forced, a running one) and all its files.

use nix::sys::signal::Signal;

use super::status::ContainerStatus;
use super::{error_chain, ContainerError, Runtime};

impl Runtime {
    /// Delete a container: its cgroup, libcontainer state, bundle and status record. A running
    /// container needs `force`: it is killed with SIGKILL and reaped first (so its exit is
    /// recorded and its cgroup is empty before removal). Deleting an unknown id is `NotFound`.
    pub fn delete(&self, id: &str, force: bool) -> Result<(), ContainerError> {
        let state = self.state(id)?;
        if state.status != ContainerStatus::Stopped {
            if !force {
                return Err(ContainerError::InvalidState {
                    id: id.into(),
                    state: state.status,
                    op: "delete without force",
                });
            }
            match self.kill(id, Signal::SIGKILL, true) {
                Ok(()) | Err(ContainerError::InvalidState { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if state.exit.is_none() {
            // Reap the init (it is our child) so it does not linger as a zombie.
            self.wait(id)?;
        }
        if self.container_state_dir(id).exists() {
            let mut c = self.load_libcontainer(id)?;
            c.delete(true).map_err(|e| ContainerError::Runtime {
                id: id.into(),
                op: "delete",
                message: error_chain(&e),
            })?;
        }
        let bundle = self.bundle_dir(id);
        if let Err(e) = std::fs::remove_dir_all(&bundle) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(super::io_err(id, "remove bundle", &bundle)(e));
            }
        }
        let status = self.status_path(id);
        match std::fs::remove_file(&status) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(super::io_err(id, "remove status", &status)(e)),
        }
    }
}
