//! HTTP side of the distribution protocol.

use super::auth::Credentials;
use super::hosts::RegistriesConfig;
use crate::digest::Digest;
use crate::manifest::Descriptor;
use crate::reference::Reference;
use std::pin::Pin;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{reference}: registry {registry} requires authentication (HTTP 401): configure credentials in {hint}")]
    Unauthorized { reference: String, registry: String, hint: String },
    #[error("{reference}: access denied by registry {registry} (HTTP 403)")]
    Forbidden { reference: String, registry: String },
    #[error("{reference}: manifest not found in registry {registry} (HTTP 404): check the repository name and tag")]
    ManifestNotFound { reference: String, registry: String },
    #[error("{reference}: blob {digest} not found in registry {registry} (HTTP 404)")]
    BlobNotFound { reference: String, registry: String, digest: Digest },
    #[error("{reference}: cannot resolve registry host {registry}: check the name or configure a mirror")]
    UnknownHost { reference: String, registry: String },
    #[error("{reference}: cannot connect to registry {endpoint}: {message}")]
    Connect { reference: String, endpoint: String, message: String },
    #[error("{reference}: TLS error talking to {endpoint}: {message} (for a registry without TLS, configure it as insecure in registries.yaml)")]
    Tls { reference: String, endpoint: String, message: String },
    #[error("{reference}: registry {endpoint} answered HTTP {status}: {body}")]
    Status { reference: String, endpoint: String, status: u16, body: String },
    #[error("{reference}: manifest from {registry} has digest {actual}, but {expected} was requested; nothing was stored")]
    ManifestDigestMismatch { reference: String, registry: String, expected: Digest, actual: Digest },
    #[error("{reference}: {message}")]
    Protocol { reference: String, message: String },
}

impl RegistryError {
    /// Whether retrying the same request may succeed (connection errors, 5xx, 429).
    pub fn is_retryable(&self) -> bool {
        todo!("RegistryError::is_retryable")
    }
}

/// Configuration for [`RegistryClient`].
#[derive(Debug, Clone, Default)]
pub struct ClientConfig {
    pub registries: RegistriesConfig,
    pub docker_config: Option<super::auth::DockerConfig>,
}

/// A stream of blob bytes; `offset` is where it starts (0 unless a Range request was honoured).
pub struct BlobStream {
    pub offset: u64,
    pub body: Pin<Box<dyn futures::Stream<Item = Result<bytes::Bytes, RegistryError>> + Send>>,
}

/// Thread-safe, cheap to clone; caches tokens.
#[derive(Clone)]
pub struct RegistryClient {
    _private: (),
}

impl RegistryClient {
    pub fn new(_config: ClientConfig) -> Result<RegistryClient, RegistryError> {
        todo!("RegistryClient::new")
    }
    /// Resolve `reference` (tag or digest) to its top-level descriptor and manifest bytes,
    /// trying mirrors then the registry. `creds` (CRI auth) override configured credentials.
    /// When the reference has a digest, the bytes are verified against it.
    pub async fn resolve(
        &self,
        _reference: &Reference,
        _creds: Option<&Credentials>,
    ) -> Result<(Descriptor, Vec<u8>), RegistryError> {
        todo!("RegistryClient::resolve")
    }
    /// Fetch a manifest by digest (a platform manifest from an index); verified.
    pub async fn fetch_manifest(
        &self,
        _reference: &Reference,
        _descriptor: &Descriptor,
        _creds: Option<&Credentials>,
    ) -> Result<Vec<u8>, RegistryError> {
        todo!("RegistryClient::fetch_manifest")
    }
    /// Open a blob from byte `offset` (Range request; the stream's `offset` says whether the
    /// registry honoured it).
    pub async fn fetch_blob(
        &self,
        _reference: &Reference,
        _descriptor: &Descriptor,
        _offset: u64,
        _creds: Option<&Credentials>,
    ) -> Result<BlobStream, RegistryError> {
        todo!("RegistryClient::fetch_blob")
    }
}
