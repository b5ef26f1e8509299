//! Port-forward over either transport, and [`NetnsPortForwarder`], the helper that gives a
//! runtime its `port_forward` in one line.
//!
//! SPDY: the client opens a pair of streams per forwarded connection, `error` and `data`, with
//! the same `requestID` and the target `port` in their headers; the pair must be complete
//! within the stream-creation timeout. WebSocket: the ports come from the CRI request (or the
//! `port` query parameter); channel 2i is port i's data, 2i+1 its errors, and the first
//! message on each starts with the port as two little-endian bytes.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::protocol::*;
use super::spdy::frame::RST_REFUSED_STREAM;
use super::spdy::{Connection, Incoming, Stream};
use super::websocket::{ChannelKind, Codec, WsConn};
use super::{StreamError, StreamingRuntime};

/// Connects to a port on a pod's loopback from inside its network namespace.
#[derive(Debug, Clone, Copy, Default)]
pub struct NetnsPortForwarder;

impl NetnsPortForwarder {
    /// A TCP connection to `port` on the loopback of the network namespace at `netns` (a
    /// pinned `/proc/<pid>/ns/net` or bind mount). IPv4 first, then IPv6, as `localhost`
    /// resolves. The socket is created on a throwaway thread that joins the namespace, so no
    /// runtime thread ever changes namespace.
    pub async fn connect(netns: &Path, port: u16) -> Result<TcpStream, StreamError> {
        let netns = netns.to_owned();
        let std_stream = tokio::task::spawn_blocking(move || {
            let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            match deckhand_sys::ns::connect_tcp_in_netns(&netns, v4) {
                Ok(s) => Ok(s),
                Err(e4) if e4.kind() == std::io::ErrorKind::ConnectionRefused => {
                    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
                    // The IPv4 refusal is the more useful error if IPv6 fails too.
                    deckhand_sys::ns::connect_tcp_in_netns(&netns, v6).map_err(|_| e4)
                }
                Err(e) => Err(e),
            }
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("connecting to localhost:{port} in {}: {e}", netns.display()),
                )
            })
        })
        .await
        .map_err(|e| StreamError::Internal(format!("port-forward connect task: {e}")))??;
        std_stream.set_nonblocking(true)?;
        Ok(TcpStream::from_std(std_stream)?)
    }
}

/// Copies between a client stream and the pod's socket. Ends when the pod closes its side (or
/// either side fails); the client's end-of-file only half-closes the pod socket, so a reply
/// after the request still comes back, as with containerd.
async fn forward<C>(client: &mut C, pod: TcpStream) -> std::io::Result<()>
where
    C: AsyncRead + AsyncWrite + Send + Unpin,
{
    let (mut pod_r, mut pod_w) = pod.into_split();
    let (mut cli_r, mut cli_w) = tokio::io::split(client);
    let upstream = async {
        tokio::io::copy(&mut cli_r, &mut pod_w).await?;
        pod_w.shutdown().await?;
        // Keep this branch pending: only the pod's end-of-file finishes the forward.
        std::future::pending::<std::io::Result<()>>().await
    };
    let downstream = async {
        tokio::io::copy(&mut pod_r, &mut cli_w).await?;
        Ok(())
    };
    tokio::select! {
        r = upstream => r,
        r = downstream => r,
    }
}

fn error_message(port: u16, pod: &str, err: &dyn std::fmt::Display) -> String {
    format!("error forwarding port {port} to pod {pod}, uid : {err}")
}

/// Runs one forwarded connection; failures go to the error stream as text.
async fn forward_one<C, E>(
    runtime: &dyn StreamingRuntime,
    pod: &str,
    port: u16,
    data: C,
    mut error: E,
) where
    C: AsyncRead + AsyncWrite + Send + Unpin,
    E: AsyncWrite + Send + Unpin,
{
    let mut data = data;
    let result = match runtime.port_forward(pod, port).await {
        Ok(tcp) => forward(&mut data, tcp).await.map_err(StreamError::Io),
        Err(e) => Err(e),
    };
    // The client reads the data stream to its end whatever happened.
    let _ = data.shutdown().await;
    if let Err(e) = result {
        tracing::info!(pod, port, error = %e, "port-forward failed");
        let _ = error
            .write_all(error_message(port, pod, &e).as_bytes())
            .await;
    }
    let _ = error.shutdown().await;
}

#[derive(Default)]
struct Pair {
    data: Option<Stream>,
    error: Option<Stream>,
}

/// Serves an upgraded SPDY port-forward connection until the client hangs up.
pub(crate) async fn serve_spdy(
    conn: Connection,
    mut incoming: Incoming,
    pod: String,
    runtime: Arc<dyn StreamingRuntime>,
    creation_timeout: Duration,
    linger: Duration,
) {
    let pairs: Arc<Mutex<HashMap<String, Pair>>> = Arc::default();
    let pod: Arc<str> = pod.into();
    while let Some(next) = incoming.next().await {
        let headers = next.headers();
        let port = match headers.get(HEADER_PORT).map(str::parse::<u16>) {
            Some(Ok(p)) if p > 0 => p,
            other => {
                tracing::debug!(port = ?other, "rejecting port-forward stream without a valid port");
                next.reject(RST_REFUSED_STREAM).await;
                continue;
            }
        };
        let kind = match headers.get(HEADER_STREAM_TYPE) {
            Some(STREAM_TYPE_DATA) => STREAM_TYPE_DATA,
            Some(STREAM_TYPE_ERROR) => STREAM_TYPE_ERROR,
            other => {
                tracing::debug!(stream_type = ?other, "rejecting port-forward stream of unknown type");
                next.reject(RST_REFUSED_STREAM).await;
                continue;
            }
        };
        // Old clients send no request id; pair by stream id as the kubelet does (error n,
        // data n+2).
        let request_id = match headers.get(HEADER_REQUEST_ID) {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ if kind == STREAM_TYPE_ERROR => next.id().to_string(),
            _ => next.id().saturating_sub(2).to_string(),
        };
        let Ok(stream) = next.accept().await else {
            break;
        };
        let complete = {
            let mut map = pairs.lock().unwrap_or_else(|e| e.into_inner());
            let created = !map.contains_key(&request_id);
            let pair = map.entry(request_id.clone()).or_default();
            let slot = if kind == STREAM_TYPE_DATA {
                &mut pair.data
            } else {
                &mut pair.error
            };
            if slot.is_some() {
                tracing::debug!(request_id, kind, "duplicate port-forward stream");
                Err(stream)
            } else {
                *slot = Some(stream);
                if created {
                    // The pair must complete in time or it is dropped with an error.
                    let (pairs, request_id) = (pairs.clone(), request_id.clone());
                    tokio::spawn(async move {
                        tokio::time::sleep(creation_timeout).await;
                        let stale = pairs
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&request_id);
                        if let Some(Pair {
                            error: Some(mut e), ..
                        }) = stale
                        {
                            let _ = e.write_all(b"timed out waiting for streams").await;
                            let _ = e.shutdown().await;
                        }
                    });
                }
                Ok(if pair.data.is_some() && pair.error.is_some() {
                    map.remove(&request_id)
                } else {
                    None
                })
            }
        };
        let complete = match complete {
            Ok(c) => c,
            Err(duplicate) => {
                duplicate.reset().await;
                continue;
            }
        };
        if let Some(Pair {
            data: Some(data),
            error: Some(error),
        }) = complete
        {
            let (runtime, pod) = (runtime.clone(), pod.clone());
            tokio::spawn(async move {
                forward_one(runtime.as_ref(), &pod, port, data, error).await;
            });
        }
    }
    conn.close(linger).await;
}

/// The WebSocket subprotocols port-forward accepts.
pub(crate) const WS_PROTOCOLS: &[&str] = &["", WS_PROTOCOL_V4, WS_PROTOCOL_V4_BASE64];

/// Serves an upgraded WebSocket port-forward connection for `ports`.
pub(crate) async fn serve_websocket<IO>(
    io: IO,
    protocol: String,
    pod: String,
    ports: Vec<u16>,
    runtime: Arc<dyn StreamingRuntime>,
    linger: Duration,
    idle: Option<Duration>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let kinds: Vec<ChannelKind> = ports
        .iter()
        .flat_map(|_| [ChannelKind::ReadWrite, ChannelKind::Write])
        .collect();
    let (conn, mut ch) = WsConn::start(io, Codec::for_protocol(&protocol), &kinds, idle).await;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, &port) in ports.iter().enumerate() {
        let (d, e) = (2 * i, 2 * i + 1);
        for c in [d, e] {
            conn.send(c as u8, Bytes::copy_from_slice(&port.to_le_bytes()))
                .await;
        }
        let (Some(reader), Some(writer), Some(error)) = (
            ch.readers[d].take(),
            ch.writers[d].take(),
            ch.writers[e].take(),
        ) else {
            continue;
        };
        let data = tokio::io::join(reader, writer);
        let (runtime, pod) = (runtime.clone(), pod.clone());
        tasks.spawn(async move {
            forward_one(runtime.as_ref(), &pod, port, data, error).await;
        });
    }
    while tasks.join_next().await.is_some() {}
    conn.close(linger).await;
}

/// Parses the `port` query parameters (repeatable, comma-separated), for WebSocket clients
/// whose CRI request named no ports.
pub(crate) fn ports_from_query(query: &str) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != HEADER_PORT {
            continue;
        }
        if v.is_empty() {
            return Err(format!("query parameter {HEADER_PORT:?} cannot be empty"));
        }
        for p in v.split(',') {
            match p.parse::<u16>() {
                Ok(0) => return Err(format!("port {p:?} must be > 0")),
                Ok(n) => ports.push(n),
                Err(e) => return Err(format!("unable to parse {p:?} as a port: {e}")),
            }
        }
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_ports() {
        assert_eq!(
            ports_from_query("port=80&port=443,8080").unwrap(),
            vec![80, 443, 8080]
        );
        assert_eq!(ports_from_query("x=1").unwrap(), Vec::<u16>::new());
        assert!(ports_from_query("port=0").is_err());
        assert!(ports_from_query("port=").is_err());
        assert!(ports_from_query("port=70000").is_err());
    }
}
