//! The control plane: API server, storage backends (SQLite, etcd), watch cache, scheduler and
//! controllers. Not yet implemented: see the control-plane issue.
