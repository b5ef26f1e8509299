//! deckhand's image store: everything between a registry (or an image archive) and a
//! container's root file system.
//!
//! - [`content`]: the content-addressed blob store under `<data-dir>/images/blobs`; every blob is
//!   verified by digest and size and committed atomically (temp file, fsync, rename).
//! - [`reference`], [`digest`], [`media`], [`manifest`], [`config`]: the OCI and Docker formats.
//! - [`registry`]: the OCI distribution client (auth, mirrors, `registries.yaml`).
//! - [`pull`]: fetching an image into the store, layers in parallel, with progress events.
//! - [`import`]: OCI archives, docker-archives and OCI layout directories.
//! - [`unpack`] and [`snapshot`]: each layer unpacked once into an overlay snapshot keyed by its
//!   chain ID; a container's rootfs is a fresh upper/work dir on top of the shared lower chain.
//! - [`metadata`]: image records (name → manifest digest), written last so a half-pulled image
//!   is never visible.
//! - [`store`]: [`ImageStore`], the facade the CLI and the runtime use.

pub mod config;
pub mod content;
pub mod digest;
pub mod import;
pub mod manifest;
pub mod media;
pub mod metadata;
pub mod progress;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod snapshot;
pub mod store;
pub mod unpack;
pub mod verify;

pub use config::ImageConfig;
pub use digest::Digest;
pub use reference::Reference;
pub use store::{Image, ImageStore, StoreConfig, StoreError};
