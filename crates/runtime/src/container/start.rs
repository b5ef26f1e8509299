//! `start`: release a created container's init to exec the user process; and `state`.

use chrono::Utc;

use super::status::{ContainerState, ContainerStatus};
use super::{error_chain, io_err, ContainerError, Runtime};

impl Runtime {
    /// Start a created container. Records the start time.
    pub fn start(&self, id: &str) -> Result<(), ContainerError> {
        let mut state = self.state(id)?;
        if state.status != ContainerStatus::Created {
            return Err(ContainerError::InvalidState {
                id: id.into(),
                state: state.status,
                op: "start",
            });
        }
        let mut c = self.load_libcontainer(id)?;
        let started_at = Utc::now();
        c.start().map_err(|e| ContainerError::Runtime {
            id: id.into(),
            op: "start",
            message: error_chain(&e),
        })?;
        state.status = ContainerStatus::Running;
        state.started_at = Some(started_at);
        let path = self.status_path(id);
        state.save(&path).map_err(io_err(id, "write status", &path))
    }

    /// The container's current state: the recorded status, corrected by whether its init still
    /// exists (an init that died but was not yet waited for shows as stopped, without exit).
    pub fn state(&self, id: &str) -> Result<ContainerState, ContainerError> {
        let path = self.status_path(id);
        let mut state = match ContainerState::load(&path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ContainerError::NotFound { id: id.into() })
            }
            Err(e) => return Err(io_err(id, "read status", &path)(e)),
        };
        if state.exit.is_none() && state.status != ContainerStatus::Stopped && !alive(state.pid) {
            state.status = ContainerStatus::Stopped;
        }
        Ok(state)
    }
}

/// The process exists and is not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|s| s != "Z" && s != "X"),
        Err(_) => false,
    }
}
