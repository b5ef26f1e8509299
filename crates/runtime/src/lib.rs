//! The CRI runtime: pod sandboxes, containers, streaming, logs and stats, built on
//! `libcontainer` and the per-pod shim. It consumes `deckhand-image` for rootfs snapshots.
//! Not yet implemented: see the runtime issue.
pub mod cri;
