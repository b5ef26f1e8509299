//! Container operations the shim cannot do itself: the ones that need libcontainer and must
//! create a process the shim parents (create, exec) run in `deckhand oci <op> <id>`, a
//! short-lived process
//! the shim executes, as containerd's shim executes runc. Keeping libcontainer out of the shim
//! keeps the shim small (one runs per pod); the helper's children (container inits, exec'd
//! processes) are reparented to the shim, a child subreaper, when the helper exits.
//!
//! Contract with the helper: optional input JSON on its stdin; the container's stdio, when
//! passed, as descriptors 3 (stdin), 4 (stdout) and 5 (stderr); one [`Response`] line on its
//! stdout; diagnostics on its stderr, which is the shim's log.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::protocol::{ErrorKind, Response};

/// Descriptor numbers of the container's stdio in the helper.
pub const STDIN_FD: i32 = 3;
pub const STDOUT_FD: i32 = 4;
pub const STDERR_FD: i32 = 5;

/// How to run `deckhand oci`.
#[derive(Debug, Clone)]
pub struct Helper {
    /// The `deckhand` executable.
    pub program: PathBuf,
    /// Its `--data-dir`.
    pub data_dir: PathBuf,
}

impl Helper {
    /// Run `deckhand --data-dir D oci <op> <id> <args…>` to completion and return its answer.
    /// Blocks the shim for the operation's duration, as the in-process call it replaces did.
    pub fn run(
        &self,
        op: &str,
        id: &str,
        args: &[&str],
        input: Option<&[u8]>,
        fds: &[(BorrowedFd<'_>, i32)],
    ) -> Response {
        let fail = |message: String| Response::Error {
            kind: ErrorKind::Internal,
            message: format!("container {id}: {op}: {message}"),
        };
        let mut cmd = Command::new(&self.program);
        cmd.arg("--data-dir")
            .arg(&self.data_dir)
            .args(["oci", op, id])
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = match deckhand_sys::process::spawn_with_fds(&mut cmd, fds) {
            Ok(c) => c,
            Err(e) => return fail(format!("cannot run {}: {e}", self.program.display())),
        };
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            // A helper that fails early stops reading; its answer says why.
            let _ = stdin.write_all(input);
        }
        // One line, not read-to-EOF: a container init forked by the helper may hold a copy of
        // the pipe until it sets up its own stdio.
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        let status = child.wait();
        match serde_json::from_str::<Response>(line.trim()) {
            Ok(r) => r,
            Err(_) => fail(format!(
                "deckhand oci ended ({}) without an answer; see the shim log",
                status.map_or_else(|e| e.to_string(), |s| s.to_string())
            )),
        }
    }
}

/// Send `signal` to a container's init and, with `all`, to every process of its cgroup.
///
/// Not libcontainer's `kill`: with `all` on cgroup v1 it freezes the cgroup first and waits
/// for the freezer, which took seconds here. Signalling the listed processes is what runc
/// does without a freezer; a process forked in between is in the container's PID namespace
/// and dies with its init on SIGKILL anyway. Shared by the shim and the container layer.
pub fn signal_container(
    cgroups: &deckhand_sys::cgroup::Cgroups,
    state: &crate::state::ContainerState,
    signal: i32,
    all: bool,
) -> Result<(), deckhand_sys::process::ProcessError> {
    deckhand_sys::process::signal_pid(state.pid, signal)?;
    if all {
        let controller = if cgroups.mode().is_v2() { "" } else { "memory" };
        for pid in cgroups
            .procs(controller, &state.cgroup_path)
            .unwrap_or_default()
        {
            deckhand_sys::process::signal_pid(pid, signal)?;
        }
    }
    Ok(())
}
