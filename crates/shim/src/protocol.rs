//! The shim's control protocol: one JSON object per line over the shim's unix socket.
//!
//! A connection carries requests and their responses in order. [`Request::Exec`] and
//! [`Request::Attach`] turn the connection into a stream after the response line: from then on
//! both sides send [`Frame`]s (`[kind u8][len u32 BE][payload]`) until the shim sends
//! [`FrameKind::Exit`] (exec) or closes it (attach ends when the container exits).
//!
//! Why JSON lines and not gRPC/ttrpc: the shim must stay small and single-threaded (no async
//! runtime), and the runtime is its only client; the messages are few and small.

use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use std::path::PathBuf;

use crate::state::{ContainerState, ExitRecord};

/// What the runtime asks of a pod's shim.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Liveness check; the response carries the shim's pid.
    Ping,
    /// Create container `id` from the OCI spec (JSON of `oci_spec::runtime::Spec`). Its stdout
    /// and stderr go to `log_path` in the CRI log format (none: discarded). With `stdin`, the
    /// container's stdin is a pipe the shim holds open for attach; with `stdin_once` it is
    /// closed after the first attach detaches.
    Create {
        id: String,
        spec: serde_json::Value,
        log_path: Option<PathBuf>,
        #[serde(default)]
        stdin: bool,
        #[serde(default)]
        stdin_once: bool,
        /// Give the container a terminal: its output is one stream (logged as stdout), stdin
        /// and resizes go to the terminal.
        #[serde(default)]
        tty: bool,
    },
    /// Signal the container's init (`all`: every process in its cgroup).
    Kill {
        id: String,
        signal: i32,
        #[serde(default)]
        all: bool,
    },
    /// Answered when the container has exited (at once if it already has).
    Wait { id: String },
    /// Forget a stopped container: its output is drained and its streams end (with `force`, a
    /// running one is killed, reaped and its exit recorded first). The caller removes the
    /// container's OCI state afterwards: that needs no parent.
    Delete {
        id: String,
        #[serde(default)]
        force: bool,
    },
    /// Close and reopen the log file (after the kubelet rotated it).
    ReopenLog { id: String },
    /// The recorded states of the given containers (all the shim knows when empty).
    State {
        #[serde(default)]
        ids: Vec<String>,
    },
    /// Run a process in the container; the connection becomes an exec stream.
    Exec {
        id: String,
        args: Vec<String>,
        #[serde(default)]
        env: Vec<String>,
        #[serde(default)]
        stdin: bool,
        /// Give the process a terminal (output on one stream; stdin and resizes to it).
        #[serde(default)]
        tty: bool,
    },
    /// Stream the container's output (and feed its stdin when it was created with one).
    Attach {
        id: String,
        #[serde(default)]
        stdin: bool,
    },
    /// Start the pod's shared PID namespace: a minimal init whose namespace containers join
    /// through `/proc/<pid>/ns/pid` (answered with `Created { pid }`).
    PodInit,
    /// Exit the shim (after the last container of the pod was deleted); the pod's init, if
    /// any, is killed.
    Shutdown,
}

/// Why a request failed; the runtime maps it to a gRPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    InvalidArgument,
    FailedPrecondition,
    Internal,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Ok,
    Pong {
        pid: i32,
    },
    Created {
        pid: i32,
    },
    Exited {
        exit: ExitRecord,
    },
    States {
        states: Vec<ContainerState>,
    },
    /// Exec/attach accepted: frames follow on this connection.
    Streaming,
    Error {
        kind: ErrorKind,
        message: String,
    },
}

/// Frame kinds on an exec/attach stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// runtime → shim: bytes for the process's stdin; an empty payload closes stdin.
    Stdin = 0,
    Stdout = 1,
    Stderr = 2,
    /// shim → runtime: the exec'd process ended; payload is its exit status (decimal ASCII).
    Exit = 3,
    /// runtime → shim: the terminal's new size, `cols` then `rows` as big-endian u16.
    Resize = 4,
}

impl FrameKind {
    pub fn from_u8(b: u8) -> Option<FrameKind> {
        Some(match b {
            0 => FrameKind::Stdin,
            1 => FrameKind::Stdout,
            2 => FrameKind::Stderr,
            3 => FrameKind::Exit,
            4 => FrameKind::Resize,
            _ => return None,
        })
    }
}

/// Largest payload one frame may carry (a bound for the reader's allocation).
pub const MAX_FRAME: usize = 1 << 20;

pub fn encode_frame(kind: FrameKind, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + payload.len());
    v.push(kind as u8);
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

pub fn write_frame(w: &mut impl Write, kind: FrameKind, payload: &[u8]) -> io::Result<()> {
    w.write_all(&encode_frame(kind, payload))
}

/// Parse one complete frame from the front of `buf`: `Some((kind, payload, consumed))`.
pub fn parse_frame(buf: &[u8]) -> io::Result<Option<(FrameKind, &[u8], usize)>> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let kind = FrameKind::from_u8(buf[0])
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unknown frame kind"))?;
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    if buf.len() < 5 + len {
        return Ok(None);
    }
    Ok(Some((kind, &buf[5..5 + len], 5 + len)))
}

/// Blocking read of one frame (used by tests and blocking clients).
pub fn read_frame(r: &mut impl Read) -> io::Result<(FrameKind, Vec<u8>)> {
    let mut head = [0u8; 5];
    r.read_exact(&mut head)?;
    let kind = FrameKind::from_u8(head[0])
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unknown frame kind"))?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let mut payload = vec![0; len];
    r.read_exact(&mut payload)?;
    Ok((kind, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_split() {
        let mut buf = encode_frame(FrameKind::Stdout, b"hello");
        buf.extend(encode_frame(FrameKind::Exit, b"3"));
        let (k, p, n) = parse_frame(&buf).unwrap().unwrap();
        assert_eq!((k, p), (FrameKind::Stdout, &b"hello"[..]));
        let (k, p, _) = parse_frame(&buf[n..]).unwrap().unwrap();
        assert_eq!((k, p), (FrameKind::Exit, &b"3"[..]));
        assert!(parse_frame(&buf[..7]).unwrap().is_none());
        assert!(parse_frame(&[9, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn requests_are_tagged_json_lines() {
        let r: Request = serde_json::from_str(r#"{"op":"kill","id":"c","signal":15}"#).unwrap();
        assert!(matches!(
            r,
            Request::Kill {
                signal: 15,
                all: false,
                ..
            }
        ));
        let s = serde_json::to_string(&Response::Error {
            kind: ErrorKind::NotFound,
            message: "x".into(),
        })
        .unwrap();
        assert_eq!(s, r#"{"result":"error","kind":"not_found","message":"x"}"#);
    }
}
