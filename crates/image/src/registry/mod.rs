//! The OCI distribution client: resolving references to manifests, fetching manifests and
//! blobs, with mirrors, per-host TLS and auth from `registries.yaml`, Docker `config.json` and
//! CRI auth config, the `WWW-Authenticate` challenge flow (basic and bearer tokens), retries
//! and `Range` resumption.

pub mod auth;
pub mod client;
pub mod hosts;

pub use auth::{Credentials, DockerConfig};
pub use client::{BlobStream, RegistryClient, RegistryError};
pub use hosts::RegistriesConfig;
