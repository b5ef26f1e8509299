//! The kubelet's decision logic: pure, deterministic functions (time comes in as `now`) that the
//! sync loop, pod workers, PLEG and status manager call. Nothing here does IO; the wiring (API
//! watch, CRI client, probes) lives around it and stays thin.
//!
//! - [`actions`]: what a pod sync must do (sandbox, init containers, sidecars, containers,
//!   kills, CrashLoopBackOff).
//! - [`status`]: the pod status the kubelet reports (phase, conditions, container statuses).
//! - [`qos`]: QoS class, resource quantities and cgroup resources and paths.
//! - [`env`]: container environment (downward API, ConfigMaps/Secrets, service links, `$(VAR)`).
//! - [`lifecycle`]: graceful termination and active deadline decisions.

pub mod actions;
pub mod env;
pub mod lifecycle;
pub mod qos;
pub mod status;
