//! The status record of a container, kept by its parent in `<data>/status/<id>.json` and
//! replaced atomically (write to a temp file, rename) so a crash of any deckhand process never
//! leaves a torn record: a restarted shim or runtime reads either the old or the new one.
//!
//! No fsync: the record must survive process crashes, which rename guarantees. A host crash
//! ends every container anyway and the runtime then treats their records as stale. Three fsyncs
//! per container lifecycle would cost more than the rest of a container start on a busy disk.

use std::fmt;
use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerStatus {
    /// Created, init waiting for start.
    Created,
    Running,
    /// The init has exited (and been reaped, if `exit` is recorded).
    Stopped,
}

impl fmt::Display for ContainerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ContainerStatus::Created => "created",
            ContainerStatus::Running => "running",
            ContainerStatus::Stopped => "stopped",
        })
    }
}

/// How a container's init ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The exit code, or 128 + signal when killed by a signal (as CRI and shells report it).
    pub exit_code: i32,
    /// The signal that killed the init, if any.
    pub signal: Option<i32>,
    /// The kernel's OOM killer killed a process of the container's cgroup.
    pub oom_killed: bool,
    /// CRI reason: `OOMKilled`, `Completed` (exit 0) or `Error`.
    pub reason: String,
    pub finished_at: DateTime<Utc>,
}

impl ExitRecord {
    pub fn new(exit: deckhand_sys::process::Exit, oom_killed: bool, at: DateTime<Utc>) -> Self {
        use deckhand_sys::process::Exit;
        let signal = match exit {
            Exit::Signal(s) => Some(s),
            Exit::Code(_) => None,
        };
        let exit_code = exit.status_code();
        let reason = if oom_killed {
            "OOMKilled"
        } else if exit_code == 0 {
            "Completed"
        } else {
            "Error"
        };
        Self {
            exit_code,
            signal,
            oom_killed,
            reason: reason.into(),
            finished_at: at,
        }
    }
}

/// What the parent knows about a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    /// Host pid of the container's init.
    pub pid: i32,
    /// cgroupfs path of the container's cgroup (`/<parent>/<id>`).
    pub cgroup_path: String,
    pub status: ContainerStatus,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub exit: Option<ExitRecord>,
}

impl ContainerState {
    pub fn load(path: &Path) -> std::io::Result<Self> {
        let bytes = std::fs::read(path)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    /// Replace the record at `path` atomically (see the module docs on durability).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(format!(
            ".{}.tmp",
            path.file_name().unwrap_or_default().to_string_lossy()
        ));
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&json)?;
        drop(f);
        std::fs::rename(&tmp, path)
    }
}

/// Where container `id`'s status record lives under the status directory.
pub fn status_path(status_dir: &Path, id: &str) -> std::path::PathBuf {
    status_dir.join(format!("{id}.json"))
}

/// Container `id`'s current state: the recorded status, corrected by whether its init still
/// exists (an init that died but was not yet reaped shows as stopped, without exit). `None`
/// when there is no record.
pub fn current_state(status_dir: &Path, id: &str) -> std::io::Result<Option<ContainerState>> {
    let mut state = match ContainerState::load(&status_path(status_dir, id)) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if state.exit.is_none()
        && state.status != ContainerStatus::Stopped
        && !deckhand_sys::process::alive(state.pid)
    {
        state.status = ContainerStatus::Stopped;
    }
    Ok(Some(state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use deckhand_sys::process::Exit;

    #[test]
    fn exit_records_follow_cri_reasons() {
        let now = Utc::now();
        let r = ExitRecord::new(Exit::Code(0), false, now);
        assert_eq!(
            (r.exit_code, r.reason.as_str(), r.signal),
            (0, "Completed", None)
        );
        let r = ExitRecord::new(Exit::Code(3), false, now);
        assert_eq!((r.exit_code, r.reason.as_str()), (3, "Error"));
        let r = ExitRecord::new(Exit::Signal(9), true, now);
        assert_eq!(
            (r.exit_code, r.reason.as_str(), r.signal),
            (137, "OOMKilled", Some(9))
        );
    }

    #[test]
    fn status_round_trips_atomically() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("c1.json");
        let mut s = ContainerState {
            id: "c1".into(),
            pid: 42,
            cgroup_path: "/p/c1".into(),
            status: ContainerStatus::Created,
            created_at: Utc::now(),
            started_at: None,
            exit: None,
        };
        s.save(&p).unwrap();
        assert_eq!(ContainerState::load(&p).unwrap(), s);
        s.status = ContainerStatus::Stopped;
        s.exit = Some(ExitRecord::new(Exit::Code(1), false, Utc::now()));
        s.save(&p).unwrap();
        assert_eq!(ContainerState::load(&p).unwrap(), s);
        // No temp file is left beside the record.
        let names: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("c1.json")]);
        std::fs::write(&p, b"{torn").unwrap();
        assert!(ContainerState::load(&p).is_err());
    }
}
