//! The control plane: API server, storage backends (SQLite, etcd), watch cache, scheduler and
//! controllers (the control-plane issue; being built).

pub mod api;
pub mod auth;
pub mod controllers;
pub mod registry;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod tls;

pub use server::{start, Config, RunningServer, ServerError};
