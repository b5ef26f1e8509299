//! The CRI runtime: pod sandboxes, containers, streaming, logs and stats, built on
//! `libcontainer` and the per-pod shim. It consumes `deckhand-image` for rootfs snapshots.
//!
//! This layer so far: [`spec`] turns a runtime-neutral [`spec::ContainerConfig`] into an OCI
//! spec, [`seccomp`] holds the RuntimeDefault profile, and [`container`] runs containers with
//! libcontainer under a subreaper parent that records their exit. [`cri`] serves CRI v1 gRPC:
//! the ImageService and the RuntimeService's Version and Status.

pub mod container;
pub mod cri;
pub mod seccomp;
pub mod shim;
pub mod spec;
