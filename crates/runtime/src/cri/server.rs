//! Serving the CRI on a unix socket: [`CriServer::bind`] opens the image store and binds the
//! socket (so a caller knows when clients may connect), [`CriServer::serve`] runs until the
//! shutdown future completes, then removes the socket.

use super::api::image_service_server::ImageServiceServer;
use super::api::runtime_service_server::RuntimeServiceServer;
use super::{ImageService, RuntimeService};
use deckhand_image::{ImageStore, StoreConfig, StoreError};
use std::future::Future;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

/// Default CRI endpoint (DESIGN.md).
pub const DEFAULT_ENDPOINT: &str = "unix:///run/deckhand/cri.sock";

/// Only the owner and its group may talk to the runtime: it runs containers as root.
const SOCKET_MODE: u32 = 0o660;

#[derive(Clone)]
pub struct ServerConfig {
    /// deckhand's data dir; images live in `<data_dir>/images`, runtime state in
    /// `<data_dir>/runtime`.
    pub data_dir: PathBuf,
    /// The socket path (see [`socket_path`] for `unix://` endpoints).
    pub socket: PathBuf,
    /// The per-pod shim executable (`deckhand-shim`).
    pub shim_binary: PathBuf,
    /// The `deckhand` executable whose `oci` command the shims run for container operations.
    pub helper_binary: PathBuf,
    /// Pod networking (CNI); `None`: only host-network pods can run.
    pub network: Option<std::sync::Arc<dyn super::PodNetwork>>,
    /// Where the streaming server (exec, attach, port-forward URLs) listens.
    pub stream_address: std::net::SocketAddr,
}

impl ServerConfig {
    /// A server for `data_dir` on `socket`. This executable is the shims' helper, and the shim
    /// is `deckhand-shim` next to it (both are installed together, as containerd and its
    /// shims are).
    pub fn new(data_dir: impl Into<PathBuf>, socket: impl Into<PathBuf>) -> ServerConfig {
        let helper_binary = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("deckhand"));
        ServerConfig {
            data_dir: data_dir.into(),
            socket: socket.into(),
            shim_binary: helper_binary.with_file_name("deckhand-shim"),
            helper_binary,
            network: None,
            stream_address: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("data_dir", &self.data_dir)
            .field("socket", &self.socket)
            .field("shim_binary", &self.shim_binary)
            .field("helper_binary", &self.helper_binary)
            .field("network", &self.network.is_some())
            .field("stream_address", &self.stream_address)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("endpoint {0:?} is not a unix socket: give unix:///path/to/cri.sock")]
    Endpoint(String),
    #[error("cannot open the image store in {data_dir}: {source}")]
    Store {
        data_dir: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("{path} is in use by another running server: stop it or choose another --listen")]
    SocketInUse { path: PathBuf },
    #[error("{path} exists and is not a socket: remove it or choose another --listen")]
    NotASocket { path: PathBuf },
    #[error("socket {path}: {source}")]
    Socket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load the runtime state in {data_dir}: {message}")]
    State { data_dir: PathBuf, message: String },
    #[error("CRI server on {path} failed: {source}")]
    Serve {
        path: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
}

/// The socket path of a `unix:///path` endpoint (a bare absolute path is accepted too).
pub fn socket_path(endpoint: &str) -> Result<PathBuf, ServerError> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if path.starts_with('/') {
        Ok(PathBuf::from(path))
    } else {
        Err(ServerError::Endpoint(endpoint.to_string()))
    }
}

/// A bound, not yet serving, CRI server.
pub struct CriServer {
    socket: PathBuf,
    listener: UnixListener,
    store: ImageStore,
    runtime: RuntimeService,
}

impl CriServer {
    /// Open the image store and bind the socket: create its parent directory, replace a stale
    /// socket file left by a crashed server (refusing if a server still answers on it), and
    /// restrict it to mode 0660.
    pub async fn bind(config: ServerConfig) -> Result<CriServer, ServerError> {
        let data_dir = config.data_dir.clone();
        let store =
            tokio::task::spawn_blocking(move || ImageStore::open(StoreConfig::new(data_dir)))
                .await
                .map_err(|e| ServerError::Store {
                    data_dir: config.data_dir.clone(),
                    source: StoreError::Internal(e.to_string()),
                })?
                .map_err(|source| ServerError::Store {
                    data_dir: config.data_dir.clone(),
                    source,
                })?;
        let runtime = RuntimeService::new(
            super::RuntimeServiceConfig {
                data_dir: config.data_dir.clone(),
                shim_binary: config.shim_binary.clone(),
                helper_binary: config.helper_binary.clone(),
                network: config.network.clone(),
            },
            store.clone(),
        )
        .map_err(|message| ServerError::State {
            data_dir: config.data_dir.clone(),
            message,
        })?
        .start_streaming(crate::streaming::Config {
            addr: config.stream_address,
            ..Default::default()
        })
        .await
        .map_err(|e| ServerError::State {
            data_dir: config.data_dir.clone(),
            message: format!("streaming server: {e}"),
        })?;
        let socket = config.socket;
        let io = |source| ServerError::Socket {
            path: socket.clone(),
            source,
        };
        if let Some(parent) = socket.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        remove_stale(&socket).await?;
        let listener = UnixListener::bind(&socket).map_err(io)?;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(SOCKET_MODE))
            .map_err(io)?;
        Ok(CriServer {
            socket,
            listener,
            store,
            runtime,
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Serve the ImageService and RuntimeService until `shutdown` completes, then remove the
    /// socket (also when serving fails).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let CriServer {
            socket,
            listener,
            store,
            runtime,
        } = self;
        tracing::debug!(socket = %socket.display(), "serving CRI v1");
        let result = tonic::transport::Server::builder()
            .add_service(RuntimeServiceServer::new(runtime))
            .add_service(ImageServiceServer::new(ImageService::new(store)))
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
            .await;
        if let Err(e) = std::fs::remove_file(&socket) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(socket = %socket.display(), error = %e, "cannot remove socket");
            }
        }
        tracing::info!(socket = %socket.display(), "CRI server stopped");
        result.map_err(|source| ServerError::Serve {
            path: socket,
            source,
        })
    }
}

/// Bind and serve until `shutdown` (see [`CriServer`]).
pub async fn serve(
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    CriServer::bind(config).await?.serve(shutdown).await
}

async fn remove_stale(path: &Path) -> Result<(), ServerError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ServerError::Socket {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if !meta.file_type().is_socket() {
        return Err(ServerError::NotASocket {
            path: path.to_path_buf(),
        });
    }
    if tokio::net::UnixStream::connect(path).await.is_ok() {
        return Err(ServerError::SocketInUse {
            path: path.to_path_buf(),
        });
    }
    tracing::info!(socket = %path.display(), "removing stale socket");
    std::fs::remove_file(path).map_err(|source| ServerError::Socket {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_parsing() {
        assert_eq!(
            socket_path(DEFAULT_ENDPOINT).unwrap(),
            PathBuf::from("/run/deckhand/cri.sock")
        );
        assert_eq!(
            socket_path("/tmp/x.sock").unwrap(),
            PathBuf::from("/tmp/x.sock")
        );
        assert!(matches!(
            socket_path("tcp://127.0.0.1:1"),
            Err(ServerError::Endpoint(_))
        ));
    }

    #[tokio::test]
    async fn stale_socket_is_replaced_and_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("run/cri.sock");
        let config = ServerConfig::new(dir.path().join("data"), socket.clone());
        let server = CriServer::bind(config.clone()).await.unwrap();
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        // A second server must not steal a live socket.
        assert!(matches!(
            CriServer::bind(config.clone()).await,
            Err(ServerError::SocketInUse { .. })
        ));
        // Dropped without cleanup, like a crash: the file stays and is stale.
        drop(server);
        assert!(socket.exists());
        let server = CriServer::bind(config).await.unwrap();
        server.serve(async {}).await.unwrap();
        assert!(!socket.exists(), "socket removed on shutdown");
    }
}
