//! Seccomp profiles: deckhand's RuntimeDefault profile (an allowlist modelled on the
//! Docker/containerd default profile: everything not listed fails with EPERM), and loading of
//! Localhost profiles written in the OCI `LinuxSeccomp` JSON format.
//!
//! The profile depends on the container's capabilities (syscalls guarded by a capability are
//! allowed only when the container has it, as upstream does) and on the kernel (`ptrace` only
//! from 4.8, where seccomp can no longer be bypassed with it).

use std::collections::BTreeSet;
use std::path::Path;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp profile {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("seccomp profile {path} is not an OCI LinuxSeccomp JSON document: {source}")]
    Parse {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Which profile a container runs under.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SeccompProfile {
    /// deckhand's default profile ([`runtime_default`]).
    #[default]
    RuntimeDefault,
    /// No filter at all.
    Unconfined,
    /// An OCI-format profile file on the host.
    Localhost(std::path::PathBuf),
}

/// A kernel release as `(major, minor)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion(pub u32, pub u32);

impl KernelVersion {
    /// The running kernel, from `uname(2)`; `None` when the release string is unparsable.
    pub fn current() -> Option<Self> {
        let u = nix::sys::utsname::uname().ok()?;
        Self::parse(&u.release().to_string_lossy())
    }

    pub fn parse(release: &str) -> Option<Self> {
        let mut it = release.split(|c: char| !c.is_ascii_digit());
        let major = it.next()?.parse().ok()?;
        let minor = it.next()?.parse().ok()?;
        Some(Self(major, minor))
    }
}

/// Errno returned for syscalls the profile does not allow.
const EPERM: u32 = libc::EPERM as u32;

/// Namespace flags `clone(2)` may not use without CAP_SYS_ADMIN: NEWNS|NEWCGROUP|NEWUTS|NEWIPC|
/// NEWUSER|NEWPID|NEWNET (Docker's mask 2114060288).
pub const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// Syscalls every container may make.
const ALWAYS_ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// Syscalls allowed only with a capability, as in the upstream profile. Anything in neither
/// list (keyctl, add_key, request_key, kexec_load, kexec_file_load, open_by_handle_at,
/// userfaultfd, swapon, swapoff, pivot_root, nfsservctl, uselib, ...) is always refused.
const CAP_GUARDED: &[(&str, &[&str])] = &[
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "name_to_handle_at",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

fn rule(names: &[&str], action: LinuxSeccompAction, args: Vec<LinuxSeccompArg>) -> LinuxSyscall {
    let mut s = LinuxSyscall::default();
    s.set_names(names.iter().map(|n| n.to_string()).collect());
    s.set_action(action);
    if !args.is_empty() {
        s.set_args(Some(args));
    }
    s
}

fn arg(
    index: usize,
    op: LinuxSeccompOperator,
    value: u64,
    value_two: Option<u64>,
) -> LinuxSeccompArg {
    let mut b = LinuxSeccompArgBuilder::default()
        .index(index)
        .op(op)
        .value(value);
    if let Some(v2) = value_two {
        b = b.value_two(v2);
    }
    b.build().expect("all fields of a seccomp arg are set")
}

/// deckhand's RuntimeDefault profile for a container holding `caps` (names like `CAP_SYS_ADMIN`)
/// on kernel `kernel`. Default action: `SCMP_ACT_ERRNO` with EPERM.
pub fn runtime_default(caps: &BTreeSet<String>, kernel: KernelVersion) -> LinuxSeccomp {
    let mut allowed: BTreeSet<&str> = ALWAYS_ALLOWED.iter().copied().collect();
    for (cap, names) in CAP_GUARDED {
        if caps.contains(*cap) {
            allowed.extend(names.iter().copied());
        }
    }
    // Before 4.8 a ptrace'd process could bypass seccomp; allow it by default only after.
    if kernel >= KernelVersion(4, 8) {
        allowed.insert("ptrace");
    }
    let has_sys_admin = caps.contains("CAP_SYS_ADMIN");
    let allowed: Vec<&str> = allowed.into_iter().collect();

    let mut rules = vec![rule(&allowed, LinuxSeccompAction::ScmpActAllow, vec![])];

    // personality: only the harmless personas (Linux, Linux32 through UNAME26, and query).
    for persona in [0x0u64, 0x8, 0x20000, 0x20008, 0xffff_ffff] {
        rules.push(rule(
            &["personality"],
            LinuxSeccompAction::ScmpActAllow,
            vec![arg(0, LinuxSeccompOperator::ScmpCmpEq, persona, None)],
        ));
    }
    // socket: everything except AF_VSOCK (40), which reaches the host.
    rules.push(rule(
        &["socket"],
        LinuxSeccompAction::ScmpActAllow,
        vec![arg(0, LinuxSeccompOperator::ScmpCmpNe, 40, None)],
    ));
    if !has_sys_admin {
        // clone without namespace flags (fork, threads). OCI MASKED_EQ: value is the mask,
        // valueTwo the expected result of (arg & mask).
        rules.push(rule(
            &["clone"],
            LinuxSeccompAction::ScmpActAllow,
            vec![arg(
                0,
                LinuxSeccompOperator::ScmpCmpMaskedEq,
                CLONE_NAMESPACE_FLAGS,
                Some(0),
            )],
        ));
        // clone3's flags live in a struct seccomp cannot inspect: answer ENOSYS so libcs fall
        // back to clone, which is filtered above.
        let mut c3 = rule(&["clone3"], LinuxSeccompAction::ScmpActErrno, vec![]);
        c3.set_errno_ret(Some(libc::ENOSYS as u32));
        rules.push(c3);
    }
    if cfg!(target_arch = "x86_64") {
        rules.push(rule(
            &["arch_prctl", "modify_ldt"],
            LinuxSeccompAction::ScmpActAllow,
            vec![],
        ));
    }

    let mut s = LinuxSeccomp::default();
    s.set_default_action(LinuxSeccompAction::ScmpActErrno);
    s.set_default_errno_ret(Some(EPERM));
    s.set_architectures(Some(native_architectures()));
    s.set_syscalls(Some(rules));
    s
}

fn native_architectures() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else {
        vec![Arch::ScmpArchNative]
    }
}

/// Load a Localhost profile: a JSON file in the OCI `linux.seccomp` format.
pub fn load_localhost(path: &Path) -> Result<LinuxSeccomp, SeccompError> {
    let text = std::fs::read(path).map_err(|source| SeccompError::Read {
        path: path.display().to_string(),
        source,
    })?;
    serde_json::from_slice(&text).map_err(|source| SeccompError::Parse {
        path: path.display().to_string(),
        source,
    })
}

/// Names the profile allows unconditionally (for tests and diagnostics).
pub fn unconditionally_allowed(profile: &LinuxSeccomp) -> BTreeSet<String> {
    profile
        .syscalls()
        .iter()
        .flatten()
        .filter(|r| r.action() == LinuxSeccompAction::ScmpActAllow && r.args().is_none())
        .flat_map(|r| r.names().iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_caps() -> BTreeSet<String> {
        crate::spec::DEFAULT_CAPABILITIES
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn default_profile_blocks_dangerous_syscalls() {
        let p = runtime_default(&default_caps(), KernelVersion(6, 1));
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(EPERM));
        let allowed = unconditionally_allowed(&p);
        for blocked in [
            "keyctl",
            "add_key",
            "request_key",
            "mount",
            "umount2",
            "kexec_load",
            "kexec_file_load",
            "open_by_handle_at",
            "bpf",
            "perf_event_open",
            "userfaultfd",
            "unshare",
            "setns",
            "clock_settime",
            "init_module",
            "finit_module",
            "delete_module",
            "reboot",
            "swapon",
            "swapoff",
            "pivot_root",
            "acct",
            "clone",
            "clone3",
        ] {
            assert!(!allowed.contains(blocked), "{blocked} must not be allowed");
        }
        for needed in [
            "read",
            "write",
            "execve",
            "exit_group",
            "wait4",
            "chroot",
            "ptrace",
        ] {
            assert!(allowed.contains(needed), "{needed} must be allowed");
        }
        // clone is allowed only without namespace flags, clone3 falls back with ENOSYS.
        let syscalls = p.syscalls().as_ref().unwrap();
        let clone = syscalls
            .iter()
            .find(|r| r.names() == &["clone".to_string()])
            .unwrap();
        let a = &clone.args().as_ref().unwrap()[0];
        assert_eq!(a.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!((a.value(), a.value_two()), (CLONE_NAMESPACE_FLAGS, Some(0)));
        let clone3 = syscalls
            .iter()
            .find(|r| r.names() == &["clone3".to_string()])
            .unwrap();
        assert_eq!(clone3.errno_ret(), Some(libc::ENOSYS as u32));
    }

    #[test]
    fn capabilities_unlock_their_syscalls() {
        let mut caps = default_caps();
        caps.insert("CAP_SYS_ADMIN".into());
        caps.insert("CAP_SYS_TIME".into());
        let p = runtime_default(&caps, KernelVersion(6, 1));
        let allowed = unconditionally_allowed(&p);
        for name in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "clone",
            "clone3",
            "clock_settime",
        ] {
            assert!(allowed.contains(name), "{name}");
        }
        // Never allowed, whatever the capabilities.
        for name in ["keyctl", "kexec_load", "userfaultfd", "open_by_handle_at"] {
            assert!(!allowed.contains(name), "{name}");
        }
    }

    #[test]
    fn ptrace_is_refused_on_old_kernels() {
        let p = runtime_default(&default_caps(), KernelVersion(4, 4));
        assert!(!unconditionally_allowed(&p).contains("ptrace"));
        assert_eq!(
            KernelVersion::parse("6.18.44-fc-v857"),
            Some(KernelVersion(6, 18))
        );
        assert_eq!(KernelVersion::parse("garbage"), None);
    }

    #[test]
    fn localhost_profile_round_trips_and_reports_bad_files() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("profile.json");
        std::fs::write(
            &p,
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
        )
        .unwrap();
        let s = load_localhost(&p).unwrap();
        assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActAllow);
        assert_eq!(
            s.syscalls().as_ref().unwrap()[0].names(),
            &["mkdir".to_string()]
        );
        std::fs::write(&p, "{not json").unwrap();
        assert!(matches!(
            load_localhost(&p),
            Err(SeccompError::Parse { .. })
        ));
        assert!(matches!(
            load_localhost(&t.path().join("missing.json")),
            Err(SeccompError::Read { .. })
        ));
    }
}
