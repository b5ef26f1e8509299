//! The runtime's side of the CRI streaming server: exec and attach sessions are carried to the
//! pod's shim as frame streams (the shim holds the processes' stdio), port-forward connects
//! inside the pod's network namespace.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::runtime_service::RuntimeService;
use crate::shim::client::send_stdin;
use crate::shim::protocol::{self, FrameKind, Request as ShimRequest};
use crate::shim::{ShimClient, ShimClientError};
use crate::streaming::{NetnsPortForwarder, StreamError, StreamingRuntime, Streams};

/// [`StreamingRuntime`] over the RuntimeService's sandboxes and shims.
pub struct ShimStreaming {
    pub(crate) runtime: RuntimeService,
}

impl ShimStreaming {
    pub fn new(runtime: RuntimeService) -> Arc<ShimStreaming> {
        Arc::new(ShimStreaming { runtime })
    }
}

fn stream_err(e: ShimClientError) -> StreamError {
    match e {
        ShimClientError::Refused {
            kind: protocol::ErrorKind::NotFound,
            message,
        } => StreamError::NotFound(message),
        ShimClientError::Refused {
            kind: protocol::ErrorKind::FailedPrecondition,
            message,
        } => StreamError::Unavailable(message),
        e => StreamError::Internal(e.to_string()),
    }
}

/// Carry `streams` over a shim stream until the shim ends it: returns the exit status the shim
/// reported (exec), or `None` when it closed the stream (attach: the container exited).
async fn pump(
    shim: ShimClient,
    req: ShimRequest,
    streams: Streams,
) -> Result<Option<i32>, StreamError> {
    let s = shim.stream(&req).await.map_err(stream_err)?;
    let mut buf = s.buffered;
    let (mut rd, mut wr) = s.stream.into_split();
    let Streams {
        stdin,
        mut stdout,
        mut stderr,
        resize,
        ..
    } = streams;
    // One writer carries stdin and terminal sizes to the shim (sizes matter only for a
    // container with a terminal; the shim ignores them otherwise). The write half stays open
    // until the session ends: closing it tells the shim the client left, and the shim then
    // kills an exec'd process.
    let (wr_tx, mut wr_rx) = tokio::sync::oneshot::channel();
    let stdin_task = tokio::spawn(async move {
        let mut input = stdin;
        let mut resize = resize;
        let mut chunk = vec![0u8; 32 * 1024];
        while input.is_some() || resize.is_some() {
            tokio::select! {
                read = async { input.as_mut().expect("checked").read(&mut chunk).await },
                    if input.is_some() => match read {
                    Ok(0) | Err(_) => {
                        let _ = send_stdin(&mut wr, &[]).await;
                        input = None;
                    }
                    Ok(n) => {
                        if send_stdin(&mut wr, &chunk[..n]).await.is_err() {
                            break;
                        }
                    }
                },
                size = async { resize.as_mut().expect("checked").recv().await },
                    if resize.is_some() => match size {
                    Some(size) => {
                        let mut payload = size.width.to_be_bytes().to_vec();
                        payload.extend_from_slice(&size.height.to_be_bytes());
                        let frame = protocol::encode_frame(FrameKind::Resize, &payload);
                        if wr.write_all(&frame).await.is_err() {
                            break;
                        }
                    }
                    None => resize = None,
                },
            }
        }
        let _ = wr_tx.send(wr);
    });
    let mut chunk = vec![0u8; 64 * 1024];
    let result = loop {
        match protocol::parse_frame(&buf) {
            Ok(Some((kind, payload, used))) => {
                let payload = payload.to_vec();
                buf.drain(..used);
                let out = match kind {
                    FrameKind::Stdout => stdout.as_mut(),
                    FrameKind::Stderr => stderr.as_mut(),
                    FrameKind::Exit => {
                        let code = String::from_utf8_lossy(&payload)
                            .trim()
                            .parse()
                            .unwrap_or(-1);
                        break Ok(Some(code));
                    }
                    FrameKind::Stdin | FrameKind::Resize => None,
                };
                if let Some(w) = out {
                    // A client that went away loses the rest of the output, nothing more.
                    let _ = w.write_all(&payload).await;
                    let _ = w.flush().await;
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => break Err(StreamError::Io(e)),
        }
        match rd.read(&mut chunk).await {
            Ok(0) => break Ok(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => break Err(StreamError::Io(e)),
        }
    };
    stdin_task.abort();
    let _ = wr_rx.try_recv();
    for w in [stdout.as_mut(), stderr.as_mut()].into_iter().flatten() {
        let _ = w.shutdown().await;
    }
    result
}

#[tonic::async_trait]
impl StreamingRuntime for ShimStreaming {
    async fn exec(
        &self,
        container_id: &str,
        cmd: &[String],
        streams: Streams,
    ) -> Result<i32, StreamError> {
        let (shim, _) = self
            .runtime
            .running_container_shim(container_id)
            .map_err(|s| StreamError::Unavailable(s.message().to_owned()))?;
        let req = ShimRequest::Exec {
            id: container_id.into(),
            args: cmd.to_vec(),
            env: Vec::new(),
            stdin: streams.stdin.is_some(),
            tty: streams.tty,
        };
        match pump(shim, req, streams).await? {
            Some(code) => Ok(code),
            None => Err(StreamError::Internal(format!(
                "exec in {container_id}: the shim ended the session without an exit status"
            ))),
        }
    }

    async fn attach(&self, container_id: &str, streams: Streams) -> Result<(), StreamError> {
        let (shim, _) = self
            .runtime
            .running_container_shim(container_id)
            .map_err(|s| StreamError::Unavailable(s.message().to_owned()))?;
        let req = ShimRequest::Attach {
            id: container_id.into(),
            stdin: streams.stdin.is_some(),
        };
        pump(shim, req, streams).await.map(|_| ())
    }

    async fn port_forward(
        &self,
        pod_sandbox_id: &str,
        port: u16,
    ) -> Result<tokio::net::TcpStream, StreamError> {
        match self.runtime.sandbox_netns(pod_sandbox_id) {
            Ok(Some(netns)) => NetnsPortForwarder::connect(&netns, port).await,
            Ok(None) => Ok(tokio::net::TcpStream::connect(("127.0.0.1", port)).await?),
            Err(s) => Err(StreamError::NotFound(s.message().to_owned())),
        }
    }
}
