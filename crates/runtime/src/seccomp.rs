//! Seccomp profiles: deckhand's RuntimeDefault profile (an allowlist modelled on the
//! Docker/containerd default profile: everything not listed fails with EPERM), and loading of
//! Localhost profiles written in the OCI `LinuxSeccomp` JSON format.
//!
//! The profile depends on the container's capabilities (syscalls guarded by a capability are
//! allowed only when the container has it, as upstream does) and on the kernel (`ptrace` only
//! from 4.8, where seccomp can no longer be bypassed with it).
//!
//! Profiles are also compiled to BPF once per distinct profile ([`PrecompiledSeccomp`]):
//! libseccomp took about 15 ms of CPU inside every container's init for RuntimeDefault, a
//! third of the whole start.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use deckhand_sys::seccomp::BpfProgram;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{
    Executor, ExecutorError, ExecutorSetEnvsError, ExecutorValidationError,
};
use oci_spec::runtime::{Capability, LinuxCapabilities, Spec};

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

/// Syscalls that must stay allowed unconditionally after the filter is loaded for the
/// precompiled path to be taken: the capture child stops itself (`raise`), and the init drops
/// the capabilities it kept for loading (`capget`, `capset`, `prctl`) before it execs. A
/// profile without them keeps libcontainer's own loading.
const NEEDED_AFTER_LOAD: [&str; 9] = [
    "capget",
    "capset",
    "prctl",
    "rt_sigprocmask",
    "gettid",
    "getpid",
    "tgkill",
    "exit_group",
    "execve",
];

/// A seccomp profile compiled to BPF in the runtime, installed by the container's init just
/// before it reports ready, through a libcontainer [`Executor`].
///
/// Why an executor and extra capabilities: without `no_new_privs` (Kubernetes'
/// `allowPrivilegeEscalation` defaults to true) loading a filter needs CAP_SYS_ADMIN, so
/// libcontainer loads the profile before it drops capabilities, and offers no hook there; its
/// executor runs after the drop. [`PrecompiledSeccomp::prepare`] therefore removes the profile
/// from the spec libcontainer sees and lets libcontainer keep CAP_SYS_ADMIN; the executor loads
/// the precompiled program, then applies the container's real capability sets with
/// libcontainer's own `drop_privileges`, and only then lets libcontainer exec. The process that
/// execs has the same filter (the very program libseccomp generated, read back from the kernel)
/// and the same capability sets as before. If dropping fails, create fails: the container
/// never runs with the extra capability.
#[derive(Clone)]
pub struct PrecompiledSeccomp {
    program: Arc<BpfProgram>,
    /// The container's capabilities, to restore after loading; `None` when nothing was added.
    restore_caps: Option<LinuxCapabilities>,
}

impl std::fmt::Debug for PrecompiledSeccomp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrecompiledSeccomp")
            .field("program", &self.program)
            .field("restores_caps", &self.restore_caps.is_some())
            .finish()
    }
}

impl PrecompiledSeccomp {
    /// Take `spec`'s seccomp profile out of the spec for libcontainer (already in
    /// libcontainer's argument order, see `create::libcontainer_compat`) and return the
    /// executor that loads it precompiled. `None` (spec unchanged, libcontainer loads the
    /// profile as before) when there is no profile, when the profile needs features the
    /// precompiled path does not carry (flags, notify, a listener), when it blocks a syscall
    /// the path needs, or when compiling fails.
    ///
    /// Compiled programs are cached in memory and in `cache_dir` (the runtime's data dir), so
    /// a short-lived process (one shim per pod) does not compile again either.
    pub fn prepare(spec: &mut Spec, cache_dir: &Path) -> Option<Self> {
        let mut linux = spec.linux().clone()?;
        let profile = linux.seccomp().clone()?;
        if !precompilable(&profile) {
            return None;
        }
        let program = match compiled(&profile, cache_dir) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "precompiling seccomp profile; libcontainer compiles it in the init");
                return None;
            }
        };
        let mut process = spec.process().clone()?;
        let nnp = process.no_new_privileges() == Some(true);
        let mut restore_caps = None;
        if let (false, Some(caps)) = (nnp, process.capabilities().clone()) {
            let has = |set: &Option<_>| {
                set.as_ref()
                    .is_some_and(|s: &std::collections::HashSet<Capability>| {
                        s.contains(&Capability::SysAdmin)
                    })
            };
            if !(has(caps.bounding()) && has(caps.effective()) && has(caps.permitted())) {
                let mut kept = caps.clone();
                let add = |set: &Option<std::collections::HashSet<Capability>>| {
                    let mut s = set.clone().unwrap_or_default();
                    s.insert(Capability::SysAdmin);
                    Some(s)
                };
                kept.set_bounding(add(caps.bounding()));
                kept.set_effective(add(caps.effective()));
                kept.set_permitted(add(caps.permitted()));
                process.set_capabilities(Some(kept));
                restore_caps = Some(caps);
            }
        }
        linux.set_seccomp(None);
        spec.set_linux(Some(linux));
        spec.set_process(Some(process));
        Some(Self {
            program,
            restore_caps,
        })
    }
}

impl Executor for PrecompiledSeccomp {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }

    /// The last step libcontainer runs in the init before it reports ready (so a failure here
    /// fails create, as a failed libcontainer seccomp load did).
    fn setup_envs(
        &self,
        envs: std::collections::HashMap<String, String>,
    ) -> Result<(), ExecutorSetEnvsError> {
        deckhand_sys::seccomp::install_filter(&self.program)
            .map_err(|e| ExecutorSetEnvsError::Other(e.to_string()))?;
        if let Some(caps) = &self.restore_caps {
            let syscall = libcontainer::syscall::syscall::create_syscall();
            libcontainer::capabilities::drop_privileges(caps, syscall.as_ref()).map_err(|e| {
                ExecutorSetEnvsError::Other(format!(
                    "dropping the capabilities kept to load seccomp: {e}"
                ))
            })?;
        }
        DefaultExecutor {}.setup_envs(envs)
    }
}

/// Whether a profile can take the precompiled path (see [`NEEDED_AFTER_LOAD`]).
pub fn precompilable(profile: &LinuxSeccomp) -> bool {
    let notify = |a: LinuxSeccompAction| a == LinuxSeccompAction::ScmpActNotify;
    if profile.flags().as_ref().is_some_and(|f| !f.is_empty())
        || profile.listener_path().is_some()
        || notify(profile.default_action())
        || profile
            .syscalls()
            .iter()
            .flatten()
            .any(|r| notify(r.action()))
    {
        return false;
    }
    let allowed = unconditionally_allowed(profile);
    NEEDED_AFTER_LOAD.iter().all(|n| allowed.contains(*n))
}

/// The BPF program libcontainer (libseccomp) generates for `profile`, compiled once per
/// distinct profile: looked up in memory, then in `cache_dir`, and only then compiled in a
/// forked child (see [`deckhand_sys::seccomp::capture_filter`]).
fn compiled(profile: &LinuxSeccomp, cache_dir: &Path) -> Result<Arc<BpfProgram>, String> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<BpfProgram>>>> = OnceLock::new();
    let key = cache_key(profile)?;
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = cache.get(&key) {
        return Ok(p.clone());
    }
    // A few profiles per node (one per capability set); bound it anyway.
    if cache.len() >= 64 {
        cache.clear();
    }
    let file = cache_dir.join(format!("{:016x}.json", {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        h.finish()
    }));
    let program = match load_cached(&file, &key) {
        Some(p) => p,
        None => {
            let p = deckhand_sys::seccomp::capture_filter(|| {
                libcontainer::seccomp::initialize_seccomp(profile).is_ok()
            })
            .map_err(|e| e.to_string())?;
            if let Err(e) = store_cached(&file, &key, &p) {
                tracing::warn!(path = %file.display(), error = %e, "caching compiled seccomp profile");
            }
            p
        }
    };
    let program = Arc::new(program);
    cache.insert(key, program.clone());
    Ok(program)
}

/// What the compiled program depends on: the profile, and the compiler. libseccomp is a
/// shared library that may be upgraded under a running node (its file name carries the
/// version; the inode and mtime catch a rebuild), and libcontainer is linked into this
/// executable (its size and mtime change with every build).
fn cache_key(profile: &LinuxSeccomp) -> Result<String, String> {
    static COMPILER: OnceLock<String> = OnceLock::new();
    let compiler = COMPILER.get_or_init(compiler_identity);
    let profile = serde_json::to_string(profile).map_err(|e| e.to_string())?;
    Ok(format!("{compiler}\n{profile}"))
}

/// The loaded libseccomp and this executable, as `path:inode:size:mtime` lines.
fn compiler_identity() -> String {
    use std::os::unix::fs::MetadataExt;
    let file_id = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| format!("{}:{}:{}:{}", p.display(), m.ino(), m.size(), m.mtime()))
            .unwrap_or_default()
    };
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let libseccomp = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("libseccomp.so"))
        .map(|p| file_id(Path::new(p)))
        .unwrap_or_default();
    let exe = std::fs::read_link("/proc/self/exe")
        .map(|p| file_id(&p))
        .unwrap_or_default();
    format!("{libseccomp}\n{exe}")
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CachedProgram {
    key: String,
    program: Vec<(u16, u8, u8, u32)>,
}

/// The program stored for `key`, if the file holds exactly that key (the file name is only a
/// 64-bit hash of it).
fn load_cached(file: &Path, key: &str) -> Option<BpfProgram> {
    let bytes = std::fs::read(file).ok()?;
    let cached: CachedProgram = serde_json::from_slice(&bytes).ok()?;
    if cached.key != key {
        return None;
    }
    BpfProgram::new(&cached.program).ok()
}

fn store_cached(file: &Path, key: &str, program: &BpfProgram) -> std::io::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_vec(&CachedProgram {
        key: key.to_owned(),
        program: program.instructions(),
    })
    .map_err(std::io::Error::other)?;
    // Write then rename: a concurrent reader sees the old file or the whole new one.
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        file.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, file)
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

    fn default_spec() -> Spec {
        let host = crate::spec::HostFacts {
            effective_caps: u64::MAX >> 23,
            oom_score_adj: 0,
            cgroup_v2: false,
            kernel: KernelVersion(6, 1),
        };
        let config = crate::spec::ContainerConfig {
            rootfs: "/r".into(),
            args: vec!["true".into()],
            ..Default::default()
        };
        config.to_oci_spec("c", &host).unwrap()
    }

    #[test]
    fn only_plain_profiles_that_allow_the_drop_are_precompiled() {
        let spec = default_spec();
        let p = spec.linux().as_ref().unwrap().seccomp().clone().unwrap();
        assert!(precompilable(&p));
        let mut no_capset = p.clone();
        let rules = no_capset
            .syscalls()
            .clone()
            .unwrap()
            .into_iter()
            .map(|mut r| {
                let names = r.names().iter().filter(|n| *n != "capset").cloned();
                r.set_names(names.collect());
                r
            })
            .collect();
        no_capset.set_syscalls(Some(rules));
        assert!(!precompilable(&no_capset));
        let mut flagged = p.clone();
        flagged.set_flags(Some(vec![
            oci_spec::runtime::LinuxSeccompFilterFlag::SeccompFilterFlagLog,
        ]));
        assert!(!precompilable(&flagged));
        let mut notify = p;
        notify.set_default_action(LinuxSeccompAction::ScmpActNotify);
        assert!(!precompilable(&notify));
    }

    #[test]
    fn cached_program_is_used_only_for_its_own_key() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("c/x.json");
        let prog = BpfProgram::new(&[(0x06, 0, 0, 0x7fff_0000)]).unwrap();
        store_cached(&f, "key-a", &prog).unwrap();
        assert_eq!(load_cached(&f, "key-a"), Some(prog));
        assert_eq!(load_cached(&f, "key-b"), None);
        std::fs::write(&f, b"{torn").unwrap();
        assert_eq!(load_cached(&f, "key-a"), None);
    }

    #[test]
    fn prepare_moves_the_profile_into_the_executor_and_keeps_sys_admin_for_loading() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "compiling captures a filter with ptrace: run as root"
        );
        let t = tempfile::tempdir().unwrap();
        let mut spec = default_spec();
        let before = spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .clone()
            .unwrap();
        assert!(!before
            .bounding()
            .as_ref()
            .unwrap()
            .contains(&Capability::SysAdmin));
        let exec = PrecompiledSeccomp::prepare(&mut spec, t.path()).expect("precompiled");
        assert!(spec.linux().as_ref().unwrap().seccomp().is_none());
        let kept = spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .clone()
            .unwrap();
        for set in [kept.bounding(), kept.effective(), kept.permitted()] {
            assert!(set.as_ref().unwrap().contains(&Capability::SysAdmin));
        }
        assert_eq!(kept.inheritable(), before.inheritable());
        assert_eq!(exec.restore_caps.as_ref(), Some(&before));
        // The x86_64 RuntimeDefault program is a few hundred instructions.
        assert!(exec.program.len() > 100, "{:?}", exec.program);
        // The program is on disk for the next process.
        let files: Vec<_> = std::fs::read_dir(t.path()).unwrap().collect();
        assert_eq!(files.len(), 1);
        // No profile, nothing to do.
        assert!(PrecompiledSeccomp::prepare(&mut spec, t.path()).is_none());
    }
}
