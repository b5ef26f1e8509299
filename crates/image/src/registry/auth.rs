//! Credentials and the auth challenge flow: Docker `config.json` (`auths`, base64 `auth`,
//! `identitytoken`), CRI `AuthConfig`, `WWW-Authenticate` parsing (Basic and Bearer with realm,
//! service, scope), and a token cache keyed by (endpoint, scope).

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic { username: String, password: String },
    /// OAuth2 refresh token (Docker's `identitytoken`), exchanged at the token endpoint.
    IdentityToken(String),
    /// A registry bearer token used as is (CRI `registry_token`).
    RegistryToken(String),
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("docker config {path}: {message}")]
    DockerConfig { path: PathBuf, message: String },
    #[error("malformed WWW-Authenticate header {0:?}")]
    Challenge(String),
}

/// A parsed Docker `config.json`.
#[derive(Debug, Clone, Default)]
pub struct DockerConfig {
    _private: (),
}

impl DockerConfig {
    /// Load from `path`; a missing file is empty.
    pub fn load(_path: &Path) -> Result<DockerConfig, AuthError> {
        todo!("DockerConfig::load")
    }
    /// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    pub fn default_path() -> Option<PathBuf> {
        todo!("DockerConfig::default_path")
    }
    /// Credentials for a registry host (keys may be `host`, `https://host`, `https://host/v1/`;
    /// `docker.io` also matches `https://index.docker.io/v1/`).
    pub fn credentials(&self, _registry: &str) -> Option<Credentials> {
        todo!("DockerConfig::credentials")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic { realm: String },
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

impl Challenge {
    pub fn parse(_header: &str) -> Result<Challenge, AuthError> {
        todo!("Challenge::parse")
    }
}
