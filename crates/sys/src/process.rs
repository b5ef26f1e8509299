//! Process supervision primitives for the per-pod shim: becoming a child subreaper, forking a
//! short-lived helper child, waiting for a specific child and decoding how it ended, and the
//! facts about the current process that shape container setup (capabilities, oom_score_adj).

use std::fs;
use std::io;
use std::path::Path;

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("prctl(PR_SET_CHILD_SUBREAPER): {0}")]
    Subreaper(#[source] nix::Error),
    /// fork(2) failed (EAGAIN: pid or memory limit; a retry may help).
    #[error("fork: {0}")]
    Fork(#[source] nix::Error),
    /// ECHILD: `pid` is not a child of this process (not yet reparented, or already reaped).
    #[error("wait for pid {pid}: {source}")]
    Wait {
        pid: i32,
        #[source]
        source: nix::Error,
    },
    #[error("signal handling: {0}")]
    Signal(#[source] nix::Error),
    #[error("{path}: {source}")]
    Proc {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// `exit(code)`.
    Code(i32),
    /// Killed by signal number `signal`.
    Signal(i32),
}

impl Exit {
    /// The conventional shell status: code, or 128 + signal.
    pub fn status_code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

/// Make the calling process a child subreaper: orphaned descendants (e.g. a container's init
/// once the helper that created it exits) are reparented to it instead of to PID 1, so it can
/// reap them and learn their exit status.
pub fn set_child_subreaper() -> Result<(), ProcessError> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    if rc != 0 {
        return Err(ProcessError::Subreaper(nix::Error::last()));
    }
    Ok(())
}

/// Whether the calling process is a child subreaper.
pub fn is_child_subreaper() -> Result<bool, ProcessError> {
    let mut v: libc::c_int = 0;
    // SAFETY: PR_GET_CHILD_SUBREAPER writes one int to the pointer we pass.
    let rc = unsafe {
        libc::prctl(
            libc::PR_GET_CHILD_SUBREAPER,
            &mut v as *mut libc::c_int as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if rc != 0 {
        return Err(ProcessError::Subreaper(nix::Error::last()));
    }
    Ok(v != 0)
}

/// Fork a child that runs `f` and exits with its return value (without running destructors or
/// atexit handlers of the parent's state). Returns the child's pid.
///
/// The child of a multi-threaded parent holds only the forking thread: `f` must not rely on
/// locks another thread may hold (the process's global allocator is fork-safe in glibc). The
/// intended callers are single-threaded shims, and tests.
pub fn fork_child<F: FnOnce() -> i32>(f: F) -> Result<Pid, ProcessError> {
    // SAFETY: the child only runs `f` then `_exit`s; see the contract above.
    match unsafe { fork() }.map_err(ProcessError::Fork)? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            // A supervisor blocks SIGCHLD to read it from a signalfd; the mask survives fork and
            // exec, and a container whose init starts with SIGCHLD blocked cannot reap
            // reliably. Children start with an empty mask.
            let _ = nix::sys::signal::sigprocmask(
                nix::sys::signal::SigmaskHow::SIG_SETMASK,
                Some(&nix::sys::signal::SigSet::empty()),
                None,
            );
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
            // SAFETY: _exit is async-signal-safe and never returns.
            unsafe { libc::_exit(code) }
        }
    }
}

/// Block until child `pid` ends and reap it. Stops and continues are ignored; EINTR is retried.
pub fn wait_exit(pid: Pid) -> Result<Exit, ProcessError> {
    loop {
        match waitpid(pid, Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(Exit::Code(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(Exit::Signal(sig as i32)),
            Ok(_) => continue,
            Err(nix::Error::EINTR) => continue,
            Err(source) => {
                return Err(ProcessError::Wait {
                    pid: pid.as_raw(),
                    source,
                })
            }
        }
    }
}

/// Reap child `pid` if it has ended, without blocking.
pub fn try_wait_exit(pid: Pid) -> Result<Option<Exit>, ProcessError> {
    match waitpid(pid, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
        Ok(WaitStatus::Exited(_, code)) => Ok(Some(Exit::Code(code))),
        Ok(WaitStatus::Signaled(_, sig, _)) => Ok(Some(Exit::Signal(sig as i32))),
        Ok(_) => Ok(None),
        Err(source) => Err(ProcessError::Wait {
            pid: pid.as_raw(),
            source,
        }),
    }
}

/// Reap any one ended child without blocking: `Ok(None)` when no child has ended (or there are
/// no children at all).
pub fn reap_any() -> Result<Option<(i32, Exit)>, ProcessError> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Exited(pid, code)) => return Ok(Some((pid.as_raw(), Exit::Code(code)))),
            Ok(WaitStatus::Signaled(pid, sig, _)) => {
                return Ok(Some((pid.as_raw(), Exit::Signal(sig as i32))))
            }
            Ok(WaitStatus::StillAlive) => return Ok(None),
            Ok(_) => continue,
            Err(nix::Error::ECHILD) => return Ok(None),
            Err(nix::Error::EINTR) => continue,
            Err(source) => return Err(ProcessError::Wait { pid: -1, source }),
        }
    }
}

/// Block SIGCHLD for the calling thread and return a signalfd that becomes readable when a
/// child changes state: a single-threaded supervisor polls it beside its sockets and pipes.
/// The mask is inherited by threads spawned afterwards; children made by [`fork_child`] start
/// with an empty mask.
pub fn sigchld_fd() -> Result<nix::sys::signalfd::SignalFd, ProcessError> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(ProcessError::Signal)?;
    SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(ProcessError::Signal)
}

/// Whether the calling process has any child left (running or not yet reaped).
/// (Counts the children of the calling thread, which is all of them in a single-threaded
/// process such as a forked helper.)
pub fn has_children() -> bool {
    fs::read_to_string("/proc/thread-self/children").map_or(false, |s| !s.trim().is_empty())
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|s| s != "Z" && s != "X"),
        Err(_) => false,
    }
}

/// Start a new session (detach from the caller's terminal and process group), for daemons.
pub fn new_session() -> Result<(), ProcessError> {
    nix::unistd::setsid().map(|_| ()).map_err(ProcessError::Signal)
}

/// Send `signal` (a number) to `pid`; ESRCH (already gone) is not an error.
pub fn signal_pid(pid: i32, signal: i32) -> Result<(), ProcessError> {
    let sig = nix::sys::signal::Signal::try_from(signal).map_err(ProcessError::Signal)?;
    match nix::sys::signal::kill(Pid::from_raw(pid), sig) {
        Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
        Err(e) => Err(ProcessError::Signal(e)),
    }
}

/// Linux capability number of `CAP_SYS_RESOURCE`.
pub const CAP_SYS_RESOURCE: u32 = 24;

/// Effective capability mask from a `/proc/<pid>/status` file (`CapEff:` line).
pub fn effective_caps(status_path: &Path) -> Result<u64, ProcessError> {
    let text = fs::read_to_string(status_path).map_err(|source| ProcessError::Proc {
        path: status_path.display().to_string(),
        source,
    })?;
    parse_cap_line(&text, "CapEff:").ok_or_else(|| ProcessError::Proc {
        path: status_path.display().to_string(),
        source: io::Error::new(io::ErrorKind::InvalidData, "no parsable CapEff line"),
    })
}

/// The hex mask of a `Cap*:` line of a `/proc/<pid>/status` text.
pub fn parse_cap_line(status: &str, prefix: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// Current `oom_score_adj` from a file such as `/proc/self/oom_score_adj`.
pub fn oom_score_adj(path: &Path) -> Result<i32, ProcessError> {
    let text = fs::read_to_string(path).map_err(|source| ProcessError::Proc {
        path: path.display().to_string(),
        source,
    })?;
    text.trim().parse().map_err(|_| ProcessError::Proc {
        path: path.display().to_string(),
        source: io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a number: {text:?}"),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fork_child_and_wait_report_code_and_signal() {
        let pid = fork_child(|| 7).unwrap();
        assert_eq!(wait_exit(pid).unwrap(), Exit::Code(7));
        let pid = fork_child(|| {
            // SAFETY: raising a default-action signal on ourselves.
            unsafe { libc::raise(libc::SIGKILL) };
            0
        })
        .unwrap();
        assert_eq!(wait_exit(pid).unwrap(), Exit::Signal(libc::SIGKILL));
        assert_eq!(Exit::Signal(9).status_code(), 137);
        // Reaped already: a second wait is an error, not a hang.
        assert!(matches!(wait_exit(pid), Err(ProcessError::Wait { .. })));
    }

    #[test]
    fn subreaper_adopts_orphaned_grandchild() {
        // Run in a forked child so the test process's own subreaper flag is not changed.
        let pid = fork_child(|| {
            if set_child_subreaper().is_err() || !is_child_subreaper().unwrap_or(false) {
                return 10;
            }
            let (r, w) = nix::unistd::pipe().unwrap();
            let mid = fork_child(move || {
                let grandchild = fork_child(|| {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    42
                })
                .unwrap();
                nix::unistd::write(&w, &grandchild.as_raw().to_ne_bytes()).unwrap();
                0
            })
            .unwrap();
            if wait_exit(mid).ok() != Some(Exit::Code(0)) {
                return 11;
            }
            let mut buf = [0u8; 4];
            if nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&r), &mut buf).ok() != Some(4) {
                return 12;
            }
            let grandchild = Pid::from_raw(i32::from_ne_bytes(buf));
            // The grandchild's parent is gone: it must now be ours to reap.
            match wait_exit(grandchild) {
                Ok(Exit::Code(42)) => 0,
                _ => 13,
            }
        })
        .unwrap();
        assert_eq!(wait_exit(pid).unwrap(), Exit::Code(0));
    }

    #[test]
    fn parses_status_caps_and_oom_score() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001fffeffffff\n";
        let caps = parse_cap_line(status, "CapEff:").unwrap();
        assert_eq!(caps & (1 << CAP_SYS_RESOURCE), 0);
        assert_ne!(caps & 1, 0);
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("status");
        fs::write(&p, status).unwrap();
        assert_eq!(effective_caps(&p).unwrap(), 0x1fffeffffff);
        let o = t.path().join("oom");
        fs::write(&o, "-998\n").unwrap();
        assert_eq!(oom_score_adj(&o).unwrap(), -998);
        fs::write(&o, "x\n").unwrap();
        assert!(oom_score_adj(&o).is_err());
        assert!(effective_caps(&t.path().join("missing")).is_err());
    }
}
