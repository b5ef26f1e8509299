//! `<data-dir>/registries.yaml`, in the shape k3s users know:
//!
//! ```yaml
//! mirrors:
//!   docker.io:
//!     endpoint: ["https://mirror.example.com", "http://10.0.0.5:5000"]
//!   "*":                       # every registry
//!     endpoint: [...]
//! configs:
//!   "127.0.0.1:5000":
//!     auth: { username: u, password: p }     # or auth: <base64 u:p>, identity_token
//!     tls: { ca_file: ..., cert_file: ..., key_file: ..., insecure_skip_verify: true }
//!   "10.0.0.5:5000":
//!     insecure: true           # deckhand extension: plain HTTP allowed for this host
//! ```
//!
//! An endpoint's scheme says whether it speaks HTTP or HTTPS. The upstream registry itself is
//! always tried after its mirrors. Without configuration only loopback registries may use
//! plain HTTP.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error("registries config {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("registries config {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistriesConfig {
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    #[serde(default)]
    pub configs: BTreeMap<String, HostConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct Mirror {
    #[serde(default)]
    pub endpoint: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct HostConfig {
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub insecure: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct AuthConfig {
    pub username: Option<String>,
    pub password: Option<String>,
    /// base64 of `username:password`.
    pub auth: Option<String>,
    pub identity_token: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// One place to try for a registry: base URL (scheme + host[:port]) and the host whose
/// `configs` entry applies to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub base: url::Url,
    pub config_host: String,
    pub is_mirror: bool,
}

impl RegistriesConfig {
    /// Load `path`; a missing file is the empty config. Errors name the file and the field.
    pub fn load(_path: &Path) -> Result<RegistriesConfig, HostsError> {
        todo!("RegistriesConfig::load")
    }
    /// Endpoints to try for `registry`, in order: its mirrors (or `*` mirrors), then itself
    /// (`https://`, or `http://` for loopback / `insecure` hosts). `docker.io` itself is
    /// `https://registry-1.docker.io`.
    pub fn endpoints(&self, _registry: &str) -> Vec<Endpoint> {
        todo!("RegistriesConfig::endpoints")
    }
}
