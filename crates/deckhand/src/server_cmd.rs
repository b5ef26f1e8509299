//! `deckhand server`: open the datastore, start `deckhand_server`'s API server, and stop it
//! on SIGINT or SIGTERM.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use deckhand_server::store::{Backend, EtcdBackend, MemoryBackend, MemoryConfig, SqliteBackend};
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::ServerArgs;

async fn open_store(data_dir: &Path, datastore: &str) -> Result<(Arc<dyn Backend>, String)> {
    if datastore == "memory" {
        let store = MemoryBackend::new(MemoryConfig::default());
        return Ok((Arc::new(store), "memory (not persistent)".into()));
    }
    let path = match datastore {
        "sqlite" | "" => data_dir.join("server/db/state.db"),
        other => match other.strip_prefix("sqlite://") {
            Some(p) => p.into(),
            None if other.starts_with("etcd://") => {
                let endpoints: Vec<String> = other["etcd://".len()..]
                    .split(',')
                    .filter(|e| !e.is_empty())
                    .map(|e| format!("http://{e}"))
                    .collect();
                if endpoints.is_empty() {
                    bail!("--datastore {other}: expected etcd://host:port[,host:port]");
                }
                let store = EtcdBackend::connect(&endpoints)
                    .await
                    .with_context(|| format!("connecting to etcd at {}", endpoints.join(",")))?;
                return Ok((Arc::new(store), format!("etcd {}", endpoints.join(","))));
            }
            None => bail!(
                "--datastore {other:?}: expected sqlite, sqlite:///path, etcd://host:port[,host:port] or memory"
            ),
        },
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the datastore directory {}", dir.display()))?;
    }
    let store = SqliteBackend::open(&path)
        .with_context(|| format!("opening the SQLite datastore {}", path.display()))?;
    Ok((Arc::new(store), format!("sqlite {}", path.display())))
}

pub async fn run(data_dir: &Path, args: ServerArgs) -> Result<()> {
    let mut sigint = signal(SignalKind::interrupt()).context("cannot install a SIGINT handler")?;
    let mut sigterm =
        signal(SignalKind::terminate()).context("cannot install a SIGTERM handler")?;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let (store, described) = open_store(data_dir, &args.datastore).await?;
    let mut config = deckhand_server::Config::new(data_dir, store);
    config.listen = args.listen;
    config.tls_sans = args.tls_san;
    config.token = args.token;
    config.cluster_cidr = args.cluster_cidr;
    config.service_cidr = args.service_cidr;
    let server = deckhand_server::start(config)
        .await
        .context("starting the API server")?;
    tracing::info!(
        address = %server.addr,
        datastore = %described,
        sans = %server.sans.join(","),
        "deckhand server ready; use KUBECONFIG={}",
        server.kubeconfig.display()
    );
    let name = tokio::select! {
        _ = sigint.recv() => "SIGINT",
        _ = sigterm.recv() => "SIGTERM",
    };
    tracing::info!(signal = name, "shutting down");
    server.shutdown().await;
    Ok(())
}
