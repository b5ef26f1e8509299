//! `deckhand runtime`: serve the CRI from `deckhand_runtime::cri` until SIGINT or SIGTERM.

use crate::cli::RuntimeArgs;
use anyhow::{Context, Result};
use deckhand_runtime::cri::{socket_path, CriServer, ServerConfig};
use std::path::Path;
use tokio::signal::unix::{signal, SignalKind};

pub async fn run(data_dir: &Path, args: RuntimeArgs) -> Result<()> {
    let socket = socket_path(&args.listen)?;
    // Handlers first, so a signal arriving while the store opens still stops us cleanly.
    let mut sigint = signal(SignalKind::interrupt()).context("cannot install a SIGINT handler")?;
    let mut sigterm =
        signal(SignalKind::terminate()).context("cannot install a SIGTERM handler")?;
    let config = ServerConfig::new(data_dir, socket);
    let server = CriServer::bind(config).await?;
    tracing::info!(
        socket = %server.socket().display(),
        data_dir = %data_dir.display(),
        "deckhand runtime serving CRI v1"
    );
    server
        .serve(async move {
            let name = tokio::select! {
                _ = sigint.recv() => "SIGINT",
                _ = sigterm.recv() => "SIGTERM",
            };
            tracing::info!(signal = name, "shutting down");
        })
        .await?;
    Ok(())
}
