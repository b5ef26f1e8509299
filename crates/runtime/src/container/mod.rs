//! Running containers with `libcontainer` under a long-lived parent that owns their exit.
//!
//! Process model (the one the per-pod shim is built on):
//! - the process holding a [`Runtime`] is a child subreaper (set by [`Runtime::new`]);
//! - [`Runtime::create`] forks a short-lived helper that runs libcontainer's create (so the
//!   long-lived parent never grows libcontainer's working set); the container's init process is
//!   the helper's child, and when the helper exits the init is reparented to the subreaper;
//! - [`Runtime::wait`] reaps the init, reads the cgroup's OOM-kill counter, and records exit
//!   code or signal, `OOMKilled` and timestamps in `<data>/status/<id>.json` (atomic rename).
//!
//! On-disk layout under the data dir: `state/<id>/` (libcontainer's state, owned by it),
//! `bundles/<id>/config.json` (the generated OCI spec), `status/<id>.json` (ours).
//!
//! One file per operation, as youki does: `create.rs`, `start.rs`, `kill.rs`, `wait.rs`,
//! `delete.rs`; `status.rs` holds the status record.

mod create;
mod delete;
mod exec;
mod kill;
mod start;
mod stats;
/// Status records are the shim's format (it writes exits); the container layer shares it.
mod status {
    pub use deckhand_shim::state::{ContainerState, ContainerStatus, ExitRecord};
}
mod update;
mod wait;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use deckhand_sys::cgroup::Cgroups;

use crate::spec::{ContainerConfig, HostFacts};

pub use exec::ExecConfig;
pub use stats::{ContainerStats, LayerUsage};
pub use status::{ContainerState, ContainerStatus, ExitRecord};

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The request cannot be turned into a spec (not retryable: fix the request).
    #[error("container {id}: {source}")]
    Spec {
        id: String,
        #[source]
        source: crate::spec::SpecError,
    },
    #[error("container {id}: invalid id (use letters, digits, '_', '+', '-', '.')")]
    InvalidId { id: String },
    #[error("container {id} not found")]
    NotFound { id: String },
    #[error("container {id} already exists")]
    AlreadyExists { id: String },
    /// The operation does not apply in the container's current state.
    #[error("container {id} is {state}: cannot {op}")]
    InvalidState {
        id: String,
        state: ContainerStatus,
        op: &'static str,
    },
    /// The OCI runtime failed; `message` carries libcontainer's whole error chain. Nothing of
    /// the container is left behind.
    #[error("container {id}: {op} failed: {message}")]
    Runtime {
        id: String,
        op: &'static str,
        message: String,
    },
    #[error("container {id}: {op}: {path}: {source}")]
    Io {
        id: String,
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("container {id}: {source}")]
    Process {
        id: String,
        #[source]
        source: deckhand_sys::process::ProcessError,
    },
    #[error("runtime setup: {0}")]
    Setup(String),
}

/// Standard streams for a container's init. A missing stream is connected to `/dev/null`
/// (never inherited from the runtime).
#[derive(Debug, Default)]
pub struct Stdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    /// For a process with a terminal (`process.terminal` in the spec): the unix socket the
    /// init sends the pseudo-terminal master to; the streams above are then unused.
    pub console_socket: Option<PathBuf>,
}

/// Where a [`Runtime`] keeps its files and finds the host's cgroups.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub data_dir: PathBuf,
    /// cgroupfs mount point, normally `/sys/fs/cgroup`.
    pub cgroup_root: PathBuf,
    /// Facts about the host; [`HostFacts::detect`] when `None`.
    pub host: Option<HostFacts>,
}

impl RuntimeConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            cgroup_root: PathBuf::from(deckhand_sys::cgroup::DEFAULT_ROOT),
            host: None,
        }
    }
}

/// The container execution layer. Operations block (fork, wait, file IO): call them from a
/// dedicated thread or `spawn_blocking` in async code. [`Runtime::wait`] must be called by the
/// process that created the container (it is the container's parent).
#[derive(Debug)]
pub struct Runtime {
    state_root: PathBuf,
    bundle_root: PathBuf,
    status_root: PathBuf,
    cgroups: Cgroups,
    host: HostFacts,
}

impl Runtime {
    /// Create the data directories and make this process a child subreaper, so that container
    /// inits created by forked helpers become its children.
    pub fn new(config: RuntimeConfig) -> Result<Self, ContainerError> {
        let rt = Self::with_dirs(config)?;
        deckhand_sys::process::set_child_subreaper()
            .map_err(|e| ContainerError::Setup(e.to_string()))?;
        Ok(rt)
    }

    /// Create the data directories, without becoming a subreaper: for `deckhand oci`, whose
    /// containers are reparented to the shim that runs it.
    pub fn with_dirs(config: RuntimeConfig) -> Result<Self, ContainerError> {
        let rt = Self {
            state_root: config.data_dir.join("state"),
            bundle_root: config.data_dir.join("bundles"),
            status_root: config.data_dir.join("status"),
            cgroups: Cgroups::open(&config.cgroup_root)
                .map_err(|e| ContainerError::Setup(e.to_string()))?,
            host: config.host.unwrap_or_else(HostFacts::detect),
        };
        for dir in [&rt.state_root, &rt.bundle_root, &rt.status_root] {
            std::fs::create_dir_all(dir)
                .map_err(|e| ContainerError::Setup(format!("{}: {e}", dir.display())))?;
        }
        Ok(rt)
    }

    /// A handle for a process that reads container state and changes cgroups but does not
    /// parent containers (the CRI server): no subreaper, no directories created.
    pub fn open(config: RuntimeConfig) -> Result<Self, ContainerError> {
        Ok(Self {
            state_root: config.data_dir.join("state"),
            bundle_root: config.data_dir.join("bundles"),
            status_root: config.data_dir.join("status"),
            cgroups: Cgroups::open(&config.cgroup_root)
                .map_err(|e| ContainerError::Setup(e.to_string()))?,
            host: config.host.unwrap_or_else(HostFacts::detect),
        })
    }

    pub fn host(&self) -> &HostFacts {
        &self.host
    }

    pub fn cgroups(&self) -> &Cgroups {
        &self.cgroups
    }

    fn bundle_dir(&self, id: &str) -> PathBuf {
        self.bundle_root.join(id)
    }

    fn container_state_dir(&self, id: &str) -> PathBuf {
        self.state_root.join(id)
    }

    fn status_path(&self, id: &str) -> PathBuf {
        deckhand_shim::state::status_path(&self.status_root, id)
    }

    /// Where the status records live (the shim writes exits there).
    pub fn status_dir(&self) -> &Path {
        &self.status_root
    }

    fn load_libcontainer(
        &self,
        id: &str,
    ) -> Result<libcontainer::container::Container, ContainerError> {
        let dir = self.container_state_dir(id);
        if !dir.exists() {
            return Err(ContainerError::NotFound { id: id.into() });
        }
        libcontainer::container::Container::load(dir).map_err(|e| ContainerError::Runtime {
            id: id.into(),
            op: "load state",
            message: error_chain(&e),
        })
    }

    /// create + start + wait + delete; returns how the container ended.
    pub fn run_to_completion(
        &self,
        id: &str,
        config: &ContainerConfig,
        stdio: Stdio,
    ) -> Result<ExitRecord, ContainerError> {
        self.create(id, config, stdio)?;
        let result = self.start(id).and_then(|()| self.wait(id));
        let deleted = self.delete(id, true);
        let exit = result?;
        deleted?;
        Ok(exit)
    }
}

/// An error and all its sources, `: `-separated (libcontainer's top-level messages alone are
/// often too terse to act on).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        let msg = src.to_string();
        if !s.ends_with(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = src.source();
    }
    s
}

fn validate_id(id: &str) -> Result<(), ContainerError> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ContainerError::InvalidId { id: id.into() })
    }
}

fn io_err(
    id: &str,
    op: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> ContainerError {
    let id = id.to_owned();
    let path = path.to_owned();
    move |source| ContainerError::Io {
        id,
        op,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated() {
        for ok in ["abc", "a-b_c.d+e", "0123456789abcdef"] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "x\0"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn error_chain_includes_sources() {
        let inner = std::io::Error::other("disk on fire");
        let outer = ContainerError::Io {
            id: "c".into(),
            op: "write",
            path: "/x".into(),
            source: inner,
        };
        assert_eq!(error_chain(&outer), "container c: write: /x: disk on fire");
    }
}
