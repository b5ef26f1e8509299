//! Seccomp filters compiled once and installed many times. Compiling a large profile with
//! libseccomp costs milliseconds of CPU (about 15 ms for the ~370-rule RuntimeDefault profile
//! on three architectures); installing the resulting classic BPF program is one syscall.
//!
//! [`capture_filter`] lets a compiler install its filter in a throwaway child and reads the
//! program back from the kernel (`PTRACE_SECCOMP_GET_FILTER`), so the program is exactly what
//! that compiler would have loaded. [`install_filter`] loads a captured program into the
//! calling thread.

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::process::{fork_child, ProcessError};

/// `PTRACE_SECCOMP_GET_FILTER` (linux/ptrace.h; not in the libc crate). Needs
/// `CONFIG_CHECKPOINT_RESTORE` and CAP_SYS_ADMIN.
const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;

/// The kernel's limit on a program's length (`BPF_MAXINSNS`).
const BPF_MAXINSNS: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("capture seccomp filter: {0}")]
    Fork(#[from] ProcessError),
    /// The compiler failed in the child, or the child did not stop for the capture.
    #[error("capture seccomp filter: child ended with {0}")]
    Child(String),
    /// The kernel refused to hand the program out (EIO without CONFIG_CHECKPOINT_RESTORE,
    /// EPERM without CAP_SYS_ADMIN): compile in the process that loads the filter instead.
    #[error("capture seccomp filter: PTRACE_SECCOMP_GET_FILTER: {0}")]
    Read(#[source] nix::Error),
    #[error("seccomp program of {0} instructions (kernel limit {BPF_MAXINSNS})")]
    TooLong(usize),
    /// EACCES: the caller has neither no_new_privs nor CAP_SYS_ADMIN.
    #[error("install seccomp filter: {0}")]
    Install(#[source] nix::Error),
}

/// A classic BPF seccomp program.
#[derive(Clone)]
pub struct BpfProgram(Vec<libc::sock_filter>);

impl std::fmt::Debug for BpfProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BpfProgram({} instructions)", self.0.len())
    }
}

impl PartialEq for BpfProgram {
    fn eq(&self, other: &Self) -> bool {
        let key = |i: &libc::sock_filter| (i.code, i.jt, i.jf, i.k);
        self.0.len() == other.0.len() && self.0.iter().map(key).eq(other.0.iter().map(key))
    }
}

impl BpfProgram {
    /// A program from `(code, jt, jf, k)` instructions.
    pub fn new(insns: &[(u16, u8, u8, u32)]) -> Result<Self, SeccompError> {
        if insns.is_empty() || insns.len() > BPF_MAXINSNS {
            return Err(SeccompError::TooLong(insns.len()));
        }
        Ok(Self(
            insns
                .iter()
                .map(|&(code, jt, jf, k)| libc::sock_filter { code, jt, jf, k })
                .collect(),
        ))
    }

    /// The instructions as `(code, jt, jf, k)`, the form [`BpfProgram::new`] takes.
    pub fn instructions(&self) -> Vec<(u16, u8, u8, u32)> {
        self.0.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Run `install` in a forked child, and return the seccomp program it left installed there
/// (the newest filter of the child). `install` returns whether it succeeded. The caller needs
/// CAP_SYS_ADMIN (root).
///
/// The child is a fork of the caller: the fork-safety contract of [`fork_child`] applies. The
/// child must still be able to call `rt_sigprocmask`, `gettid`, `tgkill` and `exit_group` under
/// the new filter (it stops itself with SIGSTOP for the capture).
pub fn capture_filter<F: FnOnce() -> bool>(install: F) -> Result<BpfProgram, SeccompError> {
    let child = fork_child(|| {
        // SAFETY: PTRACE_TRACEME takes no pointers; the parent becomes our tracer, so our
        // SIGSTOP below puts us in a ptrace stop in which it may read our filters.
        if unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) } != 0 {
            return 2;
        }
        if !install() {
            return 3;
        }
        // SAFETY: raising a signal on ourselves.
        unsafe { libc::raise(libc::SIGSTOP) };
        4
    })?;
    let stopped = loop {
        match waitpid(child, Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Stopped(_, Signal::SIGSTOP)) => break Ok(()),
            Err(nix::Error::EINTR) => continue,
            // Ended (it was reaped by this waitpid) or failed: nothing to kill.
            other => return Err(SeccompError::Child(format!("{other:?}"))),
        }
    };
    let result = stopped.and_then(|()| read_filter(child));
    // Still stopped and traced by us: SIGKILL ends it, then reap.
    let _ = kill(child, Signal::SIGKILL);
    let _ = crate::process::wait_exit(child);
    result
}

fn read_filter(pid: Pid) -> Result<BpfProgram, SeccompError> {
    let null: *mut libc::sock_filter = std::ptr::null_mut();
    // SAFETY: with a NULL buffer the kernel only returns the length of filter 0.
    let n = unsafe { libc::ptrace(PTRACE_SECCOMP_GET_FILTER, pid.as_raw(), 0, null) };
    if n < 0 {
        return Err(SeccompError::Read(nix::Error::last()));
    }
    let n = n as usize;
    if n == 0 || n > BPF_MAXINSNS {
        return Err(SeccompError::TooLong(n));
    }
    let mut buf = vec![
        libc::sock_filter {
            code: 0,
            jt: 0,
            jf: 0,
            k: 0
        };
        n
    ];
    // SAFETY: buf has room for the n instructions the kernel reported for the same filter of
    // the same stopped tracee.
    let got = unsafe { libc::ptrace(PTRACE_SECCOMP_GET_FILTER, pid.as_raw(), 0, buf.as_mut_ptr()) };
    if got < 0 {
        return Err(SeccompError::Read(nix::Error::last()));
    }
    buf.truncate(got as usize);
    Ok(BpfProgram(buf))
}

/// Install `program` as a new seccomp filter of the calling thread (no flags, as libseccomp's
/// default `seccomp_load`). Needs no_new_privs or CAP_SYS_ADMIN. The filter is inherited by
/// children and kept across execve.
pub fn install_filter(program: &BpfProgram) -> Result<(), SeccompError> {
    let fprog = libc::sock_fprog {
        len: program.0.len() as u16,
        filter: program.0.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: fprog points to program's instructions, alive for the call; the kernel copies
    // them and does not write through the pointer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &fprog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return Err(SeccompError::Install(nix::Error::last()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::{wait_exit, Exit};

    // BPF opcodes (linux/bpf_common.h).
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;

    /// getppid fails with EPERM, everything else is allowed. (No architecture check: test
    /// only.)
    fn deny_getppid() -> BpfProgram {
        BpfProgram::new(&[
            (LD_W_ABS, 0, 0, 0), // seccomp_data.nr
            (JEQ_K, 0, 1, libc::SYS_getppid as u32),
            (RET_K, 0, 0, SECCOMP_RET_ERRNO | libc::EPERM as u32),
            (RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
        ])
        .unwrap()
    }

    #[test]
    fn captured_program_equals_installed_and_is_enforced() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "capturing a filter needs CAP_SYS_ADMIN: run as root"
        );
        let prog = deny_getppid();
        let captured = capture_filter(|| install_filter(&prog).is_ok()).unwrap();
        assert_eq!(captured, prog);
        assert_eq!(BpfProgram::new(&captured.instructions()).unwrap(), captured);

        // Installing the captured program in another child enforces it.
        let pid = fork_child(move || {
            if install_filter(&captured).is_err() {
                return 10;
            }
            // SAFETY: raw syscall without arguments.
            let rc = unsafe { libc::syscall(libc::SYS_getppid) };
            if rc == -1 && nix::Error::last() == nix::Error::EPERM {
                0
            } else {
                11
            }
        })
        .unwrap();
        assert_eq!(wait_exit(pid).unwrap(), Exit::Code(0));
    }

    #[test]
    fn failed_compiler_is_reported() {
        assert!(matches!(
            capture_filter(|| false),
            Err(SeccompError::Child(_))
        ));
        assert!(matches!(
            BpfProgram::new(&[]),
            Err(SeccompError::TooLong(0))
        ));
    }
}
