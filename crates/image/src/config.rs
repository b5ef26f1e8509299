//! The image configuration (OCI `config.json` / Docker container config): the parts a runtime
//! needs, plus the rootfs diff IDs that key the snapshots.

use crate::digest::Digest;
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("image config {digest} is not valid: {source}")]
    Parse {
        digest: Digest,
        #[source]
        source: serde_json::Error,
    },
    #[error("image config {digest} lists {diff_ids} diff IDs but the manifest has {layers} layers")]
    LayerCountMismatch { digest: Digest, diff_ids: usize, layers: usize },
}

/// What the runtime reads from an image's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageConfig {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// `"80/tcp"` style keys, as in the config.
    pub exposed_ports: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<String>,
    pub volumes: Vec<String>,
    /// Uncompressed layer digests, bottom first (`rootfs.diff_ids`).
    pub diff_ids: Vec<Digest>,
    pub created: Option<String>,
}

impl ImageConfig {
    /// Parse the OCI / Docker config JSON (the `config` object holds the runtime fields; nulls
    /// and absent fields become empty).
    pub fn parse(_digest: &Digest, _bytes: &[u8]) -> Result<ImageConfig, ConfigError> {
        todo!("ImageConfig::parse")
    }
}
