//! `create`: write the bundle, run libcontainer's create in a forked helper, adopt the init.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;

use chrono::Utc;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use oci_spec::runtime::{LinuxSeccompArgBuilder, LinuxSeccompOperator, Spec};

use super::status::{ContainerState, ContainerStatus};
use super::{error_chain, io_err, validate_id, ContainerError, Runtime, Stdio};
use crate::spec::ContainerConfig;

impl Runtime {
    /// Create container `id` from `config`: its init process exists, in its namespaces and
    /// cgroup, and waits for [`Runtime::start`]. On return the init is a child of this process.
    /// On failure nothing is left behind (bundle, libcontainer state, cgroup, status).
    ///
    /// This forks the calling process, and libcontainer's init keeps running in that copy until
    /// it execs. No other thread of the caller may hold a lock at that moment that the init
    /// later takes. Rust's environment lock is one: `Command::spawn`, `env::var` and
    /// `tempfile` take it, and the init deadlocks when it sets the container's environment.
    /// The shim calls this from a single thread. Multi-threaded callers must keep such work
    /// out of the way while `create` runs (see the test fixture's `FORK_GUARD`).
    pub fn create(
        &self,
        id: &str,
        config: &ContainerConfig,
        stdio: Stdio,
    ) -> Result<ContainerState, ContainerError> {
        let spec = config
            .to_oci_spec(id, &self.host)
            .map_err(|source| ContainerError::Spec {
                id: id.into(),
                source,
            })?;
        self.create_with_spec(id, spec, stdio)
    }

    /// [`Runtime::create`] from an OCI spec made earlier (the CRI server generates it and hands
    /// it to the pod's shim, which creates the container). Same guarantees.
    pub fn create_with_spec(
        &self,
        id: &str,
        spec: Spec,
        stdio: Stdio,
    ) -> Result<ContainerState, ContainerError> {
        validate_id(id)?;
        if self.container_state_dir(id).exists() || self.status_path(id).exists() {
            return Err(ContainerError::AlreadyExists { id: id.into() });
        }
        let cgroup_path = spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().clone())
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();

        let bundle = self.bundle_dir(id);
        std::fs::create_dir_all(&bundle).map_err(io_err(id, "create bundle", &bundle))?;
        let result = self.create_from_bundle(id, spec, stdio).and_then(|pid| {
            let state = ContainerState {
                id: id.into(),
                pid,
                cgroup_path,
                status: ContainerStatus::Created,
                created_at: Utc::now(),
                started_at: None,
                exit: None,
            };
            let path = self.status_path(id);
            state
                .save(&path)
                .map_err(io_err(id, "write status", &path))?;
            Ok(state)
        });
        if result.is_err() {
            self.cleanup_failed_create(id);
        }
        result
    }

    fn create_from_bundle(
        &self,
        id: &str,
        mut spec: Spec,
        stdio: Stdio,
    ) -> Result<i32, ContainerError> {
        libcontainer_compat(&mut spec);
        if !self.host.cgroup_v2 {
            drop_v1_cgroup_mount_when_joining_pid_ns(&mut spec);
            readonly_v1_cgroup_mounts(&mut spec, self.cgroups.root());
        }
        // Compile the seccomp profile once per profile (cached in memory and under the data
        // dir) instead of in every init (about 15 ms of CPU for RuntimeDefault). The
        // config.json libcontainer reads then has no profile; the executor loads the program.
        let seccomp_cache = self.state_root.with_file_name("seccomp");
        let full_spec = spec.clone();
        let seccomp = crate::seccomp::PrecompiledSeccomp::prepare(&mut spec, &seccomp_cache);
        let precompiled = seccomp.is_some();
        let bundle = self.bundle_dir(id);
        let config_path = bundle.join("config.json");
        spec.save(&config_path).map_err(|e| ContainerError::Io {
            id: id.into(),
            op: "write config.json",
            path: config_path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;

        let devnull = || -> Result<OwnedFd, ContainerError> {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map(OwnedFd::from)
                .map_err(io_err(
                    id,
                    "open /dev/null",
                    std::path::Path::new("/dev/null"),
                ))
        };
        let stdin = stdio.stdin.map_or_else(devnull, Ok)?;
        let stdout = stdio.stdout.map_or_else(devnull, Ok)?;
        let stderr = stdio.stderr.map_or_else(devnull, Ok)?;
        let console_socket = stdio.console_socket;

        let (rx, tx) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| ContainerError::Io {
                id: id.into(),
                op: "pipe",
                path: Default::default(),
                source: e.into(),
            })?;
        let state_root = self.state_root.clone();
        let helper = deckhand_sys::process::fork_child(|| {
            let mut tx = std::fs::File::from(tx);
            // libcontainer's intermediate and init processes of a failed create would otherwise
            // be orphaned to the runtime as zombies nobody waits for: keep them here and reap
            // them before exiting. (On success the init outlives the helper and goes to the
            // runtime, which waits for it.)
            let _ = deckhand_sys::process::set_child_subreaper();
            let built = ContainerBuilder::new(id.to_owned(), SyscallType::default())
                .with_root_path(&state_root)
                .map(|b| match seccomp {
                    Some(executor) => b.with_executor(executor),
                    None => b,
                })
                .map(|b| {
                    b.with_stdin(stdin)
                        .with_stdout(stdout)
                        .with_stderr(stderr)
                        .with_console_socket(console_socket)
                        .as_init(&bundle)
                        .with_systemd(false)
                        .with_detach(true)
                })
                .and_then(|b| b.build());
            match built {
                Ok(c) => {
                    let pid = c.pid().map_or(-1, |p| p.as_raw());
                    let _ = write!(tx, "ok {pid}");
                    0
                }
                Err(e) => {
                    let _ = write!(tx, "err {}", error_chain(&e));
                    reap_children_for(std::time::Duration::from_secs(2));
                    1
                }
            }
        })
        .map_err(|source| ContainerError::Process {
            id: id.into(),
            source,
        })?;
        // The parent's copies of the stdio fds were dropped with the closure. The container's
        // init inherited the pipe's write end until it execs, so EOF cannot mark the end of the
        // reply: wait for the helper first (its reply, far below the pipe buffer size, is then
        // complete) and read without blocking.
        let helper_exit =
            deckhand_sys::process::wait_exit(helper).map_err(|source| ContainerError::Process {
                id: id.into(),
                source,
            })?;
        let mut reply = String::new();
        nix::fcntl::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&rx),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .map_err(|e| io_err(id, "read create result", std::path::Path::new("pipe"))(e.into()))?;
        let mut rx = std::fs::File::from(rx);
        match rx.read_to_string(&mut reply) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => {
                return Err(io_err(
                    id,
                    "read create result",
                    std::path::Path::new("pipe"),
                )(e))
            }
        }
        match reply.split_once(' ') {
            Some(("ok", pid)) => {
                let pid = pid.parse::<i32>().ok().filter(|p| *p > 0).ok_or_else(|| {
                    ContainerError::Runtime {
                        id: id.into(),
                        op: "create",
                        message: format!("helper reported no init pid ({reply:?})"),
                    }
                })?;
                if precompiled {
                    // The bundle's config.json lacked the profile and granted CAP_SYS_ADMIN
                    // only for the init's executor. Anything else that reads it later (an exec
                    // through libcontainer's tenant builder) must see the container's real
                    // profile and capabilities.
                    full_spec
                        .save(&config_path)
                        .map_err(|e| ContainerError::Io {
                            id: id.into(),
                            op: "write config.json",
                            path: config_path.clone(),
                            source: std::io::Error::other(e.to_string()),
                        })?;
                }
                Ok(pid)
            }
            Some(("err", message)) => Err(ContainerError::Runtime {
                id: id.into(),
                op: "create",
                message: message.to_owned(),
            }),
            _ => Err(ContainerError::Runtime {
                id: id.into(),
                op: "create",
                message: format!("create helper ended with {helper_exit:?} without a result"),
            }),
        }
    }

    /// Best effort: remove whatever a failed create left (libcontainer normally cleans its own
    /// state and cgroup on failure; this also covers a helper that died).
    fn cleanup_failed_create(&self, id: &str) {
        if let Ok(mut c) = self.load_libcontainer(id) {
            if let Err(e) = c.delete(true) {
                tracing::warn!(id, error = %error_chain(&e), "cleaning up failed create");
            }
        }
        let _ = std::fs::remove_dir_all(self.container_state_dir(id));
        let _ = std::fs::remove_dir_all(self.bundle_dir(id));
        let _ = std::fs::remove_file(self.status_path(id));
    }
}

/// Reap every child of the calling process until none is left or `limit` has passed.
fn reap_children_for(limit: std::time::Duration) {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
            Ok(WaitStatus::StillAlive) => std::thread::sleep(std::time::Duration::from_millis(5)),
            Ok(_) => {}
            Err(_) => return, // ECHILD: nothing left
        }
    }
}

/// libcontainer 0.7 mounts a v1 `cgroup` file system by reading `/proc/<pid>/cgroup` with the
/// init's pid as seen inside its PID namespace, but from the host's `/proc`. In a new PID
/// namespace that is pid 1 (which exists); joining a pod's shared PID namespace gives a small
/// pid that the host usually does not have, and the create fails ("procfs NotFound /proc/9").
/// Such containers get no `/sys/fs/cgroup` on v1 hosts (v2 mounts cgroup2 without the lookup).
pub(crate) fn drop_v1_cgroup_mount_when_joining_pid_ns(spec: &mut Spec) {
    let joins_pid_ns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|nss| {
            nss.iter().any(|n| {
                n.typ() == oci_spec::runtime::LinuxNamespaceType::Pid && n.path().is_some()
            })
        });
    if !joins_pid_ns {
        return;
    }
    if let Some(mounts) = spec.mounts().clone() {
        let kept: Vec<_> = mounts
            .into_iter()
            .filter(|m| m.typ().as_deref() != Some("cgroup"))
            .collect();
        spec.set_mounts(Some(kept));
    }
}

/// libcontainer 0.7 mounts a v1 `cgroup` file system as a tmpfs with one cgroup mount per
/// hierarchy and ignores the mount's `ro` option: an unprivileged container could write its
/// own limits. Each of those mounts (named as the host's hierarchies under `cgroup_root`) is
/// made a read-only path, which libcontainer remounts read-only (missing ones are skipped).
pub(crate) fn readonly_v1_cgroup_mounts(spec: &mut Spec, cgroup_root: &std::path::Path) {
    let ro_cgroup = spec.mounts().as_ref().is_some_and(|ms| {
        ms.iter().any(|m| {
            m.typ().as_deref() == Some("cgroup")
                && m.options()
                    .as_ref()
                    .is_some_and(|o| o.iter().any(|x| x == "ro"))
        })
    });
    let Some(mut linux) = spec.linux().clone() else {
        return;
    };
    if !ro_cgroup {
        return;
    }
    let dest = spec
        .mounts()
        .as_ref()
        .and_then(|ms| ms.iter().find(|m| m.typ().as_deref() == Some("cgroup")))
        .map(|m| m.destination().to_string_lossy().into_owned())
        .unwrap_or_else(|| "/sys/fs/cgroup".into());
    let mut paths = linux.readonly_paths().clone().unwrap_or_default();
    paths.push(dest.clone());
    let mut names: Vec<String> = std::fs::read_dir(cgroup_root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    paths.extend(names.into_iter().map(|n| format!("{dest}/{n}")));
    linux.set_readonly_paths(Some(paths));
    spec.set_linux(Some(linux));
}

/// Adapt an OCI spec to libcontainer 0.7's reading of it.
///
/// libcontainer passes a `SCMP_CMP_MASKED_EQ` argument's `valueTwo` as the mask and `value` as
/// the datum, the reverse of the OCI spec and runc (`value` is the mask). The spec deckhand
/// generates and Localhost profiles follow OCI; swap here, only for libcontainer, so that e.g.
/// the RuntimeDefault `clone` rule keeps meaning "no namespace flags".
pub(crate) fn libcontainer_compat(spec: &mut Spec) {
    let Some(mut linux) = spec.linux().clone() else {
        return;
    };
    let Some(mut seccomp) = linux.seccomp().clone() else {
        return;
    };
    let Some(mut syscalls) = seccomp.syscalls().clone() else {
        return;
    };
    for sc in syscalls.iter_mut() {
        let Some(args) = sc.args().clone() else {
            continue;
        };
        let args = args
            .into_iter()
            .map(|a| {
                if a.op() != LinuxSeccompOperator::ScmpCmpMaskedEq {
                    return a;
                }
                LinuxSeccompArgBuilder::default()
                    .index(a.index())
                    .op(a.op())
                    .value(a.value_two().unwrap_or(0))
                    .value_two(a.value())
                    .build()
                    .expect("all fields of a seccomp arg are set")
            })
            .collect();
        sc.set_args(Some(args));
    }
    seccomp.set_syscalls(Some(syscalls));
    linux.set_seccomp(Some(seccomp));
    spec.set_linux(Some(linux));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_eq_args_are_swapped_for_libcontainer_only() {
        let host = crate::spec::HostFacts {
            effective_caps: u64::MAX >> 23,
            oom_score_adj: 0,
            cgroup_v2: false,
            kernel: crate::seccomp::KernelVersion(6, 1),
        };
        let config = ContainerConfig {
            rootfs: "/r".into(),
            args: vec!["true".into()],
            ..Default::default()
        };
        let mut spec = config.to_oci_spec("c", &host).unwrap();
        let clone_arg = |spec: &Spec| {
            spec.linux()
                .as_ref()
                .unwrap()
                .seccomp()
                .as_ref()
                .unwrap()
                .syscalls()
                .as_ref()
                .unwrap()
                .iter()
                .find(|s| s.names() == &["clone".to_string()])
                .unwrap()
                .args()
                .as_ref()
                .unwrap()[0]
        };
        let before = clone_arg(&spec);
        assert_eq!(before.value(), crate::seccomp::CLONE_NAMESPACE_FLAGS);
        libcontainer_compat(&mut spec);
        let after = clone_arg(&spec);
        assert_eq!(after.value(), 0);
        assert_eq!(
            after.value_two(),
            Some(crate::seccomp::CLONE_NAMESPACE_FLAGS)
        );
        assert_eq!(after.index(), 0);
    }
}
