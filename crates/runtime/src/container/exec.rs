//! `exec`: start another process inside a running container (CRI Exec/ExecSync, probes).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;

use super::status::ContainerStatus;
use super::{error_chain, io_err, ContainerError, Runtime, Stdio};

/// What to run; the rest (user, cwd, capabilities, seccomp, namespaces, cgroup) comes from the
/// container's spec, as `runc exec` does.
#[derive(Debug, Clone, Default)]
pub struct ExecConfig {
    pub args: Vec<String>,
    /// `KEY=value` entries overriding the container's environment.
    pub env: Vec<String>,
}

impl Runtime {
    /// Start `config.args` in running container `id` and return its pid. Like [`Runtime::create`]
    /// this forks a helper that runs libcontainer (same single-thread contract); the process
    /// is the helper's child and is reparented to this subreaper when the helper exits, so the
    /// caller reaps it.
    pub fn exec(&self, id: &str, config: &ExecConfig, stdio: Stdio) -> Result<i32, ContainerError> {
        let state = self.state(id)?;
        if state.status != ContainerStatus::Running {
            return Err(ContainerError::InvalidState {
                id: id.into(),
                state: state.status,
                op: "exec",
            });
        }
        if config.args.is_empty() {
            return Err(ContainerError::Runtime {
                id: id.into(),
                op: "exec",
                message: "no command given".into(),
            });
        }
        let env: HashMap<String, String> = config
            .env
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
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
        // libcontainer's tenant defaults to uid 0 and `/`: an exec runs as the container's own
        // process does (user, groups, working dir), as runc exec and containerd do.
        let bundle_config = self.bundle_dir(id).join("config.json");
        let mut spec = oci_spec::runtime::Spec::load(&bundle_config).ok();
        let process = spec.as_ref().and_then(|s| s.process().clone());
        // libcontainer 0.7's tenant builder rebuilds `linux` without the seccomp profile, so
        // an exec'd process would run unfiltered. The precompiled profile is installed by an
        // executor instead, exactly as for the container's init; without no_new_privs that
        // needs CAP_SYS_ADMIN until the filter is loaded, after which the executor drops to
        // the container's real capabilities.
        let seccomp = spec.as_mut().and_then(|spec| {
            let had_admin = has_sys_admin(spec);
            crate::seccomp::PrecompiledSeccomp::prepare(
                spec,
                &self.state_root.with_file_name("seccomp"),
            )
            .map(|pre| (pre, !had_admin && has_sys_admin(spec)))
        });
        if spec
            .as_ref()
            .is_some_and(|s| s.linux().as_ref().is_some_and(|l| l.seccomp().is_some()))
        {
            // A profile the precompiled path cannot carry: refuse rather than run unfiltered.
            return Err(ContainerError::Runtime {
                id: id.into(),
                op: "exec",
                message: "the container's seccomp profile cannot be applied to exec'd processes \
                          (it uses notify, flags or a listener)"
                    .into(),
            });
        }
        let (uid, gid, gids, cwd) = match &process {
            Some(p) => (
                Some(p.user().uid()),
                Some(p.user().gid()),
                p.user().additional_gids().clone().unwrap_or_default(),
                Some(p.cwd().clone()),
            ),
            None => (None, None, Vec::new(), None),
        };
        // With a terminal the process is described by a process file (libcontainer's tenant
        // sets `terminal` only from one): the container's own process with the exec's args,
        // its environment overridden by the exec's, as runc exec does.
        let console_socket = stdio.console_socket;
        let process_file =
            match (&console_socket, &process) {
                (None, _) => None,
                (Some(_), None) => {
                    return Err(ContainerError::Runtime {
                        id: id.into(),
                        op: "exec",
                        message: "the container's spec has no process to base a terminal exec on"
                            .into(),
                    })
                }
                (Some(_), Some(p)) => {
                    let add_admin = seccomp.as_ref().is_some_and(|(_, a)| *a);
                    let file = self.bundle_dir(id).join(format!(
                        "exec-{}.json",
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap_or_default()
                            .as_nanos()
                    ));
                    let json = serde_json::to_vec(&terminal_process(p, config, add_admin))
                        .map_err(|e| ContainerError::Runtime {
                            id: id.into(),
                            op: "exec",
                            message: format!("process file: {e}"),
                        })?;
                    std::fs::write(&file, json).map_err(io_err(id, "write process file", &file))?;
                    Some(file)
                }
            };
        let _remove_process_file = process_file.clone().map(RemoveFile);
        let state_root = self.state_root.clone();
        let args = config.args.clone();
        run_in_helper(id, "exec", move || {
            // libcontainer logs through the inherited subscriber onto fd 2, which becomes the
            // exec'd process's stderr (e.g. a warning about ambient capabilities): keep the
            // user's output clean; failures come back as the returned error.
            let _quiet = tracing::dispatcher::set_default(&tracing::Dispatch::none());
            let (executor, extra_caps) = match seccomp {
                Some((pre, add_admin)) => (Some(pre), add_admin),
                None => (None, false),
            };
            ContainerBuilder::new(id.to_owned(), SyscallType::default())
                .with_root_path(&state_root)
                .map(|b| match executor {
                    Some(e) => b.with_executor(e),
                    None => b,
                })
                .map(|b| {
                    let tenant = b
                        .with_stdin(stdin)
                        .with_stdout(stdout)
                        .with_stderr(stderr)
                        .with_console_socket(console_socket)
                        .as_tenant();
                    if let Some(file) = process_file {
                        return tenant.with_process(Some(file)).with_detach(true);
                    }
                    tenant
                        .with_container_args(args)
                        .with_env(env)
                        .with_user(uid)
                        .with_group(gid)
                        .with_additional_gids(gids)
                        .with_cwd(cwd)
                        .with_capabilities(if extra_caps {
                            vec!["CAP_SYS_ADMIN".to_string()]
                        } else {
                            Vec::new()
                        })
                        .with_detach(true)
                })
                .and_then(|b| b.build())
                .map(|pid| pid.as_raw())
                .map_err(|e| error_chain(&e))
        })
    }
}

/// The container's process turned into a terminal exec of `config`.
fn terminal_process(
    base: &oci_spec::runtime::Process,
    config: &ExecConfig,
    add_admin: bool,
) -> oci_spec::runtime::Process {
    let mut p = base.clone();
    p.set_args(Some(config.args.clone()));
    let mut env = p.env().clone().unwrap_or_default();
    for kv in &config.env {
        let key = kv.split('=').next().unwrap_or_default();
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    p.set_terminal(Some(true));
    if add_admin {
        // As the args path's `with_capabilities`: the precompiled seccomp executor needs
        // CAP_SYS_ADMIN until the filter is loaded, then drops to the container's set.
        if let Some(mut caps) = p.capabilities().clone() {
            use oci_spec::runtime::Capability;
            let add = |set: Option<Capabilities>| {
                let mut set = set.unwrap_or_default();
                set.insert(Capability::SysAdmin);
                Some(set)
            };
            caps.set_bounding(add(caps.bounding().clone()));
            caps.set_effective(add(caps.effective().clone()));
            caps.set_permitted(add(caps.permitted().clone()));
            p.set_capabilities(Some(caps));
        }
    }
    p
}

type Capabilities = oci_spec::runtime::Capabilities;

/// Removes a file when dropped.
struct RemoveFile(std::path::PathBuf);

impl Drop for RemoveFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn has_sys_admin(spec: &oci_spec::runtime::Spec) -> bool {
    spec.process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
        .and_then(|c| c.bounding().as_ref())
        .is_some_and(|b| b.contains(&oci_spec::runtime::Capability::SysAdmin))
}

/// Run `f` in a forked helper process and return the pid it reports. The helper is a subreaper
/// while it runs so that processes a failed libcontainer call leaves behind are reaped there.
pub(crate) fn run_in_helper(
    id: &str,
    op: &'static str,
    f: impl FnOnce() -> Result<i32, String>,
) -> Result<i32, ContainerError> {
    let (rx, tx) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| ContainerError::Io {
            id: id.into(),
            op: "pipe",
            path: Default::default(),
            source: e.into(),
        })?;
    let helper = deckhand_sys::process::fork_child(|| {
        let mut tx = std::fs::File::from(tx);
        let _ = deckhand_sys::process::set_child_subreaper();
        match f() {
            Ok(pid) => {
                let _ = write!(tx, "ok {pid}");
                0
            }
            Err(message) => {
                let _ = write!(tx, "err {message}");
                // Reap what libcontainer left (intermediate/init of a failed call).
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
                while std::time::Instant::now() < deadline {
                    match deckhand_sys::process::reap_any() {
                        Ok(Some(_)) => {}
                        Ok(None) if deckhand_sys::process::has_children() => {
                            std::thread::sleep(std::time::Duration::from_millis(5))
                        }
                        _ => break,
                    }
                }
                1
            }
        }
    })
    .map_err(|source| ContainerError::Process {
        id: id.into(),
        source,
    })?;
    // The started process may hold the pipe's write end until it execs: wait for the helper,
    // then read without blocking (the reply is far below the pipe buffer size).
    let helper_exit =
        deckhand_sys::process::wait_exit(helper).map_err(|source| ContainerError::Process {
            id: id.into(),
            source,
        })?;
    nix::fcntl::fcntl(
        rx.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .map_err(|e| io_err(id, "read helper result", std::path::Path::new("pipe"))(e.into()))?;
    let mut reply = String::new();
    match std::fs::File::from(rx).read_to_string(&mut reply) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(e) => {
            return Err(io_err(
                id,
                "read helper result",
                std::path::Path::new("pipe"),
            )(e))
        }
    }
    match reply.split_once(' ') {
        Some(("ok", pid)) => {
            pid.parse::<i32>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| ContainerError::Runtime {
                    id: id.into(),
                    op,
                    message: format!("helper reported no pid ({reply:?})"),
                })
        }
        Some(("err", message)) => Err(ContainerError::Runtime {
            id: id.into(),
            op,
            message: message.to_owned(),
        }),
        _ => Err(ContainerError::Runtime {
            id: id.into(),
            op,
            message: format!("helper ended with {helper_exit:?} without a result"),
        }),
    }
}
