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
    #[error("{op}: {source}")]
    Syscall {
        op: &'static str,
        #[source]
        source: nix::Error,
    },
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
    fs::read_to_string("/proc/thread-self/children").is_ok_and(|s| !s.trim().is_empty())
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
    nix::unistd::setsid()
        .map(|_| ())
        .map_err(|source| ProcessError::Syscall {
            op: "setsid",
            source,
        })
}

/// Point the process's stdout at `/dev/null` (a daemon must not hold its starter's pipe).
pub fn stdout_to_null() -> Result<(), ProcessError> {
    let null = fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .map_err(|source| ProcessError::Proc {
            path: "/dev/null".into(),
            source,
        })?;
    nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 1)
        .map(|_| ())
        .map_err(|source| ProcessError::Syscall {
            op: "dup2 /dev/null to stdout",
            source,
        })
}

/// Send `signal` (a number) to `pid`; ESRCH (already gone) is not an error.
pub fn signal_pid(pid: i32, signal: i32) -> Result<(), ProcessError> {
    let sig = nix::sys::signal::Signal::try_from(signal).map_err(ProcessError::Signal)?;
    match nix::sys::signal::kill(Pid::from_raw(pid), sig) {
        Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
        Err(e) => Err(ProcessError::Signal(e)),
    }
}

/// Start a minimal init in a new PID namespace and return its pid (as the caller sees it).
///
/// Containers of a pod that shares one PID namespace join it through `/proc/<pid>/ns/pid`:
/// the namespace lives as long as this process, which only reaps the orphans reparented to it
/// (no pause image needed). The caller forks, so it must be single-threaded; it should be a
/// subreaper, since the init is reparented to it when the intermediate child exits.
pub fn spawn_pid_namespace_init() -> Result<i32, ProcessError> {
    let (rx, tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|source| ProcessError::Syscall { op: "pipe", source })?;
    let child = fork_child(move || {
        if nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID).is_err() {
            return 1;
        }
        // The first child after unshare is PID 1 of the new namespace.
        match fork_child(pid_namespace_init) {
            Ok(pid) => {
                let mut tx = fs::File::from(tx);
                let _ = io::Write::write_all(&mut tx, pid.as_raw().to_string().as_bytes());
                0
            }
            Err(_) => 2,
        }
    })?;
    let exit = wait_exit(child)?;
    // The init inherited the pipe's write end (no exec closes it), so EOF never comes: the
    // intermediate wrote the pid before exiting; read what is there without blocking.
    nix::fcntl::fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&rx),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .map_err(|source| ProcessError::Syscall {
        op: "fcntl",
        source,
    })?;
    let mut reply = String::new();
    let _ = io::Read::read_to_string(&mut fs::File::from(rx), &mut reply);
    match reply.trim().parse::<i32>() {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => Err(ProcessError::Syscall {
            op: match exit {
                Exit::Code(1) => "unshare(CLONE_NEWPID)",
                _ => "fork the PID namespace init",
            },
            source: nix::Error::EPERM,
        }),
    }
}

/// PID 1 of a pod's shared PID namespace: wait for SIGCHLD, reap, repeat. Signals without a
/// handler do not reach a namespace's init, so only SIGKILL from outside ends it.
fn pid_namespace_init() -> i32 {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    let _ = nix::sys::prctl::set_name(c"pod-init");
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
    loop {
        let _ = set.wait();
        while let Ok(Some(_)) = reap_any() {}
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

/// Start `cmd` with extra descriptors: each `(fd, target)` becomes descriptor number `target`
/// in the child (3, 4, … by convention), every other descriptor of the caller stays closed
/// (std opens everything close-on-exec). The child also starts with an empty signal mask: a
/// supervisor that blocks SIGCHLD for its signalfd must not hand that mask to the processes it
/// starts (a container init with SIGCHLD blocked cannot reap).
pub fn spawn_with_fds(
    cmd: &mut std::process::Command,
    fds: &[(std::os::fd::BorrowedFd<'_>, i32)],
) -> std::io::Result<std::process::Child> {
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    // Move every source above the targets first, so that mapping never overwrites a source
    // still to be mapped (fd 4 → 3 while fd 3 → 4). The copies are close-on-exec; dup2 in the
    // child clears the flag on the target only.
    let high: Vec<(OwnedFd, i32)> = fds
        .iter()
        .map(|(fd, target)| Ok((fd.try_clone_to_owned_above(64)?, *target)))
        .collect::<std::io::Result<_>>()?;
    let pairs: Vec<(i32, i32)> = high.iter().map(|(fd, t)| (fd.as_raw_fd(), *t)).collect();
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
    // functions (sigprocmask, dup2) on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let empty: libc::sigset_t = std::mem::zeroed();
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            for &(from, to) in &pairs {
                if libc::dup2(from, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn();
    drop(high);
    child
}

/// Duplicating a descriptor to a number at or above a floor (close-on-exec).
trait DupAbove {
    fn try_clone_to_owned_above(&self, floor: i32) -> std::io::Result<std::os::fd::OwnedFd>;
}

impl DupAbove for std::os::fd::BorrowedFd<'_> {
    fn try_clone_to_owned_above(&self, floor: i32) -> std::io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: F_DUPFD_CLOEXEC on a valid descriptor returns a new one we own.
        let fd = unsafe { libc::fcntl(self.as_raw_fd(), libc::F_DUPFD_CLOEXEC, floor) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
    }
}

/// Take ownership of descriptor `fd` inherited from the parent (by [`spawn_with_fds`]), or
/// `None` when it is not open.
pub fn inherited_fd(fd: i32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_GETFD only queries the descriptor table.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the descriptor is open and, by the spawn contract, ours alone.
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
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
