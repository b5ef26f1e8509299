//! A SPDY streaming client: the HTTP/1.1 upgrade plus the stream layouts kubectl creates for
//! exec/attach and port-forward. It lets tests and tools drive a streaming URL the way
//! `kubectl`/`crictl` do, without them.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::conn::{Connection, ConnectionConfig, ConnectionError, Incoming, Role, Stream};
use super::frame::Headers;
use crate::streaming::protocol::*;
use crate::streaming::status::Status;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid streaming URL {0}: {1}")]
    Url(String, String),
    #[error("connecting to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("HTTP upgrade to {url}: {source}")]
    Http { url: String, source: hyper::Error },
    /// The server answered without upgrading; `body` is its explanation.
    #[error("upgrade refused with HTTP {status}: {body}")]
    Refused {
        status: u16,
        body: String,
        accepted: Vec<String>,
    },
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error("reading the error stream: {0}")]
    Io(#[from] std::io::Error),
    #[error("error stream did not carry a Status: {0}")]
    BadStatus(String),
}

/// An upgraded SPDY connection and the protocol the server picked.
pub struct Upgraded {
    pub connection: Connection,
    pub incoming: Incoming,
    /// The server's `X-Stream-Protocol-Version` (empty if it sent none).
    pub protocol: String,
}

/// Connects to `url` (`http://host:port/path?query`) and upgrades to SPDY/3.1, offering
/// `protocols` in preference order.
pub async fn connect(url: &str, protocols: &[&str]) -> Result<Upgraded, ClientError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| ClientError::Url(url.into(), e.to_string()))?;
    let authority = uri
        .authority()
        .ok_or_else(|| ClientError::Url(url.into(), "no host".into()))?
        .clone();
    let addr = if authority.port().is_some() {
        authority.to_string()
    } else {
        format!("{}:80", authority.host())
    };
    let tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| ClientError::Connect(addr.clone(), e))?;
    let http_err = |source| ClientError::Http {
        url: url.into(),
        source,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(http_err)?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut req = http::Request::get(path)
        .header(http::header::HOST, authority.as_str())
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, SPDY_31);
    for p in protocols {
        req = req.header(HEADER_PROTOCOL_VERSION, *p);
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| ClientError::Url(url.into(), e.to_string()))?;
    let mut resp = sender.send_request(req).await.map_err(http_err)?;
    if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        let status = resp.status().as_u16();
        let accepted = resp
            .headers()
            .get_all(HEADER_ACCEPTED_PROTOCOL_VERSIONS)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        let body = resp
            .body_mut()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        return Err(ClientError::Refused {
            status,
            body,
            accepted,
        });
    }
    let protocol = resp
        .headers()
        .get(HEADER_PROTOCOL_VERSION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let io = hyper::upgrade::on(&mut resp).await.map_err(http_err)?;
    let (connection, incoming) =
        Connection::new(TokioIo::new(io), Role::Client, ConnectionConfig::default());
    Ok(Upgraded {
        connection,
        incoming,
        protocol,
    })
}

/// Which streams to open for an exec or attach; must match the CRI request the URL came from.
#[derive(Debug, Clone, Copy, Default)]
pub struct RemoteCommandOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// The streams of an exec/attach session, opened in kubectl's order.
pub struct RemoteCommand {
    pub connection: Connection,
    pub protocol: String,
    pub error: Stream,
    pub stdin: Option<Stream>,
    pub stdout: Option<Stream>,
    pub stderr: Option<Stream>,
    /// Present with `tty` on protocol v3 and later.
    pub resize: Option<Stream>,
}

/// Upgrades `url` and opens the error, stdin, stdout, stderr and resize streams as kubectl does.
pub async fn remote_command(
    url: &str,
    opts: RemoteCommandOptions,
    protocols: &[&str],
) -> Result<RemoteCommand, ClientError> {
    let up = connect(url, protocols).await?;
    let conn = up.connection;
    let open = |t: &str| conn.open_stream(Headers::new().with(HEADER_STREAM_TYPE, t));
    let error = open(STREAM_TYPE_ERROR).await?;
    let stdin = if opts.stdin {
        Some(open(STREAM_TYPE_STDIN).await?)
    } else {
        None
    };
    let stdout = if opts.stdout {
        Some(open(STREAM_TYPE_STDOUT).await?)
    } else {
        None
    };
    let stderr = if opts.stderr && !opts.tty {
        Some(open(STREAM_TYPE_STDERR).await?)
    } else {
        None
    };
    let resize_capable = up.protocol == STREAM_PROTOCOL_V4 || up.protocol == STREAM_PROTOCOL_V3;
    let resize = if opts.tty && resize_capable {
        Some(open(STREAM_TYPE_RESIZE).await?)
    } else {
        None
    };
    Ok(RemoteCommand {
        connection: conn.clone(),
        protocol: up.protocol,
        error,
        stdin,
        stdout,
        stderr,
        resize,
    })
}

impl RemoteCommand {
    /// Sends a terminal size on the resize stream.
    pub async fn resize(&mut self, width: u16, height: u16) -> Result<(), ClientError> {
        if let Some(r) = self.resize.as_mut() {
            let msg = format!(r#"{{"Width":{width},"Height":{height}}}"#);
            r.write_all(msg.as_bytes()).await?;
        }
        Ok(())
    }

    /// Reads the error stream to its end and decodes the outcome: `Ok(0)` for success,
    /// `Ok(code)` for a non-zero exit, `Err(BadStatus)` with the message for anything else.
    pub async fn exit_code(&mut self) -> Result<i32, ClientError> {
        let mut raw = Vec::new();
        self.error.read_to_end(&mut raw).await?;
        if self.protocol != STREAM_PROTOCOL_V4 {
            return if raw.is_empty() {
                Ok(0)
            } else {
                Err(ClientError::BadStatus(
                    String::from_utf8_lossy(&raw).into_owned(),
                ))
            };
        }
        let status: Status = serde_json::from_slice(&raw).map_err(|e| {
            ClientError::BadStatus(format!("{e}: {}", String::from_utf8_lossy(&raw)))
        })?;
        if status.is_success() {
            return Ok(0);
        }
        status
            .exit_code_cause()
            .ok_or(ClientError::BadStatus(status.message))
    }

    /// Closes the connection.
    pub async fn close(self) {
        self.connection.close(Duration::from_millis(100)).await;
    }
}

/// Opens one forwarded connection to `port` the way kubectl does: an error stream (whose write
/// side is closed at once) and a data stream sharing a request id.
pub async fn port_forward_streams(
    conn: &Connection,
    port: u16,
    request_id: u32,
) -> Result<(Stream, Stream), ClientError> {
    let headers = |t: &str| {
        Headers::new()
            .with(HEADER_STREAM_TYPE, t)
            .with(HEADER_PORT, port.to_string())
            .with(HEADER_REQUEST_ID, request_id.to_string())
    };
    let mut error = conn.open_stream(headers(STREAM_TYPE_ERROR)).await?;
    error.shutdown().await?;
    let data = conn.open_stream(headers(STREAM_TYPE_DATA)).await?;
    Ok((data, error))
}
