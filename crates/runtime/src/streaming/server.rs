//! The streaming HTTP server: hands out one-shot URLs for CRI Exec/Attach/PortForward and
//! serves them, upgrading each connection to SPDY or WebSocket.
//!
//! Routes (GET or POST, as the kubelet registers them): `/exec/{token}`, `/attach/{token}`,
//! `/portforward/{token}`. A token is consumed by the first request naming it, whatever the
//! outcome, and only serves the kind of request it was issued for; anything else is a 404.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::cache::{CacheError, CachedRequest, RequestCache};
use super::protocol::*;
use super::remotecommand::{self, Action, Options, Timeouts};
use super::spdy::conn_config;
use super::websocket::{self, plain};
use super::{portforward, StreamingRuntime};
use crate::cri::api;

/// How the streaming server listens and how long things may take.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen; port 0 picks a free port (see [`StreamingServer::local_addr`]).
    pub addr: SocketAddr,
    /// The URL prefix handed to clients, e.g. `http://10.0.0.5:10010`; by default
    /// `http://<bound address>`. Needed when listening on an unspecified address.
    pub base_url: Option<String>,
    /// A connection with no traffic for this long is closed (kubelet default: 4 hours).
    pub stream_idle_timeout: Duration,
    /// How long a client has to open the streams it asked for (kubelet default: 30 s).
    pub stream_creation_timeout: Duration,
    /// How long an issued URL stays valid (kubelet: 1 minute).
    pub token_ttl: Duration,
    /// Issued URLs not yet used, at most (kubelet: 1000).
    pub max_in_flight: usize,
    /// After the server has finished a connection, how long it waits for the client to hang
    /// up before dropping the socket.
    pub close_linger: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            base_url: None,
            stream_idle_timeout: Duration::from_secs(4 * 60 * 60),
            stream_creation_timeout: Duration::from_secs(30),
            token_ttl: Duration::from_secs(60),
            max_in_flight: 1000,
            close_linger: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("streaming server: cannot listen on {0}: {1} (is the port in use?)")]
    Bind(SocketAddr, io::Error),
}

struct Inner {
    config: Config,
    cache: RequestCache,
    runtime: Arc<dyn StreamingRuntime>,
}

/// The running server. Dropping it stops accepting connections; sessions in progress go on.
pub struct StreamingServer {
    inner: Arc<Inner>,
    local_addr: SocketAddr,
    base_url: String,
    stop: CancellationToken,
}

impl Drop for StreamingServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl StreamingServer {
    /// Binds `config.addr` and starts serving on the current tokio runtime.
    pub async fn start(
        config: Config,
        runtime: Arc<dyn StreamingRuntime>,
    ) -> Result<Self, ServerError> {
        let listener = TcpListener::bind(config.addr)
            .await
            .map_err(|e| ServerError::Bind(config.addr, e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| ServerError::Bind(config.addr, e))?;
        let base_url = config
            .base_url
            .clone()
            .unwrap_or_else(|| format!("http://{local_addr}"))
            .trim_end_matches('/')
            .to_owned();
        let inner = Arc::new(Inner {
            cache: RequestCache::new(config.token_ttl, config.max_in_flight),
            config,
            runtime,
        });
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, inner.clone(), stop.clone()));
        tracing::info!(%local_addr, "streaming server listening");
        Ok(StreamingServer {
            inner,
            local_addr,
            base_url,
            stop,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections.
    pub fn shutdown(&self) {
        self.stop.cancel();
    }

    /// Validates an exec request and returns its one-shot URL.
    pub fn get_exec(&self, req: &api::ExecRequest) -> Result<api::ExecResponse, tonic::Status> {
        validate_stdio(
            &req.container_id,
            req.stdin,
            req.stdout,
            req.stderr,
            req.tty,
        )?;
        let token = self.insert(CachedRequest::Exec(req.clone()))?;
        Ok(api::ExecResponse {
            url: self.url("exec", &token),
        })
    }

    /// Validates an attach request and returns its one-shot URL.
    pub fn get_attach(
        &self,
        req: &api::AttachRequest,
    ) -> Result<api::AttachResponse, tonic::Status> {
        validate_stdio(
            &req.container_id,
            req.stdin,
            req.stdout,
            req.stderr,
            req.tty,
        )?;
        let token = self.insert(CachedRequest::Attach(req.clone()))?;
        Ok(api::AttachResponse {
            url: self.url("attach", &token),
        })
    }

    /// Validates a port-forward request and returns its one-shot URL.
    pub fn get_port_forward(
        &self,
        req: &api::PortForwardRequest,
    ) -> Result<api::PortForwardResponse, tonic::Status> {
        if req.pod_sandbox_id.is_empty() {
            return Err(tonic::Status::invalid_argument(
                "missing required pod_sandbox_id",
            ));
        }
        if let Some(p) = req.port.iter().find(|p| !(1..=65535).contains(*p)) {
            return Err(tonic::Status::invalid_argument(format!(
                "port {p} is out of range (1-65535)"
            )));
        }
        let token = self.insert(CachedRequest::PortForward(req.clone()))?;
        Ok(api::PortForwardResponse {
            url: self.url("portforward", &token),
        })
    }

    fn insert(&self, req: CachedRequest) -> Result<String, tonic::Status> {
        self.inner.cache.insert(req).map_err(|e| match e {
            CacheError::Full(_) => tonic::Status::resource_exhausted(e.to_string()),
            CacheError::Random(_) => tonic::Status::internal(e.to_string()),
        })
    }

    fn url(&self, kind: &str, token: &str) -> String {
        format!("{}/{kind}/{token}", self.base_url)
    }
}

/// The kubelet's checks: a container, some stream, and no stderr with a TTY (a terminal
/// multiplexes both onto one stream).
fn validate_stdio(
    container_id: &str,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
) -> Result<(), tonic::Status> {
    if container_id.is_empty() {
        return Err(tonic::Status::invalid_argument(
            "missing required container_id",
        ));
    }
    if tty && stderr {
        return Err(tonic::Status::invalid_argument(
            "tty and stderr cannot both be true",
        ));
    }
    if !stdin && !stdout && !stderr {
        return Err(tonic::Status::invalid_argument(
            "one of stdin, stdout, or stderr must be set",
        ));
    }
    Ok(())
}

async fn accept_loop(listener: TcpListener, inner: Arc<Inner>, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Usually descriptor exhaustion: back off instead of spinning.
                tracing::warn!(error = %e, "streaming server: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let inner = inner.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(inner.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "streaming server: connection error");
            }
        });
    }
}

fn not_found() -> Response<String> {
    plain(StatusCode::NOT_FOUND, "404 page not found\n")
}

async fn handle(
    inner: Arc<Inner>,
    mut req: Request<Incoming>,
) -> Result<Response<String>, Infallible> {
    let Some((kind, token)) = req
        .uri()
        .path()
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .filter(|(k, t)| {
            matches!(*k, "exec" | "attach" | "portforward") && !t.is_empty() && !t.contains('/')
        })
        .map(|(k, t)| (k.to_owned(), t.to_owned()))
    else {
        return Ok(not_found());
    };
    if req.method() != Method::GET && req.method() != Method::POST {
        return Ok(plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "405: Method Not Allowed\n",
        ));
    }
    let Some(cached) = inner.cache.consume(&token) else {
        return Ok(not_found());
    };
    let timeouts = Timeouts {
        creation: inner.config.stream_creation_timeout,
        linger: inner.config.close_linger,
    };
    let idle = Some(inner.config.stream_idle_timeout);
    let runtime = inner.runtime.clone();
    let resp = match (kind.as_str(), cached) {
        ("exec", CachedRequest::Exec(r)) => {
            let opts = Options {
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr,
                tty: r.tty,
            };
            let action = Action::Exec {
                container_id: r.container_id,
                cmd: r.cmd,
            };
            remote_command(&mut req, opts, action, runtime, timeouts, idle)
        }
        ("attach", CachedRequest::Attach(r)) => {
            let opts = Options {
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr,
                tty: r.tty,
            };
            let action = Action::Attach {
                container_id: r.container_id,
            };
            remote_command(&mut req, opts, action, runtime, timeouts, idle)
        }
        ("portforward", CachedRequest::PortForward(r)) => {
            port_forward(&mut req, r, runtime, timeouts, idle)
        }
        _ => not_found(),
    };
    Ok(resp)
}

fn remote_command(
    req: &mut Request<Incoming>,
    opts: Options,
    action: Action,
    runtime: Arc<dyn StreamingRuntime>,
    timeouts: Timeouts,
    idle: Option<Duration>,
) -> Response<String> {
    if websocket::is_websocket_request(req.headers()) {
        let (protocol, resp) = match websocket::accept(req.headers(), remotecommand::WS_PROTOCOLS) {
            Ok(ok) => ok,
            Err(resp) => return resp,
        };
        let upgrade = hyper::upgrade::on(req);
        tokio::spawn(async move {
            match upgrade.await {
                Ok(up) => {
                    remotecommand::serve_websocket(
                        TokioIo::new(up),
                        protocol,
                        opts,
                        action,
                        runtime,
                        timeouts,
                        idle,
                    )
                    .await
                }
                Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
            }
        });
        return resp;
    }
    let (protocol, resp) = match spdy_handshake(req, SUPPORTED_STREAM_PROTOCOLS) {
        Ok(ok) => ok,
        Err(resp) => return resp,
    };
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(up) => {
                let (conn, incoming) = super::spdy::Connection::new(
                    TokioIo::new(up),
                    super::spdy::Role::Server,
                    conn_config(idle),
                );
                remotecommand::serve_spdy(conn, incoming, protocol, opts, action, runtime, timeouts)
                    .await
            }
            Err(e) => tracing::debug!(error = %e, "SPDY upgrade failed"),
        }
    });
    resp
}

fn port_forward(
    req: &mut Request<Incoming>,
    pf: api::PortForwardRequest,
    runtime: Arc<dyn StreamingRuntime>,
    timeouts: Timeouts,
    idle: Option<Duration>,
) -> Response<String> {
    let pod = pf.pod_sandbox_id;
    if websocket::is_websocket_request(req.headers()) {
        // The CRI request names the ports; a client may name them in the query instead.
        let mut ports: Vec<u16> = pf
            .port
            .iter()
            .filter_map(|p| u16::try_from(*p).ok())
            .collect();
        if ports.is_empty() {
            match portforward::ports_from_query(req.uri().query().unwrap_or_default()) {
                Ok(p) => ports = p,
                Err(e) => return plain(StatusCode::BAD_REQUEST, &format!("{e}\n")),
            }
        }
        if ports.is_empty() {
            return plain(
                StatusCode::BAD_REQUEST,
                "query parameter \"port\" is required\n",
            );
        }
        let (protocol, resp) = match websocket::accept(req.headers(), portforward::WS_PROTOCOLS) {
            Ok(ok) => ok,
            Err(resp) => return resp,
        };
        let upgrade = hyper::upgrade::on(req);
        tokio::spawn(async move {
            match upgrade.await {
                Ok(up) => {
                    portforward::serve_websocket(
                        TokioIo::new(up),
                        protocol,
                        pod,
                        ports,
                        runtime,
                        timeouts.linger,
                        idle,
                    )
                    .await
                }
                Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
            }
        });
        return resp;
    }
    let (_, resp) = match spdy_handshake(req, &[PORT_FORWARD_PROTOCOL_V1]) {
        Ok(ok) => ok,
        Err(resp) => return resp,
    };
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(up) => {
                let (conn, incoming) = super::spdy::Connection::new(
                    TokioIo::new(up),
                    super::spdy::Role::Server,
                    conn_config(idle),
                );
                portforward::serve_spdy(
                    conn,
                    incoming,
                    pod,
                    runtime,
                    timeouts.creation,
                    timeouts.linger,
                )
                .await
            }
            Err(e) => tracing::debug!(error = %e, "SPDY upgrade failed"),
        }
    });
    resp
}

/// Protocol negotiation and the upgrade checks, in the kubelet's order: a missing protocol
/// header is a 400, no common protocol a 403 listing what the server accepts, missing upgrade
/// headers a 400. On success, the 101 response naming the chosen protocol.
fn spdy_handshake(
    req: &Request<Incoming>,
    server: &[&str],
) -> Result<(String, Response<String>), Response<String>> {
    let client: Vec<String> = req
        .headers()
        .get_all(HEADER_PROTOCOL_VERSION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    if client.is_empty() {
        return Err(plain(
            StatusCode::BAD_REQUEST,
            &format!("unable to upgrade: {HEADER_PROTOCOL_VERSION} is required\n"),
        ));
    }
    let Some(chosen) = client
        .iter()
        .find(|c| server.contains(&c.as_str()))
        .cloned()
    else {
        let mut resp = plain(
            StatusCode::FORBIDDEN,
            &format!(
                "unable to upgrade: unable to negotiate protocol: client supports {client:?}, server accepts {server:?}\n"
            ),
        );
        for p in server {
            resp.headers_mut().append(
                HEADER_ACCEPTED_PROTOCOL_VERSIONS,
                http::HeaderValue::from_str(p).unwrap_or(http::HeaderValue::from_static("")),
            );
        }
        return Err(resp);
    };
    let upgrade_ok = req
        .headers()
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .contains(&SPDY_31.to_ascii_lowercase())
        });
    if !upgrade_ok || !websocket::connection_has_upgrade(req.headers()) {
        return Err(plain(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: missing upgrade headers in request\n",
        ));
    }
    let resp = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, SPDY_31)
        .header(HEADER_PROTOCOL_VERSION, chosen.as_str())
        .body(String::new())
        .expect("static response parts are valid");
    Ok((chosen, resp))
}
