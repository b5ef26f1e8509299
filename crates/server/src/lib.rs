//! The control plane: API server, storage backends (SQLite, etcd), watch cache, scheduler and
//! controllers (the control-plane issue; being built).

pub mod api;
pub mod controllers;
pub mod scheduler;
pub mod store;
