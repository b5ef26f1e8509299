//! `start`: release a created container's init to exec the user process; and `state`.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

use chrono::Utc;
use libcontainer::notify_socket::NOTIFY_FILE;

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
        if !c.can_start() {
            return Err(ContainerError::InvalidState {
                id: id.into(),
                state: ContainerStatus::Stopped,
                op: "start",
            });
        }
        // The status record says running before the init is released: once released it may
        // exit at once, and the shim then records the exit in the same file. Writing
        // "running" after the release could overwrite that exit with a stale state.
        let created = state.clone();
        state.status = ContainerStatus::Running;
        state.started_at = Some(Utc::now());
        let path = self.status_path(id);
        state
            .save(&path)
            .map_err(io_err(id, "write status", &path))?;
        // Not `Container::start`: libcontainer 0.7 chdir()s into the state directory to connect
        // to the init's notify socket, which races with every other thread of this process.
        let sock = self.container_state_dir(id).join(NOTIFY_FILE);
        if let Err(e) = notify_start(&sock) {
            let _ = created.save(&path);
            return Err(io_err(id, "start (notify init)", &sock)(e));
        }
        c.set_status(libcontainer::container::ContainerStatus::Running)
            .save()
            .map_err(|e| ContainerError::Runtime {
                id: id.into(),
                op: "start (save state)",
                message: error_chain(&e),
            })
    }

    /// The container's current state: the recorded status, corrected by whether its init still
    /// exists (an init that died but was not yet waited for shows as stopped, without exit).
    pub fn state(&self, id: &str) -> Result<ContainerState, ContainerError> {
        deckhand_shim::state::current_state(&self.status_root, id)
            .map_err(io_err(id, "read status", &self.status_path(id)))?
            .ok_or_else(|| ContainerError::NotFound { id: id.into() })
    }
}

/// Tell a created init to exec the user process: connect to its notify socket and send the
/// message libcontainer's init waits for. Paths too long for `sockaddr_un` go through an
/// `O_PATH` descriptor of the directory.
fn notify_start(sock: &Path) -> std::io::Result<()> {
    let mut stream = if sock.as_os_str().len() < 100 {
        UnixStream::connect(sock)?
    } else {
        let dir = std::fs::File::open(sock.parent().unwrap_or(Path::new("/")))?;
        let name = sock.file_name().unwrap_or_default().to_string_lossy();
        UnixStream::connect(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()))?
    };
    stream.write_all(b"start container")
}
