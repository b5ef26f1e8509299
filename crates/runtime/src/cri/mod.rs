//! The CRI v1 gRPC server: the ImageService over [`deckhand_image::ImageStore`], the
//! RuntimeService (pod sandboxes and containers on the per-pod shims), and serving both on a
//! unix socket.
//!
//! Store errors become gRPC status codes by their type ([`status_from_store`]), never by
//! their text, and keep the store's message, which already says what to do.

// `tonic::Status` is large, but it is what every handler returns; boxing it in the helpers
// would only move the conversion around.
#![allow(clippy::result_large_err)]

pub mod convert;
mod error;
pub mod image_service;
pub mod network;
pub mod runtime_service;
pub mod server;
pub mod state;

pub use error::status_from_store;
pub use image_service::ImageService;
pub use network::{PodAddresses, PodNetwork};
pub use runtime_service::{containers_config, RuntimeService, RuntimeServiceConfig};
pub use server::{serve, socket_path, CriServer, ServerConfig, ServerError, DEFAULT_ENDPOINT};

/// The generated CRI v1 types, clients and servers, re-exported so users of this crate (the
/// kubelet, tests) need no direct `k8s-cri` dependency.
pub use k8s_cri::v1 as api;
