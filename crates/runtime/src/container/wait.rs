//! `wait`: reap a container's init and record how it ended.

use chrono::Utc;
use nix::unistd::Pid;

use super::status::{ContainerStatus, ExitRecord};
use super::{io_err, ContainerError, Runtime};

impl Runtime {
    /// Block until the container's init ends, reap it, and record exit code or signal,
    /// OOMKilled (the cgroup's OOM-kill counter, read before the cgroup goes away) and the
    /// finish time. Only the container's parent (the process that created it) can wait; a
    /// container already waited for returns its recorded exit.
    pub fn wait(&self, id: &str) -> Result<ExitRecord, ContainerError> {
        let state = self.state(id)?;
        if let Some(exit) = &state.exit {
            return Ok(exit.clone());
        }
        let exit =
            deckhand_sys::process::wait_exit(Pid::from_raw(state.pid)).map_err(|source| {
                ContainerError::Process {
                    id: id.into(),
                    source,
                }
            })?;
        self.record_exit(id, exit)
    }

    /// Record how container `id`'s init ended, for a caller that reaped it itself (the shim
    /// reaps every child from its event loop). Idempotent: an exit already recorded is kept.
    pub fn record_exit(
        &self,
        id: &str,
        exit: deckhand_sys::process::Exit,
    ) -> Result<ExitRecord, ContainerError> {
        let mut state = self.state(id)?;
        if let Some(exit) = &state.exit {
            return Ok(exit.clone());
        }
        let finished_at = Utc::now();
        let oom_killed = match self.cgroups.oom_kill_count(&state.cgroup_path) {
            Ok(n) => n > 0,
            Err(e) => {
                tracing::warn!(id, error = %e, "cannot read OOM-kill counter; assuming no OOM kill");
                false
            }
        };
        let record = ExitRecord::new(exit, oom_killed, finished_at);
        state.status = ContainerStatus::Stopped;
        state.exit = Some(record.clone());
        let path = self.status_path(id);
        state
            .save(&path)
            .map_err(io_err(id, "write status", &path))?;
        Ok(record)
    }
}
