//! Running the API server: PKI and kubeconfig, the join token, the default namespaces, and
//! the HTTPS listener that authenticates each connection's client certificate and hands
//! requests to the API router.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::api::{self, ApiState};
use crate::auth::User;
use crate::registry::registry;
use crate::store::{Backend, WatchCache, WatchCacheConfig};
use crate::tls::{self, TlsAssets, TlsError};

/// Namespaces every cluster has from the start.
const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("TLS setup: {0}")]
    Tls(#[from] TlsError),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("starting the watch cache: {0}")]
    WatchCache(crate::store::StoreError),
    #[error("creating namespace {name}: {source}")]
    Bootstrap {
        name: String,
        source: crate::store::StoreError,
    },
}

/// How to run the server (the `deckhand server` flags).
pub struct Config {
    pub data_dir: PathBuf,
    /// Port 0 picks a free port (tests); [`RunningServer::addr`] tells which.
    pub listen: SocketAddr,
    pub store: Arc<dyn Backend>,
    /// Extra names and addresses for the serving certificate.
    pub tls_sans: Vec<String>,
    /// The join token; generated and written to `<data-dir>/token` when absent.
    pub token: Option<String>,
    pub cluster_cidr: String,
    pub service_cidr: String,
    /// How often watches that allow bookmarks get one (upstream: about a minute).
    pub bookmark_interval: Duration,
    /// A namespace controller will run against this server (see
    /// [`ApiState::namespace_controller`]); off, namespace deletion is immediate.
    pub namespace_controller: bool,
    /// Serve reads and watches from an in-memory watch cache in front of `store` (as
    /// kube-apiserver does); off only to test a backend bare.
    pub watch_cache: bool,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>, store: Arc<dyn Backend>) -> Config {
        Config {
            data_dir: data_dir.into(),
            listen: SocketAddr::from(([0, 0, 0, 0], 6443)),
            store,
            tls_sans: Vec::new(),
            token: None,
            cluster_cidr: "10.42.0.0/16".into(),
            service_cidr: "10.43.0.0/16".into(),
            bookmark_interval: Duration::from_secs(60),
            watch_cache: true,
            namespace_controller: false,
        }
    }
}

/// A started server. Dropping it does not stop it: call [`RunningServer::shutdown`].
pub struct RunningServer {
    pub addr: SocketAddr,
    pub kubeconfig: PathBuf,
    pub token: String,
    pub sans: Vec<String>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningServer {
    /// Stop accepting, end open watches, and wait for the accept loop to finish.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }

    /// Resolves when the server stopped (after a shutdown).
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ServerError + '_ {
    move |source| ServerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The join token: the flag's, else the one kept in `<data-dir>/token`, else a new one.
fn load_token(data_dir: &Path, given: Option<String>) -> Result<String, ServerError> {
    use rand::Rng;
    use std::os::unix::fs::PermissionsExt;
    let path = data_dir.join("token");
    if let Some(t) = given {
        return Ok(t);
    }
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&path)(e)),
    }
    let bytes: [u8; 16] = rand::thread_rng().gen();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&path, format!("{token}\n")).map_err(io_err(&path))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(io_err(&path))?;
    Ok(token)
}

async fn bootstrap(store: &dyn Backend, finalizer: bool) -> Result<(), ServerError> {
    let info = registry()
        .find("", "v1", "namespaces")
        .expect("namespaces are in the registry");
    for name in SYSTEM_NAMESPACES {
        let key = info.key(None, name);
        let present = store
            .get(&key)
            .await
            .map_err(|source| ServerError::Bootstrap {
                name: name.to_string(),
                source,
            })?;
        if present.is_some() {
            continue;
        }
        let ns = serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "uid": api::new_uid(), "creationTimestamp": api::now(),
                         "labels": {"kubernetes.io/metadata.name": name}},
            "spec": if finalizer { serde_json::json!({"finalizers": ["kubernetes"]}) } else { serde_json::json!({}) },
            "status": {"phase": "Active"},
        });
        match store
            .create(&key, serde_json::to_vec(&ns).unwrap_or_default())
            .await
        {
            Ok(_) | Err(crate::store::StoreError::AlreadyExists(_)) => {}
            Err(source) => {
                return Err(ServerError::Bootstrap {
                    name: name.to_string(),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// Start serving. Returns once the listener is bound and the kubeconfig written.
pub async fn start(config: Config) -> Result<RunningServer, ServerError> {
    let server_dir = config.data_dir.join("server");
    std::fs::create_dir_all(&server_dir).map_err(io_err(&server_dir))?;
    let token = load_token(&config.data_dir, config.token.clone())?;

    let listener =
        TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServerError::Listen {
                addr: config.listen,
                source,
            })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServerError::Listen {
            addr: config.listen,
            source,
        })?;

    let mut sans = Vec::new();
    if !addr.ip().is_unspecified() {
        sans.push(addr.ip().to_string());
    }
    sans.extend(tls::host_sans());
    sans.extend(config.tls_sans.iter().cloned());
    let assets = TlsAssets::load_or_create(&server_dir.join("tls"), &sans)?;
    let tls_config = Arc::new(assets.server_config()?);

    // The kubeconfig points at an address that is in the certificate and reachable here.
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    let kubeconfig = config.data_dir.join("kubeconfig.yaml");
    assets.write_kubeconfig(&kubeconfig, &format!("https://{host}:{}", addr.port()))?;

    let store: Arc<dyn Backend> = if config.watch_cache {
        let cache = WatchCache::start(config.store.clone(), WatchCacheConfig::default())
            .await
            .map_err(ServerError::WatchCache)?;
        Arc::new(cache)
    } else {
        config.store.clone()
    };
    bootstrap(store.as_ref(), config.namespace_controller).await?;

    let cancel = CancellationToken::new();
    let state = Arc::new(ApiState {
        store,
        shutdown: cancel.clone(),
        bookmark_interval: config.bookmark_interval,
        join_token: Some(token.clone()),
        namespace_controller: config.namespace_controller,
    });
    let router = api::router(state);
    let acceptor = TlsAcceptor::from(tls_config);
    let task = tokio::spawn(accept_loop(listener, acceptor, router, cancel.clone()));
    tracing::info!(
        %addr,
        kubeconfig = %kubeconfig.display(),
        cluster_cidr = %config.cluster_cidr,
        service_cidr = %config.service_cidr,
        "API server listening"
    );
    Ok(RunningServer {
        addr,
        kubeconfig,
        token,
        sans: assets.sans,
        cancel,
        task,
    })
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: axum::Router,
    cancel: CancellationToken,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (acceptor, router, cancel) = (acceptor.clone(), router.clone(), cancel.clone());
        connections.spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| User::from_client_cert(c.as_ref()))
                .unwrap_or(User::Anonymous);
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(user.clone());
                router.clone().oneshot(req.map(Body::new))
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            tokio::pin!(conn);
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(%peer, error = %e, "connection ended");
                    }
                }
                _ = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    // Give in-flight requests a moment; watches end on the same signal.
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn.as_mut()).await;
                }
            }
        });
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
    connections.shutdown().await;
}
