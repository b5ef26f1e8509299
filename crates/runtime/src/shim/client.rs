//! The runtime's side of the shim protocol (async, tokio). One connection per request keeps
//! concurrent CRI calls independent; `Wait` and exec/attach streams hold their own connection.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::protocol::{ErrorKind, FrameKind, Request, Response, MAX_FRAME};

#[derive(Debug, thiserror::Error)]
pub enum ShimClientError {
    #[error("shim at {socket} is not reachable: {source} (the pod's shim died; remove the pod sandbox and create it again)")]
    Connect {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("shim at {socket}: {source}")]
    Io {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The shim refused the request.
    #[error("{message}")]
    Refused { kind: ErrorKind, message: String },
    #[error("cannot start the shim: {0}")]
    Spawn(String),
    #[error("shim at {socket} answered {got:?}, expected {expected}")]
    Unexpected {
        socket: PathBuf,
        got: Box<Response>,
        expected: &'static str,
    },
}

/// How to start a shim: its executable, and the `deckhand` it runs for container operations.
#[derive(Debug, Clone, Copy)]
pub struct ShimCommand<'a> {
    pub shim: &'a Path,
    pub helper: &'a Path,
    /// `deckhand --data-dir` for the helper.
    pub data_dir: &'a Path,
    /// Where the containers' status records live.
    pub status_dir: &'a Path,
}

/// Talks to one pod's shim.
#[derive(Debug, Clone)]
pub struct ShimClient {
    socket: PathBuf,
}

impl ShimClient {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Spawn the shim for a sandbox and wait until it answers. The shim's own log goes to
    /// `log`.
    pub async fn spawn(
        command: &ShimCommand<'_>,
        sandbox_id: &str,
        socket: &Path,
        log: &Path,
    ) -> Result<(ShimClient, i32), ShimClientError> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| ShimClientError::Spawn(format!("{}: {e}", log.display())))?;
        // Not `output()`: it would wait for EOF on stdout and stderr, which the daemon (our
        // grandchild) may hold; the starter prints the pid and exits once the shim is ready.
        let binary = command.shim;
        let mut child = tokio::process::Command::new(binary)
            .arg("--sandbox-id")
            .arg(sandbox_id)
            .arg("--socket")
            .arg(socket)
            .arg("--status-dir")
            .arg(command.status_dir)
            .arg("--helper")
            .arg(command.helper)
            .arg("--data-dir")
            .arg(command.data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .map_err(|e| ShimClientError::Spawn(format!("{}: {e}", binary.display())))?;
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let status = child
            .wait()
            .await
            .map_err(|e| ShimClientError::Spawn(format!("{}: {e}", binary.display())))?;
        if !status.success() {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            let last = tail.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
            return Err(ShimClientError::Spawn(format!(
                "{} shim exited with {status}: {last}",
                binary.display()
            )));
        }
        let mut line = String::new();
        let _ = stdout.read_line(&mut line).await;
        let pid = line.trim().parse().unwrap_or(0);
        Ok((ShimClient::new(socket), pid))
    }

    async fn connect(&self) -> Result<UnixStream, ShimClientError> {
        UnixStream::connect(&self.socket)
            .await
            .map_err(|source| ShimClientError::Connect {
                socket: self.socket.clone(),
                source,
            })
    }

    fn io(&self) -> impl Fn(std::io::Error) -> ShimClientError + '_ {
        move |source| ShimClientError::Io {
            socket: self.socket.clone(),
            source,
        }
    }

    /// Send `req` on a fresh connection and read one response; the connection is returned for
    /// streaming requests.
    async fn request(
        &self,
        req: &Request,
    ) -> Result<(Response, BufReader<UnixStream>), ShimClientError> {
        let mut stream = self.connect().await?;
        let mut line = serde_json::to_vec(req).map_err(|e| self.io()(std::io::Error::other(e)))?;
        line.push(b'\n');
        stream.write_all(&line).await.map_err(self.io())?;
        let mut reader = BufReader::new(stream);
        let mut resp = String::new();
        if reader.read_line(&mut resp).await.map_err(self.io())? == 0 {
            return Err(self.io()(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "shim closed the connection without answering",
            )));
        }
        let resp: Response = serde_json::from_str(&resp)
            .map_err(|e| self.io()(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        if let Response::Error { kind, message } = resp {
            return Err(ShimClientError::Refused { kind, message });
        }
        Ok((resp, reader))
    }

    /// A request answered by one response.
    pub async fn call(&self, req: &Request) -> Result<Response, ShimClientError> {
        self.request(req).await.map(|(r, _)| r)
    }

    pub async fn ping(&self) -> Result<i32, ShimClientError> {
        match self.call(&Request::Ping).await? {
            Response::Pong { pid } => Ok(pid),
            got => Err(self.unexpected(got, "pong")),
        }
    }

    /// Wait for container `id` to exit, at most `limit` (`None` when it did not exit in time).
    pub async fn wait(
        &self,
        id: &str,
        limit: Duration,
    ) -> Result<Option<crate::container::ExitRecord>, ShimClientError> {
        let req = Request::Wait { id: id.into() };
        match tokio::time::timeout(limit, self.call(&req)).await {
            Err(_) => Ok(None),
            Ok(Ok(Response::Exited { exit })) => Ok(Some(exit)),
            Ok(Ok(got)) => Err(self.unexpected(got, "exited")),
            Ok(Err(e)) => Err(e),
        }
    }

    /// Start an exec or attach stream.
    pub async fn stream(&self, req: &Request) -> Result<ShimStream, ShimClientError> {
        match self.request(req).await? {
            (Response::Streaming, reader) => Ok(ShimStream {
                // Whatever the reader buffered beyond the response line is the first frames.
                buffered: reader.buffer().to_vec(),
                stream: reader.into_inner(),
            }),
            (got, _) => Err(self.unexpected(got, "streaming")),
        }
    }

    fn unexpected(&self, got: Response, expected: &'static str) -> ShimClientError {
        ShimClientError::Unexpected {
            socket: self.socket.clone(),
            got: Box::new(got),
            expected,
        }
    }
}

/// An exec/attach stream: frames in both directions.
pub struct ShimStream {
    pub buffered: Vec<u8>,
    pub stream: UnixStream,
}

impl ShimStream {
    /// Read the next frame (`None` at end of stream).
    pub async fn next_frame(&mut self) -> std::io::Result<Option<(FrameKind, Vec<u8>)>> {
        loop {
            if let Some((k, p, n)) = super::protocol::parse_frame(&self.buffered)? {
                let p = p.to_vec();
                self.buffered.drain(..n);
                return Ok(Some((k, p)));
            }
            let mut chunk = vec![0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            if self.buffered.len() + n > MAX_FRAME + 5 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "frame too large",
                ));
            }
            self.buffered.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Write a stdin frame (empty `data` closes the process's stdin).
pub async fn send_stdin(w: &mut (impl AsyncWriteExt + Unpin), data: &[u8]) -> std::io::Result<()> {
    w.write_all(&super::protocol::encode_frame(FrameKind::Stdin, data))
        .await
}
