//! `deckhand oci <op> <id>`: the container operations a shim delegates to the `deckhand`
//! binary, because they need libcontainer (see `deckhand_shim::ops` for the contract). Each
//! run does one operation and prints one answer line; container inits and exec'd processes it
//! creates outlive it and are reparented to the shim.

use std::io::{Read, Write};
use std::path::PathBuf;

use oci_spec::runtime::Spec;

use crate::container::{ContainerError, ExecConfig, Runtime, RuntimeConfig, Stdio};
use deckhand_shim::ops::{STDERR_FD, STDIN_FD, STDOUT_FD};
use deckhand_shim::protocol::{ErrorKind, Response};

/// One operation of `deckhand oci`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Create from the OCI spec on stdin, stdio on descriptors 3–5: `Created { pid }`.
    Create,
    /// Run `{"args": […], "env": […]}` from stdin, stdio on descriptors 3–5: `Created { pid }`.
    Exec,
}

impl std::str::FromStr for Op {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "create" => Op::Create,
            "exec" => Op::Exec,
            _ => return Err(format!("unknown operation {s:?} (create, exec)")),
        })
    }
}

/// Run `op` on container `id` and print the answer line on stdout. Must run while the process
/// is single-threaded: libcontainer forks. Returns the process exit code.
///
/// `console_socket`: the container gets a terminal, whose master goes to that socket.
pub fn run(config: RuntimeConfig, op: Op, id: &str, console_socket: Option<PathBuf>) -> i32 {
    let answer = match Runtime::with_dirs(config) {
        Ok(rt) => execute(&rt, op, id, console_socket).unwrap_or_else(|e| error_response(&e)),
        Err(e) => error_response(&e),
    };
    let mut line = serde_json::to_vec(&answer).unwrap_or_default();
    line.push(b'\n');
    let _ = std::io::stdout().write_all(&line);
    i32::from(matches!(answer, Response::Error { .. }))
}

fn execute(
    rt: &Runtime,
    op: Op,
    id: &str,
    console_socket: Option<PathBuf>,
) -> Result<Response, ContainerError> {
    match op {
        Op::Create => {
            let spec: Spec =
                serde_json::from_slice(&read_stdin(id)?).map_err(|e| ContainerError::Runtime {
                    id: id.into(),
                    op: "create",
                    message: format!("bad OCI spec from the shim: {e}"),
                })?;
            let mut stdio = inherited_stdio();
            stdio.console_socket = console_socket;
            let state = rt.create_with_spec(id, spec, stdio)?;
            Ok(Response::Created { pid: state.pid })
        }
        Op::Exec => {
            #[derive(serde::Deserialize)]
            struct Input {
                args: Vec<String>,
                #[serde(default)]
                env: Vec<String>,
            }
            let input: Input =
                serde_json::from_slice(&read_stdin(id)?).map_err(|e| ContainerError::Runtime {
                    id: id.into(),
                    op: "exec",
                    message: format!("bad exec request from the shim: {e}"),
                })?;
            let config = ExecConfig {
                args: input.args,
                env: input.env,
            };
            let mut stdio = inherited_stdio();
            stdio.console_socket = console_socket;
            let pid = rt.exec(id, &config, stdio)?;
            Ok(Response::Created { pid })
        }
    }
}

fn read_stdin(id: &str) -> Result<Vec<u8>, ContainerError> {
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .map_err(|source| ContainerError::Io {
            id: id.into(),
            op: "read request",
            path: "<stdin>".into(),
            source,
        })?;
    Ok(buf)
}

fn inherited_stdio() -> Stdio {
    use deckhand_sys::process::inherited_fd;
    Stdio {
        stdin: inherited_fd(STDIN_FD),
        stdout: inherited_fd(STDOUT_FD),
        stderr: inherited_fd(STDERR_FD),
        console_socket: None,
    }
}

/// A container-layer error as a shim protocol answer (its kind becomes a gRPC code).
pub fn error_response(e: &ContainerError) -> Response {
    let kind = match e {
        ContainerError::NotFound { .. } => ErrorKind::NotFound,
        ContainerError::AlreadyExists { .. } => ErrorKind::AlreadyExists,
        ContainerError::InvalidId { .. } | ContainerError::Spec { .. } => {
            ErrorKind::InvalidArgument
        }
        ContainerError::InvalidState { .. } => ErrorKind::FailedPrecondition,
        _ => ErrorKind::Internal,
    };
    Response::Error {
        kind,
        message: e.to_string(),
    }
}
